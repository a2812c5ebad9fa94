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

from datetime import datetime

from msgspec import Struct
from msgspec.structs import astuple

from dunning.models.records import (
    BuyerRecord,
    InstallmentRecord,
    OrderRecord,
    TransactionRecord,
)

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


class OrderRows(Struct, gc=False):  # a Struct: built in C, millions of times per load
    order: tuple
    updated_at: datetime
    buyer: tuple
    installments: list[tuple]
    transactions: list[tuple]


def rows_of(
    r: OrderRecord,
    installments: list[tuple] | None = None,
    transactions: list[tuple] | None = None,
    updated_at: datetime | None = None,
) -> OrderRows:
    """The rows of a record that passed the rules. A child's row is the order id and then
    its Struct's fields, which are in column order (as are the buyer's). `installments`,
    `transactions`, `updated_at` (parsed): what the caller (record_rules) has already."""
    key = (r.order_id,)
    if installments is None:
        installments = [key + astuple(i) for i in r.installments]
    if transactions is None:
        transactions = [key + astuple(t) for t in r.transactions]
    p = r.product
    buyer = astuple(r.buyer)
    if buyer[-1] is None:  # the buyer's type: consumer unless the record says business
        buyer = (*buyer[:-1], "consumer")
    return OrderRows(
        (
            key[0],
            r.merchant_id,
            r.merchant_name,
            r.order_date,
            r.updated_at,
            r.status,
            r.currency,
            r.total_amount,
            p.id if p else None,
            p.name if p else None,
            r.payment_plan,
            r.payment_method,
        ),
        updated_at or _fromiso(r.updated_at),
        key + buyer,
        installments,
        transactions,
    )


_fromiso = datetime.fromisoformat
# The rows above rely on it: a Struct's fields in the order of its table's columns.
assert InstallmentRecord.__struct_fields__ == INSTALLMENT_COLUMNS[1:]
assert TransactionRecord.__struct_fields__ == TRANSACTION_COLUMNS[1:]
assert BuyerRecord.__struct_fields__[:-1] == BUYER_COLUMNS[1:-1]  # type: buyer_type
