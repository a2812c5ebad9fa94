"""The claim rules without a database: owed, paid, open, overdue clock, chargebacks."""

from datetime import UTC, date, datetime
from decimal import Decimal as D
from zoneinfo import ZoneInfo

from dunning.models.claims import (
    Installment,
    Txn,
    claim_outcome,
    installment_facts,
    is_overdue,
    new_claim,
    overdue_days,
    update_claim,
    vanished_reason,
)
from dunning.models.enums import CaseKind

BERLIN = ZoneInfo("Europe/Berlin")
AS_OF = datetime(2026, 3, 1, 12, tzinfo=UTC)


def plan(*amounts: str, first=date(2026, 1, 10), every=30):
    from datetime import timedelta

    return [
        Installment(i + 1, first + timedelta(days=every * i), D(a)) for i, a in enumerate(amounts)
    ]


def sale(tid, n, amount, at=datetime(2026, 1, 5, tzinfo=UTC)):
    return Txn(tid, "sale", D(amount), at, installment_number=n)


def reversal(kind: str, tid: str, amount: str, at: datetime, **fee) -> Txn:
    """A refund or chargeback of the sale s1."""
    return Txn(tid, kind, D(amount), at, reverses_transaction_id="s1", **fee)


def test_overdue_from_the_day_after_the_due_date():
    assert not is_overdue(date(2026, 1, 10), date(2026, 1, 10))
    assert is_overdue(date(2026, 1, 10), date(2026, 1, 11))
    assert overdue_days(date(2026, 1, 11), date(2026, 1, 10)) == 1
    assert overdue_days(date(2026, 1, 10), date(2026, 1, 10)) == 0
    assert overdue_days(date(2026, 1, 10), None) == 0


def test_on_time_payer_has_no_claim():
    facts = installment_facts(plan("99.00"), [sale("s1", 1, "99.00")], AS_OF, BERLIN)
    assert facts[0].open == D("0.00")
    assert new_claim(facts, date(2026, 3, 1)) is None


def test_berlin_midnight_decides_the_day_not_utc():
    # Due 2026-01-10; at 23:30 UTC on the 10th it is already the 11th in Berlin.
    facts = installment_facts(plan("99.00"), [], AS_OF, BERLIN)
    late = datetime(2026, 1, 10, 23, 30, tzinfo=UTC)
    from dunning.models.clock import local_date

    assert local_date(late, BERLIN) == date(2026, 1, 11)
    assert new_claim(facts, local_date(late, BERLIN)) is not None
    early = datetime(2026, 1, 10, 22, 59, tzinfo=UTC)
    assert new_claim(facts, local_date(early, BERLIN)) is None


def test_partial_payment_lowers_the_claim_but_keeps_the_clock():
    facts = installment_facts(plan("100.00"), [sale("s1", 1, "40.00")], AS_OF, BERLIN)
    assert facts[0].open == D("60.00")
    claim = new_claim(facts, date(2026, 1, 20))
    assert claim is not None
    assert (claim.principal, claim.paid, claim.open) == (D("100.00"), D("40.00"), D("60.00"))
    assert claim.default_date == date(2026, 1, 10)
    assert overdue_days(date(2026, 1, 20), claim.default_date) == 10


def test_later_installments_join_and_clock_runs_from_earliest_unpaid():
    insts = plan("50.00", "50.00", "50.00")  # due 01-10, 02-09, 03-11
    facts = installment_facts(insts, [], AS_OF, BERLIN)
    claim = new_claim(facts, date(2026, 1, 20))
    assert claim.numbers == [1]
    update_claim(claim, facts, date(2026, 2, 15))
    assert claim.numbers == [1, 2]
    assert claim.principal == D("100.00")
    assert claim.default_date == date(2026, 1, 10)
    # installment 1 paid later: the earliest unpaid is now installment 2
    paid = installment_facts(insts, [sale("s1", 1, "50.00")], AS_OF, BERLIN)
    update_claim(claim, paid, date(2026, 2, 15))
    assert claim.numbers == [1, 2]  # stays in the claim, counted as paid
    assert (claim.principal, claim.paid, claim.open) == (D("100.00"), D("50.00"), D("50.00"))
    assert claim.default_date == date(2026, 2, 9)


def test_transactions_after_as_of_do_not_count():
    late_sale = sale("s1", 1, "99.00", at=datetime(2026, 3, 2, tzinfo=UTC))
    facts = installment_facts(plan("99.00"), [late_sale], AS_OF, BERLIN)
    assert facts[0].open == D("99.00")


def test_chargeback_reopens_a_paid_installment_with_its_fee_and_date():
    txns = [
        sale("s1", 1, "99.00"),
        reversal(
            "chargeback", "c1", "99.00", datetime(2026, 1, 20, 23, 30, tzinfo=UTC), fee=D("12.50")
        ),
    ]
    facts = installment_facts(plan("99.00", first=date(2026, 6, 1)), txns, AS_OF, BERLIN)
    f = facts[0]
    assert (f.owed, f.paid, f.open) == (D("99.00"), D("0.00"), D("99.00"))
    assert f.chargeback_date == date(2026, 1, 21)  # Berlin date of 23:30 UTC
    assert f.chargeback_fee == D("12.50")
    claim = new_claim(facts, date(2026, 1, 22))  # not yet due, but charged back
    assert claim.kind is CaseKind.CHARGEBACK
    assert claim.default_date == date(2026, 1, 21)
    assert claim.fees == D("12.50") and claim.open == D("111.50")


def test_chargeback_without_fee_takes_the_merchant_setting():
    txns = [
        sale("s1", 1, "99.00"),
        reversal("chargeback", "c1", "99.00", datetime(2026, 1, 20, tzinfo=UTC), fee=None),
    ]
    facts = installment_facts(plan("99.00"), txns, AS_OF, BERLIN, default_chargeback_fee=D("7"))
    assert facts[0].chargeback_fee == D("7")


def test_refund_reduces_what_is_owed_and_can_make_the_claim_vanish():
    txns = [
        sale("s1", 1, "30.00"),
        reversal("refund", "r1", "30.00", datetime(2026, 1, 25, tzinfo=UTC)),
    ]
    facts = installment_facts(plan("100.00"), txns, AS_OF, BERLIN)
    # owed 100 - 30 = 70, paid 30 (a refund gives money back, it does not unpay) -> open 40
    assert (facts[0].owed, facts[0].paid, facts[0].open) == (D("70.00"), D("30.00"), D("40.00"))


def test_overpayment_counts_toward_fees_but_refunded_money_does_not():
    over = installment_facts(plan("99.00"), [sale("s1", 1, "104.00")], AS_OF, BERLIN)[0]
    assert over.open == D("0.00") and over.paid_against_owed == D("104.00")
    txns = [
        sale("s1", 1, "99.00"),
        reversal("refund", "r1", "20.00", datetime(2026, 1, 25, tzinfo=UTC)),
    ]
    refunded = installment_facts(plan("99.00"), txns, AS_OF, BERLIN)[0]
    assert refunded.owed == D("79.00") and refunded.paid_against_owed == D("79.00")


def test_outcomes():
    assert claim_outcome(D("0"), D("15")) == "cancelled"  # nothing owed: fees go with it
    assert claim_outcome(D("99"), D("0")) == "paid"
    assert claim_outcome(D("99"), D("-1")) == "paid"
    assert claim_outcome(D("99"), D("0.01")) is None
    assert vanished_reason("refunded") == "claim vanished: order refunded"
    assert "cancelled at the source" in vanished_reason("cancelled")
