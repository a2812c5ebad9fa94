"""The rules of the order record contract that the Structs do not check, after decoding.

`broken_rule` returns the first broken rule as a `RecordError` naming its field, or None:
no NUL character in any string; stamps, addresses, amounts, dates and codes in their
format (as `dunning.models.records` defines it); stamps and dates within their bounds;
and the rules across the lists of one order (unique numbers and ids, references that
resolve).
"""

from __future__ import annotations

import re
from datetime import date, datetime

from msgspec.structs import astuple

from dunning.models.record_rows import OrderRows, rows_of
from dunning.models.records import (
    AMOUNT_RE,
    AMOUNT_RULE,
    COUNTRY_RE,
    COUNTRY_RULE,
    CURRENCY_RE,
    CURRENCY_RULE,
    DATE_RE,
    DATE_RULE,
    DIGITS_AS_ZERO,
    EARLIEST,
    FIRST_DATE,
    LAST_DATE,
    TIMESTAMP_FORMS,
    TIMESTAMP_RULE,
    OrderRecord,
    RecordError,
    email_problem,
    is_email,
    is_timestamp_form,
)

_fromiso = datetime.fromisoformat
# Values proven to follow their pattern: amounts, due dates and codes repeat across orders,
# and looking one up costs a fraction of matching it again. Bounded, never emptied.
_AMOUNTS: set[str] = set()
_DATES: set[str] = set()
_COUNTRIES: set[str] = set()
_CURRENCIES: set[str] = set()
_PROVEN_MAX = 100_000


def broken_rule(r: OrderRecord, latest: datetime, nul_free: bool = False) -> RecordError | None:
    """The first broken rule, in the order of the record's fields, or None. `nul_free`: the
    caller proved no string holds a NUL (a JSON line without the escape `\\u0000` cannot),
    which spares a look at every string. `latest`: `latest_moment()` of the run."""
    found = rows_or_broken_rule(r, latest, nul_free)
    return found if type(found) is RecordError else None


def rows_or_broken_rule(
    r: OrderRecord, latest: datetime, nul_free: bool = False
) -> OrderRows | RecordError:
    """The record's rows (`OrderRows`) when every rule holds, else the first broken rule
    (see `broken_rule`). The walk over the installments and transactions gathers their
    rows on its way: a second pass to build them cost nearly as much as the rules."""
    if not nul_free:
        field = _nul_field(r)
        if field is not None:
            return RecordError(field, "contains a NUL character")
    if _plausible(r.order_date, latest) is None:
        return RecordError("order_date", _moment(r.order_date, latest))
    updated_at = _plausible(r.updated_at, latest)
    if updated_at is None:
        return RecordError("updated_at", _moment(r.updated_at, latest))
    amounts = _AMOUNTS
    if r.currency not in _CURRENCIES and (
        problem := _code("currency", r.currency, _CURRENCIES, CURRENCY_RE, CURRENCY_RULE, False)
    ):
        return problem
    if r.total_amount not in amounts and (problem := _amount("total_amount", r.total_amount)):
        return problem
    buyer = r.buyer
    if not is_email(buyer.email):
        return RecordError("buyer.email", email_problem(buyer.email))
    country = buyer.country_code
    if country is not None and country not in _COUNTRIES:
        problem = _code("buyer.country_code", country, _COUNTRIES, COUNTRY_RE, COUNTRY_RULE)
        if problem is not None:
            return problem
    key = (r.order_id,)  # a child's row: the order id, then its Struct's fields
    dates = _DATES
    numbers: set[int] = set()
    installments: list[tuple] = []
    for i, inst in enumerate(r.installments):
        row = key + astuple(inst)
        _, number, due, amount = row
        if due not in dates and (problem := _date(i, due)):
            return problem
        if amount not in amounts and (problem := _amount(f"installments[{i}].amount", amount)):
            return problem
        if number in numbers:
            return RecordError(
                f"installments[{i}].number", f"installment number {number} appears twice"
            )
        numbers.add(number)
        installments.append(row)
    ids: set[str] = set()
    reverses = False
    transactions: list[tuple] = []
    for i, t in enumerate(r.transactions):
        row = key + astuple(t)
        _, tid, kind, amount, moment, n, _, fee, _ = row
        if amount not in amounts and (problem := _amount(f"transactions[{i}].amount", amount)):
            return problem
        if fee is not None and (problem := _amount(f"transactions[{i}].fee", fee)):
            return problem
        if _plausible(moment, latest) is None:
            return RecordError(f"transactions[{i}].processed_at", _moment(moment, latest))
        if tid in ids:
            return RecordError(
                f"transactions[{i}].transaction_id", f"duplicate transaction id {tid!r}"
            )
        ids.add(tid)
        if kind != "sale":
            reverses = True
        if n is not None and n not in numbers:
            return RecordError(
                f"transactions[{i}].installment_number",
                f"names installment {n}, which the order does not have",
            )
        transactions.append(row)
    if reverses and (problem := _reversal(r)):
        return problem
    return rows_of(r, installments, transactions, updated_at)


