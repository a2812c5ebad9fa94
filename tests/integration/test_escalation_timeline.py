# ruff: noqa: F401, F811  (pytest fixtures imported from tests.escalation_fixtures)
"""~90 simulated days, a run every 10 days, per dunning option: each case gets one reminder
1, one reminder 2 and one handover; the court and cancellation branches are reached;
payments stop or lower the claim; the § 498 BGB guard holds cancellation back."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select

from dunning.db import session_scope
from dunning.models.schema import CaseHistory
from dunning.tasks import merchant_settings as store
from dunning.tasks.escalate import escalate
from tests.escalation_fixtures import (
    actions,
    at,
    case,
    join_installment,
    make_case,
    one_time,
    orders_api,
    partner,
    pay,
    settings_for,
    smtp,
)
from tests.factories import order_record, schedule

D0 = date(2026, 1, 16)  # the day after the first due date (2026-01-15)
DAYS = range(0, 100, 10)


def configure(url, cfg, merchant, **changes):
    with session_scope(url) as s:
        store.change(s, merchant, changes, at(D0 - timedelta(days=40)), "test", cfg)


def history(url, case_id):
    with session_scope(url) as s:
        return [
            h.to_state
            for h in s.scalars(
                select(CaseHistory).where(CaseHistory.case_id == case_id).order_by(CaseHistory.id)
            )
        ]


def test_court_option_timeline(migrated_db, smtp, partner):
    smtp_url, box = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url)
    configure(
        migrated_db, cfg, "m1", dunning_option="court", reminder_fee="2.50", interest_enabled=True
    )
    never = make_case(migrated_db, one_time("never"))
    pays = make_case(migrated_db, one_time("pays"))
    partial = make_case(migrated_db, one_time("partial"))
    late = make_case(migrated_db, one_time("late"))
    for day in DAYS:
        as_of = at(D0 + timedelta(days=day))
        if day == 20:
            pay(migrated_db, pays, "105.00")  # principal, fee and interest: paid in full
            pay(migrated_db, partial, "40.00")
        if day == 40:
            partner.set_status(f"DUN-{never}", "unsuccessful")
        if day == 50:
            pay(migrated_db, late, "500.00")  # pays everything while with the partner
        escalate(migrated_db, as_of, cfg)
        if day == 0:
            assert {case(migrated_db, c).state for c in (never, pays, partial, late)} == {
                "scheduled"
            }

    assert history(migrated_db, never) == ["reminder_1", "reminder_2", "with_partner", "court"]
    assert case(migrated_db, never).partner_status in ("court_requested", "court_filed")
    assert partner.court_posts[f"DUN-{never}"] == 1
    assert history(migrated_db, pays) == ["reminder_1", "paid"]
    assert history(migrated_db, partial) == ["reminder_1", "reminder_2", "with_partner"]
    assert history(migrated_db, late) == ["reminder_1", "reminder_2", "with_partner", "paid"]

    keys = box.by_key()
    assert set(keys.values()) == {1}
    assert {k for k in keys if k.endswith("reminder_1")} == {
        f"case-{c}-reminder_1" for c in (never, pays, partial, late)
    }
    assert {k for k in keys if k.endswith("reminder_2")} == {
        f"case-{c}-reminder_2" for c in (never, partial, late)
    }
    assert dict(partner.claim_posts) == {f"DUN-{c}": 1 for c in (never, partial, late)}

    # Partial payment: the claim went on, lower; the handover carries the lower claim.
    c = case(migrated_db, partial)
    assert c.paid_amount == Decimal("40.00") and c.fees_amount == Decimal("5.00")
    assert c.interest_amount > 0
    sent = partner.claim(f"DUN-{partial}")["request"]
    total = sum(Decimal(i["amount"]) for i in sent["items"])
    assert total == Decimal("99.00") + Decimal("5.00") + c.interest_amount - Decimal("40.00")
    # § 367 BGB: the 40.00 paid the fees, then the interest, then part of the principal.
    assert [(i["type"], i["amount"]) for i in sent["items"]] == [
        ("principal", f"{Decimal('99.00') - (Decimal('35.00') - c.interest_amount):.2f}")
    ]
    assert sent["first_reminder_date"] == (D0 + timedelta(days=10)).isoformat()
    assert sent["default_date"] == "2026-01-15"
    assert sent["debtor"]["street"] and sent["creditor"]["name"]
    reminder2 = next(m for m in box.messages if m["X-Dunning-Key"] == f"case-{partial}-reminder_2")
    text = reminder2.get_body(("plain",)).get_content()
    assert "bereits gezahlt: -40,00 EUR" in text
    assert "spätestens " + (D0 + timedelta(days=30)).strftime("%d.%m.%Y") in text
    assert "gerichtliche Mahnverfahren" in text

    # Paid while with the partner: the partner was told (recall, reason paid), once.
    assert partner.recall_posts[f"DUN-{late}"] == 1
    assert partner.claim(f"DUN-{late}")["status"] == "recalled"
    assert [a.step for a in actions(migrated_db, late)][-1] == "recall"
    # Paid mid-ladder: no step after it.
    assert [a.step for a in actions(migrated_db, pays)] == ["reminder_1"]


def test_cancellation_option_timeline(migrated_db, smtp, partner, orders_api):
    smtp_url, box = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url, orders_api.url)
    configure(migrated_db, cfg, "m2", dunning_option="cancellation", cancellation_costs="30.00")
    single = make_case(migrated_db, one_time("single", "m2"), option="cancellation")
    # 24 monthly installments of 50.00 = 1200.00 over two years: 10 % = 120.00 must be in
    # default, across at least two consecutive installments.
    plan = order_record(
        "plan",
        "m2",
        payment_plan="breakdown_payment",
        total_amount="1200.00",
        installments=schedule(24, date(2026, 1, 15), "50.00"),
    )
    plan_case = make_case(migrated_db, plan, option="cancellation")
    states = {}
    for day in DAYS:
        as_of = at(D0 + timedelta(days=day))
        if day == 30:  # installment 2 (due 2026-02-14) fell overdue: detection joins it
            join_installment(migrated_db, plan_case, 2, date(2026, 2, 14), "50.00")
        if day == 60:  # installment 3 (due 2026-03-16)
            join_installment(migrated_db, plan_case, 3, date(2026, 3, 16), "50.00")
        escalate(migrated_db, as_of, cfg)
        states[day] = case(migrated_db, plan_case).state

    assert history(migrated_db, single) == [
        "reminder_1",
        "reminder_2",
        "with_partner",
        "order_cancelled",
    ]
    c = case(migrated_db, single)
    assert c.cancellation_costs == Decimal("30.00")
    assert c.outstanding_amount == Decimal("129.00")
    assert orders_api.cancel_calls["single"] == 1
    assert orders_api.cancelled["single"] == f"case-{single}-cancel_order"

    # § 498: 100.00 in default (two installments) < 120.00 holds it back on days 40 and 50.
    assert states[30] == "with_partner"
    assert states[40] == states[50] == "with_partner"
    assert states[60] == "order_cancelled"  # installment 3 in default: 150.00 >= 120.00
    assert orders_api.cancel_calls["plan"] == 1
    assert dict(partner.claim_posts) == {f"DUN-{single}": 1, f"DUN-{plan_case}": 1}
    assert set(box.by_key().values()) == {1} and len(box.messages) == 4
    sent = partner.claim(f"DUN-{plan_case}")["request"]
    assert [(i["type"], i["due_date"]) for i in sent["items"]] == [
        ("principal", "2026-01-15"),
        ("principal", "2026-02-14"),
    ]
    assert sent["escalation"] == "cancellation"
