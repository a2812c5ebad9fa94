"""The order record contract (`contracts/order-record.schema.json`) as msgspec Structs.

This is the one definition: msgspec decodes a JSON line (or converts a parsed value) into
`OrderRecord` and checks types, lengths and enums in C. Formats (stamps, addresses,
amounts, dates, codes; defined here) and what a type cannot say are checked by
`dunning.models.record_rules` after decoding; `dunning.models.record_check` is the
entry point and `dunning.models.record_errors` words a refusal as (field path, rule).
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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from msgspec import Meta, Struct

# Plausible moments: records before 2000 or more than a day after the run are poison.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
FIRST_DATE, LAST_DATE = "2000-01-01", "2100-12-31"  # ISO dates compare as strings
MAX_ITEMS = 10_000  # installments or transactions per order

# One bare address (RFC 5322 dot-atom, ASCII local part; domain labels may be IDN).
# No quoted local parts, comments, display names or lists: the address goes into To:.
MAX_EMAIL, MAX_LOCAL_PART = 254, 64
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?"
_LOCAL_RE = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_DOMAIN_RE = re.compile(rf"(?:{_LABEL}\.)+(?:[^\W\d_]{{2,63}}|xn--[a-z0-9-]{{1,59}})")
# Domains repeat across buyers: one proven costs a set lookup instead of the pattern.
_DOMAINS: set[str] = set()


def is_email(value: str) -> bool:
    """One bare address: a local part of dot-separated atoms, one @, a domain of labels."""
    local, _, domain = value.partition("@")  # neither part may hold an @
    if len(value) > MAX_EMAIL or not 0 < len(local) <= MAX_LOCAL_PART:
        return False
    if domain not in _DOMAINS:
        if not _DOMAIN_RE.fullmatch(domain):
            return False
        if len(_DOMAINS) < 100_000:  # bounded, never emptied
            _DOMAINS.add(domain)
    return _LOCAL_RE.fullmatch(local) is not None


# An ISO timestamp with a mandatory offset, 2026-01-31T09:30(:00(.123456))(Z|+01:00|+0100):
# every form accepted, each digit written as 0. A stamp's form is found by one translate in
# C, at half the cost of a regular expression (stamps are unique, none can be remembered).
TIMESTAMP_FORMS = frozenset(
    f"0000-00-00{sep}00:00{seconds}{offset}".encode()
    for sep in "T "
    for seconds in ("", ":00", *(":00." + "0" * n for n in range(1, 7)))
    for offset in ("Z", "+00:00", "-00:00", "+0000", "-0000")
)
DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)


def is_timestamp_form(value: str) -> bool:
    """The stamp is written in one of TIMESTAMP_FORMS (whether it is a real moment is
    record_rules' question)."""
    try:
        return value.encode().translate(DIGITS_AS_ZERO) in TIMESTAMP_FORMS
    except UnicodeEncodeError:  # a lone surrogate
        return False


def latest_moment(as_of: datetime | None = None) -> datetime:
    """The latest plausible record stamp: a day after the run's as_of (or the clock)."""
    return (as_of or datetime.now(UTC)) + FUTURE_SLACK


def email_problem(value: str) -> str:
    """Why `value` is not one bare address; never quotes it (it is personal data)."""
    if any(c in value for c in ",;"):
        return "must be exactly one e-mail address, not a list"
    if "<" in value or ">" in value or '"' in value:
        return "must be the bare address (name@example.org), not a display-name form"
    if any(not c.isprintable() or c.isspace() for c in value):
        return "must be one e-mail address without spaces, line breaks or control characters"
    if len(value) > MAX_EMAIL:
        return f"is longer than an e-mail address can be ({MAX_EMAIL} characters)"
    return "is not a valid e-mail address (name@example.org)"


# --- field types: each with the rule a refusal names --------------------------------------
# `description` is the rule as the quarantine words it; `extra["quote"]` says whether the
# refused value may be quoted beside it (never personal data). The formats are checked by
# record_rules after decoding, not as msgspec patterns: msgspec calls Python's re for every
# value, and amounts, dates and codes repeat across orders (record_rules remembers the
# values already proven), while stamps and addresses have cheaper checks (above).

AMOUNT_RE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")
AMOUNT_RULE = (
    "must be a non-negative decimal string with at most 2 places and 12 digits before the "
    "point, such as '12.50'"
)
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DATE_RULE = "must be an ISO date such as '2026-01-31'"
COUNTRY_RE = re.compile(r"[A-Z]{2}")
COUNTRY_RULE = "must be an ISO 3166-1 alpha-2 code such as 'DE'"
CURRENCY_RE = re.compile(r"[A-Z]{3}")
CURRENCY_RULE = "must be an ISO 4217 code of three capital letters such as 'EUR'"

Amount = Annotated[str, Meta(description=AMOUNT_RULE, extra={"quote": True})]
TIMESTAMP_RULE = "must be an ISO timestamp with a UTC offset such as '2026-01-31T09:30:00+01:00'"
# kept as received; its form and its range (against the run) are checked after decoding
Timestamp = Annotated[str, Meta(description=TIMESTAMP_RULE, extra={"quote": True})]
# YYYY-MM-DD of a real day between FIRST_DATE and LAST_DATE (record_rules)
IsoDate = Annotated[str, Meta(description=DATE_RULE, extra={"quote": True})]
# is_email after decoding; email_problem words a refusal
Email = Annotated[
    str,
    Meta(description="must be one bare e-mail address (name@example.org)", extra={"quote": False}),
]
Country = Annotated[str, Meta(description=COUNTRY_RULE, extra={"quote": True})]
Currency = Annotated[str, Meta(description=CURRENCY_RULE, extra={"quote": False})]
Number = Annotated[int, Meta(ge=1, le=1_000_000)]


def _text(max_length: int):  # NUL characters: see record_rules
    return Annotated[str, Meta(max_length=max_length)]


def _id(max_length: int):
    return Annotated[str, Meta(min_length=1, max_length=max_length)]


# gc=False: records hold no cycles, so the collector need not track millions of them.
class _Record(Struct, gc=False):
    pass


class Product(_Record):
    id: _text(64) | None = None
    name: _text(300) | None = None


class BuyerRecord(_Record):  # fields in the order of the buyer row (record_rows)
    first_name: _text(200)
    last_name: _text(200)
    email: Email
    company_name: _text(200) | None = None
    street: _text(200) | None = None
    house_number: _text(32) | None = None
    zip_code: _text(16) | None = None
    city: _text(200) | None = None
    country_code: Country | None = None
    phone: _text(64) | None = None
    locale: _text(8) | None = None
    # consumer (also when absent) or business: statutory interest points and the flat fee
    type: Literal["consumer", "business"] | None = None


class InstallmentRecord(_Record):
    number: Number
    due_date: IsoDate
    amount: Amount


class TransactionRecord(_Record):  # fields in the order of the transaction row
    transaction_id: _id(64)
    type: Literal["sale", "refund", "chargeback"]
    amount: Amount
    processed_at: Timestamp
    installment_number: Number | None = None
    reverses_transaction_id: _text(64) | None = None
    fee: Amount | None = None
    reason_code: _text(32) | None = None


class OrderRecord(_Record, kw_only=True):  # required fields after optional ones
    order_id: _id(64)
    merchant_id: _id(64)
    merchant_name: _text(200) | None = None
    order_date: Timestamp
    updated_at: Timestamp
    status: Literal["active", "completed", "cancelled", "refunded"]
    currency: Currency
    total_amount: Amount
    product: Product | None = None
    payment_plan: Literal["one_time_payment", "breakdown_payment", "abonnement"]
    payment_method: Literal["credit_card", "sepa", "sofort", "paypal", "invoice"]
    buyer: BuyerRecord
    installments: Annotated[list[InstallmentRecord], Meta(max_length=MAX_ITEMS)]
    transactions: Annotated[list[TransactionRecord], Meta(max_length=MAX_ITEMS)]


@dataclass(frozen=True, slots=True)
class RecordError:
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"
