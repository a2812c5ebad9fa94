"""What a buyer owes and since when: the claim rules of SPEC §3, as pure functions.

Detection (`dunning/tasks/detect.py`) runs the same rules as set-based SQL; these functions
are the reference the unit tests pin down, and the integration tests check the SQL against.

Per installment (transactions up to `as_of` only):
- owed  = amount − refunds attributed to it (a refund names the sale it reverses; the sale
          names the installment);
- paid  = sales − chargebacks and refunds reversing them;
- open  = max(owed − paid, 0).
On the case: principal = Σ owed of the claim's installments; paid = Σ paid (never below 0;
an overpayment at the source pays fees). The claim ledger (`ledger.py`) is the same rule
with dates; a parity test holds the two equal.
An installment is overdue from the day after its due date on the merchant's calendar. A
chargeback that reversed a sale puts that installment in default on the chargeback's local
date, whatever its due date, and its fee (the transaction's, else the merchant's
`chargeback_fee` setting) joins the claim. Partial payments lower the claim; the clock runs
from the earliest installment still unpaid.

The one formula of `outstanding_amount` lives here too (`outstanding_expression`,
`refresh_outstanding`), shared by detection and escalation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from dunning.models.clock import local_date
from dunning.models.enums import CaseKind, TransactionType

ZERO = Decimal("0.00")
ITEM_PRINCIPAL = "principal"
ITEM_CHARGEBACK_FEE = "chargeback_fee"


@dataclass(frozen=True)
class Installment:
    number: int
    due_date: date
    amount: Decimal


@dataclass(frozen=True)
class Txn:
    transaction_id: str
    type: str  # sale | refund | chargeback
    amount: Decimal
    processed_at: datetime
    installment_number: int | None = None
    reverses_transaction_id: str | None = None
    fee: Decimal | None = None


@dataclass(frozen=True)
class InstallmentFacts:
    number: int
    due_date: date
    owed: Decimal
    paid: Decimal
    chargeback_date: date | None = None  # local date of the first chargeback, if any
    chargeback_fee: Decimal = ZERO
    refunded: Decimal = ZERO

    @property
    def open(self) -> Decimal:
        return max(self.owed - self.paid, ZERO)

    @property
    def paid_against_owed(self) -> Decimal:
        """What counts as paid on the claim: the sales less what reversed them, never below
        0. A refund lowers what is owed and gives the money back, so it leaves the paid
        amount too (the claim ledger's rule: a refunded part of a partial payment stays
        open). Paid beyond what is owed counts (a buyer paying the reminded total with fees
        at the source)."""
        return max(self.paid - self.refunded, ZERO)

    @property
    def default_date(self) -> date:
        """In default since: the chargeback's local date, else the due date."""
        return self.chargeback_date if self.chargeback_date is not None else self.due_date

    def in_default(self, today: date) -> bool:
        """Eligible to join a claim: something open, and overdue or charged back."""
        return self.open > 0 and (
            is_overdue(self.due_date, today) or self.chargeback_date is not None
        )


def is_overdue(due_date: date, today: date) -> bool:
    """Overdue from the day after the due date (both dates on the merchant's calendar)."""
    return today > due_date


def overdue_days(today: date, earliest_unpaid: date | None) -> int:
    """Calendar days from the earliest unpaid due date (or chargeback date) to `today`."""
    if earliest_unpaid is None:
        return 0
    return max((today - earliest_unpaid).days, 0)


def installment_facts(
    installments: Iterable[Installment],
    transactions: Iterable[Txn],
    as_of: datetime,
    zone: ZoneInfo,
    default_chargeback_fee: Decimal = ZERO,
) -> list[InstallmentFacts]:
    """Owed, paid, chargeback date and fee per installment, from the transactions up to as_of."""
    txns = [t for t in transactions if t.processed_at <= as_of]
    sale_installment = {
        t.transaction_id: (t.installment_number or 1)
        for t in transactions
        if t.type == TransactionType.SALE
    }
    sales: dict[int, Decimal] = {}
    refunds: dict[int, Decimal] = {}
    chargebacks: dict[int, Decimal] = {}
    fees: dict[int, Decimal] = {}
    cb_at: dict[int, datetime] = {}
    for t in txns:
        if t.type == TransactionType.SALE:
            n = t.installment_number or 1
            sales[n] = sales.get(n, ZERO) + t.amount
            continue
        n_or_none = sale_installment.get(t.reverses_transaction_id or "")
        if n_or_none is None:
            continue  # names no sale of this order: the sync quarantines such records
        n = n_or_none
        if t.type == TransactionType.REFUND:
            refunds[n] = refunds.get(n, ZERO) + t.amount
        elif t.type == TransactionType.CHARGEBACK:
            chargebacks[n] = chargebacks.get(n, ZERO) + t.amount
            fee = t.fee if t.fee is not None else default_chargeback_fee
            fees[n] = fees.get(n, ZERO) + fee
            cb_at[n] = min(cb_at.get(n, t.processed_at), t.processed_at)
    out = []
    for i in sorted(installments, key=lambda i: i.number):
        out.append(
            InstallmentFacts(
                number=i.number,
                due_date=i.due_date,
                owed=i.amount - refunds.get(i.number, ZERO),
                paid=sales.get(i.number, ZERO) - chargebacks.get(i.number, ZERO),
                chargeback_date=local_date(cb_at[i.number], zone) if i.number in cb_at else None,
                chargeback_fee=fees.get(i.number, ZERO),
                refunded=refunds.get(i.number, ZERO),
            )
        )
    return out


