"""The embedded default: a sample shop pursued over ~90 simulated days, on one machine.

Fresh SQLite database, the local orders API and collection partner on loopback, mail to a
folder, and the pipeline (the `dunning-run` flow) once every ten simulated days. Between
runs the outside world moves: the partner reports payments and failures, some buyers pay at
the source, and an operator approves, holds and cancels cases, so every state appears.
Every run is a Prefect flow run: the Prefect UI has all ten, with their artifacts and events.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import zlib
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 8, 28, 6, 0, tzinfo=BERLIN)
SOURCE_TOKEN = "demo-source-token"
PARTNER_TOKEN = "demo-partner-token"


@dataclass
class DemoResult:
    home: Path
    database_url: str
    runs: int
    states: Counter[str] = field(default_factory=Counter)
    mails: int = 0


def prepare_environment(home: Path) -> None:
    """Point Prefect at the demo's own home before prefect is imported; keep it quiet."""
    os.environ["PREFECT_HOME"] = str((home / "prefect").resolve())
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"


def _bucket(reference: str) -> int:
    return int(hashlib.sha256(reference.encode()).hexdigest(), 16) % 100


def partner_moves(partner) -> None:
    """The partner's month: about a third of claims get paid, a third fail, the rest go on."""
    for reference, claim_id in list(partner.by_reference.items()):
        status = partner.claims[claim_id]["status"]
        bucket = _bucket(reference)
        if status == "received":
            partner.set_status(reference, "in_progress")
        elif status == "in_progress":
            if bucket < 30:
                partner.set_status(reference, "paid")
            elif bucket < 70:
                partner.set_status(reference, "unsuccessful")
        elif status == "court_requested":
            partner.set_status(reference, "court_filed")


def operator_moves(url: str, as_of: datetime, round_no: int) -> None:
    """An operator approves most waiting cases, holds one, and cancels one."""
    from sqlalchemy import select

    from dunning.db import session_scope
    from dunning.models.operator import ActionRefused
    from dunning.models.schema import Case
    from dunning.tasks.case_ops import case_action_core

    with session_scope(url) as s:
        waiting = list(
            s.scalars(
                select(Case.case_id).where(Case.state == "awaiting_approval").order_by(Case.case_id)
            )
        )
        running = list(
            s.scalars(select(Case.case_id).where(Case.state == "scheduled").order_by(Case.case_id))
        )
    plan: list[tuple[str, int, str]] = []
    if round_no == 2:
        plan += [
            ("start", cid, "checked by the operator") for cid in waiting[: len(waiting) * 3 // 4]
        ]
        plan += [("cancel", cid, "goodwill: customer contacted support") for cid in waiting[-1:]]
        plan += [("hold", cid, "customer disputes the claim") for cid in running[:1]]
    for action, case_id, reason in plan:
        with suppress(ActionRefused):  # a case may have moved on meanwhile
            case_action_core(action, str(case_id), reason, "demo-operator", as_of, url)


def run_demo(home: Path, orders: int = 1200, merchants: int = 4, seed: int = 42) -> DemoResult:
    # A clean start, and Prefect's home in place before Prefect is imported (it creates it
    # at import, and warned when the folders above it did not exist yet).
    shutil.rmtree(home, ignore_errors=True)
    (home / "mail").mkdir(parents=True)
    (home / "prefect").mkdir()
    prepare_environment(home)
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from dunning.config import get_settings
    from dunning.db import dispose_engine, session_scope, upgrade
    from dunning.flows.pipeline import dunning_run
    from dunning.sample.generator import generate_orders, merchant_ids, mutate_orders, write_jsonl
    from dunning.servers import orders_api, partner_api
    from dunning.tasks import merchant_settings as store

    url = f"sqlite:///{home / 'dunning.db'}"
    dispose_engine(url)
    upgrade(url)

    records = list(generate_orders(orders, merchants=merchants, seed=seed, as_of=START))
    write_jsonl(records, home / "orders.jsonl")
    source = orders_api.start(records, token=SOURCE_TOKEN)
    # Some orders the platform will not cancel through its API: they wait for an operator.
    source.refuse_cancel = lambda record: (
        "order has an open dispute: cancel it in the platform's back office"
        if zlib.crc32(record["order_id"].encode()) % 3 == 0
        else None
    )
    partner = partner_api.start(token=PARTNER_TOKEN)
    os.environ.update(
        DUNNING_DATABASE_URL=url,
        DUNNING_SOURCE_URL=source.url,
        DUNNING_SOURCE_TOKEN=SOURCE_TOKEN,
        DUNNING_PARTNER_URL=partner.url,
        DUNNING_PARTNER_TOKEN=PARTNER_TOKEN,
        DUNNING_SMTP_URL=f"file:{home / 'mail'}",
    )
    get_settings.cache_clear()
    installation = get_settings()

    # Four kinds of merchant: automatic court, automatic cancellation, manual review, defaults.
    choices = [
        {
            "dunning_option": "court",
            "auto_overdue": True,
            "auto_chargebacks": True,
            "reminder_fee": "2.50",
            "interest_enabled": True,
        },
        {
            "dunning_option": "cancellation",
            "auto_overdue": True,
            "auto_chargebacks": True,
            "cancellation_costs": "15.00",
        },
        {"dunning_option": "court", "auto_overdue": False, "auto_chargebacks": True},
    ]
    configured_at = START - timedelta(days=60)
    with session_scope(url) as s:
        for merchant_id, changes in zip(merchant_ids(merchants), choices, strict=False):
            store.change(s, merchant_id, changes, configured_at, "demo-setup", installation)

    result = DemoResult(home=home, database_url=url, runs=0)
    flow_logs = logging.getLogger("prefect.flow_runs")
    flow_level = flow_logs.level
    # Heartbeats tell a server that a deployed run is still alive; the demo's runs live in
    # this process. Each flow run joins its heartbeat thread at its end, up to a second: six
    # flow runs a round, about a minute over the demo.
    try:
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            for round_no in range(10):
                as_of = START + timedelta(days=10 * round_no)
                if round_no:
                    partner_moves(partner)
                if round_no == 3:  # some buyers pay at the source mid-ladder
                    for changed in mutate_orders(records, 0.08, seed, as_of):
                        source.upsert(changed)
                operator_moves(url, as_of, round_no)
                dunning_run(as_of=as_of)
                result.runs += 1
                # Each warning was said in the first round; later rounds repeat them.
                flow_logs.setLevel(logging.ERROR)
    finally:
        flow_logs.setLevel(flow_level)
        source.stop()
        partner.stop()

    from sqlalchemy import func, select

    from dunning.models.schema import Case

    with session_scope(url) as s:
        result.states = Counter(
            dict(s.execute(select(Case.state, func.count()).group_by(Case.state)).all())
        )
    result.mails = len(list((home / "mail").glob("*.eml")))
    return result
