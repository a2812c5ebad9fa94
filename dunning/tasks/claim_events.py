"""The claim ledger's events, loaded set-based for a batch of cases, and the amounts it
yields stored on the cases (SPEC §3a).

`load_claims` reads, per batch of cases, the case and its order and buyer, the claim's
installments (`case_items`), the order's schedule and transactions and the case's own
charges (`case_charges`), and builds one `ClaimInput` per case: the ledger's events plus
the order facts that § 498 needs. `refresh_claims` replays them and writes the amounts the
board shows (interest, fees, costs; `outstanding_amount` then follows from its one formula).

Detection keeps principal and paid in SQL (set-based, the same rule with interest off: a
parity test holds them equal to the ledger's); the cases whose amounts SQL cannot know -
interest switched on, business debtors, reminder fees and costs - are replayed here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, exists, or_, select, update
from sqlalchemy.orm import Session

from dunning.config import Settings
from dunning.models.base_rates import BaseRates
from dunning.models.clock import local_date
from dunning.models.enums import TERMINAL_STATES, PaymentMethod
from dunning.models.ledger import (
    CHARGEBACK_FEE,
    Charge,
    Ledger,
    Payment,
    PrincipalItem,
    ScheduleEntry,
    Statement,
    cents,
    default_begins,
    replay,
)
from dunning.models.merchant_settings import MerchantConfig
from dunning.models.schema import (
    Buyer,
    Case,
    CaseCharge,
    CaseItem,
    Installment,
    MerchantSettings,
    Order,
    Transaction,
)
from dunning.tasks.merchant_settings import configs_for

CHUNK = 5000
ZERO = Decimal("0.00")


@dataclass
class ClaimInput:
    """One case's ledger and the order facts the ladder's rules need."""

    case_id: int
    ledger: Ledger
    schedule: list[ScheduleEntry]
    order_total: Decimal
    order_day: date
    payment_plan: str
    invoice: bool

    def statement(self, today: date, rates: BaseRates, *extra: Charge) -> Statement:
        ledger = self.ledger
        if extra:
            ledger = Ledger(
                ledger.items,
                ledger.payments,
                ledger.charges + extra,
                ledger.business,
                ledger.interest,
                ledger.currency,
            )
        return replay(ledger, today, rates)


def _chunks(ids: Sequence[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])


def load_claims(
    session: Session, case_ids: Iterable[int], settings: Settings, as_of: datetime
) -> dict[int, ClaimInput]:
    """The claim of each case as of `as_of` (transactions after it are not yet known)."""
    ids = sorted(set(case_ids))
    out: dict[int, ClaimInput] = {}
    for chunk in _chunks(ids):
        out.update(_load_chunk(session, chunk, settings, as_of, settings.zone))
    return out


def _load_chunk(session, case_ids, settings, as_of, zone) -> dict[int, ClaimInput]:
    cases = session.execute(
        select(
            Case.case_id,
            Case.order_id,
            Case.merchant_id,
            Case.currency,
            Case.reminder_1_at,
            Case.handed_over_at,
            Case.partner_paid_amount,
            Order.total_amount,
            Order.order_date,
            Order.payment_plan,
            Order.payment_method,
            Buyer.buyer_type,
        )
        .join(Order, Order.order_id == Case.order_id)
        .join(Buyer, Buyer.order_id == Case.order_id)
        .where(Case.case_id.in_(case_ids))
    ).all()
    order_ids = sorted({c.order_id for c in cases})
    cfgs = configs_for(session, {c.merchant_id for c in cases}, settings)
    claim_numbers: dict[int, list[int]] = defaultdict(list)
    for r in session.execute(
        select(CaseItem.case_id, CaseItem.installment_number).where(
            CaseItem.case_id.in_(case_ids), CaseItem.item_type == "principal"
        )
    ):
        claim_numbers[r.case_id].append(r.installment_number)
    schedules: dict[str, dict[int, tuple[date, Decimal]]] = defaultdict(dict)
    for r in session.execute(
        select(
            Installment.order_id, Installment.number, Installment.due_date, Installment.amount
        ).where(Installment.order_id.in_(order_ids))
    ):
        schedules[r.order_id][r.number] = (r.due_date, Decimal(r.amount))
    txns: dict[str, list[Any]] = defaultdict(list)
    for t in session.execute(
        select(
            Transaction.order_id,
            Transaction.transaction_id,
            Transaction.type,
            Transaction.amount,
            Transaction.processed_at,
            Transaction.installment_number,
            Transaction.reverses_transaction_id,
            Transaction.fee,
            Transaction.reason_code,
        ).where(Transaction.order_id.in_(order_ids), Transaction.processed_at <= as_of)
    ):
        txns[t.order_id].append(t)
    charges: dict[int, list[Charge]] = defaultdict(list)
    for r in session.execute(select(CaseCharge).where(CaseCharge.case_id.in_(case_ids))):
        c = r.CaseCharge
        charges[c.case_id].append(Charge(c.kind, c.day, Decimal(c.amount), c.reason, c.key))
    out = {}
    for c in cases:
        cfg = cfgs[c.merchant_id]
        out[c.case_id] = _claim_input(
            c, cfg, claim_numbers.get(c.case_id, []), schedules[c.order_id],
            txns[c.order_id], charges[c.case_id], zone,
        )  # fmt: skip
    return out


def _claim_input(c, cfg: MerchantConfig, numbers, schedule, txns, own_charges, zone):
    business = c.buyer_type == "business"
    invoice = c.payment_method == PaymentMethod.INVOICE.value
    order_day = local_date(c.order_date, zone)
    r1_deadline = (
        local_date(c.reminder_1_at, zone) + timedelta(days=cfg.reminder_2_days)
        if c.reminder_1_at is not None
        else None
    )
    # Each sale, net of what reversed it: a chargeback unpays it, a refund gives it back.
    sale_of: dict[str, int] = {}
    net: dict[str, Decimal] = {}
    day_of: dict[str, date] = {}
    for t in txns:
        if t.type == "sale":
            sale_of[t.transaction_id] = t.installment_number or 1
            net[t.transaction_id] = Decimal(t.amount)
            day_of[t.transaction_id] = local_date(t.processed_at, zone)
    refunded: dict[int, Decimal] = defaultdict(Decimal)
    chargeback_day: dict[int, date] = {}
    charges = list(own_charges)
    for t in sorted(txns, key=lambda t: (t.processed_at, t.transaction_id)):
        sale = t.reverses_transaction_id
        if t.type == "sale" or sale not in sale_of:
            continue
        n = sale_of[sale]
        net[sale] -= Decimal(t.amount)
        if t.type == "refund":
            refunded[n] += Decimal(t.amount)
        elif t.type == "chargeback" and n in numbers:
            day = local_date(t.processed_at, zone)
            chargeback_day.setdefault(n, day)
            fee = Decimal(t.fee) if t.fee is not None else cfg.chargeback_fee
            if fee > 0:
                reason = f"Rücklastschrift {t.reason_code}" if t.reason_code else "Rücklastschrift"
                charges.append(Charge(CHARGEBACK_FEE, day, cents(fee), reason, t.transaction_id))
    items = []
    for n in sorted(numbers):
        if n not in schedule:
            continue
        due, amount = schedule[n]
        start = default_begins(
            due_date=due,
            invoice=invoice,
            business=business,
            chargeback_day=chargeback_day.get(n),
            first_reminder_deadline=r1_deadline,
            invoice_day=order_day,
        )
        owed = max(amount - refunded.get(n, ZERO), ZERO)
        items.append(PrincipalItem(f"installment-{n}", due, cents(owed), start, n))
    payments = [
        Payment(day_of[tid], cents(amount), tid)
        for tid, amount in net.items()
        if amount > 0 and sale_of[tid] in numbers
    ]
    handed_over_on = local_date(c.handed_over_at, zone) if c.handed_over_at else None
    if c.partner_paid_amount and c.partner_paid_amount > 0:
        # What the partner collected is known as a total only; counted from the handover
        # (the earliest day it can have arrived), in the debtor's favour.
        day = handed_over_on or local_date(c.reminder_1_at or c.order_date, zone)
        payments.append(Payment(day, cents(c.partner_paid_amount), "partner"))
    ledger = Ledger(
        items=tuple(items),
        payments=tuple(payments),
        charges=tuple(charges),
        business=business,
        interest=cfg.interest_enabled,
        currency=c.currency,
    )
    return ClaimInput(
        case_id=c.case_id,
        ledger=ledger,
        schedule=[ScheduleEntry(n, due) for n, (due, _) in sorted(schedule.items())],
        order_total=Decimal(c.total_amount),
        order_day=order_day,
        payment_plan=c.payment_plan,
        invoice=invoice,
    )


# --- storing what the board needs ---------------------------------------------------------


def replayed_case_ids(session: Session, scope_filter=None) -> list[int]:
    """Open cases whose amounts only the ledger knows: interest on, a business debtor, or
    charges of our own (reminder fees, costs)."""
    interest_on = select(MerchantSettings.merchant_id).where(MerchantSettings.interest_enabled)
    business = exists().where(Buyer.order_id == Case.order_id, Buyer.buyer_type == "business")
    charged = exists().where(CaseCharge.case_id == Case.case_id)
    q = select(Case.case_id).where(
        Case.state.not_in([s.value for s in TERMINAL_STATES]),
        or_(Case.merchant_id.in_(interest_on), business, charged),
    )
    if scope_filter is not None:
        q = scope_filter(q)
    return list(session.scalars(q))


def store_amounts(session: Session, statements: dict[int, Statement], as_of: datetime) -> int:
    """Write the ledger's fees, costs and interest of each case where they changed."""
    if not statements:
        return 0
    rows = [
        {
            "cid": cid,
            "fees": cents(s.fees),
            "costs": cents(s.costs),
            "interest": cents(s.interest),
            "as_of": as_of,
        }
        for cid, s in statements.items()
    ]
    stmt = (
        update(Case.__table__)
        .where(
            Case.__table__.c.case_id == bindparam("cid"),
            or_(
                Case.__table__.c.fees_amount != bindparam("fees"),
                Case.__table__.c.cancellation_costs != bindparam("costs"),
                Case.__table__.c.interest_amount != bindparam("interest"),
            ),
        )
        .values(
            fees_amount=bindparam("fees"),
            cancellation_costs=bindparam("costs"),
            interest_amount=bindparam("interest"),
            updated_at=bindparam("as_of"),
        )
    )
    session.connection().execute(stmt, rows)
    return len(rows)
