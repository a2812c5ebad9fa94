"""Escalation: find due cases set-based, claim them with their actions in one transaction,
perform the outside effects in batches, record the outcomes (SPEC §3, §4).

Exactly once, as far as the world allows:
- The claim transaction locks the candidate cases (PostgreSQL `FOR UPDATE SKIP LOCKED`;
  SQLite `BEGIN IMMEDIATE`, the writer lock) and inserts one `actions` row per (case, step)
  under the unique key `case-{id}-{step}` (`ON CONFLICT DO NOTHING`): a second run, at the
  same time or later, cannot get the same step again.
- A claimed action carries a wall-clock lease. An action still `pending` after a transient
  failure (lease released) or a crash (lease expired) is sent again by the next run with
  the SAME key, so the partner, the source and mail readers can deduplicate.
- State moves go through `move_cases` only, guarded by the state the step started from.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, text, update
from sqlalchemy import case as sa_case
from sqlalchemy.orm import Session

from dunning.config import Settings
from dunning.crashpoints import crashpoint
from dunning.db import is_postgres, session_scope
from dunning.models.clock import local_date
from dunning.models.enums import (
    ActionStatus,
    ActionStep,
    CaseKind,
    CaseState,
    DunningOption,
    PaymentPlan,
)
from dunning.models.ladder import (
    CaseFacts,
    InstallmentFact,
    LadderSettings,
    next_step,
)
from dunning.models.merchant_settings import MerchantConfig, defaults_from
from dunning.models.money import allocate, cents, claim_interest, reduce_oldest_first
from dunning.models.schema import (
    Action,
    Buyer,
    Case,
    Installment,
    Merchant,
    MerchantSettings,
    Order,
    Transaction,
)
from dunning.models.types import UTCDateTime
from dunning.tasks.transitions import move_cases

log = logging.getLogger(__name__)
ACTIONS = Action.__table__
CASES = Case.__table__

ACTOR = "escalation"
LEASE = timedelta(minutes=15)
# Issue 9: a timeout while the SMTP server answers the end of DATA leaves it unknown whether
# the mail was accepted, and the next run sends it again; RFC 5321 gives that reply up to
# 10 minutes. Never wait less than this, however short the HTTP timeout is set.
SMTP_TIMEOUT = 60.0
CHUNK = 2000
ZERO = Decimal("0.00")
OPEN_PARTNER_STATES = (CaseState.WITH_PARTNER, CaseState.COURT, CaseState.ORDER_CANCELLED)
OPEN_STATES = tuple(s for s in CaseState if not s.is_terminal)
LADDER_STEPS = (
    ActionStep.REMINDER_1,
    ActionStep.REMINDER_2,
    ActionStep.HANDOVER,
    ActionStep.CANCEL_ORDER,
    ActionStep.COURT_REQUEST,
)
FROM_STATE = {
    ActionStep.REMINDER_1: CaseState.SCHEDULED,
    ActionStep.REMINDER_2: CaseState.REMINDER_1,
    ActionStep.HANDOVER: CaseState.REMINDER_2,
    ActionStep.CANCEL_ORDER: CaseState.WITH_PARTNER,
    ActionStep.COURT_REQUEST: CaseState.WITH_PARTNER,
}
TO_STATE = {
    ActionStep.REMINDER_1: CaseState.REMINDER_1,
    ActionStep.REMINDER_2: CaseState.REMINDER_2,
    ActionStep.HANDOVER: CaseState.WITH_PARTNER,
    ActionStep.CANCEL_ORDER: CaseState.ORDER_CANCELLED,
    ActionStep.COURT_REQUEST: CaseState.COURT,
}
LABELS = {
    "principal": ("Rate {n}", "Installment {n}", "Kaufpreis", "Purchase price"),
    "reminder_fee": "Mahngebühren|Reminder fees",
    "interest": "Verzugszinsen (§ 288 BGB)|Default interest (§ 288 BGB)",
    "chargeback_fee": "Rücklastschriftgebühr|Chargeback fee",
    "cancellation_costs": "Stornokosten|Cancellation costs",
}


def key_for(case_id: int, step: str, suffix: str | None = None) -> str:
    return f"case-{case_id}-{step}" + (f"-{suffix}" if suffix else "")


def reference_for(case_id: int) -> str:
    return f"DUN-{case_id}"


# --- outstanding amounts ------------------------------------------------------------------


def recompute_outstanding(session: Session, case_ids: Sequence[int] | None = None) -> None:
    """cases.outstanding_amount from its parts. Uses the claim module of case detection
    when it exists (one formula for the whole project), else the same formula here."""
    try:  # issue 4 owns the formula; use it when present
        from dunning.models.claims import refresh_outstanding
    except ImportError:  # pragma: no cover - before case detection existed
        refresh_outstanding = None
    if refresh_outstanding is not None:
        refresh_outstanding(session, case_ids)
        return
    gross = (
        Case.principal_amount
        + Case.fees_amount
        + Case.interest_amount
        + Case.cancellation_costs
        - Case.paid_amount
        - Case.partner_paid_amount
    )
    stmt = update(Case).values(
        outstanding_amount=func.round(sa_case((gross > 0, gross), else_=0), 2)
    )
    stmt = stmt.where(Case.state.in_([s.value for s in OPEN_STATES]))
    if case_ids is None:
        session.execute(stmt.execution_options(synchronize_session=False))
        return
    ids = list(case_ids)
    for start in range(0, len(ids), 5000):
        session.execute(
            stmt.where(Case.case_id.in_(ids[start : start + 5000])).execution_options(
                synchronize_session=False
            )
        )


def _shard_filter(query, shard: int | None, shards: int):
    if shard is None or shards <= 1:
        return query
    return query.where(
        Case.merchant_id.in_(
            select(Merchant.merchant_id).where(Merchant.shard_key % shards == shard)
        )
    )


def settle_payments(url: str, as_of: datetime, shard: int | None = None, shards: int = 1) -> dict:
    """A claim at zero makes the case `paid` at once; pending actions of closed cases are
    cancelled (the recall/payment notice to the partner is a step of `claim_due`)."""
    with session_scope(url) as s:
        recompute_outstanding(s, None)
        q = select(Case.case_id).where(
            Case.state.in_([st.value for st in OPEN_STATES]),
            Case.principal_amount > 0,
            func.round(Case.outstanding_amount, 2) <= 0,
        )
        ids = list(s.scalars(_shard_filter(q, shard, shards)))
        moved = move_cases(
            s,
            ids,
            CaseState.PAID,
            from_states=list(OPEN_STATES),
            actor=ACTOR,
            reason="claim paid in full",
            as_of=as_of,
            values={"closed_at": as_of, "close_reason": "paid in full", "next_step_at": None},
        )
        now = datetime.now(UTC)
        closed = select(Case.case_id).where(
            Case.state.in_(
                [CaseState.PAID.value, CaseState.CANCELLED.value, CaseState.UNCOLLECTIBLE.value]
            )
        )
        cancelled = s.execute(
            update(Action)
            .where(
                Action.status == ActionStatus.PENDING.value,
                Action.step.in_(
                    [st.value for st in LADDER_STEPS] + [ActionStep.PARTNER_PAYMENT.value]
                ),
                or_(Action.lease_until.is_(None), Action.lease_until < now),
                Action.case_id.in_(closed),
            )
            .values(status=ActionStatus.CANCELLED.value, last_error="case closed before sending")
            .execution_options(synchronize_session=False)
        ).rowcount
    return {"paid": len(moved), "actions_cancelled": cancelled or 0}


# --- facts ---------------------------------------------------------------------------------


def merchant_configs(
    session: Session, merchant_ids: Iterable[str], settings: Settings
) -> dict[str, MerchantConfig]:
    ids = list(set(merchant_ids))
    default = defaults_from(settings)
    out = dict.fromkeys(ids, default)
    for start in range(0, len(ids), 5000):
        rows = session.scalars(
            select(MerchantSettings).where(
                MerchantSettings.merchant_id.in_(ids[start : start + 5000])
            )
        )
        for row in rows:
            out[row.merchant_id] = MerchantConfig(
                dunning_option=DunningOption(row.dunning_option),
                auto_overdue=row.auto_overdue,
                auto_chargebacks=row.auto_chargebacks,
                reminder_1_days=row.reminder_1_days,
                reminder_2_days=row.reminder_2_days,
                handover_days=row.handover_days,
                reminder_fee=cents(row.reminder_fee),
                chargeback_fee=cents(row.chargeback_fee),
                cancellation_costs=cents(row.cancellation_costs),
                interest_enabled=bool(row.interest_enabled),
            )
    return out


def ladder_settings(cfg: MerchantConfig) -> LadderSettings:
    return LadderSettings(cfg.reminder_1_days, cfg.reminder_2_days, cfg.handover_days)


def schedules(session: Session, order_ids: Iterable[str]) -> dict[str, list[InstallmentFact]]:
    """Each order's installments with what is still unpaid of each (a sale paid it, a
    chargeback or refund of that sale reopened it)."""
    ids = list(set(order_ids))
    out: dict[str, list[InstallmentFact]] = defaultdict(list)
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        paid: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
        sales: dict[tuple[str, str], tuple[int, Decimal]] = {}
        reversals: list[tuple[str, str, Decimal]] = []
        for t in session.execute(
            select(
                Transaction.order_id,
                Transaction.transaction_id,
                Transaction.type,
                Transaction.amount,
                Transaction.installment_number,
                Transaction.reverses_transaction_id,
            ).where(Transaction.order_id.in_(chunk))
        ):
            if t.type == "sale" and t.installment_number is not None:
                sales[(t.order_id, t.transaction_id)] = (t.installment_number, Decimal(t.amount))
                paid[(t.order_id, t.installment_number)] += Decimal(t.amount)
            elif t.reverses_transaction_id:
                reversals.append((t.order_id, t.reverses_transaction_id, Decimal(t.amount)))
        for order_id, reversed_id, amount in reversals:
            hit = sales.get((order_id, reversed_id))
            if hit:
                paid[(order_id, hit[0])] -= amount
        for row in session.execute(
            select(
                Installment.order_id, Installment.number, Installment.due_date, Installment.amount
            )
            .where(Installment.order_id.in_(chunk))
            .order_by(Installment.order_id, Installment.number)
        ):
            amount = Decimal(row.amount)
            open_ = max(amount - max(paid[(row.order_id, row.number)], ZERO), ZERO)
            out[row.order_id].append(
                InstallmentFact(row.number, row.due_date, amount, cents(open_))
            )
    return out


def case_items(
    session: Session, case_ids: Sequence[int]
) -> dict[int, list[tuple[int | None, date, Decimal]]]:
    """The principal items of each case's claim as detection recorded them (case_items):
    (installment number, due date, amount owed)."""
    try:
        from dunning.models.schema import CaseItem  # issue 4
    except ImportError:  # pragma: no cover
        return {}
    out: dict[int, list[tuple[int | None, date, Decimal]]] = defaultdict(list)
    ids = list(case_ids)
    for start in range(0, len(ids), 5000):
        for r in session.execute(
            select(
                CaseItem.case_id, CaseItem.installment_number, CaseItem.due_date, CaseItem.amount
            )
            .where(
                CaseItem.case_id.in_(ids[start : start + 5000]), CaseItem.item_type == "principal"
            )
            .order_by(CaseItem.case_id, CaseItem.due_date, CaseItem.installment_number)
        ):
            out[r.case_id].append((r.installment_number, r.due_date, cents(r.amount)))
    return out


@dataclass
class Candidate:
    case: Any  # row of the facts query
    facts: CaseFacts
    cfg: MerchantConfig


def _facts_query(as_of: datetime):
    ladder = [CaseState.SCHEDULED.value, CaseState.REMINDER_1.value, CaseState.REMINDER_2.value]
    timed = and_(
        Case.state.in_(ladder), or_(Case.next_step_at.is_(None), Case.next_step_at <= as_of)
    )
    partner = and_(
        Case.state == CaseState.WITH_PARTNER.value,
        Case.partner_claim_id.is_not(None),
        or_(
            Case.dunning_option == DunningOption.CANCELLATION.value,
            Case.partner_status == "unsuccessful",
        ),
    )
    return (
        select(
            Case,
            Order.payment_plan,
            Order.total_amount,
            Order.order_date,
            Order.product_name,
            Order.status.label("order_status"),
            Buyer,
            Merchant.name.label("merchant_name"),
        )
        .join(Order, Order.order_id == Case.order_id)
        .join(Buyer, Buyer.order_id == Case.order_id)
        .outerjoin(Merchant, Merchant.merchant_id == Case.merchant_id)
        .where(or_(timed, partner))
        .order_by(Case.case_id)
    )


def _to_facts(
    case: Case, plan: str, total: Decimal, installments: list[InstallmentFact]
) -> CaseFacts:
    return CaseFacts(
        case_id=case.case_id,
        state=case.state,
        dunning_option=case.dunning_option,
        default_date=case.default_date,
        payment_plan=plan,
        started_at=case.started_at,
        next_step_at=case.next_step_at,
        reminder_1_at=case.reminder_1_at,
        reminder_2_at=case.reminder_2_at,
        handed_over_at=case.handed_over_at,
        partner_claim_id=case.partner_claim_id,
        partner_status=case.partner_status,
        order_total=Decimal(total),
        installments=tuple(installments),
    )


# --- the claim: amounts, items, payloads ---------------------------------------------------


def _labels(kind: str, number: int | None, single: bool) -> tuple[str, str]:
    if kind == "principal":
        de_n, en_n, de_1, en_1 = LABELS["principal"]
        if single or number is None:
            return de_1, en_1
        return de_n.format(n=number), en_n.format(n=number)
    de, en = LABELS[kind].split("|")
    return de, en


def build_claim(
    case: Case,
    schedule: list[InstallmentFact],
    cfg: MerchantConfig,
    business: bool,
    as_of: datetime,
    zone,
    extra_reminder_fee: Decimal,
    claim_items: list[tuple[int | None, date, Decimal]] | None = None,
) -> dict[str, Any]:
    """The claim of a case at `as_of`: gross items, payments allocated costs -> interest ->
    principal, open items, and the case amounts to store when the step is done."""
    today = local_date(as_of, zone)
    principal_total = cents(case.principal_amount)
    principal_items = list(claim_items or [])
    if not principal_items and case.kind == CaseKind.OVERDUE.value:
        principal_items = [
            (i.number, i.due_date, i.amount)
            for i in schedule
            if i.due_date < today and i.open_amount > 0
        ]
    if cents(sum((a for _, _, a in principal_items), ZERO)) != principal_total:
        principal_items = [(None, case.default_date, principal_total)]
    reminder_fees = cents(case.reminder_fees or ZERO) + extra_reminder_fee
    fees_amount = cents(case.fees_amount or ZERO) + extra_reminder_fee
    other_fees = max(fees_amount - reminder_fees, ZERO)
    costs = fees_amount + cents(case.cancellation_costs or ZERO)
    paid_total = cents((case.paid_amount or ZERO) + (case.partner_paid_amount or ZERO))
    # Interest on what is open of the principal, oldest item paid first.
    pre = allocate(paid_total, costs, ZERO, principal_total)
    open_principal = reduce_oldest_first([a for _, _, a in principal_items], pre.to_principal)
    if cfg.interest_enabled:
        interest = claim_interest(
            [(d, a) for (_, d, _), a in zip(principal_items, open_principal, strict=True)],
            today,
            business,
        )
    else:
        interest = cents(case.interest_amount or ZERO)
    alloc = allocate(paid_total, costs, interest, principal_total)
    open_items = reduce_oldest_first([a for _, _, a in principal_items], alloc.to_principal)
    single = len(principal_items) == 1
    gross: list[dict[str, Any]] = []
    open_: list[dict[str, Any]] = []
    for (number, due, amount), left in zip(principal_items, open_items, strict=True):
        de, en = _labels("principal", number, single)
        base = {"type": "principal", "due_date": due.isoformat(), "label_de": de, "label_en": en}
        gross.append({**base, "amount": f"{amount:.2f}"})
        open_.append({**base, "amount": f"{left:.2f}"})
    cost_parts = [
        ("chargeback_fee", other_fees),
        ("reminder_fee", reminder_fees),
        ("cancellation_costs", cents(case.cancellation_costs or ZERO)),
    ]
    open_costs = reduce_oldest_first([a for _, a in cost_parts], alloc.to_costs)
    for (kind, amount), left in zip(cost_parts, open_costs, strict=True):
        if amount > 0:
            de, en = _labels(kind, None, True)
            base = {"type": kind, "due_date": None, "label_de": de, "label_en": en}
            gross.append({**base, "amount": f"{amount:.2f}"})
            open_.append({**base, "amount": f"{left:.2f}"})
    if interest > 0:
        de, en = _labels("interest", None, True)
        base = {"type": "interest", "due_date": None, "label_de": de, "label_en": en}
        gross.append({**base, "amount": f"{interest:.2f}"})
        open_.append({**base, "amount": f"{alloc.interest_open:.2f}"})
    return {
        "items": gross,
        "open_items": [i for i in open_ if Decimal(i["amount"]) > 0],
        "paid": f"{paid_total:.2f}",
        "total": f"{alloc.total_open:.2f}",
        "case": {
            "fees_amount": f"{fees_amount:.2f}",
            "reminder_fees": f"{reminder_fees:.2f}",
            "interest_amount": f"{interest:.2f}",
        },
    }


def _buyer_dict(b: Buyer) -> dict[str, Any]:
    return {
        "first_name": b.first_name,
        "last_name": b.last_name,
        "company_name": b.company_name,
        "email": b.email,
        "street": b.street,
        "house_number": b.house_number,
        "zip_code": b.zip_code,
        "city": b.city,
        "country_code": b.country_code,
        "locale": b.locale,
    }


def _creditor(settings: Settings) -> dict[str, str]:
    return {
        "name": settings.creditor_name,
        "address": settings.creditor_address,
        "contact": settings.creditor_contact,
        "register": settings.creditor_register,
    }


def build_payload(
    cand: Candidate,
    row: Any,
    step: ActionStep,
    deadline: date | None,
    schedule: list[InstallmentFact],
    as_of: datetime,
    settings: Settings,
    items: list[tuple[int | None, date, Decimal]] | None = None,
) -> dict[str, Any]:
    case: Case = row.Case
    zone = settings.zone
    buyer = _buyer_dict(row.Buyer)
    business = bool((row.Buyer.company_name or "").strip())
    cfg = cand.cfg
    if step in (ActionStep.REMINDER_1, ActionStep.REMINDER_2):
        claim = build_claim(case, schedule, cfg, business, as_of, zone, cfg.reminder_fee, items)
        assert deadline is not None
        next_at = datetime.combine(deadline, datetime.min.time(), tzinfo=zone).astimezone(UTC)
        claim["case"]["next_step_at"] = next_at.isoformat()
        return {
            "level": 1 if step == ActionStep.REMINDER_1 else 2,
            "buyer": buyer,
            "order": {
                "order_id": case.order_id,
                "product": row.product_name or case.order_id,
                "order_date": local_date(row.order_date, zone).isoformat(),
                "merchant_name": row.merchant_name or case.merchant_id,
            },
            "currency": case.currency,
            "items": claim["items"],
            "paid": claim["paid"],
            "total": claim["total"],
            "deadline": deadline.isoformat(),
            "option": case.dunning_option,
            "creditor": _creditor(settings),
            "case": claim["case"],
        }
    if step == ActionStep.HANDOVER:
        claim = build_claim(case, schedule, cfg, business, as_of, zone, ZERO, items)
        reference = reference_for(case.case_id)
        first_reminder = (
            local_date(case.reminder_1_at, zone).isoformat() if case.reminder_1_at else None
        )
        body = {
            "reference": reference,
            "escalation": case.dunning_option,
            "creditor": {
                "merchant_id": case.merchant_id,
                "name": settings.creditor_name,
                "address": settings.creditor_address,
            },
            "debtor": {k: v for k, v in buyer.items() if k != "locale"},
            "currency": case.currency,
            "contract_date": local_date(row.order_date, zone).isoformat(),
            "default_date": case.default_date.isoformat(),
            "first_reminder_date": first_reminder,
            "subject": row.product_name or case.order_id,
            "items": [
                {
                    "type": i["type"],
                    "amount": i["amount"],
                    "due_date": i["due_date"],
                    "description": i["label_de"],
                }
                for i in claim["open_items"]
            ],
        }
        # Issue 9: what was paid at the source is already off the handed-over items; the
        # partner must not be told it again as a new payment after the handover.
        told = f"{cents(case.paid_amount or ZERO):.2f}"
        return {"claim": body, "reference": reference, "case": claim["case"], "told_total": told}
    if step == ActionStep.CANCEL_ORDER:
        return {
            "order_id": case.order_id,
            "case_reference": reference_for(case.case_id),
            "cancellation_costs": f"{cfg.cancellation_costs:.2f}",
        }
    if step == ActionStep.COURT_REQUEST:
        return {"claim_id": case.partner_claim_id}
    raise ValueError(step)


# --- claiming ----------------------------------------------------------------------------


def _insert_actions(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert actions; keys that exist already are skipped. Returns the new ids."""
    if not rows:
        return []
    if is_postgres(session.get_bind()):
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    # Core executemany ("insertmanyvalues"): compiled once, rows sent in pages; keys that
    # conflict return no row.
    stmt = (
        dialect_insert(ACTIONS)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(ACTIONS.c.id)
    )
    return list(session.connection().execute(stmt, rows).scalars())


