"""Cases for escalation tests, built the way detection and handover leave them: orders via
`load_orders`, then `cases` rows in state `scheduled` (with `case_items`) directly.

Also: a real SMTP server (aiosmtpd) on 127.0.0.1, the local partner, and an orders API
that answers the cancel call (the project's own when it exists).
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from email import message_from_bytes
from email.message import Message
from email.policy import default as default_policy
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select, update

from dunning.config import Settings
from dunning.db import session_scope
from dunning.models.schema import Action, Case, CaseItem, Transaction
from dunning.servers.http import Faults, JsonHandler, LoopbackServer
from tests.factories import load_orders, order_record, schedule

BERLIN = ZoneInfo("Europe/Berlin")


def at(day: date, hour: int = 6) -> datetime:
    """A run at `hour` o'clock Berlin time on `day`, as aware UTC."""
    return datetime.combine(day, time(hour), tzinfo=BERLIN).astimezone(UTC)


def make_case(
    url: str,
    order: dict[str, Any],
    option: str = "court",
    as_of: datetime | None = None,
    state: str = "scheduled",
    next_step_at: datetime | None = None,
) -> int:
    """Load the order and open a scheduled case over its installments that are overdue at
    `as_of` (default: the day after the first due date)."""
    load_orders(url, [order])
    insts = order["installments"]
    first_due = date.fromisoformat(insts[0]["due_date"])
    as_of = as_of or at(first_due + timedelta(days=1))
    today = as_of.astimezone(BERLIN).date()
    overdue = [i for i in insts if date.fromisoformat(i["due_date"]) < today]
    principal = sum((Decimal(i["amount"]) for i in overdue), Decimal(0))
    default_date = date.fromisoformat(overdue[0]["due_date"])
    with session_scope(url) as s:
        case_id = s.execute(
            insert(Case)
            .values(
                order_id=order["order_id"],
                merchant_id=order["merchant_id"],
                kind="overdue",
                state=state,
                dunning_option=option,
                currency=order["currency"],
                opened_at=as_of,
                default_date=default_date,
                principal_amount=principal,
                outstanding_amount=principal,
                started_at=as_of,
                next_step_at=next_step_at
                or datetime.combine(default_date + timedelta(days=10), time(0), tzinfo=BERLIN),
                updated_at=as_of,
            )
            .returning(Case.case_id)
        ).scalar_one()
        for i in overdue:
            d = date.fromisoformat(i["due_date"])
            s.add(
                CaseItem(
                    case_id=case_id,
                    item_type="principal",
                    installment_number=i["number"],
                    due_date=d,
                    default_date=d,
                    amount=Decimal(i["amount"]),
                    paid_amount=Decimal(0),
                    joined_at=as_of,
                )
            )
    return case_id


def join_installment(
    url: str, case_id: int, number: int, due: date, amount: str, when: datetime | None = None
) -> None:
    """What detection does when a further installment of the order falls overdue."""
    with session_scope(url) as s:
        s.add(
            CaseItem(
                case_id=case_id,
                item_type="principal",
                installment_number=number,
                due_date=due,
                default_date=due,
                amount=Decimal(amount),
                paid_amount=Decimal(0),
                joined_at=when or datetime.now(UTC),  # detection: the run's as_of
            )
        )
        s.execute(
            update(Case)
            .where(Case.case_id == case_id)
            .values(principal_amount=Case.principal_amount + Decimal(amount))
        )


def pay(
    url: str, case_id: int, amount: str, when: datetime | None = None, installment: int = 1
) -> None:
    """A payment received at the source against the claim: a sale of its first installment
    (by default an hour after the case's last step) and the paid_amount detection writes."""
    with session_scope(url) as s:
        c = s.get(Case, case_id)
        if when is None:
            last = s.scalar(select(func.max(Action.created_at)).where(Action.case_id == case_id))
            when = (last or c.opened_at) + timedelta(hours=1)
        n = s.scalar(
            select(func.count()).select_from(Transaction).where(Transaction.order_id == c.order_id)
        )
        s.add(
            Transaction(
                order_id=c.order_id,
                transaction_id=f"pay-{case_id}-{n}",
                type="sale",
                amount=Decimal(amount),
                processed_at=when,
                installment_number=installment,
            )
        )
        s.execute(
            update(Case)
            .where(Case.case_id == case_id)
            .values(paid_amount=Case.paid_amount + Decimal(amount))
        )


def one_time(order_id: str, merchant: str = "m1", due: date = date(2026, 1, 15), **kw) -> dict:
    return order_record(
        order_id, merchant, installments=schedule(1, due, "99.00"), total_amount="99.00", **kw
    )


def case(url: str, case_id: int) -> Case:
    with session_scope(url) as s:
        return s.get(Case, case_id)


def actions(url: str, case_id: int | None = None) -> list[Action]:
    with session_scope(url) as s:
        q = select(Action).order_by(Action.id)
        if case_id is not None:
            q = q.where(Action.case_id == case_id)
        return list(s.scalars(q))


def count_actions(url: str, **where: Any) -> int:
    with session_scope(url) as s:
        q = select(func.count()).select_from(Action)
        for k, v in where.items():
            q = q.where(getattr(Action, k) == v)
        return s.scalar(q)


# --- a real SMTP server on loopback ------------------------------------------------------


@dataclass
class MailBox:
    messages: list[Message] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)  # every RCPT TO, in order
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: int = 0

    def by_key(self) -> Counter[str]:
        return Counter(m["X-Dunning-Key"] for m in self.messages)


class _Handler:
    def __init__(self, box: MailBox):
        self.box = box

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.box.lock:
            self.box.connections += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        with self.box.lock:
            self.box.messages.append(message_from_bytes(envelope.content, policy=default_policy))
            self.box.recipients.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[str, MailBox]]:
    from aiosmtpd.controller import Controller

    box = MailBox()
    with socket.socket() as probe:  # a free port (the controller's ready check needs one)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(_Handler(box), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", box
    finally:
        controller.stop()


# --- partner and orders API -----------------------------------------------------------------


@pytest.fixture
def partner():
    from dunning.servers.partner_api import start

    server = start()
    try:
        yield server
    finally:
        server.stop()


class _CancelHandler(JsonHandler):
    def route(self, method, path, query, body):
        parts = [p for p in path.split("/") if p]
        if method == "POST" and len(parts) == 4 and parts[3] == "cancel":
            key = self.headers.get("Idempotency-Key") or ""
            with self.server.lock:
                self.server.cancel_calls[parts[2]] += 1
                self.server.cancelled.setdefault(parts[2], key)
            return 200, {"order_id": parts[2], "status": "cancelled"}, {}
        return 404, {"error": "not found"}, {}


class CancelServer(LoopbackServer):
    def __init__(self):
        super().__init__(_CancelHandler, 0, None, Faults())
        self.cancel_calls: Counter[str] = Counter()
        self.cancelled: dict[str, str] = {}


@pytest.fixture
def orders_api():
    server = CancelServer().start()
    try:
        yield server
    finally:
        server.stop()


def settings_for(
    url: str, smtp_url: str, partner_url: str, source_url: str | None = None
) -> Settings:
    return Settings(
        database_url=url,
        smtp_url=smtp_url,
        partner_url=partner_url,
        source_url=source_url or "orders.jsonl",
        http_timeout_seconds=5,
    )
