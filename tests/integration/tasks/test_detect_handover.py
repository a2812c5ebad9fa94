"""Detection and handover rules on SQLite and PostgreSQL, over hand-built timelines."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from dunning.config import Settings
from dunning.db import session_scope
from dunning.db.detect_sql import Spelling
from dunning.models.schema import Case, CaseHistory, CaseItem, Order
from dunning.tasks import merchant_settings as store
from dunning.tasks.detect import detect_cases_core
from dunning.tasks.handover import apply_handover_core
from tests.factories import (
    address,
    chargeback,
    load_orders,
    order_record,
    refund,
    sale,
    schedule,
)

BERLIN_MIDNIGHT_16 = datetime(2026, 1, 15, 23, 0, tzinfo=UTC)  # 2026-01-16 00:00 Berlin


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def run(url: str, as_of: datetime, settings: Settings | None = None) -> dict:
    settings = settings or Settings()
    detected = detect_cases_core(url, as_of, settings)
    routed = apply_handover_core(url, as_of, settings)
    return {"detect": detected, "handover": routed}


def cases_of(url: str, order_id: str) -> list[Case]:
    with session_scope(url) as s:
        return list(s.scalars(select(Case).where(Case.order_id == order_id).order_by(Case.case_id)))


def the_case(url: str, order_id: str) -> Case:
    found = cases_of(url, order_id)
    assert len(found) == 1, found
    return found[0]


def items(url: str, case_id: int) -> list[tuple]:
    with session_scope(url) as s:
        return [
            (i.item_type, i.installment_number, i.due_date, D(i.amount), D(i.paid_amount))
            for i in s.scalars(
                select(CaseItem)
                .where(CaseItem.case_id == case_id)
                .order_by(CaseItem.installment_number, CaseItem.item_type.desc())
            )
        ]


def history(url: str, case_id: int) -> list[tuple]:
    with session_scope(url) as s:
        return [
            (h.actor, h.from_state, h.to_state, h.reason)
            for h in s.scalars(
                select(CaseHistory).where(CaseHistory.case_id == case_id).order_by(CaseHistory.id)
            )
        ]


def newer(record: dict, minutes: int = 1, **changes) -> dict:
    """The same order as a later snapshot (newest updated_at wins in the loader)."""
    out = {**record, **changes}
    out["updated_at"] = (
        datetime.fromisoformat(record["updated_at"]) + timedelta(minutes=minutes)
    ).isoformat()
    return out


def configure(url: str, merchant: str, **changes) -> None:
    with session_scope(url) as s:
        store.change(s, merchant, changes, at("2025-12-01"), "test", Settings())


# --- detection ----------------------------------------------------------------------------


def test_on_time_payer_gets_no_case(migrated_db):
    load_orders(
        migrated_db,
        [order_record("paid", transactions=[sale("s1", 1, "99.00", at("2026-01-14"))])],
    )
    run(migrated_db, at("2026-02-01"))
    assert cases_of(migrated_db, "paid") == []


def test_one_day_late_across_the_berlin_midnight(migrated_db):
    load_orders(migrated_db, [order_record("late")])  # 99.00 due 2026-01-15, unpaid
    # 22:59 UTC on the 15th is 23:59 in Berlin: still the due date, not overdue.
    out = run(migrated_db, BERLIN_MIDNIGHT_16 - timedelta(minutes=1))
    assert out["detect"]["new_cases"] == 0
    assert cases_of(migrated_db, "late") == []
    # 23:00 UTC on the 15th is 00:00 on the 16th in Berlin: 1 day overdue, though UTC says 15th.
    out = run(migrated_db, BERLIN_MIDNIGHT_16)
    assert out["detect"]["new_cases"] == 1
    case = the_case(migrated_db, "late")
    assert case.kind == "overdue"
    assert case.default_date == date(2026, 1, 15)
    assert (BERLIN_MIDNIGHT_16.astimezone(Settings().zone).date() - case.default_date).days == 1
    assert D(case.principal_amount) == D("99.00")
    assert D(case.outstanding_amount) == D("99.00")
    assert case.state == "awaiting_approval"  # defaults: both switches off
    assert history(migrated_db, case.case_id) == [
        ("handover", None, "awaiting_approval", "auto-handover of overdue claims is off")
    ]


def test_partial_payment_lowers_the_claim_then_full_payment_closes_it(migrated_db):
    rec = order_record(
        "part",
        total_amount="100.00",
        installments=schedule(1, date(2026, 1, 15), "100.00"),
        transactions=[sale("s1", 1, "40.00", at("2026-01-14"))],
    )
    load_orders(migrated_db, [rec])
    run(migrated_db, at("2026-01-20"))
    case = the_case(migrated_db, "part")
    assert (D(case.principal_amount), D(case.paid_amount), D(case.outstanding_amount)) == (
        D("100.00"),
        D("40.00"),
        D("60.00"),
    )
    assert case.default_date == date(2026, 1, 15)  # the clock did not restart
    # another partial payment: claim lower, same case, same clock
    rec2 = newer(rec, transactions=[*rec["transactions"], sale("s2", 1, "35.00", at("2026-01-25"))])
    load_orders(migrated_db, [rec2])
    run(migrated_db, at("2026-01-26"))
    case = the_case(migrated_db, "part")
    assert D(case.outstanding_amount) == D("25.00")
    assert case.default_date == date(2026, 1, 15)
    assert case.state == "awaiting_approval"
    # the rest: paid at once
    rec3 = newer(
        rec2, 2, transactions=[*rec2["transactions"], sale("s3", 1, "25.00", at("2026-01-27"))]
    )
    load_orders(migrated_db, [rec3])
    out = run(migrated_db, at("2026-01-28"))
    assert out["detect"]["paid"] == 1
    case = the_case(migrated_db, "part")
    assert case.state == "paid"
    assert D(case.outstanding_amount) == D("0.00")
    assert case.close_reason == "claim fully paid"
    assert history(migrated_db, case.case_id)[-1] == (
        "detect",
        "awaiting_approval",
        "paid",
        "claim fully paid",
    )


def test_two_overdue_installments_in_one_case(migrated_db):
    rec = order_record(
        "plan",
        payment_plan="breakdown_payment",
        total_amount="150.00",
        installments=schedule(3, date(2026, 1, 15), "50.00"),  # 01-15, 02-14, 03-16
        transactions=[],
    )
    load_orders(migrated_db, [rec])
    run(migrated_db, at("2026-01-20"))
    case = the_case(migrated_db, "plan")
    assert [i[:2] for i in items(migrated_db, case.case_id)] == [("principal", 1)]
    assert D(case.principal_amount) == D("50.00")
    # no new sync: the second installment falls due with time alone and joins the open case
    out = run(migrated_db, at("2026-02-20"))
    assert out["detect"]["new_cases"] == 0 and out["detect"]["items_joined"] == 1
    case = the_case(migrated_db, "plan")
    assert items(migrated_db, case.case_id) == [
        ("principal", 1, date(2026, 1, 15), D("50.00"), D("0.00")),
        ("principal", 2, date(2026, 2, 14), D("50.00"), D("0.00")),
    ]
    assert (D(case.principal_amount), D(case.outstanding_amount)) == (D("100.00"), D("100.00"))
    assert case.default_date == date(2026, 1, 15)  # clock from the earliest unpaid
    # the first one gets paid: the clock now runs from the second
    rec2 = newer(rec, transactions=[sale("s1", 1, "50.00", at("2026-02-21"))])
    load_orders(migrated_db, [rec2])
    run(migrated_db, at("2026-02-22"))
    case = the_case(migrated_db, "plan")
    assert D(case.outstanding_amount) == D("50.00")
    assert case.default_date == date(2026, 2, 14)
    assert case.state == "awaiting_approval"


def test_chargeback_with_fee_from_the_bank_or_the_merchant_setting(migrated_db):
    configure(migrated_db, "m2", chargeback_fee="7.50")
    bank_fee = order_record(
        "cb1",
        transactions=[
            sale("s1", 1, "99.00", at("2026-01-10")),
            # 23:30 UTC on 01-20 is 01-21 in Berlin: the default date
            chargeback("c1", "s1", "99.00", datetime(2026, 1, 20, 23, 30, tzinfo=UTC), fee="15.00"),
        ],
    )
    merchant_fee = order_record(
        "cb2",
        "m2",
        transactions=[
            sale("s1", 1, "99.00", at("2026-01-10")),
            chargeback("c1", "s1", "99.00", at("2026-01-12"), fee=None),
        ],
    )
    load_orders(migrated_db, [bank_fee, merchant_fee])
    run(migrated_db, at("2026-01-22"))
    c1 = the_case(migrated_db, "cb1")
    assert c1.kind == "chargeback"
    assert c1.default_date == date(2026, 1, 21)
    assert (D(c1.principal_amount), D(c1.fees_amount), D(c1.outstanding_amount)) == (
        D("99.00"),
        D("15.00"),
        D("114.00"),
    )
    assert items(migrated_db, c1.case_id) == [
        ("principal", 1, date(2026, 1, 15), D("99.00"), D("0.00")),
        ("chargeback_fee", 1, date(2026, 1, 15), D("15.00"), D("0.00")),
    ]
    c2 = the_case(migrated_db, "cb2")
    # charged back before the due date (01-15): a chargeback case all the same
    assert c2.kind == "chargeback" and c2.default_date == date(2026, 1, 12)
    assert D(c2.fees_amount) == D("7.50") and D(c2.outstanding_amount) == D("106.50")
    # fees added by others (escalation's reminder fees) are never overwritten by detection,
    # even when the order changes and is looked at again
    with session_scope(migrated_db) as s:
        s.execute(
            update(Case)
            .where(Case.case_id == c1.case_id)
            .values(fees_amount=D("20.00"), outstanding_amount=D("119.00"))
        )  # 15 chargeback + 5 reminder fee, as escalation writes it
    load_orders(migrated_db, [newer(bank_fee)])
    assert run(migrated_db, at("2026-01-23"))["detect"]["candidates"] == 1
    assert D(the_case(migrated_db, "cb1").fees_amount) == D("20.00")
    assert D(the_case(migrated_db, "cb1").outstanding_amount) == D("119.00")


def test_paying_the_claim_with_its_fee_at_the_source_closes_it(migrated_db):
    rec = order_record(
        "fee",
        transactions=[
            sale("s1", 1, "99.00", at("2026-01-10")),
            chargeback("c1", "s1", "99.00", at("2026-01-12"), fee="15.00"),
        ],
    )
    load_orders(migrated_db, [rec])
    run(migrated_db, at("2026-01-13"))
    assert D(the_case(migrated_db, "fee").outstanding_amount) == D("114.00")
    # the buyer pays the installment only: the fee stays open
    rec2 = newer(rec, transactions=[*rec["transactions"], sale("s2", 1, "99.00", at("2026-01-14"))])
    load_orders(migrated_db, [rec2])
    run(migrated_db, at("2026-01-15"))
    case = the_case(migrated_db, "fee")
    assert (case.state, D(case.outstanding_amount)) == ("awaiting_approval", D("15.00"))
    # and then the fee too (booked on the installment): paid
    rec3 = newer(
        rec2, 2, transactions=[*rec2["transactions"], sale("s3", 1, "15.00", at("2026-01-16"))]
    )
    load_orders(migrated_db, [rec3])
    run(migrated_db, at("2026-01-17"))
    case = the_case(migrated_db, "fee")
    assert (case.state, D(case.outstanding_amount), D(case.paid_amount)) == (
        "paid",
        D("0.00"),
        D("114.00"),
    )


def test_refund_closes_a_case_with_the_reason(migrated_db):
    rec = order_record(
        "ref",
        transactions=[
            sale("s1", 1, "99.00", at("2026-01-10")),
            chargeback("c1", "s1", "99.00", at("2026-01-12")),
        ],
    )
    load_orders(migrated_db, [rec])
    run(migrated_db, at("2026-01-13"))
    case = the_case(migrated_db, "ref")
    assert case.state == "awaiting_approval"
    rec2 = newer(
        rec,
        status="refunded",
        transactions=[*rec["transactions"], refund("r1", "s1", "99.00", at("2026-01-14"))],
    )
    load_orders(migrated_db, [rec2])
    out = run(migrated_db, at("2026-01-15"))
    assert out["detect"]["cancelled"] == 1
    case = the_case(migrated_db, "ref")
    assert case.state == "cancelled"
    assert case.close_reason == "claim vanished: order refunded"
    assert history(migrated_db, case.case_id)[-1] == (
        "detect",
        "awaiting_approval",
        "cancelled",
        "claim vanished: order refunded",
    )
    # a refunded order opens no new case, even with money unpaid
    run(migrated_db, at("2026-03-01"))
    assert len(cases_of(migrated_db, "ref")) == 1


def test_cancelled_order_opens_no_case(migrated_db):
    load_orders(migrated_db, [order_record("gone", status="cancelled")])
    run(migrated_db, at("2026-02-01"))
    assert cases_of(migrated_db, "gone") == []


# --- handover rules -----------------------------------------------------------------------


def test_missing_house_number_blocks_until_a_later_sync_fixes_it(migrated_db):
    configure(migrated_db, "m1", auto_overdue=True)
    rec = order_record("nohouse", buyer=address(house_number=None))
    load_orders(migrated_db, [rec])
    run(migrated_db, at("2026-01-20"))  # the switch is on; the address wins
    case = the_case(migrated_db, "nohouse")
    assert case.state == "blocked"
    assert case.blocked_reason == "address incomplete: missing house_number"
    assert case.next_step_at is None
    run(migrated_db, at("2026-01-21"))  # re-checked: still blocked, nothing written
    assert len(history(migrated_db, case.case_id)) == 1
    load_orders(migrated_db, [newer(rec, buyer=address(house_number="17a"))])
    run(migrated_db, at("2026-01-22"))
    case = the_case(migrated_db, "nohouse")
    assert case.state == "scheduled"
    assert case.blocked_reason is None
    # reminder 1 due at local midnight of due date + 10 days = 2026-01-25 00:00 Berlin
    assert case.next_step_at == datetime(2026, 1, 24, 23, 0, tzinfo=UTC)
    assert history(migrated_db, case.case_id) == [
        ("handover", None, "blocked", "address incomplete: missing house_number"),
        (
            "handover",
            "blocked",
            "scheduled",
            "address complete; auto-handover of overdue claims is on",
        ),
    ]


def test_blocked_cases_are_read_again_when_their_order_changed_and_weekly(migrated_db):
    blocked = order_record("nostreet", buyer=address(street="  "))
    other = order_record("other", buyer=address(street=None))
    load_orders(migrated_db, [blocked, other])
    first = run(migrated_db, at("2026-01-20"))
    assert first["detect"]["routed_blocked"] == 2  # detection routes what it opens
    assert run(migrated_db, at("2026-01-21"))["handover"].get("checked") == 0
    load_orders(migrated_db, [newer(other, total_amount="99.00")])  # still no street
    assert run(migrated_db, at("2026-01-22"))["handover"]["checked"] == 1
    assert run(migrated_db, at("2026-01-23"))["handover"]["checked"] == 0
    # the safety net: every blocked case once a week, changed or not
    assert run(migrated_db, at("2026-01-28"))["handover"]["checked"] == 2
    assert [the_case(migrated_db, o).state for o in ("nostreet", "other")] == ["blocked"] * 2


def test_blocked_reason_follows_the_address(migrated_db):
    rec = order_record("zip", buyer=address(zip_code="1234", country_code="DE"))
    load_orders(migrated_db, [rec])
    run(migrated_db, at("2026-01-20"))
    assert the_case(migrated_db, "zip").blocked_reason == (
        "address incomplete: invalid zip_code for DE"
    )
    load_orders(migrated_db, [newer(rec, buyer=address(zip_code="1234", country_code="AT"))])
    run(migrated_db, at("2026-01-21"))
    case = the_case(migrated_db, "zip")
    assert case.state == "awaiting_approval"  # AT has 4-digit codes; switches off


def test_auto_handover_on_and_off_per_kind(migrated_db):
    configure(migrated_db, "m_over", auto_overdue=True, auto_chargebacks=False)
    configure(
        migrated_db,
        "m_cb",
        auto_overdue=False,
        auto_chargebacks=True,
        dunning_option="cancellation",
    )
    paid_then_charged = [
        sale("s1", 1, "99.00", at("2026-01-10")),
        chargeback("c1", "s1", "99.00", at("2026-01-18")),
    ]
    load_orders(
        migrated_db,
        [
            order_record("o_over", "m_over"),
            order_record("cb_over", "m_over", transactions=paid_then_charged),
            order_record("o_cb", "m_cb"),
            order_record("cb_cb", "m_cb", transactions=paid_then_charged),
            order_record("o_default", "m_none"),
        ],
    )
    out = run(migrated_db, at("2026-01-20"))
    routed = out["detect"]
    assert routed["routed_scheduled"] == 2 and routed["routed_awaiting_approval"] == 3
    states = {
        o: (the_case(migrated_db, o).kind, the_case(migrated_db, o).state)
        for o in ("o_over", "cb_over", "o_cb", "cb_cb", "o_default")
    }
    assert states == {
        "o_over": ("overdue", "scheduled"),
        "cb_over": ("chargeback", "awaiting_approval"),
        "o_cb": ("overdue", "awaiting_approval"),
        "cb_cb": ("chargeback", "scheduled"),
        "o_default": ("overdue", "awaiting_approval"),
    }
    o_over = the_case(migrated_db, "o_over")
    assert o_over.next_step_at == datetime(2026, 1, 24, 23, 0, tzinfo=UTC)  # 01-15 + 10 days
    assert o_over.started_at == at("2026-01-20") and o_over.dunning_option == "court"
    cb_cb = the_case(migrated_db, "cb_cb")
    assert cb_cb.dunning_option == "cancellation"  # the option it started with
    assert cb_cb.next_step_at == datetime(2026, 1, 27, 23, 0, tzinfo=UTC)  # 01-18 + 10 days
    assert the_case(migrated_db, "o_cb").next_step_at is None


def test_installation_defaults_apply_to_unconfigured_merchants(migrated_db):
    load_orders(migrated_db, [order_record("d1", "fresh")])
    late = at("2026-03-01")  # far past due + 10 days: first step due now, not in the past
    run(migrated_db, late, Settings(default_auto_overdue=True, default_reminder_1_days=12))
    case = the_case(migrated_db, "d1")
    assert case.state == "scheduled"
    assert case.next_step_at == late


# --- idempotence and cost -----------------------------------------------------------------


def _dump(url: str) -> dict[str, list]:
    with session_scope(url) as s:
        return {
            t: [tuple(r) for r in s.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
            for t in ("cases", "case_items", "case_history")
        }


def test_rerun_with_the_same_as_of_changes_nothing(migrated_db):
    configure(migrated_db, "m1", auto_overdue=True)
    load_orders(
        migrated_db,
        [
            order_record("a"),
            order_record("b", buyer=address(street="")),
            order_record(
                "c",
                transactions=[
                    sale("s1", 1, "99.00", at("2026-01-10")),
                    chargeback("c1", "s1", "99.00", at("2026-01-12")),
                ],
            ),
            order_record("d", transactions=[sale("s1", 1, "10.00", at("2026-01-10"))]),
        ],
    )
    first = run(migrated_db, at("2026-01-20"))
    assert first["detect"]["new_cases"] == 4
    before = _dump(migrated_db)
    again = run(migrated_db, at("2026-01-20"))
    assert again["detect"]["new_cases"] == 0
    assert _dump(migrated_db) == before


def test_candidates_are_a_view_in_a_full_run_and_a_table_otherwise(migrated_db):
    """A full unsharded run reads every order through a view named detect_orders, any
    other run copies its candidates into a table of that name: in one session, each kind
    is dropped before the other is made, and nothing is left after the last drop."""
    from dunning.tasks.detect import _create_temp_tables, _drop_temp_tables

    load_orders(migrated_db, [order_record("a"), order_record("b")])
    with session_scope(migrated_db) as s:
        for every_order in (True, False, True):
            _create_temp_tables(s, Spelling.of(s), every_order)
            if every_order:  # the view shows every order, with nothing copied
                assert s.scalar(text("SELECT COUNT(*) FROM detect_orders")) == 2
            else:  # the table starts empty
                assert s.scalar(text("SELECT COUNT(*) FROM detect_orders")) == 0
        _drop_temp_tables(s)
        with pytest.raises(DBAPIError, match="detect_orders"), s.begin_nested():
            s.execute(text("SELECT 1 FROM detect_orders"))


def test_incremental_run_looks_only_at_what_changed(migrated_db):
    records = [
        order_record(f"o{i}", transactions=[sale(f"s{i}", 1, "99.00", at("2026-01-14"))])
        for i in range(40)
    ]
    records.append(order_record("late"))
    marker = order_record(
        "marker", installments=schedule(1, date(2026, 3, 1), "99.00"), transactions=[]
    )
    load_orders(migrated_db, [*records, marker])
    with session_scope(migrated_db) as s:  # as if one sync stamped them all long ago
        s.execute(update(Order).values(synced_at=at("2025-12-30")))
    first = detect_cases_core(migrated_db, at("2026-01-14", 13), Settings())
    assert first["mode"] == "full" and first["candidates"] == 42
    # nothing synced, nothing fell due, no open case: nothing to look at
    quiet = detect_cases_core(migrated_db, at("2026-01-14", 18), Settings())
    assert quiet["mode"] == "incremental" and quiet["candidates"] == 0
    # the due date of 41 orders passes: they are looked at once, one case opens
    due = detect_cases_core(migrated_db, at("2026-01-16"), Settings())
    assert due["candidates"] == 41 and due["new_cases"] == 1
    # later: nothing changed, nothing fell due; the open case is not read again
    later = detect_cases_core(migrated_db, at("2026-01-17"), Settings())
    assert later["candidates"] == 0 and later["new_cases"] == 0
    # one order re-synced (a chargeback arrives): only it
    rec = records[7]
    cb = chargeback("c7", "s7", "99.00", at("2026-01-17"))
    load_orders(migrated_db, [newer(rec, transactions=[*rec["transactions"], cb])])
    changed = detect_cases_core(migrated_db, at("2026-01-18"), Settings())
    assert changed["candidates"] == 1 and changed["new_cases"] == 1
    assert the_case(migrated_db, "o7").kind == "chargeback"
    # a batch of that same sync commits late (same stamp): its orders are read again
    with session_scope(migrated_db) as s:
        stamp = s.get(Order, "o7").synced_at
    load_orders(migrated_db, [newer(marker, total_amount="98.00")], as_of=stamp)
    late_batch = detect_cases_core(migrated_db, at("2026-01-18", 13), Settings())
    assert late_batch["candidates"] == 2  # o7 and marker (that stamp)
    settled = detect_cases_core(migrated_db, at("2026-01-18", 14), Settings())
    assert settled["candidates"] == 0
    # a merchant's settings change (its chargeback fee): its open cases are looked at again
    with session_scope(migrated_db) as s:
        store.change(s, "m1", {"chargeback_fee": D("12.00")}, at("2026-01-18", 15), "t", Settings())
    fee = detect_cases_core(migrated_db, at("2026-01-18", 16), Settings())
    assert fee["candidates"] == 2  # the two open cases, both of merchant m1
    # a week after the last full scan, a full scan runs as a safety net
    weekly = detect_cases_core(migrated_db, at("2026-01-21", 13), Settings())
    assert weekly["mode"] == "full" and weekly["new_cases"] == 0


# --- the plans on PostgreSQL --------------------------------------------------------------


@pytest.mark.postgres
def test_detection_statements_use_indexes_on_postgres(postgres_url):
    """60k orders, an incremental run touching ~150 of them: the candidate query finds them
    through the indexes of its hot predicates (synced_at, due_date, processed_at) and the
    fact and case statements reach rows by primary key, never by scanning installments,
    transactions or cases."""
    from dunning.db import upgrade
    from dunning.db.detect_sql import (
        candidates_sql,
        changed_ids_where,
        changed_orders_sql,
        facts_sql,
    )
    from dunning.db.handover_sql import stage_first_steps
    from dunning.tasks.detect import OPEN_CASES_SQL, _create_temp_tables

    upgrade(postgres_url)
    with session_scope(postgres_url) as s:
        s.execute(
            text(
                """