def _begin_claim(session: Session) -> None:
    if not is_postgres(session.get_bind()):
        # Take SQLite's writer lock before reading: no other run can claim in between.
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def claim_due(
    url: str,
    as_of: datetime,
    settings: Settings,
    shard: int | None = None,
    shards: int = 1,
    lease: timedelta = LEASE,
    batch: int = CHUNK,
    now: datetime | None = None,
) -> list[int]:
    """Claim every due step (and waiting notifications) in transactions of `batch` cases;
    return the action ids this run now owns. Each transaction: lock the candidate cases,
    insert the actions under their unique keys, lease them."""
    return [
        i
        for ids in claim_batches(url, as_of, settings, shard, shards, lease, batch, now)
        for i in ids
    ]


def claim_batches(
    url: str,
    as_of: datetime,
    settings: Settings,
    shard: int | None = None,
    shards: int = 1,
    lease: timedelta = LEASE,
    batch: int = CHUNK,
    now: datetime | None = None,
) -> Iterator[list[int]]:
    """`claim_due` batch by batch (one committed transaction each), so sending can start
    while the next batch is claimed."""
    now = now or datetime.now(UTC)
    lease_until = now + lease
    yield _reclaim_pending(url, now, lease_until, shard, shards)
    yield _claim_notifications(url, as_of, now, lease_until, shard, shards)
    last_id = 0
    while True:
        new_ids, last_id = _claim_batch(
            url, as_of, settings, shard, shards, lease_until, batch, last_id, now
        )
        yield new_ids
        if last_id is None:
            return


