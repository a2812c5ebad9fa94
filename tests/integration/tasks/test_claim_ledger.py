"""The claim ledger behind escalation on both engines, with a real partner and SMTP server:
business debtors (+ 9 points, the § 288 (5) flat fee), invoice orders (the first reminder
creates default and is free), the fee cap, the minimum claim, base rates past their end."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from dunning.db import session_scope
from dunning.models.merchant_settings import SettingsChangeRefused
from dunning.models.schema import CaseCharge, CaseHistory
from dunning.tasks import merchant_settings as store
from dunning.tasks.escalate import run_escalation
from tests.escalation_fixtures import at, case, make_case, one_time, settings_for
from tests.factories import address

D0 = date(2026, 1, 16)  # the day after the due date (2026-01-15)


def configure(url, cfg, merchant, **changes):
    with session_scope(url) as s:
        store.change(s, merchant, changes, at(D0 - timedelta(days=40)), "test", cfg)


def ladder(url, cfg, days=(10, 20, 30)):
    for day in days:
        run_escalation(at(D0 + timedelta(days=day)), url, settings=cfg)


def charges(url, case_id):
    with session_scope(url) as s:
        rows = s.scalars(select(CaseCharge).where(CaseCharge.case_id == case_id))
        return sorted((c.key, c.kind, c.day.isoformat(), f"{c.amount:.2f}") for c in rows)


def test_business_debtor_nine_points_and_the_flat_fee_reach_the_partner(migrated_db, smtp, partner):
    smtp_url, box = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url)
    configure(migrated_db, cfg, "m1", interest_enabled=True, reminder_fee="2.50")
    buyer = {**address(), "company_name": "Beispiel GmbH", "type": "business"}
    case_id = make_case(migrated_db, one_time("b2b", buyer=buyer))
    ladder(migrated_db, cfg)
    sent = partner.received(f"DUN-{case_id}")
    assert sent["debtor"]["type"] == "business"
    flat = [i for i in sent["items"] if i["type"] == "flat_fee_288_5"]
    assert flat == [flat[0]] and flat[0]["amount"] == "40.00" and flat[0]["date"] == "2026-01-16"
    interest = [i for i in sent["items"] if i["type"] == "interest"]
    assert {i["rate_percent"] for i in interest} == {"10.27"}  # 1.27 + 9 points
    assert interest[0]["principal_base"] == "99.00" and interest[0]["from"] == "2026-01-16"
    c = case(migrated_db, case_id)
    assert c.fees_amount == Decimal("45.00")  # two reminder fees and the flat fee
    reminder1 = next(m for m in box.messages if m["X-Dunning-Key"].endswith("reminder_1"))
    text = reminder1.get_body(("plain",)).get_content()
    assert "Verzugspauschale (§ 288 Abs. 5 BGB)" in text and "40,00 EUR" in text


def test_invoice_first_reminder_free_and_interest_from_its_deadline(migrated_db, smtp, partner):
    smtp_url, box = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url)
    configure(migrated_db, cfg, "m1", interest_enabled=True, reminder_fee="2.50")
    case_id = make_case(migrated_db, one_time("inv", payment_method="invoice"))
    ladder(migrated_db, cfg)
    # Reminder 1 (day 10) creates default: no fee; reminder 2 (day 20) may carry one.
    assert charges(migrated_db, case_id) == [
        ("reminder_2", "reminder_fee", (D0 + timedelta(days=20)).isoformat(), "2.50")
    ]
    sent = partner.received(f"DUN-{case_id}")
    deadline = D0 + timedelta(days=20)  # reminder 1's deadline: the day reminder 2 is due
    assert sent["default_date"] == (deadline + timedelta(days=1)).isoformat()
    interest = [i for i in sent["items"] if i["type"] == "interest"]
    assert interest[0]["from"] == (deadline + timedelta(days=1)).isoformat()
    reminder1 = next(m for m in box.messages if m["X-Dunning-Key"].endswith("reminder_1"))
    assert "Mahngebühr" not in reminder1.get_body(("plain",)).get_content()


def test_reminder_fee_above_the_installation_cap_is_refused(migrated_db, smtp, partner):
    cfg = settings_for(migrated_db, smtp[0], partner.url)
    with pytest.raises(SettingsChangeRefused, match=r"above the installation's cap of 2\.50"):
        configure(migrated_db, cfg, "m1", reminder_fee="99.00")


def test_minimum_claim_closes_uncollectible_instead_of_the_handover(migrated_db, smtp, partner):
    cfg = settings_for(migrated_db, smtp[0], partner.url)
    configure(migrated_db, cfg, "m1", min_claim_amount="100.00")  # above the 99.00 open
    case_id = make_case(migrated_db, one_time("small"))
    ladder(migrated_db, cfg)
    c = case(migrated_db, case_id)
    assert c.state == "uncollectible" and c.partner_claim_id is None
    assert c.close_reason == "open principal 99.00 below the minimum claim 100.00: not handed over"
    assert f"DUN-{case_id}" not in partner.claim_posts


def test_base_rates_past_their_known_end_are_reported(migrated_db, smtp, partner):
    cfg = settings_for(migrated_db, smtp[0], partner.url)
    configure(migrated_db, cfg, "m1", interest_enabled=True)
    due = date(2026, 6, 20)
    case_id = make_case(migrated_db, one_time("late", due=due))
    # The base-rate table is known until 06-30.
    stats = run_escalation(at(date(2026, 7, 10)), migrated_db, settings=cfg)
    assert stats["settle"]["interest_past_known_base_rates"] == 1
    assert stats["settle"]["base_rates_known_until"] == "2026-06-30"
    assert case(migrated_db, case_id).interest_amount > 0  # the last rate goes on


def test_a_claim_before_the_base_rate_table_is_set_aside(migrated_db, smtp, partner):
    cfg = settings_for(migrated_db, smtp[0], partner.url)
    configure(migrated_db, cfg, "m1", interest_enabled=True)
    case_id = make_case(migrated_db, one_time("old", due=date(2019, 6, 1)))
    stats = run_escalation(at(date(2019, 6, 20)), migrated_db, settings=cfg)
    assert stats["settle"]["claims_refused"] == 1
    c = case(migrated_db, case_id)
    assert "no base rate for 2019-06-02" in c.partner_error
    assert c.state == "scheduled"  # set aside: no step without a computable claim
    with session_scope(migrated_db) as s:
        assert not list(s.scalars(select(CaseHistory).where(CaseHistory.case_id == case_id)))


def test_a_cancellation_nothing_here_can_perform_waits_for_an_operator(
    migrated_db, smtp, partner, cli
):
    """With a file source nothing can cancel the order: the case waits, visibly, in
    `awaiting_cancellation` (never a faked `order_cancelled`) until an operator confirms."""
    cfg = settings_for(migrated_db, smtp[0], partner.url)  # the source is a file
    configure(migrated_db, cfg, "m1", dunning_option="cancellation")
    case_id = make_case(migrated_db, one_time("by-hand"), option="cancellation")
    ladder(migrated_db, cfg, days=(10, 20, 30, 31))
    c = case(migrated_db, case_id)
    assert c.state == "awaiting_cancellation"
    with session_scope(migrated_db) as s:
        last = s.scalars(
            select(CaseHistory)
            .where(CaseHistory.case_id == case_id)
            .order_by(CaseHistory.id.desc())
        ).first()
    assert last.reason.startswith("cancel order by-hand at the platform")
    assert f"dunning case confirm-cancellation {case_id}" in last.reason
    env = {"DUNNING_DATABASE_URL": migrated_db}
    early = cli("case", "confirm-cancellation", "by-hand", "--reason", "x", env=env)
    assert early.returncode == 0, early.stderr
    assert "awaiting_cancellation → order_cancelled" in early.stdout
    again = cli("case", "confirm-cancellation", str(case_id), "--reason", "x", env=env)
    assert again.returncode == 2 and "nothing to confirm" in again.stderr
    assert "Traceback" not in again.stderr
