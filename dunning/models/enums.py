"""The fixed vocabularies of SPEC §2–§4, stored as these stable strings."""

from __future__ import annotations

from enum import StrEnum


class DunningOption(StrEnum):
    COURT = "court"
    CANCELLATION = "cancellation"


class CaseKind(StrEnum):
    OVERDUE = "overdue"
    CHARGEBACK = "chargeback"


class CaseState(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    SCHEDULED = "scheduled"
    BLOCKED = "blocked"
    REMINDER_1 = "reminder_1"
    REMINDER_2 = "reminder_2"
    WITH_PARTNER = "with_partner"
    TERMINATION_NOTICE = "termination_notice"
    AWAITING_CANCELLATION = "awaiting_cancellation"
    COURT = "court"
    ORDER_CANCELLED = "order_cancelled"
    ON_HOLD = "on_hold"
    PAID = "paid"
    CANCELLED = "cancelled"
    UNCOLLECTIBLE = "uncollectible"

    @property
    def label(self) -> str:
        return STATE_LABELS[self]

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


STATE_LABELS: dict[CaseState, str] = {
    CaseState.AWAITING_APPROVAL: "Warten auf Freigabe",
    CaseState.SCHEDULED: "Mahnlauf geplant",
    CaseState.BLOCKED: "Geblockt",
    CaseState.REMINDER_1: "1. Mahnung",
    CaseState.REMINDER_2: "2. Mahnung",
    CaseState.WITH_PARTNER: "Beim Inkassopartner",
    CaseState.TERMINATION_NOTICE: "Kündigungsandrohung",
    CaseState.AWAITING_CANCELLATION: "Kündigung manuell ausführen",
    CaseState.COURT: "Gerichtliches Mahnverfahren",
    CaseState.ORDER_CANCELLED: "Gekündigt",
    CaseState.ON_HOLD: "Pausiert",
    CaseState.PAID: "Bezahlt",
    CaseState.CANCELLED: "Abgebrochen",
    CaseState.UNCOLLECTIBLE: "Uneinbringlich",
}

TERMINAL_STATES = frozenset({CaseState.PAID, CaseState.CANCELLED, CaseState.UNCOLLECTIBLE})
OPEN_STATES = frozenset(set(CaseState) - TERMINAL_STATES)
IN_PROGRESS_STATES = frozenset(
    {
        CaseState.SCHEDULED,
        CaseState.REMINDER_1,
        CaseState.REMINDER_2,
        CaseState.WITH_PARTNER,
        CaseState.TERMINATION_NOTICE,
        CaseState.AWAITING_CANCELLATION,
        CaseState.COURT,
        CaseState.ORDER_CANCELLED,
    }
)


class OrderStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class PaymentPlan(StrEnum):
    ONE_TIME = "one_time_payment"
    INSTALLMENTS = "breakdown_payment"
    SUBSCRIPTION = "abonnement"


class PaymentMethod(StrEnum):
    CREDIT_CARD = "credit_card"
    SEPA = "sepa"
    SOFORT = "sofort"
    PAYPAL = "paypal"
    INVOICE = "invoice"


class TransactionType(StrEnum):
    SALE = "sale"
    REFUND = "refund"
    CHARGEBACK = "chargeback"


class ActionStep(StrEnum):
    """Outside effects; each (case, step) is sent at most once under one idempotency key."""

    REMINDER_1 = "reminder_1"
    REMINDER_2 = "reminder_2"
    HANDOVER = "handover"
    TERMINATION_NOTICE = "termination_notice"  # § 498 BGB, an e-mail like the reminders
    PARTNER_ITEMS = "partner_items"  # items that arose after the handover
    CANCEL_ORDER = "cancel_order"
    COURT_REQUEST = "court_request"
    PARTNER_PAYMENT = "partner_payment"
    RECALL = "recall"


class ActionStatus(StrEnum):
    PENDING = "pending"  # recorded, not yet confirmed sent; a rerun sends it again, same key
    DONE = "done"
    FAILED = "failed"  # permanent refusal (e.g. 422); shown to operators, not retried
    CANCELLED = "cancelled"  # superseded before sending (case paid or cancelled)