@dataclass
class Claim:
    """The claim of one case: the installments in it and its amounts."""

    kind: CaseKind
    default_date: date
    numbers: list[int] = field(default_factory=list)
    principal: Decimal = ZERO
    paid: Decimal = ZERO
    fees: Decimal = ZERO

    @property
    def open(self) -> Decimal:
        return self.principal + self.fees - self.paid


def new_claim(facts: Sequence[InstallmentFacts], today: date) -> Claim | None:
    """The claim a new case would open with today, or None (nothing in default)."""
    eligible = [f for f in facts if f.in_default(today)]
    if not eligible:
        return None
    kind = CaseKind.CHARGEBACK if any(f.chargeback_date for f in eligible) else CaseKind.OVERDUE
    claim = Claim(kind=kind, default_date=min(f.default_date for f in eligible))
    return update_claim(claim, facts, today)


def update_claim(claim: Claim, facts: Sequence[InstallmentFacts], today: date) -> Claim:
    """Join installments newly in default; recompute amounts and the earliest unpaid date.

    Installments stay in the claim once in it (paid ones count as paid). The default date
    moves only to the earliest installment of the claim that is still unpaid.
    """
    by_number = {f.number: f for f in facts}
    for f in facts:
        if f.number not in claim.numbers and f.in_default(today):
            claim.numbers.append(f.number)
    items = [by_number[n] for n in claim.numbers if n in by_number]
    claim.principal = sum((f.owed for f in items), ZERO)
    claim.paid = sum((f.paid_against_owed for f in items), ZERO)
    claim.fees = sum((f.chargeback_fee for f in items if f.chargeback_date), ZERO)
    unpaid = [f.default_date for f in items if f.paid_against_owed < f.owed]  # = open > 0
    if unpaid:
        claim.default_date = min(unpaid)
    return claim


def claim_outcome(principal: Decimal, outstanding: Decimal) -> str | None:
    """'cancelled' when the claim vanished (nothing owed any more: refunds), 'paid' when it is
    fully paid, else None (stays open). Fees alone do not keep a vanished claim alive."""
    if principal <= 0:
        return "cancelled"
    if outstanding <= 0:
        return "paid"
    return None


def vanished_reason(order_status: str | None) -> str:
    if order_status == "refunded":
        return "claim vanished: order refunded"
    if order_status == "cancelled":
        return "claim vanished: order cancelled at the source"
    return "claim vanished: refunded"


# --- the one formula of the outstanding amount -------------------------------------------


def outstanding_expression():
    """outstanding = principal + fees + interest + cancellation costs − paid − partner paid,
    rounded to cents (SQLite sums can carry float noise)."""
    from sqlalchemy import func

    from dunning.models.schema import Case

    return func.round(
        Case.principal_amount
        + Case.fees_amount
        + Case.interest_amount
        + Case.cancellation_costs
        - Case.paid_amount
        - Case.partner_paid_amount,
        2,
    )


def refresh_outstanding(session, case_ids: Iterable[int] | None = None, *, where=None) -> int:
    """Recompute `outstanding_amount` of the given cases (or those matching `where`, or all
    open cases); only rows whose value changes are written. Returns how many changed."""
    from sqlalchemy import update

    from dunning.models.enums import TERMINAL_STATES
    from dunning.models.schema import Case

    expr = outstanding_expression()
    base = update(Case).where(
        Case.outstanding_amount != expr,
    )
    if case_ids is None and where is None:
        base = base.where(Case.state.not_in([s.value for s in TERMINAL_STATES]))
    if where is not None:
        base = base.where(where)
    stmt = base.values(outstanding_amount=expr).execution_options(synchronize_session=False)
    if case_ids is None:
        return session.execute(stmt).rowcount or 0
    ids = list(case_ids)
    changed = 0
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        changed += session.execute(stmt.where(Case.case_id.in_(chunk))).rowcount or 0
    return changed
