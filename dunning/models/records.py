"""The order record contract (`contracts/order-record.schema.json`) as a pydantic v2 model.

`check_record(obj)` is the one entry point: it returns the validated `OrderRecord`, or a
`RecordError` that names the field (`installments[2].amount`) and the rule it broke.
Rules beyond the JSON schema, because the tables and the case rules need them:

- amounts are decimal strings, non-negative, at most two places, at most 12 integer digits
  (NUMERIC(14,2)); never JSON numbers (a float would silently lose cents);
- timestamps carry a UTC offset and lie between 2000-01-01 and a day after the run's
  `as_of` (a stamp far in the future would hide every later snapshot of the order); dates
  are ISO `YYYY-MM-DD` between 2000-01-01 and 2100-12-31;
- the buyer's `email` is exactly one bare address (it becomes a mail header: a list or a
  line break would send the letter elsewhere);
- strings fit their column and contain no NUL character (PostgreSQL cannot store one);
- installment numbers are unique; transaction ids are unique within the order;
- a sale's `installment_number` names an installment of the order;
- a refund or chargeback names, in `reverses_transaction_id`, a sale of the same order.

The sync checks most records on a faster path first (`dunning.models.record_fast_path`);
the rows a valid record becomes are in `dunning.models.record_rows`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

ORDER_STATUSES = ("active", "completed", "cancelled", "refunded")
PAYMENT_PLANS = ("one_time_payment", "breakdown_payment", "abonnement")
PAYMENT_METHODS = ("credit_card", "sepa", "sofort", "paypal", "invoice")
TRANSACTION_TYPES = ("sale", "refund", "chargeback")
BUYER_TYPES = ("consumer", "business")

AMOUNT_RE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
CURRENCY_RE = re.compile(r"[A-Z]{3}")
COUNTRY_RE = re.compile(r"[A-Z]{2}")
# An ISO timestamp with a mandatory offset: 2026-01-01T12:00:00(.123456)(Z|+01:00)
TIMESTAMP_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})"
)
# Plausible moments: records before 2000 or more than a day after the run are poison.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
FIRST_DATE, LAST_DATE = "2000-01-01", "2100-12-31"  # ISO dates compare as strings
# One bare address (RFC 5322 dot-atom, ASCII local part; domain labels may be IDN).
# No quoted local parts, comments, display names or lists: the address goes into To:.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?"
EMAIL_RE = re.compile(
    rf"(?=.{{3,254}}$)(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+"
    r"(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})"
)
# The ASCII subset of EMAIL_RE, twice as fast, for the fast path: what it doubts (an IDN
# domain) goes to pydantic like any other doubt. The length limits are checked beside it.
EMAIL_ASCII_RE = re.compile(
    rf"{_ATOM}(?:\.{_ATOM})*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.)+[A-Za-z]{{2,63}}"
)


def latest_moment(as_of: datetime | None = None) -> datetime:
    """The latest plausible record stamp: a day after the run's as_of (or the clock)."""
    return (as_of or datetime.now(UTC)) + FUTURE_SLACK


# --- field types -------------------------------------------------------------------------


def _amount(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "amount_type",
            "must be a decimal string such as '12.50', not {kind}",
            {"kind": type(value).__name__},
        )
    if not AMOUNT_RE.fullmatch(value):
        raise PydanticCustomError(
            "amount_format",
            "must be a non-negative decimal with at most 2 places and 12 digits before the "
            "point, such as '12.50'; got '{value}'",
            {"value": value[:40]},
        )
    return Decimal(value)


def _timestamp(value: Any, info: ValidationInfo) -> datetime:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "timestamp_type", "must be an ISO timestamp string, not {kind}", {"kind": _kind(value)}
        )
    if not TIMESTAMP_RE.fullmatch(value):
        raise PydanticCustomError(
            "timestamp_format",
            "must be an ISO timestamp with a UTC offset such as '2026-01-31T09:30:00+01:00'; "
            "got '{value}'",
            {"value": value[:40]},
        )
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "timestamp_value", "is not a real moment: '{value}'", {"value": value[:40]}
        ) from None
    latest = (info.context or {}).get("latest") or latest_moment()
    if not EARLIEST <= moment <= latest:
        raise PydanticCustomError(
            "timestamp_range",
            "must lie between 2000-01-01 and {latest} (a day after the run); got '{value}'",
            {"latest": latest.isoformat(timespec="seconds"), "value": value[:40]},
        )
    return moment


