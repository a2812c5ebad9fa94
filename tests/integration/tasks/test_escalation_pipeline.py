"""The full timeline with the real detection and handover cores and the real orders API:
orders are loaded, detection opens and updates the cases, handover routes them, and
escalation takes them through the ladder, a run every 10 days for 90 days."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from dunning.db import session_scope
from dunning.models.schema import Action, Case
from dunning.tasks import merchant_settings as store
from dunning.tasks.escalate import run_escalation
from tests.escalation_fixtures import at, settings_for
from tests.factories import load_orders, order_record, sale, schedule

D0 = date(2026, 1, 16)

detect_mod = pytest.importorskip("dunning.tasks.detect")
handover_mod = pytest.importorskip("dunning.tasks.handover")
orders_api_mod = pytest.importorskip("dunning.servers.orders_api")


def run_day(url, cfg, day):
    as_of = at(D0 + timedelta(days=day))
    detect_mod.detect_cases_core(url, as_of, cfg)
    handover_mod.apply_handover_core(url, as_of, cfg)
    run_escalation(as_of, url, settings=cfg)


def cases_by_order(url):
    with session_scope(url) as s:
        return {c.order_id: c for c in s.scalars(select(Case))}


def steps_by_order(url):
    with session_scope(url) as s:
        rows = s.execute(
            select(Case.order_id, Action.step)
            .join(Case, Case.case_id == Action.case_id)
            .where(Action.step.not_in(["partner_items", "partner_payment"]))  # one per item
        )
        return Counter((r.order_id, r.step) for r in rows)


def test_pipeline_timeline_both_options(migrated_db, smtp, partner):
    smtp_url, box = smtp
    t0 = at(D0 - timedelta(days=30))
    unpaid = order_record("court-unpaid", "mc")
    pays = order_record("court-pays", "mc")
    cancel_single = order_record("cx-single", "mx")
    cancel_plan = order_record(
        "cx-plan",
        "mx",
        payment_plan="breakdown_payment",
        total_amount="1200.00",
        installments=schedule(24, date(2026, 1, 15), "50.00"),
    )
    records = [unpaid, pays, cancel_single, cancel_plan]
    orders = orders_api_mod.start(records)
    try:
        cfg = settings_for(migrated_db, smtp_url, partner.url, orders.url)
        with session_scope(migrated_db) as s:
            # No reminder fee here: detection caps source payments at what the installments
            # owe, so a fee could not be paid at the source and would keep the case open.
            store.change(
                s, "mc", {"dunning_option": "court", "auto_overdue": True}, t0, "test", cfg
            )
            store.change(
                s,
                "mx",
                {
                    "dunning_option": "cancellation",
                    "auto_overdue": True,
                    "cancellation_costs": "30.00",
                },
                t0,
                "test",
                cfg,
            )
        load_orders(migrated_db, records)
        states: dict[int, dict[str, str]] = {}
        for day in range(0, 100, 10):
            if day == 20:  # after reminder 1 (day 10) the buyer paid in full
                paid = order_record(
                    "court-pays",
                    "mc",
                    updated_at=at(D0 + timedelta(days=day - 1)).isoformat(),
                    transactions=[sale("t1", 1, "99.00", at(D0 + timedelta(days=day - 1)))],
                )
                load_orders(migrated_db, [paid])
            if day == 40:
                ref = f"DUN-{cases_by_order(migrated_db)['court-unpaid'].case_id}"
                partner.set_status(ref, "unsuccessful")
            run_day(migrated_db, cfg, day)
            states[day] = {o: c.state for o, c in cases_by_order(migrated_db).items()}
    finally:
        orders.stop()

    steps = steps_by_order(migrated_db)
    assert set(steps.values()) == {1}  # never a step twice
    for order in ("court-unpaid", "cx-single", "cx-plan"):
        assert {s for (o, s) in steps if o == order} >= {"reminder_1", "reminder_2", "handover"}
    assert states[0]["court-unpaid"] == "scheduled"
    assert states[10]["court-unpaid"] == "reminder_1"
    assert states[20]["court-unpaid"] == "reminder_2"
    assert states[30]["court-unpaid"] == "with_partner"
    assert states[40]["court-unpaid"] == "court"
    # Paid mid-ladder: no reminder 2, no handover.
    assert states[90]["court-pays"] == "paid"
    assert {s for (o, s) in steps if o == "court-pays"} == {"reminder_1"}
    # Cancellation: the single order at once after handover, the plan under § 498 only
    # once three installments (150.00 >= 10 % of 1200.00) are in default.
    assert states[40]["cx-single"] == "order_cancelled"
    assert states[50]["cx-plan"] == "with_partner"
    assert states[90]["cx-plan"] == "order_cancelled"
    assert sorted(o for o, _ in orders.cancel_calls) == ["cx-plan", "cx-single"]
    single = cases_by_order(migrated_db)["cx-single"]
    assert single.cancellation_costs == Decimal("30.00")
    assert dict(partner.claim_posts) == {
        f"DUN-{cases_by_order(migrated_db)[o].case_id}": 1
        for o in ("court-unpaid", "cx-single", "cx-plan")
    }
    assert set(box.by_key().values()) == {1}


def test_a_claim_paid_to_the_partner_is_not_claimed_again(migrated_db, smtp, partner):
    """The source never sees money paid to the partner: detection must not reopen it."""
    smtp_url, _ = smtp
    record = order_record("paid-at-partner", "mc")
    orders = orders_api_mod.start([record])
    try:
        cfg = settings_for(migrated_db, smtp_url, partner.url, orders.url)
        with session_scope(migrated_db) as s:
            store.change(s, "mc", {"auto_overdue": True}, at(D0 - timedelta(days=30)), "t", cfg)
        load_orders(migrated_db, [record])
        for day in (0, 10, 20, 30):
            run_day(migrated_db, cfg, day)
        reference = f"DUN-{cases_by_order(migrated_db)['paid-at-partner'].case_id}"
        assert reference, "the claim should be with the partner by day 30"
        partner.set_status(reference, "paid")
        for day in (40, 50, 60):
            run_day(migrated_db, cfg, day)
    finally:
        orders.stop()
    with session_scope(migrated_db) as s:
        cases = list(s.scalars(select(Case).where(Case.order_id == "paid-at-partner")))
    assert [c.state for c in cases] == ["paid"]