def _reclaim_pending(url, now, lease_until, shard, shards) -> list[int]:
    """Pending actions nobody is sending (transient failure, or a run that died). A ladder
    step is taken up again only while its case is still where the step starts from (a case
    put on hold keeps its pending step for when it resumes)."""
    still_due = [
        and_(Action.step == step.value, Case.state == state.value)
        for step, state in FROM_STATE.items()
    ]
    notices = Action.step.in_([ActionStep.PARTNER_PAYMENT.value, ActionStep.RECALL.value])
    with session_scope(url) as s:
        eligible = (
            select(Action.id)
            .join(Case, Case.case_id == Action.case_id)
            .where(
                Action.status == ActionStatus.PENDING.value,
                or_(Action.lease_until.is_(None), Action.lease_until < now),
                or_(notices, *still_due),
            )
        )
        ids = list(s.scalars(_shard_filter(eligible, shard, shards)))
        # A refused step whose error an operator cleared (after fixing the cause) is
        # tried again, under its key: the refusal created nothing at the partner.
        retry = (
            select(Action.id)
            .join(Case, Case.case_id == Action.case_id)
            .where(
                Action.status == ActionStatus.FAILED.value,
                Case.partner_error.is_(None),
                or_(*still_due),
            )
        )
        retry_ids = list(s.scalars(_shard_filter(retry, shard, shards)))
        for start in range(0, len(retry_ids), 5000):
            s.execute(
                update(ACTIONS)
                .where(
                    ACTIONS.c.id.in_(retry_ids[start : start + 5000]),
                    ACTIONS.c.status == ActionStatus.FAILED.value,
                )
                .values(status=ActionStatus.PENDING.value, lease_until=None)
            )
        ids += retry_ids
        out: list[int] = []
        for start in range(0, len(ids), 5000):
            # Guarded again in the UPDATE: a concurrent run may have leased some meanwhile.
            out.extend(
                s.scalars(
                    update(ACTIONS)
                    .where(
                        ACTIONS.c.id.in_(ids[start : start + 5000]),
                        ACTIONS.c.status == ActionStatus.PENDING.value,
                        or_(ACTIONS.c.lease_until.is_(None), ACTIONS.c.lease_until < now),
                    )
                    .values(lease_until=lease_until)
                    .returning(ACTIONS.c.id)
                )
            )
        return out


