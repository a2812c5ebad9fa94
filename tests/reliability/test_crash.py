"""Crash harness: `dunning run` killed with SIGKILL at random points, then rerun.

Each scenario is one shop (generated orders on the local orders API, the local partner,
a real SMTP server) pursued over three run dates (reminder 1, reminder 2, handover). On
each date the run is killed once - at a named point (sync batch committed, detection before
commit, escalation claimed, an e-mail accepted by the SMTP server but not yet recorded, an
e-mail recorded, a partner answer not yet recorded, the refresh before commit) or by a timer
at a random moment - then the leases of the dead run are let expire and the run is repeated
to completion. A trial = one kill and its recovery.

CRASH_TRIALS (default 6: two scenarios, CI) sets the number of trials; the full count
(30+) is run with `CRASH_TRIALS=36 pytest tests/reliability/test_crash.py`.
The final state must equal a run of the same shop that never crashed.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from tests.reliability import crash_driver as drv

TRIALS = int(os.environ.get("CRASH_TRIALS", "6"))
SCENARIOS = max(1, -(-TRIALS // len(drv.DAYS)))
ORDERS = int(os.environ.get("CRASH_ORDERS", "60"))
RESULTS = os.environ.get("CRASH_RESULTS")  # a JSON Lines file the README numbers come from


def reference_outcome(tmp_path: Path, records, monkeypatch) -> tuple[set, set, int]:
    """The same shop over the same dates, in-process, no crash (on SQLite)."""
    from dunning.config import get_settings
    from dunning.flows.pipeline import dunning_run

    url = f"sqlite:///{tmp_path / 'reference.db'}"
    mail = (f"file:{tmp_path / 'ref-mail'}", None)
    with drv.world_of(url, records, mail, {}, tmp_path) as world:
        monkeypatch.setenv("DUNNING_SOURCE_URL", world.source.url)
        monkeypatch.setenv("DUNNING_SOURCE_TOKEN", drv.SOURCE_TOKEN)
        monkeypatch.setenv("DUNNING_PARTNER_URL", world.partner.url)
        monkeypatch.setenv("DUNNING_PARTNER_TOKEN", drv.PARTNER_TOKEN)
        monkeypatch.setenv("DUNNING_SMTP_URL", world.smtp_url)
        monkeypatch.setenv("DUNNING_DATABASE_URL", url)
        get_settings.cache_clear()
        try:
            for day in drv.DAYS:
                dunning_run(as_of=drv.START + timedelta(days=day))
        finally:
            get_settings.cache_clear()
    mails = len(list((tmp_path / "ref-mail").glob("*.eml")))
    return (*drv.outcome(url), mails)


@pytest.mark.postgres
@pytest.mark.parametrize("scenario", range(SCENARIOS))
def test_killed_runs_lose_nothing_and_send_nothing_twice(
    scenario, postgres_url, smtp, prefect_api_env, tmp_path, monkeypatch
):
    from dunning.sample.generator import generate_orders

    seed = 9000 + scenario
    rng = random.Random(seed)
    records = list(generate_orders(ORDERS, merchants=2, seed=seed, as_of=drv.START))
    points: Counter = Counter()
    with drv.world_of(postgres_url, records, smtp, prefect_api_env, tmp_path) as world:
        for day in drv.DAYS:
            as_of = drv.START + timedelta(days=day)
            crash_at, kill_after = drv.plan_kill(rng, day, scenario)
            rc, out = world.run(as_of, crash_at=crash_at, kill_after=kill_after)
            if rc == -9:
                drv.after_kill(world)
                points[(crash_at or "timer").split(":")[0]] += 1
            else:  # the point was not reached that many times: the run ended normally
                assert rc == 0, out[-3000:]
                points["(not reached)"] += 1
            drv.expire_leases(postgres_url)
            rc, out = world.run(as_of)
            assert rc == 0, out[-3000:]
            assert "Traceback" not in out, out[-3000:]
            drv.check_watermark(world)
        dup = drv.check_final(world, as_of)
    box, partner = world.box, world.partner
    ref_cases, ref_actions, ref_mails = reference_outcome(tmp_path, records, monkeypatch)
    cases, acts = drv.outcome(postgres_url)
    lost = {"cases": len(ref_cases - cases), "actions": len(ref_actions - acts)}
    extra = {"cases": len(cases - ref_cases), "actions": len(acts - ref_actions)}
    summary = {
        "scenario": scenario,
        "trials": len(drv.DAYS),
        "kills": world.kills,
        "points": dict(points),
        "cases": len(cases),
        "mails": sum(box.by_key().values()),
        "reference_mails": ref_mails,
        "claims": len(partner.claims),
        "claim_posts": sum(partner.claim_posts.values()),
        "kills_in_mail_window": sum(world.hits.values()),
        "lost": lost,
        "extra": extra,
        "duplicates": dup,
        "runs": world.log,
    }
    print(json.dumps(summary))
    if RESULTS:
        with open(RESULTS, "a") as fh:
            fh.write(json.dumps(summary) + "\n")
    assert lost == {"cases": 0, "actions": 0} and extra == {"cases": 0, "actions": 0}, summary
    assert dup["mails beyond 1 + kills in their send window"] == 0, summary
    assert {k: v for k, v in dup.items() if k != "mails sent twice (all causes)"} == dict.fromkeys(
        [k for k in dup if k != "mails sent twice (all causes)"], 0
    ), summary
    assert dup["mails sent twice (all causes)"] <= sum(world.hits.values()), summary
    assert len(box.messages) == ref_mails + sum(n - 1 for n in box.by_key().values() if n > 1), (
        summary
    )
