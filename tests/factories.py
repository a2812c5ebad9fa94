"""Order records as the source delivers them (contract: order-record.schema.json), for tests.

`load_orders` puts records into the database the way a sync would. Until the sync loader
exists it wrote the tables directly; now it calls the loader (dunning.tasks.orders_sink).
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def address(**overrides: Any) -> dict[str, Any]:
    buyer = {
        "first_name": "Erika",
        "last_name": "Mustermann",
        "email": "erika@example.org",
        "company_name": None,
        "street": "Heidestraße",
        "house_number": "17",
        "zip_code": "51147",
        "city": "Köln",
        "country_code": "DE",
        "phone": None,
        "locale": "de",
    }
    buyer.update(overrides)
    return buyer


def debtor(**overrides: Any) -> dict[str, Any]:
    """The buyer of `address()` as the partner contract's debtor."""
    buyer = address()
    keep = ("first_name", "last_name", "company_name", "email", "street", "house_number")
    keep += ("zip_code", "city", "country_code")
    return {"type": "consumer", **{k: buyer[k] for k in keep}, **overrides}


def schedule(count: int, first_due: date, amount: str, every_days: int = 30) -> list[dict]:
    return [
        {
            "number": i + 1,
            "due_date": (first_due + timedelta(days=every_days * i)).isoformat(),
            "amount": amount,
        }
        for i in range(count)
    ]


def transaction(tid: str, kind: str, amount: str, at: datetime, **fields: Any) -> dict[str, Any]:
    """A transaction of the order record; `fields` set installment_number, reverses, fee."""
    record = {"transaction_id": tid, "type": kind, "amount": amount}
    record |= {"processed_at": at.isoformat(), "installment_number": None}
    record |= {"reverses_transaction_id": None, "fee": None, "reason_code": None}
    return record | fields


def sale(tid: str, installment: int, amount: str, at: datetime) -> dict[str, Any]:
    return transaction(tid, "sale", amount, at, installment_number=installment)


def chargeback(
    tid: str, reverses: str, amount: str, at: datetime, fee: str | None = "15.00", code="MD06"
) -> dict[str, Any]:
    fields = {"reverses_transaction_id": reverses, "fee": fee, "reason_code": code}
    return transaction(tid, "chargeback", amount, at, **fields)


def refund(tid: str, reverses: str, amount: str, at: datetime) -> dict[str, Any]:
    return transaction(tid, "refund", amount, at, reverses_transaction_id=reverses)


def order_record(order_id: str = "o1", merchant_id: str = "m1", **overrides: Any) -> dict:
    """A valid one-time order of 99.00 EUR due 2026-01-15, unpaid, full German address."""
    record: dict[str, Any] = {
        "order_id": order_id,
        "merchant_id": merchant_id,
        "merchant_name": f"Shop {merchant_id}",
        "order_date": T0.isoformat(),
        "updated_at": T0.isoformat(),
        "status": "active",
        "currency": "EUR",
        "total_amount": "99.00",
        "product": {"id": "p1", "name": "Online-Kurs Python"},
        "payment_plan": "one_time_payment",
        "payment_method": "sepa",
        "buyer": address(),
        "installments": schedule(1, date(2026, 1, 15), "99.00"),
        "transactions": [],
    }
    record.update(copy.deepcopy(overrides))
    return record


def load_orders(
    url: str, records: list[dict], source: str = "test", as_of: datetime | None = None
) -> None:
    """Upsert records as a sync would (newest updated_at wins), through the real loader.

    A record the contract refuses raises AssertionError naming the field: a test that
    loads orders means them to be valid.
    """
    import orjson

    from dunning.db import get_engine
    from dunning.tasks.orders_sink import prepare_batch, write_batch
    from dunning.tasks.source import Item

    items = [Item(f"record {i}", orjson.dumps(r), r) for i, r in enumerate(records)]
    batch = prepare_batch(items, since=None)
    if batch.bad:
        problems = "; ".join(
            f"{b.position} ({b.order_id}): {b.field}: {b.reason}" for b in batch.bad
        )
        raise AssertionError(f"load_orders: records break the contract: {problems}")
    with get_engine(url).begin() as conn:
        write_batch(conn, source, batch, as_of or datetime.now(UTC), advance_watermark=False)