def _claim_notifications(url, as_of, now, lease_until, shard, shards) -> list[int]:
    """Tell the partner what it must know: a recall for a closed case it holds, and
    payments received at the source for a case it holds."""
    with session_scope(url) as s:
        _begin_claim(s)
        done_recall = select(Action.case_id).where(
            Action.step == ActionStep.RECALL.value,
        )
        q = select(Case.case_id, Case.state, Case.partner_claim_id, Case.close_reason).where(
            Case.state.in_([CaseState.PAID.value, CaseState.CANCELLED.value]),
            Case.partner_claim_id.is_not(None),
            or_(
                Case.partner_status.is_(None),
                Case.partner_status.not_in(["recalled", "paid", "closed"]),
            ),
            Case.case_id.not_in(done_recall),
        )
        rows = []
        for r in s.execute(_shard_filter(q, shard, shards)):
            reason = "paid" if r.state == CaseState.PAID.value else "cancelled_by_creditor"
            if (
                r.state == CaseState.CANCELLED.value
                and "withdraw" in (r.close_reason or "").lower()
            ):
                reason = "withdrawn"
            rows.append(
                _action_row(
                    r.case_id,
                    ActionStep.RECALL,
                    key_for(r.case_id, "recall"),
                    {"claim_id": r.partner_claim_id, "reason": reason},
                    as_of,
                    lease_until,
                )
            )
        q = select(
            Case.case_id, Case.partner_claim_id, Case.paid_amount, Case.partner_told_paid
        ).where(
            Case.state.in_([st.value for st in OPEN_PARTNER_STATES]),
            Case.partner_claim_id.is_not(None),
            func.round(Case.paid_amount, 2) > func.round(Case.partner_told_paid, 2),
        )
        for r in s.execute(_shard_filter(q, shard, shards)):
            paid = cents(r.paid_amount)
            amount = paid - cents(r.partner_told_paid)
            rows.append(
                _action_row(
                    r.case_id,
                    ActionStep.PARTNER_PAYMENT,
                    key_for(r.case_id, "payment", f"{paid:.2f}"),
                    {
                        "claim_id": r.partner_claim_id,
                        "amount": f"{amount:.2f}",
                        "paid_at": as_of.isoformat(),
                        "told_total": f"{paid:.2f}",
                    },
                    as_of,
                    lease_until,
                )
            )
        return _insert_actions(s, rows)


