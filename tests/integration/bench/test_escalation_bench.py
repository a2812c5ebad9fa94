"""Throughput of escalation against the local servers, each in its own process (as in a
deployment): N due steps, half reminder 1 over SMTP, half handovers to the partner.

    ESCALATION_BENCH_STEPS=10000 pytest -s tests/integration/test_escalation_bench.py

prints steps/s; with ESCALATION_BENCH_MIN_RATE set it also fails below that rate.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, insert, select

from dunning.config import Settings
from dunning.db import session_scope, upgrade
from dunning.models.schema import Action, Buyer, Case, CaseItem, Installment, Merchant, Order
from dunning.tasks.escalate import run_escalation

Z = ZoneInfo("Europe/Berlin")
N = int(os.environ.get("ESCALATION_BENCH_STEPS", "1000"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def seed(url: str, n: int) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    due = date(2026, 1, 15)
    r2 = datetime.combine(date(2026, 2, 4), dtime(6), tzinfo=Z)
    with session_scope(url) as s:
        s.execute(
            insert(Merchant),
            [dict(merchant_id="m1", name="Shop", shard_key=1, created_at=now, updated_at=now)],
        )
        s.execute(
            insert(Order),
            [
                dict(
                    order_id=f"o{i}",
                    merchant_id="m1",
                    order_date=now,
                    updated_at=now,
                    status="active",
                    currency="EUR",
                    total_amount=Decimal("99.00"),
                    product_id="p",
                    product_name="Kurs",
                    payment_plan="one_time_payment",
                    payment_method="invoice",
                    source="bench",
                    synced_at=now,
                )
                for i in range(n)
            ],
        )
        s.execute(
            insert(Buyer),
            [
                dict(
                    order_id=f"o{i}",
                    first_name="Erika",
                    last_name=f"M{i}",
                    email=f"e{i}@example.org",
                    company_name=None,
                    street="Weg",
                    house_number="1",
                    zip_code="10115",
                    city="Berlin",
                    country_code="DE",
                    phone=None,
                    locale="de" if i % 3 else "en",
                )
                for i in range(n)
            ],
        )
        s.execute(
            insert(Installment),
            [
                dict(order_id=f"o{i}", number=1, due_date=due, amount=Decimal("99.00"))
                for i in range(n)
            ],
        )
        s.execute(
            insert(Case),
            [
                dict(
                    case_id=i + 1,
                    order_id=f"o{i}",
                    merchant_id="m1",
                    kind="overdue",
                    state="reminder_2" if i % 2 else "scheduled",
                    dunning_option="court",
                    currency="EUR",
                    opened_at=now,
                    default_date=due,
                    principal_amount=Decimal("99.00"),
                    outstanding_amount=Decimal("99.00"),
                    started_at=now,
                    reminder_1_at=r2 - timedelta(days=10) if i % 2 else None,
                    reminder_2_at=r2 if i % 2 else None,
                    next_step_at=datetime.combine(date(2026, 1, 25), dtime(0), tzinfo=Z),
                    updated_at=now,
                )
                for i in range(n)
            ],
        )
        s.execute(
            insert(CaseItem),
            [
                dict(
                    case_id=i + 1,
                    item_type="principal",
                    installment_number=1,
                    due_date=due,
                    default_date=due,
                    amount=Decimal("99.00"),
                    paid_amount=Decimal(0),
                    joined_at=now,
                )
                for i in range(n)
            ],
        )


@pytest.mark.postgres
def test_escalation_throughput(postgres_url):
    upgrade(postgres_url)
    seed(postgres_url, N)
    smtp_port, partner_port = free_port(), free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                f"127.0.0.1:{smtp_port}",
                "-c",
                "aiosmtpd.handlers.Sink",
            ]
        ),
        subprocess.Popen(
            [sys.executable, "-m", "dunning.servers.partner_api", "--port", str(partner_port)],
            stdout=subprocess.DEVNULL,
        ),
    ]
    try:
        wait_port(smtp_port)
        wait_port(partner_port)
        partner_url = f"http://127.0.0.1:{partner_port}"
        cfg = Settings(
            database_url=postgres_url,
            smtp_url=f"smtp://127.0.0.1:{smtp_port}",
            partner_url=partner_url,
        )
        as_of = datetime(2026, 2, 20, 6, tzinfo=UTC)
        started = time.perf_counter()
        stats = run_escalation(as_of, postgres_url, settings=cfg)
        elapsed = time.perf_counter() - started
        rate = N / elapsed
        print(
            f"\nescalation: {N} steps in {elapsed:.1f} s = {rate:.0f} steps/s "
            f"(10,000 steps ~ {10000 / rate:.0f} s)"
        )
        assert stats["performed"] == {"reminder_1:done": N - N // 2, "handover:done": N // 2}
        again = run_escalation(as_of, postgres_url, settings=cfg)
        assert again["claimed"] == 0
        with session_scope(postgres_url) as s:
            assert s.scalar(select(func.count()).select_from(Action)) == N
        claims = httpx.get(f"{partner_url}/v1/claims").json()
        assert claims["items"] and claims["items"][0]["status"] == "received"
        minimum = os.environ.get("ESCALATION_BENCH_MIN_RATE")
        if minimum:
            assert rate >= float(minimum)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
