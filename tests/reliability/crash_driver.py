"""The world a crash trial runs in, and the invariants checked after every kill.

A *world* is one database (PostgreSQL when available), the local orders API serving a
generated shop, the local partner (every claim POST recorded with its Idempotency-Key)
and a real SMTP server (aiosmtpd) recording every accepted message. `dunning run --as-of T`
runs as a subprocess against it and is killed with SIGKILL either by a timer (random delay)
or by the `DUNNING_CRASH_AT=<point>:<n>` hook (dunning/crashpoints.py) at a named point.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from dunning.db import session_scope, upgrade

START = datetime(2026, 8, 28, 6, 0, tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC)
DAYS = (0, 10, 20)  # reminder 1, reminder 2, handover to the partner
SOURCE_TOKEN = "crash-source-token-s3cr3t"
PARTNER_TOKEN = "crash-partner-token-s3cr3t"
# Named kill points per day: what that day's run actually passes through.
POINTS = {
    0: [
        "sync.batch",
        "detect.commit",
        "escalate.claimed",
        "mail.accepted",
        "mail.marked",
        "report.refresh",
        "timer",
    ],
    10: ["escalate.claimed", "mail.accepted", "mail.marked", "report.refresh", "timer"],
    20: ["escalate.claimed", "partner.answered", "report.refresh", "timer"],
}


def record_claim_keys(partner) -> dict[str, list[str]]:
    """Wrap the partner's claim endpoint: reference -> the Idempotency-Keys it was sent."""
    seen: dict[str, list[str]] = {}
    original = partner.post_claim

    def post_claim(body, key):
        with partner.state_lock:
            seen.setdefault(str((body or {}).get("reference")), []).append(key)
            return original(body, key)

    partner.post_claim = post_claim
    return seen


def configure_merchants(url: str, merchants: int) -> None:
    from dunning.config import Settings
    from dunning.sample.generator import merchant_ids
    from dunning.tasks import merchant_settings as store

    opts = ["court", "cancellation"]
    with session_scope(url) as s:
        for i, mid in enumerate(merchant_ids(merchants)):
            store.change(
                s,
                mid,
                {"dunning_option": opts[i % 2], "auto_overdue": True, "auto_chargebacks": True},
                START - timedelta(days=60),
                "crash-test",
                Settings(),
            )


