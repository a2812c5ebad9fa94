"""What a valid order record becomes: the rows the loader writes.

A validated order becomes plain tuples of strings (amounts, dates and timestamps exactly
as received; PostgreSQL parses them in COPY) plus its parsed `updated_at` for ordering:
  order:       (order_id, merchant_id, merchant_name, order_date, updated_at, status,
                currency, total_amount, product_id, product_name, payment_plan,
                payment_method)
  buyer:       (order_id, first_name, last_name, email, company_name, street,
                house_number, zip_code, city, country_code, phone, locale, buyer_type)
  installment: (order_id, number, due_date, amount)
  transaction: (order_id, transaction_id, type, amount, processed_at,
                installment_number, reverses_transaction_id, fee, reason_code)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dunning.models.records import OrderRecord

ORDER_COLUMNS = (
    "order_id",
    "merchant_id",
    "merchant_name",
    "order_date",
    "updated_at",
    "status",
    "currency",
    "total_amount",
    "product_id",
    "product_name",
    "payment_plan",
    "payment_method",
)
BUYER_COLUMNS = (
    "order_id",
    "first_name",
    "last_name",
    "email",
    "company_name",
    "street",
    "house_number",
    "zip_code",
    "city",
    "country_code",
    "phone",
    "locale",
    "buyer_type",
)
INSTALLMENT_COLUMNS = ("order_id", "number", "due_date", "amount")
TRANSACTION_COLUMNS = (
    "order_id",
    "transaction_id",
    "type",
    "amount",
    "processed_at",
    "installment_number",
    "reverses_transaction_id",
    "fee",
    "reason_code",
)


@dataclass(slots=True)
class OrderRows:
    order: tuple
    updated_at: datetime
    buyer: tuple
    installments: list[tuple]
    transactions: list[tuple]


def _iso(value: datetime) -> str:
    return value.isoformat()


def rows_from_model(m: OrderRecord) -> OrderRows:
    oid = m.order_id
    p = m.product
    b = m.buyer
    return OrderRows(
        (
            oid,
            m.merchant_id,
            m.merchant_name,
            _iso(m.order_date),
            _iso(m.updated_at),
            m.status,
            m.currency,
            str(m.total_amount),
            p.id if p else None,
            p.name if p else None,
            m.payment_plan,
            m.payment_method,
        ),
        m.updated_at,
        (
            oid,
            b.first_name,
            b.last_name,
            b.email,
            b.company_name,
            b.street,
            b.house_number,
            b.zip_code,
            b.city,
            b.country_code,
            b.phone,
            b.locale,
            b.type or "consumer",
        ),
        [(oid, i.number, i.due_date.isoformat(), str(i.amount)) for i in m.installments],
        [
            (
                oid,
                t.transaction_id,
                t.type,
                str(t.amount),
                _iso(t.processed_at),
                t.installment_number,
                t.reverses_transaction_id,
                None if t.fee is None else str(t.fee),
                t.reason_code,
            )
            for t in m.transactions
        ],
    )