def _date(value: Any) -> date:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "date_type", "must be an ISO date string, not {kind}", {"kind": _kind(value)}
        )
    if not DATE_RE.fullmatch(value):
        raise PydanticCustomError(
            "date_format",
            "must be an ISO date such as '2026-01-31'; got '{value}'",
            {"value": value[:40]},
        )
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "date_value", "is not a real calendar date: '{value}'", {"value": value}
        ) from None
    if not FIRST_DATE <= value <= LAST_DATE:
        raise PydanticCustomError(
            "date_range",
            "must lie between 2000-01-01 and 2100-12-31; got '{value}'",
            {"value": value},
        )
    return day


def _email(value: str) -> str:
    if not EMAIL_RE.fullmatch(value):
        raise PydanticCustomError("email", email_problem(value))
    return value


def email_problem(value: str) -> str:
    """Why `value` is not one bare address; never quotes it (it is personal data)."""
    if any(c in value for c in ",;"):
        return "must be exactly one e-mail address, not a list"
    if "<" in value or ">" in value or '"' in value:
        return "must be the bare address (name@example.org), not a display-name form"
    if any(not c.isprintable() or c.isspace() for c in value):
        return "must be one e-mail address without spaces, line breaks or control characters"
    if len(value) > 254:
        return "is longer than an e-mail address can be (254 characters)"
    return "is not a valid e-mail address (name@example.org)"


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _country(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not COUNTRY_RE.fullmatch(value):
        raise PydanticCustomError(
            "country",
            "must be an ISO 3166-1 alpha-2 code such as 'DE'; got '{value}'",
            {"value": str(value)[:40]},
        )
    return value


def _text(max_length: int):
    return Annotated[str, Strict(), StringConstraints(max_length=max_length, pattern=r"^[^\x00]*$")]


def _id_text(max_length: int):
    return Annotated[
        str,
        Strict(),
        StringConstraints(min_length=1, max_length=max_length, pattern=r"^[^\x00]*$"),
    ]


Amount = Annotated[Decimal, BeforeValidator(_amount)]
Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
IsoDate = Annotated[date, BeforeValidator(_date)]
Country = Annotated[str | None, BeforeValidator(_country)]
StrictInt = Annotated[int, Strict(), Field(ge=1, le=1_000_000)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False, hide_input_in_errors=True)


class Product(_Record):
    id: _text(64) | None = None
    name: _text(300) | None = None


class BuyerRecord(_Record):
    first_name: _text(200)
    last_name: _text(200)
    email: Annotated[_text(320), AfterValidator(_email)]
    company_name: _text(200) | None = None
    street: _text(200) | None = None
    house_number: _text(32) | None = None
    zip_code: _text(16) | None = None
    city: _text(200) | None = None
    country_code: Country = None
    phone: _text(64) | None = None
    locale: _text(8) | None = None
    # consumer or business: decides the statutory interest points and the flat fee
    type: Literal["consumer", "business"] | None = None


class InstallmentRecord(_Record):
    number: StrictInt
    due_date: IsoDate
    amount: Amount


class TransactionRecord(_Record):
    transaction_id: _id_text(64)
    type: Literal["sale", "refund", "chargeback"]
    amount: Amount
    processed_at: Timestamp
    installment_number: StrictInt | None = None
    reverses_transaction_id: _text(64) | None = None
    fee: Amount | None = None
    reason_code: _text(32) | None = None


class OrderRecord(_Record):
    order_id: _id_text(64)
    merchant_id: _id_text(64)
    merchant_name: _text(200) | None = None
    order_date: Timestamp
    updated_at: Timestamp
    status: Literal["active", "completed", "cancelled", "refunded"]
    currency: Annotated[str, Strict(), StringConstraints(pattern=r"^[A-Z]{3}$")]
    total_amount: Amount
    product: Product | None = None
    payment_plan: Literal["one_time_payment", "breakdown_payment", "abonnement"]
    payment_method: Literal["credit_card", "sepa", "sofort", "paypal", "invoice"]
    buyer: BuyerRecord
    installments: Annotated[list[InstallmentRecord], Field(max_length=10_000)]
    transactions: Annotated[list[TransactionRecord], Field(max_length=10_000)]

    @model_validator(mode="after")
    def _cross_checks(self) -> OrderRecord:
        problem = cross_check(
            [i.number for i in self.installments],
            [
                (t.transaction_id, t.type, t.installment_number, t.reverses_transaction_id)
                for t in self.transactions
            ],
        )
        if problem is not None:
            field, message = problem
            raise PydanticCustomError(
                "cross_field", "{field}|{message}", {"field": field, "message": message}
            )
        return self


def cross_check(
    numbers: list[int], transactions: list[tuple[str, str, int | None, str | None]]
) -> tuple[str, str] | None:
    """Rules across the lists of one order; shared by pydantic and the fast path."""
    seen_numbers: set[int] = set()
    for i, number in enumerate(numbers):
        if number in seen_numbers:
            return f"installments[{i}].number", f"installment number {number} appears twice"
        seen_numbers.add(number)
    sales: set[str] = set()
    seen_ids: set[str] = set()
    for i, (tid, _, _, _) in enumerate(transactions):
        if tid in seen_ids:
            return f"transactions[{i}].transaction_id", f"duplicate transaction id {tid!r}"
        seen_ids.add(tid)
    for i, (tid, kind, number, _reverses) in enumerate(transactions):
        if number is not None and number not in seen_numbers:
            return (
                f"transactions[{i}].installment_number",
                f"names installment {number}, which the order does not have",
            )
        if kind == "sale":
            sales.add(tid)
    for i, (_tid, kind, _number, reverses) in enumerate(transactions):
        if kind != "sale":
            if not reverses:
                return (
                    f"transactions[{i}].reverses_transaction_id",
                    f"a {kind} must name the sale it reverses",
                )
            if reverses not in sales:
                return (
                    f"transactions[{i}].reverses_transaction_id",
                    f"{kind} reverses {reverses!r}, which is not a sale of this order",
                )
    return None


# --- the entry point ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordError:
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-before[_amount(), decimal]",) or str(part).startswith(
            ("function-", "literal[", "str", "int", "nullable[", "constrained-str")
        ):
            continue  # pydantic's internal union/validator steps, not a field
        else:
            out += f".{part}" if out else str(part)
    return out or "(record)"