INSERT INTO merchants (merchant_id, name, shard_key, created_at, updated_at)
VALUES ('m1', 'Shop', 0, now(), now());
INSERT INTO orders (order_id, merchant_id, order_date, updated_at, status, currency,
  total_amount, payment_plan, payment_method, source, synced_at)
SELECT 'o' || g, 'm1', now(), now(), 'active', 'EUR', 150, 'breakdown_payment', 'sepa',
  'bench', timestamptz '2025-01-01' + g * interval '1 minute'
FROM generate_series(1, 60000) g;
INSERT INTO installments (order_id, number, due_date, amount)
SELECT 'o' || g, n, date '2020-01-01' + (g % 4000) + 30 * n, 50
FROM generate_series(1, 60000) g, generate_series(1, 3) n;
INSERT INTO transactions (order_id, transaction_id, type, amount, processed_at,
  installment_number)
SELECT 'o' || g, 's' || n, 'sale', 50,
  timestamptz '2020-01-01' + (g % 4000) * interval '1 day' + n * interval '30 days', n
FROM generate_series(1, 60000) g, generate_series(1, 2) n;
INSERT INTO transactions (order_id, transaction_id, type, amount, processed_at,
  reverses_transaction_id, fee)
SELECT 'o' || g, 'c1', 'chargeback', 50,
  timestamptz '2020-01-01' + (g % 4000) * interval '1 day' + interval '40 days', 's1', 15