def _reversal(r: OrderRecord) -> RecordError | None:
    """A refund or chargeback names a sale of the same order."""
    sales = {t.transaction_id for t in r.transactions if t.type == "sale"}
    for i, t in enumerate(r.transactions):
        if t.type == "sale":
            continue
        reverses = t.reverses_transaction_id
        field = f"transactions[{i}].reverses_transaction_id"
        if not reverses:
            return RecordError(field, f"a {t.type} must name the sale it reverses")
        if reverses not in sales:
            return RecordError(
                field, f"{t.type} reverses {reverses!r}, which is not a sale of this order"
            )
    return None


def _plausible(value: str, latest: datetime) -> datetime | None:
    """The moment of a stamp in a form the contract accepts, real and within the bounds;
    else None (`_moment` says why)."""
    try:
        if value.encode().translate(DIGITS_AS_ZERO) in TIMESTAMP_FORMS:
            moment = _fromiso(value)
            if EARLIEST <= moment <= latest:
                return moment
    except ValueError:  # a lone surrogate (UnicodeEncodeError), a 13th month
        pass
    return None


def _moment(value: str, latest: datetime) -> str | None:
    """Why a stamp is no plausible moment, or None."""
    if not is_timestamp_form(value):
        return f"{TIMESTAMP_RULE}; got '{value[:40]}'"
    try:
        moment = _fromiso(value)
    except ValueError:  # the form is right, the calendar is not (a 13th month)
        return f"is not a real moment: '{value}'"
    if EARLIEST <= moment <= latest:
        return None
    return (
        f"must lie between 2000-01-01 and {latest.isoformat(timespec='seconds')} "
        f"(a day after the run); got '{value}'"
    )


def _amount(field: str, value: str) -> RecordError | None:
    if value in _AMOUNTS:
        return None
    if AMOUNT_RE.fullmatch(value):
        if len(_AMOUNTS) < _PROVEN_MAX:
            _AMOUNTS.add(value)
        return None
    return RecordError(field, f"{AMOUNT_RULE}; got '{value[:40]}'")


def _date(i: int, value: str) -> RecordError | None:
    field = f"installments[{i}].due_date"
    if not DATE_RE.fullmatch(value):
        return RecordError(field, f"{DATE_RULE}; got '{value[:40]}'")
    try:
        date.fromisoformat(value)
    except ValueError:
        return RecordError(field, f"is not a real calendar date: '{value}'")
    if not FIRST_DATE <= value <= LAST_DATE:
        return RecordError(field, f"must lie between 2000-01-01 and 2100-12-31; got '{value}'")
    if len(_DATES) < _PROVEN_MAX:
        _DATES.add(value)
    return None


def _code(
    field: str, value: str, proven: set[str], pattern: re.Pattern, rule: str, quote: bool = True
) -> RecordError | None:
    if value in proven:
        return None
    if pattern.fullmatch(value):
        if len(proven) < _PROVEN_MAX:
            proven.add(value)
        return None
    return RecordError(field, f"{rule}; got '{value[:40]}'" if quote else rule)


def _nul_field(r: OrderRecord) -> str | None:
    """The first free-text field holding a NUL (the formatted ones refuse it anyway)."""
    for name in ("order_id", "merchant_id", "merchant_name"):
        if _has_nul(getattr(r, name)):
            return name
    if r.product is not None:
        for name in ("id", "name"):
            if _has_nul(getattr(r.product, name)):
                return f"product.{name}"
    b = r.buyer
    for name in b.__struct_fields__:
        if name != "email" and _has_nul(getattr(b, name)):
            return f"buyer.{name}"
    for i, t in enumerate(r.transactions):
        for name in ("transaction_id", "reverses_transaction_id", "reason_code"):
            if _has_nul(getattr(t, name)):
                return f"transactions[{i}].{name}"
    return None


def _has_nul(value: object) -> bool:
    return type(value) is str and "\x00" in value
