"""Partner updates (GET /v1/claims?updated_since=) applied to cases, with a watermark."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from dunning.db import session_scope
from dunning.models.schema import SyncWatermark
from dunning.tasks.escalate import run_escalation
from dunning.tasks.partner_sync import sync_partner_updates, watermark_name
from tests.escalation_fixtures import at, case, make_case, one_time, pay, settings_for

D0 = date(2026, 1, 16)


def test_partner_status_and_payments_reach_the_cases(migrated_db, smtp, partner):
    smtp_url, _ = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url)
    ids = [make_case(migrated_db, one_time(f"o{i}")) for i in range(5)]
    for day in (10, 20, 30):
        run_escalation(at(D0 + timedelta(days=day)), migrated_db, settings=cfg)
    paid, partial, closed, court, told = ids
    partner.set_status(f"DUN-{paid}", "paid")
    partner.set_status(f"DUN-{partial}", "payment_plan", paid_amount="30.00")
    partner.set_status(f"DUN-{closed}", "closed")
    partner.set_status(f"DUN-{court}", "unsuccessful")
    paid_at = at(D0 + timedelta(days=30)) + timedelta(hours=6)
    pay(migrated_db, told, "20.00", paid_at)  # paid at the source while the partner holds it
    as_of = at(D0 + timedelta(days=31))
    run_escalation(as_of, migrated_db, settings=cfg)

    assert case(migrated_db, paid).state == "paid"
    p = case(migrated_db, partial)
    assert (p.state, p.partner_status, p.partner_paid_amount) == (
        "with_partner",
        "payment_plan",
        Decimal("30.00"),
    )
    assert p.outstanding_amount == Decimal("69.00")
    assert case(migrated_db, closed).state == "uncollectible"
    assert case(migrated_db, court).state == "court"
    assert partner.court_posts == {f"DUN-{court}": 1}
    # The source payment was reported to the partner once, with the day it arrived (not
    # the day of the run that reported it).
    assert partner.payments[f"DUN-{told}"] == [{"amount": "20.00", "paid_at": paid_at.isoformat()}]
    # No recall to a partner that itself reported the claim paid.
    assert not partner.recall_posts

    # The watermark moved; nothing new -> nothing applied, no further calls.
    with session_scope(migrated_db) as s:
        assert s.get(SyncWatermark, watermark_name(partner.url)).watermark is not None
    # Our own court request and payment notice changed two claims after the run's sync.
    assert sync_partner_updates(migrated_db, as_of, cfg)["updates"] == 2
    assert sync_partner_updates(migrated_db, as_of, cfg) == {"updates": 0}
    assert case(migrated_db, court).partner_status == "court_requested"
    before = sum(partner.payment_posts.values()) + sum(partner.court_posts.values())
    run_escalation(as_of, migrated_db, settings=cfg)
    assert sum(partner.payment_posts.values()) + sum(partner.court_posts.values()) == before

    # The court procedure fails later: nothing left to do.
    partner.set_status(f"DUN-{court}", "unsuccessful")
    run_escalation(at(D0 + timedelta(days=40)), migrated_db, settings=cfg)
    assert case(migrated_db, court).state == "uncollectible"