def _action_row(case_id, step, key, payload, as_of, lease_until) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "step": step.value,
        "idempotency_key": key,
        "status": ActionStatus.PENDING.value,
        "payload": payload,
        "attempts": 0,
        "created_at": as_of,
        "lease_until": lease_until,
    }


def _claim_batch(url, as_of, settings, shard, shards, lease_until, batch, last_id, now):
    zone = settings.zone
    with session_scope(url) as s:
        _begin_claim(s)
        q = (
            _shard_filter(_facts_query(as_of), shard, shards)
            .where(Case.case_id > last_id)
            .limit(batch)
        )
        if is_postgres(s.get_bind()):
            q = q.with_for_update(of=Case, skip_locked=True)
        rows = s.execute(q).all()
        if not rows:
            return [], None
        next_last = rows[-1].Case.case_id
        cfgs = merchant_configs(s, (r.Case.merchant_id for r in rows), settings)
        items = case_items(s, [r.Case.case_id for r in rows])
        # Order schedules: for the § 498 guard, and the items of cases detection recorded
        # none for.
        need = [
            r.Case.order_id
            for r in rows
            if r.Case.case_id not in items
            or (
                r.Case.state == CaseState.WITH_PARTNER.value
                and r.payment_plan == PaymentPlan.INSTALLMENTS.value
            )
        ]
        scheds = schedules(s, need)
        actions: list[dict[str, Any]] = []
        for row in rows:
            case = row.Case
            cfg = cfgs[case.merchant_id]
            sched = scheds.get(case.order_id, [])
            facts = _to_facts(case, row.payment_plan, row.total_amount, sched)
            step = next_step(facts, ladder_settings(cfg), as_of, zone)
            if step is None:
                continue
            cand = Candidate(row, facts, cfg)
            payload = build_payload(
                cand, row, step.step, step.deadline, sched, as_of, settings, items.get(case.case_id)
            )
            actions.append(
                _action_row(
                    case.case_id,
                    step.step,
                    key_for(case.case_id, step.step.value),
                    payload,
                    as_of,
                    lease_until,
                )
            )
        ids = _insert_actions(s, actions)
        return ids, next_last


# --- performing --------------------------------------------------------------------------


@dataclass
class Result:
    action_id: int
    case_id: int
    step: str
    status: str  # done | failed | transient
    response: dict[str, Any]
    error: str | None
    payload: dict[str, Any]


def load_actions(url: str, ids: Sequence[int]) -> list[Action]:
    out: list[Action] = []
    with session_scope(url) as s:
        for start in range(0, len(ids), 5000):
            out.extend(
                s.scalars(
                    select(Action)
                    .where(
                        Action.id.in_(ids[start : start + 5000]),
                        Action.status == ActionStatus.PENDING.value,
                    )
                    .order_by(Action.id)
                )
            )
    return out


def send_reminders(
    actions: Sequence[Action],
    settings: Settings,
    batch: int = 250,
    connections: int = 4,
    url: str | None = None,
) -> list[Result]:
    """Reminder e-mails: one SMTP connection per batch, a few batches at once. A batch
    whose connection fails is left pending (transient); a refused recipient is failed."""
    if not actions:
        return []
    chunks = [actions[i : i + batch] for i in range(0, len(actions), batch)]
    with ThreadPoolExecutor(max_workers=max(1, min(connections, len(chunks)))) as pool:
        parts = list(pool.map(lambda c: _send_batch(c, settings, url), chunks))
    return [r for part in parts for r in part]


