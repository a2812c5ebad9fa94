"""Partner outages, refusals, crashes and concurrent runs: nothing lost, nothing twice."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from dunning.db import session_scope
from dunning.models.schema import Action, Case
from dunning.tasks.call_partner import call_partner_and_source
from dunning.tasks.claim_steps import LEASE, claim_due
from dunning.tasks.escalate import load_actions, perform, run_escalation
from tests.concurrency import at_once
from tests.escalation_fixtures import actions, at, case, make_case, one_time, settings_for

D0 = date(2026, 1, 16)


def to_reminder_2(url, cfg, n):
    ids = [make_case(url, one_time(f"o{i}")) for i in range(n)]
    run_escalation(at(D0 + timedelta(days=10)), url, settings=cfg)
    run_escalation(at(D0 + timedelta(days=20)), url, settings=cfg)
    assert {case(url, i).state for i in ids} == {"reminder_2"}
    return ids


def test_partner_outage_then_ok_lands_each_handover_once(migrated_db, smtp, partner):
    smtp_url, _ = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url)
    ids = to_reminder_2(migrated_db, cfg, 5)
    partner.outage = True
    for day in (30, 31):  # two runs while the partner answers 500
        run_escalation(
            at(D0 + timedelta(days=day)), migrated_db, settings=cfg, attempts=2, base_delay=0.01
        )
        assert {case(migrated_db, i).state for i in ids} == {"reminder_2"}
    pending = [a for a in actions(migrated_db) if a.step == "handover"]
    assert len(pending) == 5 and {a.status for a in pending} == {"pending"}
    assert all(a.attempts == 2 and "500" in a.last_error for a in pending)
    partner.outage = False
    run_escalation(at(D0 + timedelta(days=32)), migrated_db, settings=cfg)
    assert {case(migrated_db, i).state for i in ids} == {"with_partner"}
    assert dict(partner.claim_posts) == {f"DUN-{i}": 1 for i in ids}
    assert len(partner.claims) == 5
    # Same keys as first recorded: one handover action per case, done.
    done = [a for a in actions(migrated_db) if a.step == "handover"]
    assert sorted(a.idempotency_key for a in done) == sorted(f"case-{i}-handover" for i in ids)
    assert {a.status for a in done} == {"done"}


def test_refused_claim_is_shown_and_others_proceed(migrated_db, smtp, partner):
    smtp_url, _ = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url)
    ids = to_reminder_2(migrated_db, cfg, 3)
    partner.reject(f"DUN-{ids[1]}", "house number not deliverable")
    for day in (30, 40):  # the second run does not retry the refusal
        run_escalation(at(D0 + timedelta(days=day)), migrated_db, settings=cfg)
    bad = case(migrated_db, ids[1])
    assert bad.state == "reminder_2"
    assert "house number not deliverable" in bad.partner_error
    assert "422" in bad.partner_error
    assert [a.status for a in actions(migrated_db, ids[1]) if a.step == "handover"] == ["failed"]
    assert partner.claim_posts[f"DUN-{ids[1]}"] == 1
    assert {case(migrated_db, i).state for i in (ids[0], ids[2])} == {"with_partner"}
    # The operator fixes the address and clears the error: the handover is tried again.
    partner.rejected.clear()
    with session_scope(migrated_db) as s:
        s.execute(update(Case).where(Case.case_id == ids[1]).values(partner_error=None))
    run_escalation(at(D0 + timedelta(days=41)), migrated_db, settings=cfg)
    assert case(migrated_db, ids[1]).state == "with_partner"
    assert partner.claim_posts[f"DUN-{ids[1]}"] == 2 and len(partner.claims) == 3


def test_crash_after_sending_resends_with_the_same_key(migrated_db, smtp, partner):
    smtp_url, box = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url)
    ids = to_reminder_2(migrated_db, cfg, 2)
    as_of = at(D0 + timedelta(days=30))
    owned = claim_due(migrated_db, as_of, cfg)
    # The run sends, then dies before recording anything.
    call_partner_and_source(load_actions(migrated_db, owned), cfg)
    assert len(partner.claims) == 2
    # A run while the dead run's lease holds does not touch its actions.
    assert claim_due(migrated_db, as_of, cfg) == []
    later = datetime.now(UTC) + LEASE + timedelta(seconds=1)
    again = claim_due(migrated_db, as_of, cfg, now=later)
    assert sorted(again) == sorted(owned)
    perform(migrated_db, again, as_of, cfg)
    assert {case(migrated_db, i).state for i in ids} == {"with_partner"}
    assert dict(partner.claim_posts) == {f"DUN-{i}": 2 for i in ids}  # resent ...
    assert len(partner.claims) == 2  # ... and deduplicated by the partner: one claim each
    assert len(box.messages) == 4


def test_operator_cancel_with_partner_recalls(migrated_db, smtp, partner):
    smtp_url, _ = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url)
    ids = to_reminder_2(migrated_db, cfg, 2)
    run_escalation(at(D0 + timedelta(days=30)), migrated_db, settings=cfg)
    with session_scope(migrated_db) as s:  # what the operator flow does
        s.execute(update(Case).where(Case.case_id == ids[0]).values(state="cancelled"))
    for day in (31, 32):
        run_escalation(at(D0 + timedelta(days=day)), migrated_db, settings=cfg)
    assert partner.recall_posts == {f"DUN-{ids[0]}": 1}
    assert partner.claim(f"DUN-{ids[0]}")["status_reason"] == "cancelled_by_creditor"
    assert case(migrated_db, ids[0]).partner_status == "recalled"


@pytest.mark.postgres
def test_two_runs_at_once_never_step_a_case_twice(postgres_url, smtp, partner):
    from dunning.db import upgrade

    upgrade(postgres_url)
    smtp_url, box = smtp
    cfg = settings_for(postgres_url, smtp_url, partner.url)
    ids = [make_case(postgres_url, one_time(f"o{i}")) for i in range(300)]
    for day in (10, 20, 30):
        as_of = at(D0 + timedelta(days=day))
        at_once(
            lambda as_of=as_of: run_escalation(
                as_of, postgres_url, settings=cfg, sync_partner=False
            )
        )
    assert {case(postgres_url, i).state for i in ids} == {"with_partner"}
    assert len(box.messages) == 600 and set(box.by_key().values()) == {1}
    assert set(partner.claim_posts.values()) == {1} and len(partner.claim_posts) == 300
    with session_scope(postgres_url) as s:
        assert s.scalar(select(func.count()).select_from(Action)) == 900


def test_pending_step_waits_while_the_case_is_on_hold(migrated_db, smtp, partner):
    smtp_url, _ = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url)
    ids = to_reminder_2(migrated_db, cfg, 1)
    partner.outage = True
    run_escalation(at(D0 + timedelta(days=30)), migrated_db, settings=cfg, attempts=1)
    partner.outage = False
    with session_scope(migrated_db) as s:  # the operator pauses it
        s.execute(
            update(Case)
            .where(Case.case_id == ids[0])
            .values(state="on_hold", held_from_state="reminder_2")
        )
    run_escalation(at(D0 + timedelta(days=31)), migrated_db, settings=cfg)
    assert not partner.claim_posts and case(migrated_db, ids[0]).state == "on_hold"
    with session_scope(migrated_db) as s:  # ... and resumes it
        s.execute(update(Case).where(Case.case_id == ids[0]).values(state="reminder_2"))
    run_escalation(at(D0 + timedelta(days=32)), migrated_db, settings=cfg)
    assert partner.claim_posts == {f"DUN-{ids[0]}": 1}
    assert case(migrated_db, ids[0]).state == "with_partner"
