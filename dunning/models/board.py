"""The case board: filters -> a SELECT with bound parameters, CSV/JSON writers, masking.

Pure: no engine, no session, no Prefect. The same `BoardFilter` drives the CLI, the CSV
export flow and anything an analyst scripts.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Select, and_, select

from dunning.models.controls import escape_controls, escape_json_text
from dunning.models.enums import IN_PROGRESS_STATES, CaseState
from dunning.models.schema import REPORT_COLUMNS, CaseReport

IN_PROGRESS = "in_progress"
STATUS_CHOICES = (IN_PROGRESS, *(s.value for s in CaseState))
StatusChoice = Literal[STATUS_CHOICES]  # an enum in the deployment's form
Dialect = Literal["excel-de", "rfc4180"]
DIALECTS: tuple[str, ...] = ("excel-de", "rfc4180")
LIKE_ESCAPE = "\\"

MONEY_COLUMNS = frozenset(
    {
        "outstanding_amount",
        "order_amount",
        "paid_amount",
        "cancellation_costs",
        "fees_amount",
        "interest_amount",
    }
)
TIME_COLUMNS = frozenset({"opened_at", "last_step_at", "next_step_at", "refreshed_at"})

GERMAN_HEADERS: dict[str, str] = {
    "case_id": "Fall-Nr.",
    "merchant_id": "Händler",
    "order_id": "Bestellnummer",
    "first_name": "Vorname",
    "last_name": "Nachname",
    "payment_plan": "Zahlungsplan",
    "payment_method": "Zahlungsart",
    "kind": "Art",
    "state": "Status (Code)",
    "state_label": "Status",
    "overdue_days": "Tage überfällig",
    "outstanding_amount": "Offener Betrag",
    "order_amount": "Bestellbetrag",
    "paid_amount": "Bezahlt",
    "cancellation_costs": "Stornokosten",
    "fees_amount": "Gebühren",
    "interest_amount": "Zinsen",
    "dunning_option": "Mahnoption",
    "currency": "Währung",
    "opened_at": "Eröffnet am",
    "last_step_at": "Letzter Schritt",
    "next_step_at": "Nächster Schritt",
    "partner_reference": "Aktenzeichen Inkasso",
    "blocked_reason": "Grund der Blockierung",
    "waiting_reason": "Wartet auf",
    "refreshed_at": "Stand",
}
assert tuple(GERMAN_HEADERS) == REPORT_COLUMNS


class BoardFilterError(ValueError):
    """A filter value the user gave that cannot work; the message is one line."""


class BoardFilter(BaseModel):
    """Board filters: state or in progress, opened within [opened_from, opened_to] (local
    dates, inclusive), outstanding amount within [min_amount, max_amount], free-text search
    over order id, first and last name, and one merchant."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: StatusChoice | None = Field(
        None, description="A state of the case, or in_progress for every open one."
    )
    opened_from: date | None = Field(None, description="Opened on or after this local date.")
    opened_to: date | None = Field(None, description="Opened on or before this local date.")
    min_amount: Decimal | None = Field(None, description="Outstanding at least this, in EUR.")
    max_amount: Decimal | None = Field(None, description="Outstanding at most this, in EUR.")
    search: str | None = Field(
        None, description="Text found in the order id, the buyer's first or last name."
    )
    merchant_id: str | None = Field(None, description="Only this merchant's cases.")

    @field_validator("status", mode="before")
    @classmethod
    def _known_status(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.strip().lower().replace("-", "_")
        if value not in STATUS_CHOICES:
            raise ValueError(f"unknown status {value!r}; use one of {', '.join(STATUS_CHOICES)}")
        return value

    @field_validator("min_amount", "max_amount")
    @classmethod
    def _non_negative(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and (not value.is_finite() or value < 0):
            raise ValueError("an amount must be a finite number >= 0")
        return value

    @field_validator("search", "merchant_id")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return value.strip()

    @model_validator(mode="after")
    def _ranges(self) -> BoardFilter:
        if self.opened_from and self.opened_to and self.opened_from > self.opened_to:
            raise ValueError(f"--from {self.opened_from} is after --to {self.opened_to}")
        if (
            self.min_amount is not None
            and self.max_amount is not None
            and self.min_amount > self.max_amount
        ):
            raise ValueError(
                f"--min-amount {self.min_amount} is above --max-amount {self.max_amount}"
            )
        return self

    @classmethod
    def parse(
        cls,
        *,
        status: str | None = None,
        opened_from: str | None = None,
        opened_to: str | None = None,
        min_amount: str | None = None,
        max_amount: str | None = None,
        search: str | None = None,
        merchant_id: str | None = None,
    ) -> BoardFilter:
        """From user text (CLI); raises BoardFilterError with one clear line."""
        try:
            return cls(
                status=status,
                opened_from=parse_date(opened_from, "--from"),
                opened_to=parse_date(opened_to, "--to"),
                min_amount=parse_amount(min_amount, "--min-amount"),
                max_amount=parse_amount(max_amount, "--max-amount"),
                search=search,
                merchant_id=merchant_id,
            )
        except BoardFilterError:
            raise
        except ValueError as exc:  # pydantic ValidationError is a ValueError
            raise BoardFilterError(_first_error(exc)) from None

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.model_dump(exclude_none=True, mode="json").items()]
        return ", ".join(parts) or "all cases"


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        msg = str(first.get("msg", exc)).removeprefix("Value error, ")
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return f"{loc}: {msg}" if loc and not msg.startswith("--") else msg
    return str(exc)


def parse_date(text: str | None, option: str) -> date | None:
    if text is None or not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BoardFilterError(f"{option} {text!r} is not a date; use YYYY-MM-DD") from None


def parse_amount(text: str | None, option: str) -> Decimal | None:
    """`12.50`, `12,50`, `1.234,50` or `1,234.50` -> Decimal."""
    if text is None or not text.strip():
        return None
    raw = text.strip().replace(" ", "").replace("€", "")
    if "," in raw and "." in raw:
        raw = (
            raw.replace(".", "").replace(",", ".")
            if raw.rfind(",") > raw.rfind(".")
            else (raw.replace(",", ""))
        )
    else:
        raw = raw.replace(",", ".")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise BoardFilterError(f"{option} {text!r} is not an amount; e.g. 12.50") from None
    if not value.is_finite() or value < 0:
        raise BoardFilterError(f"{option} {text!r} must be an amount >= 0")
    return value


def escape_like(text: str) -> str:
    """Escape LIKE wildcards so `%` and `_` match themselves (ESCAPE '\\')."""
    return (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )


def search_pattern(text: str) -> str:
    """The bound LIKE pattern for a search term (folded like case_report.search_text)."""
    return f"%{escape_like(text.lower())}%"


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def board_conditions(f: BoardFilter, zone: ZoneInfo) -> list[Any]:
    r = CaseReport
    where: list[Any] = []
    if f.status == IN_PROGRESS:
        where.append(r.state.in_(sorted(s.value for s in IN_PROGRESS_STATES)))
    elif f.status is not None:
        where.append(r.state == f.status)
    if f.opened_from is not None:
        where.append(r.opened_at >= _day_start(f.opened_from, zone))
    if f.opened_to is not None:
        where.append(r.opened_at < _day_start(f.opened_to + timedelta(days=1), zone))
    if f.min_amount is not None:
        where.append(r.outstanding_amount >= f.min_amount)
    if f.max_amount is not None:
        where.append(r.outstanding_amount <= f.max_amount)
    if f.merchant_id is not None:
        where.append(r.merchant_id == f.merchant_id)
    if f.search is not None:
        where.append(r.search_text.like(search_pattern(f.search), escape=LIKE_ESCAPE))
    return where


def board_select(
    f: BoardFilter, zone: ZoneInfo | str = "Europe/Berlin", limit: int | None = None
) -> Select:
    """The board's rows: REPORT_COLUMNS, filtered, newest opened first; parameters bound."""
    zone = ZoneInfo(zone) if isinstance(zone, str) else zone
    stmt = select(*[getattr(CaseReport, c) for c in REPORT_COLUMNS])
    conditions = board_conditions(f, zone)
    if conditions:
        stmt = stmt.where(and_(*conditions))
    stmt = stmt.order_by(CaseReport.opened_at.desc(), CaseReport.case_id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt


def board_count(f: BoardFilter, zone: ZoneInfo | str = "Europe/Berlin") -> Select:
    from sqlalchemy import func

    zone = ZoneInfo(zone) if isinstance(zone, str) else zone
    stmt = select(func.count()).select_from(CaseReport)
    conditions = board_conditions(f, zone)
    return stmt.where(and_(*conditions)) if conditions else stmt


# --- values out: JSON and CSV ---------------------------------------------------------------


def json_value(column: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def rows_as_json(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{c: json_value(c, row[c]) for c in REPORT_COLUMNS} for row in rows]


def write_json(rows: Iterable[Mapping[str, Any]], out: IO[str]) -> int:
    data = rows_as_json(rows)
    out.write(escape_json_text(json.dumps(data, ensure_ascii=False, indent=2)))
    out.write("\n")
    return len(data)


DANGEROUS_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """A cell a spreadsheet would read as a formula gets a leading single quote."""
    return "'" + text if text.startswith(DANGEROUS_PREFIXES) else text


def csv_cell(value: Any, dialect: Dialect, zone: ZoneInfo) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        text = f"{value:.2f}"
        return text.replace(".", ",") if dialect == "excel-de" else text
    if isinstance(value, datetime):
        if dialect == "excel-de":
            return value.astimezone(zone).strftime("%d.%m.%Y %H:%M")
        return value.isoformat()
    if isinstance(value, bool | int):
        return str(value)
    # ESC and C1 in a name would act on a terminal showing the CSV; a spreadsheet has no use
    # for them either. Line breaks and tabs are CSV's to quote.
    return neutralise(escape_controls(str(value), keep="\t\n\r"))


def csv_options(dialect: Dialect) -> dict[str, Any]:
    if dialect == "excel-de":
        return {"delimiter": ";", "quotechar": '"', "lineterminator": "\r\n"}
    if dialect == "rfc4180":
        return {"delimiter": ",", "quotechar": '"', "lineterminator": "\r\n"}
    raise BoardFilterError(f"unknown CSV dialect {dialect!r}; use excel-de or rfc4180")


def csv_encoding(dialect: Dialect) -> str:
    """excel-de: UTF-8 with BOM, so Excel reads umlauts right; rfc4180: plain UTF-8."""
    return "utf-8-sig" if dialect == "excel-de" else "utf-8"


def write_csv(
    rows: Iterable[Mapping[str, Any]],
    out: IO[str],
    dialect: Dialect = "excel-de",
    zone: ZoneInfo | str = "Europe/Berlin",
) -> int:
    """Write the rows to a text stream opened with newline='' and `csv_encoding(dialect)`.

    Headers: German under excel-de, the column names under rfc4180. Returns the row count.
    """
    zone = ZoneInfo(zone) if isinstance(zone, str) else zone
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, **csv_options(dialect))
    headers = (
        [GERMAN_HEADERS[c] for c in REPORT_COLUMNS]
        if dialect == "excel-de"
        else list(REPORT_COLUMNS)
    )
    writer.writerow(headers)
    count = 0
    for row in rows:
        writer.writerow([csv_cell(row[c], dialect, zone) for c in REPORT_COLUMNS])
        count += 1
    return count


# --- masking for logs and artifacts ---------------------------------------------------------

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)


def mask_email(email: str | None) -> str:
    """erika@example.org -> e***@e***.org"""
    if not email:
        return ""
    local, _, domain = email.partition("@")
    if not domain:
        return "***"
    host, _, tld = domain.rpartition(".")
    return f"{local[:1]}***@{(host or tld)[:1]}***.{tld if host else ''}".rstrip(".")


def mask_street(street: str | None) -> str:
    """Heidestraße 17 -> H***"""
    return f"{street.strip()[:1]}***" if street and street.strip() else ""


def mask_name(first_name: str | None, last_name: str | None = None) -> str:
    """Erika Mustermann -> Erika M. (first name and initial: enough to tell cases apart)."""
    first = neutralise((first_name or "").strip())
    last = (last_name or "").strip()
    if len(first) > 20:
        first = first[:20] + "…"
    return f"{first} {last[:1]}.".strip() if last else first


def mask_text(text: str | None) -> str:
    """Free text (a partner's error message): e-mail addresses masked."""
    if not text:
        return ""
    return _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