@dataclass
class World:
    url: str
    source: Any
    partner: Any
    box: Any
    smtp_url: str
    prefect_env: dict[str, str]
    home: Path
    source_records: list[dict[str, Any]] = field(default_factory=list)
    claim_keys: dict[str, list[str]] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)  # mail key -> kills inside its send window
    kills: int = 0
    log: list[str] = field(default_factory=list)

    def env(self, crash_at: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DUNNING_", "PREFECT_"))}
        env.update(self.prefect_env)
        env.update(
            DUNNING_DATABASE_URL=self.url,
            DUNNING_SOURCE_URL=self.source.url,
            DUNNING_SOURCE_TOKEN=SOURCE_TOKEN,
            DUNNING_PARTNER_URL=self.partner.url,
            DUNNING_PARTNER_TOKEN=PARTNER_TOKEN,
            DUNNING_SMTP_URL=self.smtp_url,
            DUNNING_BATCH_SIZE="25",  # several sync batches, so a kill can land between them
            DUNNING_HTTP_TIMEOUT_SECONDS="5",
        )
        if crash_at:
            env["DUNNING_CRASH_AT"] = crash_at
        return env

    def run(self, as_of: datetime, crash_at: str | None = None, kill_after: float | None = None):
        """`dunning run --as-of`; returns (killed, CompletedProcess-like stdout/stderr)."""
        exe = shutil.which("dunning", path=str(Path(sys.executable).parent)) or "dunning"
        out = self.home / f"run-{len(self.log)}.log"
        started = time.monotonic()
        with out.open("w") as fh:
            proc = subprocess.Popen(
                [exe, "run", "--as-of", as_of.isoformat()],
                env=self.env(crash_at),
                cwd=self.home,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
            try:
                rc = proc.wait(timeout=kill_after) if kill_after else proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                if kill_after is None:
                    proc.kill()
                    raise
                proc.send_signal(signal.SIGKILL)
                rc = proc.wait(timeout=30)
        took = time.monotonic() - started
        self.log.append(
            f"{as_of.date()} crash_at={crash_at} kill_after={kill_after} rc={rc} {took:.1f}s"
        )
        return rc, out.read_text()


@contextmanager
def world_of(url: str, records, smtp, prefect_env: dict[str, str], home: Path) -> Iterator[World]:
    """A migrated database with two merchants, the local orders API serving `records`, the
    local partner and the SMTP server; the servers stop when the block ends."""
    from dunning.servers import orders_api, partner_api

    upgrade(url)
    configure_merchants(url, 2)
    smtp_url, box = smtp
    source = orders_api.start(records, token=SOURCE_TOKEN)
    partner = partner_api.start(token=PARTNER_TOKEN)
    world = World(url, source, partner, box, smtp_url, prefect_env, home, records)
    world.claim_keys = record_claim_keys(partner)
    try:
        yield world
    finally:
        source.stop()
        partner.stop()


def outcome(url: str) -> tuple[set, set]:
    """The cases (order, kind, state) and actions (order, step, status) a database holds."""
    with session_scope(url) as s:
        cases = set(s.execute(text("SELECT order_id, kind, state FROM cases")).all())
        acts = set(
            s.execute(
                text(
                    "SELECT c.order_id, a.step, a.status FROM actions a "
                    "JOIN cases c ON c.case_id = a.case_id"
                )
            ).all()
        )
    return cases, acts


def expire_leases(url: str) -> int:
    """What 15 minutes of waiting does: a dead run's leases run out (LEASE in claim_steps.py)."""
    with session_scope(url) as s:
        return s.execute(
            text(
                "UPDATE actions SET lease_until = :t WHERE status = 'pending' "
                "AND lease_until IS NOT NULL"
            ),
            {"t": datetime.now(UTC) - timedelta(seconds=1)},
        ).rowcount


def after_kill(world: World) -> None:
    """Checks right after a kill, and the bookkeeping of which sends it hit."""
    world.kills += 1
    received = set(world.box.by_key())
    with session_scope(world.url) as s:
        unmarked = {
            k
            for (k,) in s.execute(
                text(
                    "SELECT idempotency_key FROM actions "
                    "WHERE status = 'pending' AND sent_at IS NULL"
                )
            )
        }
    for key in received & unmarked:
        world.hits[key] += 1  # the kill landed between the 250 reply and the commit
    check_watermark(world)


def check_watermark(world: World) -> None:
    """The watermark is never ahead of committed data: every source record stamped at or
    before it is stored (with that snapshot or a newer one)."""
    with session_scope(world.url) as s:
        marks = [m for (m,) in s.execute(text("SELECT watermark FROM sync_watermarks")) if m]
        stored = dict(s.execute(text("SELECT order_id, updated_at FROM orders")).all())
    for mark in marks:
        if isinstance(mark, str):
            mark = datetime.fromisoformat(mark)
        mark = mark if mark.tzinfo else mark.replace(tzinfo=UTC)
        for record in world.source_records:
            stamp = datetime.fromisoformat(record["updated_at"].replace("Z", "+00:00"))
            if stamp <= mark:
                assert record["order_id"] in stored, (
                    f"watermark {mark} ahead of data: {record['order_id']} missing"
                )


def check_final(world: World, as_of: datetime) -> dict[str, int]:
    """Invariants after the clean rerun. Returns the duplicate counts (all must be 0)."""
    dup: dict[str, int] = {}
    with session_scope(world.url) as s:
        q = lambda sql, **kw: s.execute(text(sql), kw).all()  # noqa: E731
        dup["open cases per order > 1"] = len(
            q(
                "SELECT order_id FROM cases WHERE state NOT IN ('paid','cancelled','uncollectible')"
                " GROUP BY order_id HAVING count(*) > 1"
            )
        )
        dup["cases per (order, kind, default date) > 1"] = len(
            q("SELECT 1 FROM cases GROUP BY order_id, kind, default_date HAVING count(*) > 1")
        )
        dup["actions per (case, step) > 1"] = len(
            q(
                "SELECT 1 FROM actions WHERE step IN ('reminder_1','reminder_2','handover',"
                "'court_request','cancel_order') GROUP BY case_id, step HAVING count(*) > 1"
            )
        )
        pending = q(
            "SELECT idempotency_key, status, last_error FROM actions WHERE status <> 'done'"
        )
        mail_keys = {
            k for (k,) in q("SELECT idempotency_key FROM actions WHERE step LIKE 'reminder_%'")
        }
        handover_refs = {
            f"DUN-{c}" for (c,) in q("SELECT case_id FROM actions WHERE step = 'handover'")
        }
        # Steps still due right now would have been claimed by the last run.
        due = q(
            "SELECT case_id, state FROM cases WHERE state IN ('scheduled','reminder_1',"
            "'reminder_2') AND next_step_at <= :t",
            t=as_of,
        )
    assert not pending, f"left unsent: {pending[:5]}"
    assert not due, f"due but not stepped: {due[:5]}"
    received = world.box.by_key()
    assert set(received) == mail_keys, "every reminder action sent, no mail without an action"
    over = {k: n for k, n in received.items() if n > 1 + world.hits[k]}
    dup["mails beyond 1 + kills in their send window"] = len(over)
    dup["mails sent twice (all causes)"] = sum(1 for n in received.values() if n > 1)
    refs = Counter(c["reference"] for c in world.partner.claims.values())
    dup["claims per reference > 1"] = sum(1 for n in refs.values() if n > 1)
    dup["claim repeats with another key"] = sum(
        1 for keys in world.claim_keys.values() if len(set(keys)) > 1
    )
    assert set(world.partner.by_reference) == handover_refs, "each handover reached the partner"
    return dup


def plan_kill(rng: random.Random, day: int, scenario: int) -> tuple[str | None, float | None]:
    """The kill of one trial: the named points of the day in turn over the scenarios (so
    every point is hit), the pass number and the timer's delay at random (seeded)."""
    points = POINTS[day]
    point = points[(scenario + day) % len(points)]
    if point == "timer":
        return None, round(rng.uniform(1.0, 8.0), 2)
    top = {"sync.batch": 1, "mail.accepted": 10, "mail.marked": 10, "partner.answered": 8}
    return f"{point}:{rng.randint(1, top.get(point, 1))}", None
