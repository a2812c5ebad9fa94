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
    """In the order of the record's fields. `nul_free`: the caller proved no string holds a
    NUL (a JSON line without the escape `\\u0000` cannot), which spares a look at every
    string. `latest`: `latest_moment()` of the run."""
    if not nul_free:
        field = _nul_field(r)
        if field is not None:
            return RecordError(field, "contains a NUL character")
    for name, value in (("order_date", r.order_date), ("updated_at", r.updated_at)):
        if not _plausible(value, latest):
            return RecordError(name, _moment(value, latest))
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
    dates = _DATES
    numbers: set[int] = set()
    for i, inst in enumerate(r.installments):
        if inst.due_date not in dates and (problem := _date(i, inst.due_date)):
            return problem
        amount = inst.amount
        if amount not in amounts and (problem := _amount(f"installments[{i}].amount", amount)):
            return problem
        if inst.number in numbers:
            return RecordError(
                f"installments[{i}].number", f"installment number {inst.number} appears twice"
            )
        numbers.add(inst.number)
    ids: set[str] = set()
    sales: set[str] = set()
    reversals: list[int] = []
    for i, t in enumerate(r.transactions):
        amount, fee = t.amount, t.fee
        if amount not in amounts and (problem := _amount(f"transactions[{i}].amount", amount)):
            return problem
        if fee is not None and (problem := _amount(f"transactions[{i}].fee", fee)):
            return problem
        if not _plausible(t.processed_at, latest):
            return RecordError(f"transactions[{i}].processed_at", _moment(t.processed_at, latest))
        tid = t.transaction_id
        if tid in ids:
            return RecordError(
                f"transactions[{i}].transaction_id", f"duplicate transaction id {tid!r}"
            )
        ids.add(tid)
        if t.type == "sale":
            sales.add(tid)
        else:
            reversals.append(i)
        n = t.installment_number
        if n is not None and n not in numbers:
            return RecordError(
                f"transactions[{i}].installment_number",
                f"names installment {n}, which the order does not have",
            )
    return _reversal(r, reversals, sales) if reversals else None


def _reversal(r: OrderRecord, reversals: list[int], sales: set[str]) -> RecordError | None:
    """A refund or chargeback names a sale of the same order."""
    for i in reversals:
        t = r.transactions[i]
        reverses = t.reverses_transaction_id
        field = f"transactions[{i}].reverses_transaction_id"
        if not reverses:
            return RecordError(field, f"a {t.type} must name the sale it reverses")
        if reverses not in sales:
            return RecordError(
                field, f"{t.type} reverses {reverses!r}, which is not a sale of this order"
            )
    return None


def _plausible(value: str, latest: datetime) -> bool:
    """A stamp in a form the contract accepts, of a real moment within the bounds."""
    try:
        return (
            value.encode().translate(DIGITS_AS_ZERO) in TIMESTAMP_FORMS
            and EARLIEST <= _fromiso(value) <= latest
        )
    except ValueError:  # a lone surrogate (UnicodeEncodeError), a 13th month
        return False


def _moment(value: str, latest: datetime) -> str | None:
    """Why a stamp is no plausible moment, or None."""
    if not is_timestamp_form(value):
        return f"{TIMESTAMP_RULE}; got '{value[:40]}'"
    try:
        moment = _fromiso(value)
    except ValueError:  # the pattern took it, the calendar does not (a 13th month)
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
