"""The rules of the order record contract that a type cannot say, checked after decoding.

`broken_rule` returns the first broken rule as a `RecordError` naming its field, or None:
no NUL character in any string, stamps and dates within their bounds, and the rules
across the lists of one order (unique numbers and ids, references that resolve).
"""

from __future__ import annotations

from datetime import datetime

from dunning.models.records import (
    EARLIEST,
    FIRST_DATE,
    LAST_DATE,
    OrderRecord,
    RecordError,
)

_fromiso = datetime.fromisoformat


def broken_rule(r: OrderRecord, latest: datetime, nul_free: bool = False) -> RecordError | None:
    """`nul_free`: the caller proved no string holds a NUL (a JSON line without the escape
    `\\u0000` cannot), which spares a look at every string. `latest`: `latest_moment()`."""
    if not nul_free:
        field = _nul_field(r)
        if field is not None:
            return RecordError(field, "contains a NUL character")
    problem = _moment("order_date", r.order_date, latest) or _moment(
        "updated_at", r.updated_at, latest
    )
    if problem is not None:
        return problem
    numbers: set[int] = set()
    for i, inst in enumerate(r.installments):
        if not FIRST_DATE <= inst.due_date <= LAST_DATE:
            return RecordError(
                f"installments[{i}].due_date",
                f"must lie between 2000-01-01 and 2100-12-31; got '{inst.due_date}'",
            )
        if inst.number in numbers:
            return RecordError(
                f"installments[{i}].number", f"installment number {inst.number} appears twice"
            )
        numbers.add(inst.number)
    for i, t in enumerate(r.transactions):
        problem = _moment(f"transactions[{i}].processed_at", t.processed_at, latest)
        if problem is not None:
            return problem
    return _cross_transactions(r, numbers)


def _cross_transactions(r: OrderRecord, numbers: set[int]) -> RecordError | None:
    ids: set[str] = set()
    sales: set[str] = set()
    for i, t in enumerate(r.transactions):
        if t.transaction_id in ids:
            return RecordError(
                f"transactions[{i}].transaction_id",
                f"duplicate transaction id {t.transaction_id!r}",
            )
        ids.add(t.transaction_id)
        if t.type == "sale":
            sales.add(t.transaction_id)
    for i, t in enumerate(r.transactions):
        n = t.installment_number
        if n is not None and n not in numbers:
            return RecordError(
                f"transactions[{i}].installment_number",
                f"names installment {n}, which the order does not have",
            )
    for i, t in enumerate(r.transactions):
        if t.type != "sale":
            reverses = t.reverses_transaction_id
            field = f"transactions[{i}].reverses_transaction_id"
            if not reverses:
                return RecordError(field, f"a {t.type} must name the sale it reverses")
            if reverses not in sales:
                return RecordError(
                    field, f"{t.type} reverses {reverses!r}, which is not a sale of this order"
                )
    return None


def _moment(field: str, value: str, latest: datetime) -> RecordError | None:
    try:
        moment = _fromiso(value)
    except ValueError:  # the pattern took it, the calendar does not (a 13th month)
        return RecordError(field, f"is not a real moment: '{value}'")
    if EARLIEST <= moment <= latest:
        return None
    return RecordError(
        field,
        f"must lie between 2000-01-01 and {latest.isoformat(timespec='seconds')} "
        f"(a day after the run); got '{value}'",
    )


def _nul_field(r: OrderRecord) -> str | None:
    """The first free-text field holding a NUL (the patterned ones refuse it already)."""
    for name in ("order_id", "merchant_id", "merchant_name"):
        if _has_nul(getattr(r, name)):
            return name
    if r.product is not None:
        for name in ("id", "name"):
            if _has_nul(getattr(r.product, name)):
                return f"product.{name}"
    b = r.buyer
    for name in b.__struct_fields__:
        if _has_nul(getattr(b, name)):
            return f"buyer.{name}"
    for i, t in enumerate(r.transactions):
        for name in ("transaction_id", "reverses_transaction_id", "reason_code"):
            if _has_nul(getattr(t, name)):
                return f"transactions[{i}].{name}"
    return None


def _has_nul(value: object) -> bool:
    return type(value) is str and "\x00" in value
