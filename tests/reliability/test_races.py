"""Races on PostgreSQL: two whole pipeline runs at once, and an operator cancelling cases
while an escalation steps them. One wins; nothing happens twice; no step after a cancel."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import text

from dunning.db import session_scope, upgrade
from dunning.models.operator import ActionRefused
from dunning.tasks.case_ops import case_action_core
from dunning.tasks.escalate import run_escalation
from tests.escalation_fixtures import at, make_case, one_time, settings_for
from tests.reliability import crash_driver as drv

pytestmark = pytest.mark.postgres


def test_two_pipeline_runs_at_once_duplicate_nothing(postgres_url, smtp, prefect_api_env, tmp_path):
    from dunning.sample.generator import generate_orders

    records = list(generate_orders(60, merchants=2, seed=31, as_of=drv.START))
    results: list[tuple[int, str]] = []
    with drv.world_of(postgres_url, records, smtp, prefect_api_env, tmp_path) as world:
        for day in drv.DAYS:
            as_of = drv.START + timedelta(days=day)
            threads = [
                threading.Thread(target=lambda t=as_of: results.append(world.run(t)))
                for _ in range(2)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        # Whatever a run could not do (had it lost a race and failed), a later run does.
        rc, out = world.run(as_of)
        assert rc == 0, out[-2000:]
        dup = drv.check_final(world, as_of)
    box, partner = world.box, world.partner
    failed = [out[-500:] for rc, out in results if rc != 0]
    print(f"\nconcurrent runs: {len(results)} runs, {len(failed)} failed cleanly; {dup}")
    assert all("Traceback" not in out for _, out in results)
    assert all(v == 0 for v in dup.values()), dup
    assert len(box.messages) == len(box.by_key())
    assert sum(partner.claim_posts.values()) >= len(partner.claims) > 0


def _cases_in_reminder_2(url, cfg, n):
    from datetime import date

    d0 = date(2026, 1, 16)
    ids = [make_case(url, one_time(f"o{i}")) for i in range(n)]
    run_escalation(at(d0 + timedelta(days=10)), url, settings=cfg, sync_partner=False)
    return ids, d0


@pytest.mark.parametrize("step", ["reminder_2", "handover"])
def test_operator_cancel_racing_escalation(step, postgres_url, smtp, partner):
    """Half the due cases are cancelled by an operator while the run steps them."""
    upgrade(postgres_url)
    smtp_url, box = smtp
    cfg = settings_for(postgres_url, smtp_url, partner.url)
    ids, d0 = _cases_in_reminder_2(postgres_url, cfg, 60)
    day = 20 if step == "reminder_2" else 30
    if step == "handover":
        run_escalation(at(d0 + timedelta(days=20)), postgres_url, settings=cfg, sync_partner=False)
    as_of = at(d0 + timedelta(days=day))
    victims = sorted(random.Random(day).sample(ids, 30))
    cancelled_at: dict[int, float] = {}
    refused: list[str] = []

    def operator():
        for cid in victims:
            try:
                case_action_core(
                    "cancel", str(cid), "buyer disputes", "op", as_of, postgres_url, cfg
                )
                cancelled_at[cid] = time.time()
            except ActionRefused as exc:  # pragma: no cover - shown below
                refused.append(str(exc))
            time.sleep(0.002)

    received: dict[str, float] = {}

    class Stamped(list):  # when the SMTP server accepted each message
        def append(self, msg):
            received[msg["X-Dunning-Key"]] = time.time()
            super().append(msg)

    box.messages = Stamped(box.messages)
    op = threading.Thread(target=operator)
    op.start()
    run_escalation(as_of, postgres_url, settings=cfg, sync_partner=False)
    op.join()
    assert not refused, refused
    # The next run tells the partner about the cancelled cases it holds.
    run_escalation(as_of + timedelta(hours=1), postgres_url, settings=cfg, sync_partner=False)
    with session_scope(postgres_url) as s:
        history = s.execute(
            text("SELECT case_id, to_state, actor FROM case_history ORDER BY id")
        ).all()
        cases = {r.case_id: r for r in s.execute(text("SELECT * FROM cases"))}
        acts = Counter(
            s.execute(text("SELECT case_id, step FROM actions WHERE status='done'")).all()
        )
    after_cancel = []
    for cid in victims:
        seen_cancel = False
        for h in (h for h in history if h.case_id == cid):
            if seen_cancel:
                after_cancel.append((cid, h.to_state))
            seen_cancel = seen_cancel or h.to_state == "cancelled"
        assert cases[cid].state == "cancelled"
    assert not after_cancel, f"transitions after a cancel: {after_cancel}"
    # A reminder accepted by the mail server after the cancel was committed: a step after it.
    late = [
        cid
        for cid in victims
        if f"case-{cid}-{step}" in received and received[f"case-{cid}-{step}"] > cancelled_at[cid]
    ]
    assert not late, f"sent after the cancel: {late}"
    # Every claim the partner holds for a cancelled case is known to the case and recalled.
    for cid in victims:
        ref = f"DUN-{cid}"
        if ref in partner.by_reference:
            assert cases[cid].partner_claim_id, f"claim of cancelled case {cid} is orphaned"
            assert partner.claim(ref)["status"] == "recalled", ref
    others = [cid for cid in ids if cid not in victims]
    assert {cases[c].state for c in others} == {
        "reminder_2" if step == "reminder_2" else "with_partner"
    }
    assert all(n == 1 for n in acts.values())
    assert all(n == 1 for n in box.by_key().values())
    winners = Counter("step first" if acts.get((cid, step)) else "cancel first" for cid in victims)
    print(f"\ncancel vs {step}: {dict(winners)}")