def explain(exc: ValidationError) -> RecordError:
    """The first error of a pydantic failure, as (field path, readable reason)."""
    err = exc.errors(include_url=False, include_input=False)[0]
    if err["type"] == "cross_field":
        field, _, message = err["msg"].partition("|")
        return RecordError(field, message)
    field = _loc(err["loc"])
    msg = err["msg"]
    kind = err["type"]
    if kind == "missing":
        msg = "is required but missing"
    elif kind == "literal_error":
        msg = msg.replace("Input should be", "must be one of")
    elif kind == "string_pattern_mismatch" and "\\x00" in msg:
        msg = "contains a NUL character"
    elif kind == "string_pattern_mismatch" and field.endswith("currency"):
        msg = "must be an ISO 4217 code of three capital letters such as 'EUR'"
    elif kind in ("string_type", "model_type", "model_attributes_type", "list_type"):
        msg = f"has the wrong type: {msg[0].lower()}{msg[1:]}"
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    return RecordError(field, msg)


def check_record(obj: Any, latest: datetime | None = None) -> OrderRecord | RecordError:
    """Validate one parsed JSON value against the contract (`latest`: `latest_moment()`)."""
    if not isinstance(obj, dict):
        return RecordError("(record)", f"must be a JSON object, not {_json_kind(obj)}")
    try:
        return OrderRecord.model_validate(obj, context={"latest": latest or latest_moment()})
    except ValidationError as exc:
        return explain(exc)


def _json_kind(obj: Any) -> str:
    return {
        list: "an array",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        type(None): "null",
    }.get(type(obj), type(obj).__name__)
