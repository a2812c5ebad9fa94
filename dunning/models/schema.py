"""The tables. One writer each (see ARCHITECTURE.md); every change is an Alembic revision.

Data flows one way: source -> quarantine/orders -> cases -> actions -> case_report (the
board's tables live in dunning.models.report_tables and are re-exported here).
Money is `Money()` (NUMERIC(14,2)) beside a `currency` column; time is aware UTC.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from dunning.db.types import Key, Money, UTCDateTime
from dunning.models.base import Base, BigId, JSONDoc
from dunning.models.report_tables import (
    CASE_REPORT_COLUMN_COMMENTS,
    CASE_REPORT_COMMENT,
    REPORT_COLUMNS,
    CaseReport,
    CaseReportDaily,
    CaseReportPending,
    CaseReportRow,
    LastDataUpdate,
    ReportMark,
)

# --- merchants and their settings -------------------------------------------------------


class Merchant(Base):
    __tablename__ = "merchants"

    merchant_id: Mapped[str] = mapped_column(Key(), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    # Stable 0..2^31 hash of merchant_id; shards select `shard_key % n = i`.
    shard_key: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MerchantSettings(Base):
    """Current settings of a configured merchant; a merchant without a row has the defaults."""

    __tablename__ = "merchant_settings"

    merchant_id: Mapped[str] = mapped_column(Key(), primary_key=True)
    dunning_option: Mapped[str] = mapped_column(String(16))
    auto_overdue: Mapped[bool] = mapped_column(Boolean)
    auto_chargebacks: Mapped[bool] = mapped_column(Boolean)
    reminder_1_days: Mapped[int] = mapped_column(Integer)
    reminder_2_days: Mapped[int] = mapped_column(Integer)
    handover_days: Mapped[int] = mapped_column(Integer)
    reminder_fee: Mapped[Decimal] = mapped_column(Money())
    chargeback_fee: Mapped[Decimal] = mapped_column(Money())
    cancellation_costs: Mapped[Decimal] = mapped_column(Money())
    interest_enabled: Mapped[bool] = mapped_column(Boolean)
    # SPEC §3a: below this open principal a claim is not handed over or taken to court.
    min_claim_amount: Mapped[Decimal] = mapped_column(Money(), default=Decimal("5.00"))
    # When the dunning option last changed (the 30-day rule); None: never changed.
    option_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(100))


class MerchantSettingsHistory(Base):
    """Every settings change: the full settings after it, who and when. Append-only."""

    __tablename__ = "merchant_settings_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(Key(), index=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    changed_by: Mapped[str] = mapped_column(String(100))
    changes: Mapped[dict[str, Any]] = mapped_column(JSONDoc)  # field -> [old, new]
    settings: Mapped[dict[str, Any]] = mapped_column(JSONDoc)  # full settings after


# --- orders as the source delivers them --------------------------------------------------


class Order(Base):
    __tablename__ = "orders"

    order_id: Mapped[str] = mapped_column(Key(), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(Key(), index=True)
    order_date: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    total_amount: Mapped[Decimal] = mapped_column(Money())
    product_id: Mapped[str | None] = mapped_column(String(64))
    product_name: Mapped[str | None] = mapped_column(String(300))
    payment_plan: Mapped[str] = mapped_column(String(24))
    payment_method: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(300))
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class Buyer(Base):
    """The buyer as given on one order (each order carries its own snapshot)."""

    __tablename__ = "buyers"

    # No foreign key to orders (sync, 0002): the per-row check cost ~45 % of bulk load
    # time; the loader writes children only for orders it upserted in the same transaction.
    order_id: Mapped[str] = mapped_column(Key(), primary_key=True)
    first_name: Mapped[str] = mapped_column(String(200))
    last_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    company_name: Mapped[str | None] = mapped_column(String(200))
    street: Mapped[str | None] = mapped_column(String(200))
    house_number: Mapped[str | None] = mapped_column(String(32))
    zip_code: Mapped[str | None] = mapped_column(String(16))
    city: Mapped[str | None] = mapped_column(String(200))
    country_code: Mapped[str | None] = mapped_column(String(2))
    phone: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(8))
    # consumer or business (contract `buyer.type`): statutory interest and flat fee differ
    buyer_type: Mapped[str] = mapped_column(String(8), server_default="consumer")
    # Set by `dunning purge`: personal data removed after the retention period.
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Installment(Base):
    __tablename__ = "installments"

    # No foreign key to orders (sync, 0002): the per-row check cost ~45 % of bulk load
    # time; the loader writes children only for orders it upserted in the same transaction.
    order_id: Mapped[str] = mapped_column(Key(), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    due_date: Mapped[date] = mapped_column(Date, index=True)
    amount: Mapped[Decimal] = mapped_column(Money())


class Transaction(Base):
    __tablename__ = "transactions"

    # No foreign key to orders (sync, 0002): the per-row check cost ~45 % of bulk load
    # time; the loader writes children only for orders it upserted in the same transaction.
    order_id: Mapped[str] = mapped_column(Key(), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(Key(), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Money())
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    installment_number: Mapped[int | None] = mapped_column(Integer)
    reverses_transaction_id: Mapped[str | None] = mapped_column(Key())
    fee: Mapped[Decimal | None] = mapped_column(Money())
    reason_code: Mapped[str | None] = mapped_column(String(32))


# Issue 4: detection finds the transactions that fell between two runs' as_of.
Index("ix_transactions_processed_at", Transaction.processed_at)


class QuarantinedRecord(Base):
    """A record that broke the contract: kept whole with the field and the reason."""

    __tablename__ = "quarantine"
    # sync (0002): one entry per distinct bad payload of a source, however often re-read.
    __table_args__ = (Index("uq_quarantine_source_digest", "source", "digest", unique=True),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(300), index=True)
    position: Mapped[str | None] = mapped_column(String(64))  # line number or page/cursor
    order_id: Mapped[str | None] = mapped_column(Key(), index=True)
    raw: Mapped[str] = mapped_column(Text)
    field: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # sync (0002): the record's updated_at when readable (a valid snapshot at least as new
    # resolves the entry), and the SHA-256 of the raw bytes.
    record_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    digest: Mapped[str | None] = mapped_column(String(64))


class SyncWatermark(Base):
    """Per source: the newest `updated_at` whose batch is committed."""

    __tablename__ = "sync_watermarks"

    source: Mapped[str] = mapped_column(String(300), primary_key=True)
    watermark: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cursor: Mapped[str | None] = mapped_column(String(300))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- cases, their history and their outside effects -------------------------------------


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        # At most one open case per order (SPEC §3).
        Index(
            "uq_cases_open_order",
            "order_id",
            unique=True,
            sqlite_where=text("state NOT IN ('paid', 'cancelled', 'uncollectible')"),
            postgresql_where=text("state NOT IN ('paid', 'cancelled', 'uncollectible')"),
        ),
        Index("ix_cases_state_next_step_at", "state", "next_step_at"),
        # Room on each page for updates that stay there (migration 0014).
        {"postgresql_with": {"fillfactor": 85}},
    )

    case_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(Key(), ForeignKey("orders.order_id"), index=True)
    merchant_id: Mapped[str] = mapped_column(Key(), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(24))
    # State before on_hold, to resume into.
    held_from_state: Mapped[str | None] = mapped_column(String(24))
    dunning_option: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # Earliest unpaid due date (overdue) or chargeback date, on the merchant's calendar.
    default_date: Mapped[date] = mapped_column(Date)
    principal_amount: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    fees_amount: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    interest_amount: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    cancellation_costs: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    # Paid at the source against the claim's installments (written by detection).
    paid_amount: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    # Paid to the collection partner, as it reports (written by partner sync).
    partner_paid_amount: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    outstanding_amount: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    blocked_reason: Mapped[str | None] = mapped_column(Text)
    # Issue 16: why the due step waits (a transient partner or mail failure); the board shows it.
    waiting_reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminder_1_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminder_2_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    handed_over_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    partner_claim_id: Mapped[str | None] = mapped_column(String(64))
    partner_reference: Mapped[str | None] = mapped_column(String(64))
    partner_status: Mapped[str | None] = mapped_column(String(24))
    partner_error: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    close_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Issue 4: when the handover rules first routed the case; NULL = detected, not yet routed.
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# Issue 4: hot predicate of routing (partial: only the few not yet routed).
Index(
    "ix_cases_unrouted",
    Case.case_id,
    sqlite_where=text("routed_at IS NULL"),
    postgresql_where=text("routed_at IS NULL"),
)


class CaseItem(Base):
    """Issue 4: what a case claims. `principal` per installment (amount = owed, paid_amount =
    paid at the source against it) and `chargeback_fee` per charged-back installment;
    escalation reads it for the partner handover. Written by detection."""

    __tablename__ = "case_items"
    __table_args__ = (
        Index("uq_case_items_case_item", "case_id", "installment_number", "item_type", unique=True),
        {"postgresql_with": {"fillfactor": 85}},  # as cases
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.case_id"))
    item_type: Mapped[str] = mapped_column(String(24))  # principal | chargeback_fee
    installment_number: Mapped[int] = mapped_column(Integer)
    due_date: Mapped[date] = mapped_column(Date)  # the installment's due date
    # In default since (merchant's calendar): the due date, or the chargeback's local date.
    default_date: Mapped[date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(Money())
    paid_amount: Mapped[Decimal] = mapped_column(Money())
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CaseCharge(Base):
    """Charges of our own on a claim (SPEC §3a): reminder fees and cancellation costs, each
    with its day and reason, written when the step that causes it is done. One row per
    (case, key): a step recorded twice charges once."""

    __tablename__ = "case_charges"
    __table_args__ = (Index("uq_case_charges_case_key", "case_id", "key", unique=True),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.case_id"))
    key: Mapped[str] = mapped_column(String(64))  # e.g. reminder_2, cancellation
    kind: Mapped[str] = mapped_column(String(24))  # reminder_fee | cancellation_costs
    day: Mapped[date] = mapped_column(Date)  # merchant calendar
    amount: Mapped[Decimal] = mapped_column(Money())
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DetectMark(Base):
    """Issue 4: per scope ('all' or 'shard/shards') where the last detection left off, so the
    next one looks only at orders synced, due or paid since then."""

    __tablename__ = "detect_marks"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    synced_mark: Mapped[datetime | None] = mapped_column(UTCDateTime())  # newest synced_at seen
    # How many orders had synced_at = synced_mark then; more later = a batch committed late.
    synced_count: Mapped[int | None] = mapped_column(Integer)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime())
    full_as_of: Mapped[datetime] = mapped_column(UTCDateTime())  # last full scan: a safety net
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SyncStamp(Base):
    """Issue 8: how many order writes each sync stamp (`orders.synced_at`) has had, kept by
    sync in each batch's transaction. A reader that marked a stamp sees here, in one row
    instead of counting ~1M orders, whether a batch of it committed after it looked."""

    __tablename__ = "sync_stamps"

    stamp: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    writes: Mapped[int] = mapped_column(BigInteger)


class HandoverMark(Base):
    """Issue 8: per scope, the newest orders.synced_at the last handover run had seen, so
    the next one re-checks only the blocked cases whose order (and address) changed since;
    every blocked case once a week (a safety net, like detection's full scan)."""

    __tablename__ = "handover_marks"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    synced_mark: Mapped[datetime | None] = mapped_column(UTCDateTime())
    synced_count: Mapped[int | None] = mapped_column(Integer)
    full_as_of: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CaseHistory(Base):
    """Every transition: who, when, from, to, why. Append-only."""

    __tablename__ = "case_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.case_id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(100))
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(Text)


class Action(Base):
    """An outside effect, recorded under its idempotency key before it is sent."""

    __tablename__ = "actions"
    __table_args__ = (Index("ix_actions_status_step", "status", "step"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.case_id"), index=True)
    step: Mapped[str] = mapped_column(String(24))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Issue 5: wall-clock lease of the run that is sending it; an expired lease on a
    # pending action means that run died, and the next run sends it again (same key).
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebToken(Base):
    """Issue 17: a login of the web area, created by an administrator for one merchant or
    one operator; only the SHA-256 of the secret is kept, the secret is shown once."""

    __tablename__ = "web_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    merchant_id: Mapped[str | None] = mapped_column(String(64))  # a merchant's login, or
    operator: Mapped[str | None] = mapped_column(String(100))  # an operator's (sees all)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(100))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


__all__ = [
    "CASE_REPORT_COLUMN_COMMENTS",
    "CASE_REPORT_COMMENT",
    "REPORT_COLUMNS",
    "Action",
    "Base",
    "Buyer",
    "Case",
    "CaseHistory",
    "CaseItem",
    "CaseReport",
    "CaseReportDaily",
    "CaseReportPending",
    "CaseReportRow",
    "DetectMark",
    "HandoverMark",
    "Installment",
    "LastDataUpdate",
    "Merchant",
    "MerchantSettings",
    "MerchantSettingsHistory",
    "Order",
    "QuarantinedRecord",
    "ReportMark",
    "SyncStamp",
    "SyncWatermark",
    "Transaction",
    "WebToken",
]