def _send_batch(
    chunk: Sequence[Action], settings: Settings, url: str | None = None
) -> list[Result]:
    import smtplib

    from dunning.db import get_engine
    from dunning.tasks.mailer import MailBuildError, message_id, open_sink, render_reminder

    sent: list[Result] = []
    engine = get_engine(url or settings.database_url)
    try:
        with (
            _gate_connection(engine) as conn,
            open_sink(
                settings.smtp_url, timeout=max(settings.http_timeout_seconds, SMTP_TIMEOUT)
            ) as sink,
        ):
            for a in chunk:
                p = a.payload or {}
                if a.sent_at is not None:
                    # Issue 9: the mail server accepted this one before a crash; the run
                    # died before recording it. Record it now, never send it again.
                    mid = message_id(a.idempotency_key, settings.mail_from)
                    sent.append(
                        Result(a.id, a.case_id, a.step, "done", {"message_id": mid}, None, p)
                    )
                    continue
                if not _gate(conn, a):
                    conn.rollback()
                    sent.append(_left_state(a))
                    continue
                try:  # a mail that cannot be built sets its case aside, not the batch
                    msg = render_reminder(p, settings.mail_from, a.idempotency_key)
                except MailBuildError as exc:
                    conn.rollback()
                    sent.append(Result(a.id, a.case_id, a.step, "failed", {}, f"mail: {exc}", p))
                    continue
                try:
                    sink.send(msg)  # the case row stays locked until sent_at is committed
                except smtplib.SMTPRecipientsRefused as exc:
                    conn.rollback()
                    sent.append(
                        Result(
                            a.id, a.case_id, a.step, "failed", {}, f"recipient refused: {exc}", p
                        )
                    )
                    continue
                crashpoint("mail.accepted")
                _mark_accepted(conn, a.id)
                crashpoint("mail.marked")
                sent.append(
                    Result(
                        a.id, a.case_id, a.step, "done", {"message_id": msg["Message-ID"]}, None, p
                    )
                )
    except (OSError, smtplib.SMTPException) as exc:
        done_ids = {r.action_id for r in sent}
        for a in chunk:
            if a.id not in done_ids:
                sent.append(
                    Result(
                        a.id, a.case_id, a.step, "transient", {}, f"mail: {exc}", a.payload or {}
                    )
                )
    return sent


# The statements of every single step, built once: building them per step cost more CPU
# than their round trips (thousands of steps per run, all in one Python process).
_CASE_STATE = text("SELECT state FROM cases WHERE case_id = :case_id")
_CASE_STATE_LOCKED = text("SELECT state FROM cases WHERE case_id = :case_id FOR UPDATE")
_MARK_SENT = text(
    "UPDATE actions SET sent_at = :now WHERE id = :id AND status = :pending"
).bindparams(bindparam("now", type_=UTCDateTime()))


@contextmanager
def _gate_connection(engine: Any) -> Iterator[Any]:
    """A connection for gating steps and marking them sent, one commit per step. Those
    commits need not wait for the WAL flush (PostgreSQL): only a crash of the database
    server itself within that flush delay could lose a mark."""
    with engine.connect() as conn:
        if not is_postgres(engine):
            yield conn
            return
        conn.exec_driver_sql("SET synchronous_commit = off")
        conn.commit()
        try:
            yield conn
        finally:  # the connection goes back to the pool as it came
            conn.rollback()
            conn.exec_driver_sql("RESET synchronous_commit")
            conn.commit()


def _gate(conn: Any, a: Action) -> bool:
    """Issue 9: just before a ladder step goes out, lock its case row (PostgreSQL) and check
    the case is still where the step starts from. An operator's cancel or hold (which locks
    the same row) then either comes first - the step is not sent - or waits until the step
    is out and recorded as sent. Notices to the partner (recall, payment) go regardless."""
    want = FROM_STATE.get(ActionStep(a.step))
    if want is None:
        return True
    query = _CASE_STATE_LOCKED if is_postgres(conn.engine) else _CASE_STATE
    return conn.execute(query, {"case_id": a.case_id}).scalar() == want.value


def _left_state(a: Action) -> Result:
    """Not sent: the case moved (cancelled, paid, on hold) after the step was claimed. The
    action waits; settle_payments cancels it if the case is closed, a resume takes it up."""
    want = FROM_STATE[ActionStep(a.step)].value
    error = f"not sent: the case left {want} before sending"
    return Result(a.id, a.case_id, a.step, "transient", {}, error, a.payload or {})


def _mark_accepted(conn: Any, action_id: int) -> None:
    """Issue 9: commit `sent_at` the moment the mail server accepted the message, so a
    crash before the batch's outcomes are recorded does not send it again. What is left is
    the window between the server's 250 reply and this commit (one UPDATE, ~1 ms)."""
    params = {"now": datetime.now(UTC), "id": action_id, "pending": ActionStatus.PENDING.value}
    conn.execute(_MARK_SENT, params)
    conn.commit()


def call_partner_and_source(
    actions: Sequence[Action],
    settings: Settings,
    workers: int = 8,
    attempts: int = 4,
    base_delay: float = 0.2,
    url: str | None = None,
) -> list[Result]:
    from dunning.db import get_engine
    from dunning.tasks import partner, source_cancel
    from dunning.tasks.http_client import make_client

    if not actions:
        return []
    timeout = settings.http_timeout_seconds
    pclient = make_client(settings.partner_url, settings.partner_token, timeout)
    sclient = (
        make_client(settings.source_url, settings.source_token, timeout)
        if source_cancel.is_http(settings.source_url)
        else None
    )
    kw = {"attempts": attempts, "base_delay": base_delay}

    engine = get_engine(url or settings.database_url)

    def one(a: Action) -> Result:
        if ActionStep(a.step) not in FROM_STATE:
            return call(a)
        # The case row stays locked (PostgreSQL) during the call: see _gate.
        with engine.connect() as conn:
            if not _gate(conn, a):
                return _left_state(a)
            result = call(a)
            conn.commit()
            return result

    def call(a: Action) -> Result:
        p = a.payload or {}
        step = ActionStep(a.step)
        if step == ActionStep.HANDOVER:
            out = partner.hand_over(pclient, a.idempotency_key, p["claim"], **kw)
        elif step == ActionStep.COURT_REQUEST:
            out = partner.request_court(pclient, a.idempotency_key, p["claim_id"], **kw)
        elif step == ActionStep.PARTNER_PAYMENT:
            out = partner.report_payment(
                pclient, a.idempotency_key, p["claim_id"], p["amount"], p["paid_at"], **kw
            )
        elif step == ActionStep.RECALL:
            out = partner.recall(pclient, a.idempotency_key, p["claim_id"], p["reason"], **kw)
        elif step == ActionStep.CANCEL_ORDER:
            if sclient is None:
                out = partner.Outcome(
                    partner.DONE,
                    {
                        "note": "source is a file, not the orders API: "
                        "cancel the order at the platform"
                    },
                )
            else:
                out = source_cancel.cancel_order(
                    sclient, a.idempotency_key, p["order_id"], p["case_reference"], **kw
                )
        else:  # pragma: no cover
            raise ValueError(step)
        crashpoint("partner.answered")
        return Result(a.id, a.case_id, a.step, out.status, out.response, out.error, p)

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(one, actions))
    finally:
        pclient.close()
        if sclient is not None:
            sclient.close()


