"""Escalation end to end on one engine pair: reminders by real SMTP, handover to the local
partner, reruns that change nothing, a skipped run that takes one step only."""

from __future__ import annotations

from datetime import date, timedelta

from dunning.tasks.escalate import run_escalation
from tests.escalation_fixtures import actions, at, case, make_case, one_time, settings_for

D0 = date(2026, 1, 16)


def test_ladder_steps_once_each_and_rerun_changes_nothing(migrated_db, smtp, partner):
    smtp_url, box = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url)
    ids = [make_case(migrated_db, one_time(f"o{i}")) for i in range(3)]
    states = []
    for day in range(0, 60, 10):
        as_of = at(D0 + timedelta(days=day))
        run_escalation(as_of, migrated_db, settings=cfg)
        states.append(case(migrated_db, ids[0]).state)
        before = (len(box.messages), sum(partner.claim_posts.values()))
        run_escalation(as_of, migrated_db, settings=cfg)  # the same as_of again: nothing new
        assert (len(box.messages), sum(partner.claim_posts.values())) == before
    assert states[:4] == ["scheduled", "reminder_1", "reminder_2", "with_partner"]
    assert box.by_key() == {f"case-{i}-{s}": 1 for i in ids for s in ("reminder_1", "reminder_2")}
    assert all(partner.claim_posts[f"DUN-{i}"] == 1 for i in ids)
    assert len(partner.claims) == 3
    for i in ids:
        assert [a.step for a in actions(migrated_db, i)] == ["reminder_1", "reminder_2", "handover"]
        assert case(migrated_db, i).partner_claim_id


def test_skipped_run_takes_one_step(migrated_db, smtp, partner):
    smtp_url, box = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url)
    cid = make_case(migrated_db, one_time("o1"))
    run_escalation(at(D0 + timedelta(days=10)), migrated_db, settings=cfg)
    assert case(migrated_db, cid).state == "reminder_1"
    run_escalation(at(D0 + timedelta(days=35)), migrated_db, settings=cfg)  # 25 days skipped
    c = case(migrated_db, cid)
    assert c.state == "reminder_2"
    assert len(box.messages) == 2 and not partner.claim_posts