FROM generate_series(1, 60000, 20) g;
INSERT INTO cases (order_id, merchant_id, kind, state, dunning_option, currency, opened_at,
  default_date, principal_amount, fees_amount, interest_amount, cancellation_costs,
  paid_amount, partner_paid_amount, outstanding_amount, updated_at, routed_at)
SELECT 'o' || g, 'm1', 'overdue', CASE WHEN g % 900 = 1 THEN 'reminder_1' ELSE 'paid' END,
  'court', 'EUR', now(), date '2025-01-01', 50, 0, 0, 0, 0, 0, 50, now(), now()
FROM generate_series(1, 60000, 3) g;
ANALYZE;
"""
            )
        )

    def explain(s, sql: str, params: dict) -> str:
        return "\n".join(r[0] for r in s.execute(text("EXPLAIN " + sql), params))

    with session_scope(postgres_url) as s:
        d = Spelling.of(s)
        _create_temp_tables(s, d)
        window = {
            "sync_from": "2025-02-11 15:50+00",  # the last ~10 orders
            "due_from": "2026-01-01",
            "due_to": "2026-01-02",
            "tx_from": "2026-01-01 00:00+00",
            "tx_to": "2026-01-02 00:00+00",
        }
        candidates = candidates_sql(full=False, sharded=False)
        plan = explain(s, candidates, window)
        for index in (
            "ix_orders_synced_at",
            "ix_installments_due_date",
            "ix_transactions_processed_at",
            "pk_orders",
        ):
            assert index in plan, plan
        # merchant_settings (one row per configured merchant) is the only table read whole
        scans = [line for line in plan.splitlines() if "Seq Scan" in line]
        assert all("Seq Scan on merchant_settings" in line for line in scans), plan
        # as a run does it: the changed ids first, then their orders by key
        changed = s.execute(
            text("CREATE TEMPORARY TABLE detect_changed AS " + changed_orders_sql()), window
        ).rowcount
        assert 50 < changed < 300
        by_key = candidates_sql(full=False, sharded=False, ids_where=changed_ids_where(changed))
        by_key_plan = explain(s, by_key, window)
        assert "pk_orders" in by_key_plan and "Seq Scan on orders" not in by_key_plan, by_key_plan
        s.execute(text("INSERT INTO detect_orders " + by_key), window)
        s.execute(text("ANALYZE detect_orders"))
        assert 50 < s.scalar(text("SELECT COUNT(*) FROM detect_orders")) < 300
        run = {
            "as_of": "2026-01-02 00:00+00",
            "today": "2026-01-02",
            "tz": "Europe/Berlin",
            "default_fee": 0,
            "default_option": "court",
        }
        facts = facts_sql(d, few=True)  # as an incremental run asks for them
        facts_plan = explain(s, facts, run)
        assert "pk_installments" in facts_plan and "pk_transactions" in facts_plan, facts_plan
        for big in ("orders", "installments", "transactions", "cases"):
            assert f"Seq Scan on {big}" not in facts_plan, facts_plan
        s.execute(text("INSERT INTO detect_facts " + facts), run)
        s.execute(text("ANALYZE detect_facts"))
        stage_first_steps(s, [(date(2026, 1, 1), 10, datetime(2026, 1, 11, tzinfo=UTC))])
        routing = {"router": "handover", "auto_overdue": True, "auto_cb": True, "r1_days": 10}
        open_plan = explain(s, OPEN_CASES_SQL, run | routing)
        assert "Seq Scan on cases" not in open_plan, open_plan


# --- the SQL agrees with the pure rules ---------------------------------------------------


def _random_order(rng, oid: str) -> dict:
    n = rng.randint(1, 3)
    amount = rng.choice(["30.00", "49.99", "100.00"])
    first_due = date(2026, 1, rng.randint(2, 28))
    txns: list[dict] = []
    for k in range(1, n + 1):
        pay = rng.choice(["none", "full", "part"])
        if pay == "none":
            continue
        paid = amount if pay == "full" else "20.00"
        when = datetime(2026, 1, rng.randint(1, 30), rng.randint(0, 23), 30, tzinfo=UTC)
        txns.append(sale(f"s{k}", k, paid, when))
        twist = rng.choice(["", "", "cb", "cb_nofee", "refund", "refund_part"])
        later = when + timedelta(hours=rng.randint(1, 200))
        if twist.startswith("cb"):
            fee = None if twist == "cb_nofee" else rng.choice(["0.00", "9.50", "15.00"])
            txns.append(chargeback(f"c{k}", f"s{k}", paid, later, fee=fee))
        elif twist.startswith("refund"):
            back = paid if twist == "refund" else "10.00"
            txns.append(refund(f"r{k}", f"s{k}", back, later))
    return order_record(
        oid,
        "mr",
        payment_plan="breakdown_payment" if n > 1 else "one_time_payment",
        installments=schedule(n, first_due, amount, every_days=14),
        transactions=txns,
    )


def test_sql_detection_agrees_with_the_pure_rules(migrated_db):
    import random

    from dunning.models.base_rates import base_rates
    from dunning.models.claims import Installment, Txn, installment_facts, new_claim
    from dunning.tasks.claim_events import load_claims

    configure(migrated_db, "mr", chargeback_fee="4.00")
    rng = random.Random(20260126)
    records = [_random_order(rng, f"r{i}") for i in range(60)]
    load_orders(migrated_db, records)
    as_of = datetime(2026, 2, 3, 23, 30, tzinfo=UTC)  # 02-04 in Berlin
    settings = Settings()
    detect_cases_core(migrated_db, as_of, settings)
    today = as_of.astimezone(settings.zone).date()
    opened = 0
    for rec in records:
        facts = installment_facts(
            [
                Installment(i["number"], date.fromisoformat(i["due_date"]), D(i["amount"]))
                for i in rec["installments"]
            ],
            [
                Txn(
                    t["transaction_id"],
                    t["type"],
                    D(t["amount"]),
                    datetime.fromisoformat(t["processed_at"]),
                    t["installment_number"],
                    t["reverses_transaction_id"],
                    D(t["fee"]) if t["fee"] is not None else None,
                )
                for t in rec["transactions"]
            ],
            as_of,
            settings.zone,
            default_chargeback_fee=D("4.00"),
        )
        expected = new_claim(facts, today)
        found = cases_of(migrated_db, rec["order_id"])
        if expected is None:
            assert found == [], rec
            continue
        opened += 1
        assert len(found) == 1, rec
        c = found[0]
        got = (
            c.kind,
            c.default_date,
            D(c.principal_amount),
            D(c.paid_amount),
            D(c.fees_amount),
            D(c.outstanding_amount),
        )
        want = (
            expected.kind.value,
            expected.default_date,
            expected.principal,
            expected.paid,
            expected.fees,
            expected.open,
        )
        assert got == want, (rec["order_id"], rec["transactions"])
        assert sorted(i[1] for i in items(migrated_db, c.case_id) if i[0] == "principal") == (
            sorted(expected.numbers)
        )
        # The claim ledger, replayed from the same events, agrees with detection's SQL
        # (interest off: the amounts SQL keeps are the ledger's).
        with session_scope(migrated_db) as s:
            claim = load_claims(s, [c.case_id], settings, as_of)[c.case_id]
        st = claim.statement(today, base_rates())
        ledger = (st.principal, st.paid - st.overpaid, st.fees, st.total_open)
        assert ledger == (
            D(c.principal_amount),
            D(c.paid_amount),
            D(c.fees_amount),
            max(D(c.outstanding_amount), D(0)),
        ), (rec["order_id"], rec["transactions"])
    assert opened >= 20