def perform(
    url: str,
    action_ids: Sequence[int],
    as_of: datetime,
    settings: Settings,
    workers: int = 8,
    attempts: int = 4,
    base_delay: float = 0.2,
) -> Counter:
    """Send what this run claimed and record the outcomes batch by batch. E-mails and
    HTTP calls go side by side (two pipelines; never the same case in both)."""
    actions = load_actions(url, list(action_ids))
    mail_steps = (ActionStep.REMINDER_1.value, ActionStep.REMINDER_2.value)
    mails = [a for a in actions if a.step in mail_steps]
    calls = [a for a in actions if a.step not in mail_steps]

    def pipeline(items: list[Action], send) -> Counter:
        stats: Counter = Counter()
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            try:
                results = send(chunk)
                record_outcomes(url, results, as_of)
            except BaseException:
                # Give the rest back at once: a retry of this task or the next run sends
                # it again, same key, instead of waiting for the lease to run out.
                release_leases(url, [a.id for a in items[start:]])
                raise
            stats.update(f"{r.step}:{r.status}" for r in results)
        return stats

    with ThreadPoolExecutor(max_workers=2) as pool:
        mail_stats = pool.submit(pipeline, mails, lambda c: send_reminders(c, settings, url=url))
        call_stats = pool.submit(
            pipeline,
            calls,
            lambda c: call_partner_and_source(c, settings, workers, attempts, base_delay, url),
        )
        return mail_stats.result() + call_stats.result()


def release_leases(url: str, action_ids: Sequence[int]) -> None:
    with session_scope(url) as s:
        ids = list(action_ids)
        for start in range(0, len(ids), 5000):
            s.execute(
                update(ACTIONS)
                .where(
                    ACTIONS.c.id.in_(ids[start : start + 5000]),
                    ACTIONS.c.status == ActionStatus.PENDING.value,
                )
                .values(lease_until=None)
            )


# --- outcomes ----------------------------------------------------------------------------


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


def record_outcomes(url: str, results: Sequence[Result], as_of: datetime) -> None:
    """One transaction: actions done/failed/back to waiting; cases moved and updated."""
    if not results:
        return
    with session_scope(url) as s:
        done = [r for r in results if r.status == "done"]
        failed = [r for r in results if r.status == "failed"]
        transient = [r for r in results if r.status == "transient"]
        done_ids: set[int] = set()
        if done:
            for start in range(0, len(done), 1000):
                chunk = done[start : start + 1000]
                got = s.execute(
                    update(ACTIONS)
                    .where(
                        ACTIONS.c.id.in_([r.action_id for r in chunk]),
                        ACTIONS.c.status == ActionStatus.PENDING.value,
                    )
                    .values(
                        status=ActionStatus.DONE.value,
                        done_at=as_of,
                        sent_at=as_of,
                        attempts=ACTIONS.c.attempts + 1,
                        lease_until=None,
                        last_error=None,
                    )
                    .returning(ACTIONS.c.id)
                ).scalars()
                done_ids.update(got)
            # Responses per row (small JSON): executemany.
            s.execute(
                update(ACTIONS)
                .where(ACTIONS.c.id == bindparam("aid"))
                .values(response=bindparam("resp")),
                [{"aid": r.action_id, "resp": r.response} for r in done if r.action_id in done_ids],
            )
        if failed:
            s.execute(
                update(ACTIONS)
                .where(
                    ACTIONS.c.id == bindparam("aid"), ACTIONS.c.status == ActionStatus.PENDING.value
                )
                .values(
                    status=ActionStatus.FAILED.value,
                    last_error=bindparam("err"),
                    attempts=ACTIONS.c.attempts + 1,
                    lease_until=None,
                    sent_at=as_of,
                ),
                [{"aid": r.action_id, "err": r.error} for r in failed],
            )
            s.execute(
                update(CASES)
                .where(CASES.c.case_id == bindparam("cid"))
                .values(partner_error=bindparam("err"), updated_at=as_of),
                [{"cid": r.case_id, "err": f"{r.step}: {r.error}"} for r in failed],
            )
        if transient:
            s.execute(
                update(ACTIONS)
                .where(
                    ACTIONS.c.id == bindparam("aid"), ACTIONS.c.status == ActionStatus.PENDING.value
                )
                .values(
                    last_error=bindparam("err"), attempts=ACTIONS.c.attempts + 1, lease_until=None
                ),
                [{"aid": r.action_id, "err": r.error} for r in transient],
            )
        _apply_done(s, [r for r in done if r.action_id in done_ids], as_of)
        touched = sorted({r.case_id for r in results})
        recompute_outstanding(s, touched)


