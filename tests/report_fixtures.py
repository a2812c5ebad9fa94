"""A small, hand-computed case board: orders via load_orders, cases inserted directly.

AS_OF is 2026-02-01 06:00 UTC = 07:00 in Berlin, so the run's local date is 2026-02-01.
EXPECTED holds every case_report column of every case, computed by hand (see comments), read
from the table tests/data/report_expected.csv.
"""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from tests.factories import address, load_orders, order_record, schedule

AS_OF = datetime(2026, 2, 1, 6, 0, tzinfo=UTC)
HYPERLINK = '=HYPERLINK("http://x")'
DATA = Path(__file__).with_name("data")


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


ORDERS = [
    order_record("o1", "m1", buyer=address()),
    order_record(
        "o2",
        "m1",
        total_amount="300.00",
        payment_plan="breakdown_payment",
        payment_method="sepa",
        installments=schedule(3, date(2026, 1, 5), "100.00"),
        buyer=address(first_name="Jürgen", last_name="Müller", email="jm@example.org"),
    ),
    order_record(
        "o3",
        "m2",
        total_amount="49.90",
        payment_method="credit_card",
        buyer=address(first_name=HYPERLINK, last_name="Smith", email="evil@example.org"),
    ),
    order_record(
        "o4",
        "m2",
        total_amount="20.00",
        buyer=address(first_name="Anna", last_name="O'Brien", street=None, zip_code=None),
    ),
    order_record(
        "x%_5",
        "m1",
        total_amount="10.00",
        payment_plan="abonnement",
        payment_method="paypal",
        buyer=address(first_name="Zoë", last_name="Straßer;--", email="zoe@example.org"),
    ),
    order_record(
        "o6",
        "m3",
        currency="CHF",
        total_amount="80.00",
        buyer=address(first_name="Hans", last_name="MÜLLER", email="hans@example.ch"),
    ),
]


def _value(column: str, cell: str) -> Any:
    """A table cell as the column's type: amounts Decimal, *_at UTC times, *_date dates."""
    if column in ("case_id", "overdue_days"):
        return int(cell)
    if column.endswith("_amount") or column == "cancellation_costs":
        return D(cell)
    if column.endswith("_at"):
        return _t(cell)
    return date.fromisoformat(cell) if column.endswith("_date") else cell


def _table(name: str, keep_empty: bool = True) -> list[dict[str, Any]]:
    """Rows of a table in tests/data/; an empty cell is NULL, or left out (keep_empty=False)."""
    with (DATA / name).open(encoding="utf-8", newline="") as f:
        return [
            {c: _value(c, v) if v != "" else None for c, v in row.items() if v or keep_empty}
            for row in csv.DictReader(f)
        ]


_ZERO = D("0.00")


def _case(**kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "kind": "overdue",
        "held_from_state": None,
        "dunning_option": "court",
        "currency": "EUR",
        "principal_amount": _ZERO,
        "fees_amount": _ZERO,
        "interest_amount": _ZERO,
        "cancellation_costs": _ZERO,
        "paid_amount": _ZERO,
        "partner_paid_amount": _ZERO,
        "outstanding_amount": _ZERO,
        "blocked_reason": None,
        "started_at": None,
        "reminder_1_at": None,
        "reminder_2_at": None,
        "handed_over_at": None,
        "last_step_at": None,
        "next_step_at": None,
        "partner_claim_id": None,
        "partner_reference": None,
        "partner_status": None,
        "partner_error": None,
        "closed_at": None,
        "close_reason": None,
        "updated_at": AS_OF,
    }
    row.update(kw)
    return row


# The cases as detection and escalation would have left them; an empty cell keeps _case's
# default.
CASES = [_case(**row) for row in _table("report_cases.csv", keep_empty=False)]


# Hand-computed. overdue_days: open cases 2026-02-01 - default_date; case 3 is paid and
# freezes at its closing: 2026-01-20 23:30 UTC is 2026-01-21 00:30 in Berlin -> 21 - 10 = 11
# (a UTC calendar would say 10). Case 5 defaults in the future -> 0, never negative.
# paid_amount = paid at the source + paid to the partner: case 2: 30.10 + 20.20 = 50.30.
# Every case_report column of every case, one row per case (empty = NULL).
EXPECTED: dict[int, dict[str, Any]] = {
    row["case_id"]: {**row, "refreshed_at": AS_OF} for row in _table("report_expected.csv")
}


SECRETS = ["erika@example.org", "jm@example.org", "evil@example.org", "Heidestraße"]


def insert_cases(url: str, cases: list[dict[str, Any]]) -> None:
    from sqlalchemy import insert

    from dunning.db import session_scope
    from dunning.models.schema import Case

    with session_scope(url) as s:
        s.execute(insert(Case), cases)


def build_board(url: str) -> None:
    """Orders and the six cases above, in an upgraded database."""
    load_orders(url, ORDERS)
    insert_cases(url, CASES)


def many_cases(url: str, count: int, merchant: str = "bulk") -> None:
    """`count` orders and cases (for the refresh-under-read test), loaded set-based."""
    from sqlalchemy import insert

    from dunning.db import session_scope
    from dunning.models.schema import Buyer, Case, Merchant, Order

    now = AS_OF
    with session_scope(url) as s:
        s.execute(
            insert(Merchant),
            [
                {
                    "merchant_id": merchant,
                    "name": merchant,
                    "shard_key": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        s.execute(
            insert(Order),
            [
                {
                    "order_id": f"{merchant}-{i}",
                    "merchant_id": merchant,
                    "order_date": now,
                    "updated_at": now,
                    "status": "active",
                    "currency": "EUR",
                    "total_amount": D("10.00"),
                    "product_id": None,
                    "product_name": None,
                    "payment_plan": "one_time_payment",
                    "payment_method": "invoice",
                    "source": "bulk",
                    "synced_at": now,
                }
                for i in range(count)
            ],
        )
        s.execute(
            insert(Buyer),
            [
                {
                    "order_id": f"{merchant}-{i}",
                    "first_name": "Bulk",
                    "last_name": f"Buyer{i}",
                    "email": f"{merchant}{i}@example.org",
                    "street": "Weg",
                    "house_number": "1",
                    "zip_code": "10115",
                    "city": "Berlin",
                    "country_code": "DE",
                }
                for i in range(count)
            ],
        )
        s.execute(
            insert(Case),
            [
                _case(
                    order_id=f"{merchant}-{i}",
                    merchant_id=merchant,
                    state="reminder_1",
                    opened_at=now,
                    default_date=date(2026, 1, 1),
                    outstanding_amount=D("10.00"),
                )
                for i in range(count)
            ],
        )
