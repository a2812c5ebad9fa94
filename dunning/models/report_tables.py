"""What analysts and the board read: the case board (`case_report`, a view over the table
`case_report_rows`), its daily snapshot, the pending log, the marks and the last update.

Issue dayrate: the table stores each case's default date (and, once closed, the local day
it closed); the view computes overdue_days from the board's day, so a new day rewrites no
row whose stored content did not change.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dunning.db.types import Money, UTCDateTime
from dunning.models.base import Base, BigId, JSONDoc, ViewBase

# SPEC §5 and waiting_reason, in this order: the keys of `dunning cases --format json`
# and the CSV columns.
REPORT_COLUMNS: tuple[str, ...] = (
    "case_id",
    "merchant_id",
    "order_id",
    "first_name",
    "last_name",
    "payment_plan",
    "payment_method",
    "kind",
    "state",
    "state_label",
    "overdue_days",
    "outstanding_amount",
    "order_amount",
    "paid_amount",
    "cancellation_costs",
    "fees_amount",
    "interest_amount",
    "dunning_option",
    "currency",
    "opened_at",
    "last_step_at",
    "next_step_at",
    "partner_reference",
    "blocked_reason",
    "waiting_reason",  # issue 16: why its due step waits on an outside system
    "refreshed_at",
)


class _BoardColumns:
    """The columns the table and the view share (all but overdue_days)."""

    case_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(String(64))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    payment_plan: Mapped[str] = mapped_column(String(24))
    payment_method: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(24))
    state_label: Mapped[str] = mapped_column(String(40))
    outstanding_amount: Mapped[Decimal] = mapped_column(Money())
    order_amount: Mapped[Decimal] = mapped_column(Money())
    paid_amount: Mapped[Decimal] = mapped_column(Money())
    cancellation_costs: Mapped[Decimal] = mapped_column(Money())
    fees_amount: Mapped[Decimal] = mapped_column(Money())
    interest_amount: Mapped[Decimal] = mapped_column(Money())
    dunning_option: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    partner_reference: Mapped[str | None] = mapped_column(String(64))
    blocked_reason: Mapped[str | None] = mapped_column(Text)
    waiting_reason: Mapped[str | None] = mapped_column(Text)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Issue 6: lower-cased "order_id first_name last_name" for the board's search (Unicode
    # lower() in Python on SQLite, where SQL lower() is ASCII-only). Not a SPEC §5 column.
    search_text: Mapped[str | None] = mapped_column(Text)


class CaseReportRow(_BoardColumns, Base):
    """The board's stored rows, written only by the refresh (dunning.tasks.report). Indexes
    keep the names they had while the table was called case_report (migration 0012)."""

    __tablename__ = "case_report_rows"
    __table_args__ = (
        Index("ix_case_report_state_opened_at", "state", "opened_at"),
        Index("ix_case_report_merchant_id_state", "merchant_id", "state"),
        Index("ix_case_report_order_id", "order_id"),
        Index("ix_case_report_outstanding_amount", "outstanding_amount"),
        # Issue 6: the board's period filter and newest-first order. Few indexes on
        # purpose: each one costs ~1/4 of a rebuild at 1M orders.
        Index("ix_case_report_opened_at", "opened_at"),
        # Issue 17: `search_text LIKE '%term%'` served by a trigram index on PostgreSQL.
        Index(
            "ix_case_report_search_text_trgm",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    # Earliest unpaid due date (overdue) or chargeback date: the day the count starts.
    default_date: Mapped[date] = mapped_column(Date)
    # Closed cases: the local day they closed, where their count stops; NULL while open.
    closed_day: Mapped[date | None] = mapped_column(Date)


class CaseReport(_BoardColumns, ViewBase):
    """The case board as analysts and every reader see it: the view `case_report` (SPEC §5
    columns and search_text) over case_report_rows, with overdue_days counted to the board's
    day. Read-only; the refresh writes CaseReportRow."""

    __tablename__ = "case_report"

    overdue_days: Mapped[int] = mapped_column(Integer)


assert set(REPORT_COLUMNS) == {c.name for c in CaseReport.__table__.columns} - {"search_text"}

# Issue 6: analysts read these as PostgreSQL COMMENT ON (migrations 0005 and 0012).
CASE_REPORT_COMMENT = "Case board: one row per collection case, kept current by refresh_reporting."
CASE_REPORT_ROWS_COMMENT = (
    "Stored rows of the case board; analysts read the view case_report "
    "(overdue_days counted to the board's day)."
)
CASE_REPORT_COLUMN_COMMENTS: dict[str, str] = {
    "case_id": "Case id (cases.case_id).",
    "merchant_id": "Merchant (vendor) of the order.",
    "order_id": "Order id at the sales platform.",
    "first_name": "Buyer first name as on the order.",
    "last_name": "Buyer last name as on the order.",
    "payment_plan": "one_time_payment, breakdown_payment (installments) or abonnement.",
    "payment_method": "credit_card, sepa, sofort, paypal or invoice.",
    "kind": "overdue (unpaid installment) or chargeback.",
    "state": "Case state in English (SPEC 3), e.g. reminder_1, with_partner, paid.",
    "state_label": "German label of the state as the board shows it.",
    "overdue_days": "Calendar days (merchant zone) from the default date to the board's day "
    "(the local date of the newest refresh); frozen at closing for closed cases.",
    "outstanding_amount": "Open claim: principal + fees + interest + costs - payments.",
    "order_amount": "Total price of the order.",
    "paid_amount": "Paid against the claim: at the source plus to the collection partner.",
    "cancellation_costs": "Cancellation costs charged on the claim.",
    "fees_amount": "Reminder and chargeback fees on the claim.",
    "interest_amount": "Default interest on the claim (section 288 BGB).",
    "dunning_option": "court or cancellation, as the case started with.",
    "currency": "ISO 4217 currency of all amounts of the row.",
    "opened_at": "When the case was opened (UTC).",
    "last_step_at": "When the last ladder step happened (UTC).",
    "next_step_at": "When the next ladder step is due (UTC).",
    "partner_reference": "File reference of the collection partner.",
    "blocked_reason": "Why the case is blocked (missing address fields).",
    "waiting_reason": "Why its due step waits on an outside system (partner or mail "
    "unreachable), retried by the next run; NULL when nothing waits.",
    "refreshed_at": "as_of of the refresh that last rewrote the row (UTC); every row is "
    "current as of last_data_update 'refresh'.",
    "search_text": "Internal: lower-cased order id and buyer name for the board search.",
    "default_date": "Earliest unpaid due date or chargeback date (merchant zone).",
    "closed_day": "Local day a closed case closed (its overdue_days stop); NULL while open.",
}
CaseReportRow.__table__.comment = CASE_REPORT_ROWS_COMMENT
for _column in CaseReportRow.__table__.columns:
    _column.comment = CASE_REPORT_COLUMN_COMMENTS[_column.name]


class CaseReportDaily(Base):
    """Issue 6: daily snapshot of the board per merchant, state and currency (trends)."""

    __tablename__ = "case_report_daily"
    __table_args__ = (
        {
            "comment": "Daily snapshot of the case board: counts and amounts per merchant, "
            "state, currency."
        },
    )

    snapshot_date: Mapped[date] = mapped_column(Date, primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(24), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    case_count: Mapped[int] = mapped_column(Integer)
    outstanding_amount: Mapped[Decimal] = mapped_column(Money())
    order_amount: Mapped[Decimal] = mapped_column(Money())
    paid_amount: Mapped[Decimal] = mapped_column(Money())
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CaseReportPending(Base):
    """Cases whose board row is stale: a log written by database triggers on cases, orders and
    buyers (migration 0007), so every writer is covered without remembering to. A refresh
    deletes what it takes and rewrites those rows; duplicates are harmless. No unique key on
    case_id on purpose: a change committed while a refresh runs always leaves its own row."""

    __tablename__ = "case_report_pending"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigId)


class ReportMark(Base):
    """Per scope ('all' or 'shard/shards'): the local day and time of its last refresh. The
    newest mark's day is the board's day, from which the case_report view counts
    overdue_days; a refresh rewrites only pending rows unless it is the scope's first or
    goes back in time (migration 0012: `board_day`, was the day of the last rebuild)."""

    __tablename__ = "report_marks"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    board_day: Mapped[date] = mapped_column(Date)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime())


class LastDataUpdate(Base):
    """What the board shows on top: `sync:<source>` and `refresh` with their times."""

    __tablename__ = "last_data_update"

    name: Mapped[str] = mapped_column(String(320), primary_key=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