def _apply_done(s: Session, done: Sequence[Result], as_of: datetime) -> None:
    by_step: dict[str, list[Result]] = defaultdict(list)
    for r in done:
        by_step[r.step].append(r)
    for step_name in (ActionStep.REMINDER_1.value, ActionStep.REMINDER_2.value):
        rs = by_step.get(step_name, [])
        if not rs:
            continue
        step = ActionStep(step_name)
        from_state = FROM_STATE[step]
        s.execute(
            update(CASES)
            .where(CASES.c.case_id == bindparam("cid"), CASES.c.state == from_state.value)
            .values(
                fees_amount=bindparam("fees"),
                reminder_fees=bindparam("rfees"),
                interest_amount=bindparam("interest"),
                next_step_at=bindparam("next_at"),
            ),
            [
                {
                    "cid": r.case_id,
                    "fees": _dec(r.payload["case"]["fees_amount"]),
                    "rfees": _dec(r.payload["case"]["reminder_fees"]),
                    "interest": _dec(r.payload["case"]["interest_amount"]),
                    "next_at": datetime.fromisoformat(r.payload["case"]["next_step_at"]),
                }
                for r in rs
            ],
        )
        at_col = "reminder_1_at" if step == ActionStep.REMINDER_1 else "reminder_2_at"
        move_cases(
            s,
            [r.case_id for r in rs],
            TO_STATE[step],
            from_states=[from_state],
            actor=ACTOR,
            reason=f"{step.value} sent",
            as_of=as_of,
            values={at_col: as_of, "last_step_at": as_of},
        )
    rs = by_step.get(ActionStep.HANDOVER.value, [])
    if rs:
        s.execute(
            update(CASES)
            .where(CASES.c.case_id == bindparam("cid"), CASES.c.state == CaseState.REMINDER_2.value)
            .values(
                partner_claim_id=bindparam("claim_id"),
                partner_reference=bindparam("reference"),
                partner_status=bindparam("pstatus"),
                partner_error=None,
                interest_amount=bindparam("interest"),
                partner_told_paid=bindparam("told"),
            ),
            [
                {
                    "cid": r.case_id,
                    "claim_id": r.response.get("claim_id"),
                    "reference": r.payload.get("reference"),
                    "pstatus": r.response.get("status", "received"),
                    "interest": _dec(r.payload["case"]["interest_amount"]),
                    "told": _dec(r.payload.get("told_total", "0")),
                }
                for r in rs
            ],
        )
        # Issue 9: a case an operator closed while its claim was on the way keeps the claim
        # id, so the next run recalls the claim from the partner instead of orphaning it.
        s.execute(
            update(CASES)
            .where(
                CASES.c.case_id == bindparam("cid"),
                CASES.c.state != CaseState.REMINDER_2.value,
                CASES.c.partner_claim_id.is_(None),
            )
            .values(partner_claim_id=bindparam("claim_id"), partner_reference=bindparam("ref")),
            [
                {
                    "cid": r.case_id,
                    "claim_id": r.response.get("claim_id"),
                    "ref": r.payload.get("reference"),
                }
                for r in rs
            ],
        )
        move_cases(
            s,
            [r.case_id for r in rs],
            CaseState.WITH_PARTNER,
            from_states=[CaseState.REMINDER_2],
            actor=ACTOR,
            reason="claim handed over to the collection partner",
            as_of=as_of,
            values={"handed_over_at": as_of, "last_step_at": as_of, "next_step_at": None},
        )
    rs = by_step.get(ActionStep.CANCEL_ORDER.value, [])
    if rs:
        s.execute(
            update(CASES)
            .where(
                CASES.c.case_id == bindparam("cid"), CASES.c.state == CaseState.WITH_PARTNER.value
            )
            .values(cancellation_costs=bindparam("costs"), partner_error=None),
            [{"cid": r.case_id, "costs": _dec(r.payload["cancellation_costs"])} for r in rs],
        )
        move_cases(
            s,
            [r.case_id for r in rs],
            CaseState.ORDER_CANCELLED,
            from_states=[CaseState.WITH_PARTNER],
            actor=ACTOR,
            reason="order cancelled at the source (§ 498 BGB conditions met)",
            as_of=as_of,
            values={"last_step_at": as_of},
        )
    rs = by_step.get(ActionStep.COURT_REQUEST.value, [])
    if rs:
        move_cases(
            s,
            [r.case_id for r in rs],
            CaseState.COURT,
            from_states=[CaseState.WITH_PARTNER],
            actor=ACTOR,
            reason="partner unsuccessful: court dunning procedure requested",
            as_of=as_of,
            values={
                "last_step_at": as_of,
                "partner_status": "court_requested",
                "partner_error": None,
            },
        )
    rs = by_step.get(ActionStep.PARTNER_PAYMENT.value, [])
    if rs:
        s.execute(
            update(CASES)
            .where(CASES.c.case_id == bindparam("cid"))
            .values(partner_told_paid=bindparam("told")),
            [{"cid": r.case_id, "told": _dec(r.payload["told_total"])} for r in rs],
        )
    rs = by_step.get(ActionStep.RECALL.value, [])
    if rs:
        s.execute(
            update(CASES)
            .where(CASES.c.case_id.in_([r.case_id for r in rs]))
            .values(partner_status="recalled", updated_at=as_of)
        )


# --- the whole run ------------------------------------------------------------------------


def escalate(
    url: str,
    as_of: datetime,
    settings: Settings,
    shard: int | None = None,
    shards: int = 1,
    workers: int = 8,
    attempts: int = 4,
    base_delay: float = 0.2,
    sync_partner: bool = True,
) -> dict[str, Any]:
    """The core of `escalate_cases` without Prefect: partner updates, payments, claim,
    send, record. Returns counters."""
    stats: dict[str, Any] = {}
    if sync_partner:
        from dunning.tasks.http_client import TransientHTTPError
        from dunning.tasks.partner_sync import sync_partner_updates

        try:
            stats["partner_sync"] = sync_partner_updates(url, as_of, settings)
        except TransientHTTPError as exc:  # the partner is down: steps go on, updates wait
            log.warning("partner updates not fetched: %s", exc)
            stats["partner_sync"] = {"error": str(exc)}
    stats["settle"] = settle_payments(url, as_of, shard, shards)
    stats.update(advance(url, as_of, settings, shard, shards, workers, attempts, base_delay))
    return stats


def advance(
    url: str,
    as_of: datetime,
    settings: Settings,
    shard: int | None = None,
    shards: int = 1,
    workers: int = 8,
    attempts: int = 4,
    base_delay: float = 0.2,
) -> dict[str, Any]:
    """Claim the due steps batch by batch and send each batch while the next is claimed."""
    stats: dict[str, Any] = {}
    claimed = 0
    performed: Counter = Counter()
    # Claim batch n+1 while batch n is being sent.
    with ThreadPoolExecutor(max_workers=1) as sender:
        futures = []
        for ids in claim_batches(url, as_of, settings, shard, shards):
            if ids:
                crashpoint("escalate.claimed")
                claimed += len(ids)
                futures.append(
                    sender.submit(perform, url, ids, as_of, settings, workers, attempts, base_delay)
                )
        for future in futures:
            performed += future.result()
    stats["claimed"] = claimed
    stats["performed"] = dict(performed)
    return stats


__all__ = ["claim_due", "escalate", "perform", "record_outcomes", "settle_payments"]
