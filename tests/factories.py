"""Order records as the source delivers them (contract: order-record.schema.json), for tests.

`load_orders` puts records into the database the way a sync would. Until the sync loader
exists it writes the tables directly; afterwards it calls the loader, same signature.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
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


def schedule(count: int, first_due: date, amount: str, every_days: int = 30) -> list[dict]:
    return [
        {
            "number": i + 1,
            "due_date": (first_due + timedelta(days=every_days * i)).isoformat(),
            "amount": amount,
        }
        for i in range(count)
    ]


def sale(tid: str, installment: int, amount: str, at: datetime) -> dict[str, Any]:
    return {
        "transaction_id": tid,
        "type": "sale",
        "amount": amount,
        "processed_at": at.isoformat(),
        "installment_number": installment,
        "reverses_transaction_id": None,
        "fee": None,
        "reason_code": None,
    }


def chargeback(
    tid: str, reverses: str, amount: str, at: datetime, fee: str | None = "15.00", code="MD06"
) -> dict[str, Any]:
    return {
        "transaction_id": tid,
        "type": "chargeback",
        "amount": amount,
        "processed_at": at.isoformat(),
        "installment_number": None,
        "reverses_transaction_id": reverses,
        "fee": fee,
        "reason_code": code,
    }


def refund(tid: str, reverses: str, amount: str, at: datetime) -> dict[str, Any]:
    return {
        "transaction_id": tid,
        "type": "refund",
        "amount": amount,
        "processed_at": at.isoformat(),
        "installment_number": None,
        "reverses_transaction_id": reverses,
        "fee": None,
        "reason_code": None,
    }


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
        "payment_method": "invoice",
        "buyer": address(),
        "installments": schedule(1, date(2026, 1, 15), "99.00"),
        "transactions": [],
    }
    record.update(copy.deepcopy(overrides))
    return record


def load_orders(url: str, records: list[dict], source: str = "test") -> None:
    """Upsert records as a sync would (newest updated_at wins)."""
    from sqlalchemy import delete, select

    from dunning.db import session_scope
    from dunning.models.schema import Buyer, Installment, Merchant, Order, Transaction

    now = datetime.now(UTC)
    with session_scope(url) as s:
        for r in records:
            updated = datetime.fromisoformat(r["updated_at"])
            current = s.scalar(select(Order.updated_at).where(Order.order_id == r["order_id"]))
            if current is not None and current >= updated:
                continue
            if s.get(Merchant, r["merchant_id"]) is None:
                s.add(
                    Merchant(
                        merchant_id=r["merchant_id"],
                        name=r.get("merchant_name"),
                        shard_key=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
            for table in (Installment, Transaction, Buyer):
                s.execute(delete(table).where(table.order_id == r["order_id"]))
            s.merge(
                Order(
                    order_id=r["order_id"],
                    merchant_id=r["merchant_id"],
                    order_date=datetime.fromisoformat(r["order_date"]),
                    updated_at=updated,
                    status=r["status"],
                    currency=r["currency"],
                    total_amount=Decimal(r["total_amount"]),
                    product_id=(r.get("product") or {}).get("id"),
                    product_name=(r.get("product") or {}).get("name"),
                    payment_plan=r["payment_plan"],
                    payment_method=r["payment_method"],
                    source=source,
                    synced_at=now,
                )
            )
            s.flush()
            s.add(Buyer(order_id=r["order_id"], **r["buyer"]))
            for i in r["installments"]:
                s.add(
                    Installment(
                        order_id=r["order_id"],
                        number=i["number"],
                        due_date=date.fromisoformat(i["due_date"]),
                        amount=Decimal(i["amount"]),
                    )
                )
            for t in r["transactions"]:
                s.add(
                    Transaction(
                        order_id=r["order_id"],
                        transaction_id=t["transaction_id"],
                        type=t["type"],
                        amount=Decimal(t["amount"]),
                        processed_at=datetime.fromisoformat(t["processed_at"]),
                        installment_number=t.get("installment_number"),
                        reverses_transaction_id=t.get("reverses_transaction_id"),
                        fee=Decimal(t["fee"]) if t.get("fee") else None,
                        reason_code=t.get("reason_code"),
                    )
                )
