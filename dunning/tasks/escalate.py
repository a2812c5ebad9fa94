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
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, text, update
from sqlalchemy.orm import Session

from dunning.config import Settings
from dunning.crashpoints import crashpoint
from dunning.db import insert_for, is_postgres, session_scope
from dunning.models import claim_payloads as cp
from dunning.models.base_rates import BaseRateUnknown, base_rates
from dunning.models.claims import refresh_outstanding
from dunning.models.clock import local_date
from dunning.models.enums import (
    ActionStatus,
    ActionStep,
    CaseState,
    DunningOption,
    PaymentPlan,
)
from dunning.models.ladder import (
    CaseFacts,
    LadderSettings,
    next_step,
    quiet_move,
)
from dunning.models.ledger import (
    CANCELLATION_COSTS,
    REMINDER_FEE,
    Charge,
    Statement,
    arrears,
    below_minimum,
    cents,
    reminder_fee,
    termination_guard,
)
from dunning.models.merchant_settings import MerchantConfig
from dunning.models.schema import (
    Action,
    Buyer,
    Case,
    CaseCharge,
    CaseItem,
    Merchant,
    Order,
    Transaction,
)
from dunning.models.types import UTCDateTime
from dunning.tasks.claim_events import (
    ClaimInput,
    load_claims,
    replayed_case_ids,
    store_amounts,
)
from dunning.tasks.merchant_settings import configs_for
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
OPEN_PARTNER_STATES = (
    CaseState.WITH_PARTNER,
    CaseState.TERMINATION_NOTICE,
    CaseState.AWAITING_CANCELLATION,
    CaseState.COURT,
    CaseState.ORDER_CANCELLED,
)
OPEN_STATES = tuple(s for s in CaseState if not s.is_terminal)
LADDER_STEPS = (
    ActionStep.REMINDER_1,
    ActionStep.REMINDER_2,
    ActionStep.HANDOVER,
    ActionStep.TERMINATION_NOTICE,
    ActionStep.CANCEL_ORDER,
    ActionStep.COURT_REQUEST,
)
MAIL_STEPS = (ActionStep.REMINDER_1, ActionStep.REMINDER_2, ActionStep.TERMINATION_NOTICE)
# Where each ladder step starts from: a step is sent only while its case is still there.
FROM_STATES = {
    ActionStep.REMINDER_1: (CaseState.SCHEDULED,),
    ActionStep.REMINDER_2: (CaseState.REMINDER_1,),
    ActionStep.HANDOVER: (CaseState.REMINDER_2,),
    ActionStep.TERMINATION_NOTICE: (CaseState.WITH_PARTNER,),
    ActionStep.CANCEL_ORDER: (CaseState.WITH_PARTNER, CaseState.TERMINATION_NOTICE),
    ActionStep.COURT_REQUEST: (CaseState.WITH_PARTNER,),
}
TO_STATE = {
    ActionStep.REMINDER_1: CaseState.REMINDER_1,
    ActionStep.REMINDER_2: CaseState.REMINDER_2,
    ActionStep.HANDOVER: CaseState.WITH_PARTNER,
    ActionStep.TERMINATION_NOTICE: CaseState.TERMINATION_NOTICE,
    ActionStep.CANCEL_ORDER: CaseState.ORDER_CANCELLED,
    ActionStep.COURT_REQUEST: CaseState.COURT,
}


def key_for(case_id: int, step: str, suffix: str | None = None) -> str:
    return f"case-{case_id}-{step}" + (f"-{suffix}" if suffix else "")


def reference_for(case_id: int) -> str:
    return f"DUN-{case_id}"


# --- outstanding amounts ------------------------------------------------------------------


def recompute_outstanding(session: Session, case_ids: Sequence[int] | None = None) -> None:
    refresh_outstanding(session, case_ids)


def _shard_filter(query, shard: int | None, shards: int):
    if shard is None or shards <= 1:
        return query
    return query.where(
        Case.merchant_id.in_(
            select(Merchant.merchant_id).where(Merchant.shard_key % shards == shard)
        )
    )


def settle_payments(
    url: str,
    as_of: datetime,
    shard: int | None = None,
    shards: int = 1,
    settings: Settings | None = None,
) -> dict:
    """The ledger's amounts for the cases only it knows; then a claim at zero makes the case
    `paid` at once, and pending actions of closed cases are cancelled (the recall/payment
    notice to the partner is a step of `claim_due`)."""
    from dunning.config import get_settings

    settings = settings or get_settings()
    with session_scope(url) as s:
        replayed = refresh_claims(s, as_of, settings, shard, shards)
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
                    [st.value for st in LADDER_STEPS]
                    + [ActionStep.PARTNER_PAYMENT.value, ActionStep.PARTNER_ITEMS.value]
                ),
                or_(Action.lease_until.is_(None), Action.lease_until < now),
                Action.case_id.in_(closed),
            )
            .values(status=ActionStatus.CANCELLED.value, last_error="case closed before sending")
            .execution_options(synchronize_session=False)
        ).rowcount
    return {"paid": len(moved), "actions_cancelled": cancelled or 0, **replayed}


def refresh_claims(
    s: Session, as_of: datetime, settings: Settings, shard: int | None, shards: int
) -> dict[str, Any]:
    """Replay the ledger of every open case whose amounts only it knows (interest, business
    debtors, our own charges) and store them. Base rates past their known end are reported
    (the run says so); a claim reaching before the table is set aside for an operator."""
    ids = replayed_case_ids(s, lambda q: _shard_filter(q, shard, shards))
    rates = base_rates(settings.base_rates_file)
    today = local_date(as_of, settings.zone)
    stale = 0
    refused: dict[int, str] = {}
    for start in range(0, len(ids), CHUNK):
        claims = load_claims(s, ids[start : start + CHUNK], settings, as_of)
        statements: dict[int, Statement] = {}
        for case_id, claim in claims.items():
            try:
                statements[case_id] = claim.statement(today, rates)
            except BaseRateUnknown as exc:
                refused[case_id] = f"claim: {exc}"
                continue
            stale += statements[case_id].rates_stale
        store_amounts(s, statements, as_of)
    if refused:
        s.execute(
            update(CASES)
            .where(CASES.c.case_id == bindparam("cid"))
            .values(partner_error=bindparam("err")),
            [{"cid": cid, "err": err} for cid, err in refused.items()],
        )
    out: dict[str, Any] = {"claims_replayed": len(ids)}
    if stale:  # the flow says so (log, event); the summary shows the count
        out["interest_past_known_base_rates"] = stale
        out["base_rates_known_until"] = rates.known_until.isoformat()
    if refused:
        out["claims_refused"] = len(refused)
    return out


# --- facts ---------------------------------------------------------------------------------


def ladder_settings(cfg: MerchantConfig) -> LadderSettings:
    return LadderSettings(cfg.reminder_1_days, cfg.reminder_2_days, cfg.handover_days)


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
    notice = and_(Case.state == CaseState.TERMINATION_NOTICE.value, Case.next_step_at <= as_of)
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
        .where(or_(timed, partner, notice))
        .order_by(Case.case_id)
    )


def _to_facts(case: Case, row: Any, claim: ClaimInput, st: Statement, cfg: MerchantConfig):
    partner_branch = case.state in (
        CaseState.WITH_PARTNER.value,
        CaseState.TERMINATION_NOTICE.value,
    )
    guard = partner_branch and termination_guard(
        st, claim.schedule, claim.order_total, claim.order_day
    )
    return CaseFacts(
        case_id=case.case_id,
        state=case.state,
        dunning_option=case.dunning_option,
        default_date=case.default_date,
        payment_plan=row.payment_plan,
        started_at=case.started_at,
        next_step_at=case.next_step_at,
        reminder_1_at=case.reminder_1_at,
        reminder_2_at=case.reminder_2_at,
        handed_over_at=case.handed_over_at,
        partner_claim_id=case.partner_claim_id,
        partner_status=case.partner_status,
        order_total=Decimal(row.total_amount),
        termination_allowed=guard,
        below_minimum=below_minimum(st, cfg.min_claim_amount),
        open_principal=st.principal_open,
    )


# --- the claim: what each step sends -------------------------------------------------------


def _buyer_dict(b: Buyer) -> dict[str, Any]:
    return {
        "type": b.buyer_type,
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


def _midnight_after(day: date, zone) -> str:
    """The first moment after `day` on the merchant's calendar, in UTC."""
    nxt = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return nxt.astimezone(UTC).isoformat()


def _notice(row, claim_items, level, deadline, settings) -> dict[str, Any]:
    case: Case = row.Case
    zone = settings.zone
    return {
        "level": level,
        "buyer": _buyer_dict(row.Buyer),
        "order": {
            "order_id": case.order_id,
            "product": row.product_name or case.order_id,
            "order_date": local_date(row.order_date, zone).isoformat(),
            "merchant_name": row.merchant_name or case.merchant_id,
        },
        "currency": case.currency,
        **claim_items,
        "deadline": deadline.isoformat(),
        "option": case.dunning_option,
        "creditor": _creditor(settings),
    }


def build_payload(
    row: Any,
    step: ActionStep,
    deadline: date | None,
    claim: ClaimInput,
    st: Statement,
    cfg: MerchantConfig,
    as_of: datetime,
    settings: Settings,
) -> dict[str, Any]:
    """What a step sends, read from the claim's statement at `as_of`."""
    case: Case = row.Case
    zone = settings.zone
    today = local_date(as_of, zone)
    if step in (ActionStep.REMINDER_1, ActionStep.REMINDER_2):
        level = 1 if step == ActionStep.REMINDER_1 else 2
        creates_default = claim.invoice and level == 1
        fee = reminder_fee(level, creates_default, cfg.reminder_fee, settings.max_reminder_fee)
        charge = None
        if fee > 0:
            charge = Charge(REMINDER_FEE, today, fee, f"{level}. Mahnung", f"reminder_{level}")
            st = claim.statement(today, base_rates(settings.base_rates_file), charge)
        assert deadline is not None
        payload = _notice(row, cp.notice_items(st), level, deadline, settings)
        payload["case"] = {
            "fees_amount": cp.money(st.fees),
            "interest_amount": cp.money(st.interest),
            "next_step_at": _midnight_after(deadline - timedelta(days=1), zone),
        }
        if charge is not None:
            payload["charge"] = {
                "key": charge.ref,
                "kind": charge.kind,
                "day": charge.day.isoformat(),
                "amount": cp.money(charge.amount),
                "reason": charge.reason,
            }
        return payload
    if step == ActionStep.TERMINATION_NOTICE:
        assert deadline is not None
        items = cp.notice_items(st)
        items["total"] = cp.money(arrears(st))
        payload = _notice(row, items, 3, deadline, settings)
        payload["case"] = {
            "interest_amount": cp.money(st.interest),
            "next_step_at": _midnight_after(deadline, zone),
        }
        return payload
    if step == ActionStep.HANDOVER:
        reference = reference_for(case.case_id)
        first_reminder = (
            local_date(case.reminder_1_at, zone).isoformat() if case.reminder_1_at else None
        )
        first_day = cp.first_default_day(st) or case.default_date + timedelta(days=1)
        items = cp.partner_items(st)
        body = {
            "reference": reference,
            "order_id": case.order_id,
            "kind": case.kind,
            "escalation": case.dunning_option,
            "creditor": {
                "merchant_id": case.merchant_id,
                "name": settings.creditor_name,
                "address": settings.creditor_address,
            },
            "debtor": {k: v for k, v in _buyer_dict(row.Buyer).items() if k != "locale"},
            "currency": case.currency,
            "contract_date": local_date(row.order_date, zone).isoformat(),
            "default_date": first_day.isoformat(),
            "first_reminder_date": first_reminder,
            "subject": row.product_name or case.order_id,
            "items": [cp.wire_item(i) for i in items],
            "payments": cp.partner_payments(st),
        }
        return {
            "claim": body,
            "reference": reference,
            "case": {"interest_amount": cp.money(st.interest), "fees_amount": cp.money(st.fees)},
        }
    if step == ActionStep.CANCEL_ORDER:
        return {
            "order_id": case.order_id,
            "case_reference": reference_for(case.case_id),
            "cancellation_costs": cp.money(cfg.cancellation_costs),
            "section_498": row.payment_plan == PaymentPlan.INSTALLMENTS.value,
            "day": today.isoformat(),
        }
    if step == ActionStep.COURT_REQUEST:
        return {"claim_id": case.partner_claim_id}
    raise ValueError(step)


# --- claiming ----------------------------------------------------------------------------


def _insert_actions(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert actions; keys that exist already are skipped. Returns the new ids."""
    if not rows:
        return []
    # Core executemany ("insertmanyvalues"): compiled once, rows sent in pages; keys that
    # conflict return no row.
    stmt = (
        insert_for(session, ACTIONS)
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
        and_(Action.step == step.value, Case.state.in_([st.value for st in states]))
        for step, states in FROM_STATES.items()
    ]
    notices = Action.step.in_(
        [ActionStep.PARTNER_PAYMENT.value, ActionStep.RECALL.value, ActionStep.PARTNER_ITEMS.value]
    )
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
        rows += _payment_notices(s, as_of, lease_until, shard, shards)
        rows += _item_notices(s, as_of, lease_until, shard, shards)
        return _insert_actions(s, rows)


def _with_partner(shard, shards):
    q = select(Case.case_id, Case.partner_claim_id, Case.handed_over_at).where(
        Case.state.in_([st.value for st in OPEN_PARTNER_STATES]),
        Case.partner_claim_id.is_not(None),
        Case.handed_over_at.is_not(None),
    )
    return _shard_filter(q, shard, shards).subquery()


def _payment_notices(s, as_of, lease_until, shard, shards) -> list[dict[str, Any]]:
    """Each payment received at the source after the handover, told once (by its
    transaction id) with the day it arrived; what was paid before is in the claim."""
    held = _with_partner(shard, shards)
    q = (
        select(held.c.case_id, held.c.partner_claim_id, Transaction)
        .join(Case, Case.case_id == held.c.case_id)
        .join(Transaction, Transaction.order_id == Case.order_id)
        .join(
            CaseItem,
            and_(
                CaseItem.case_id == held.c.case_id,
                CaseItem.item_type == "principal",
                CaseItem.installment_number == func.coalesce(Transaction.installment_number, 1),
            ),
        )
        .where(
            Transaction.type == "sale",
            Transaction.processed_at > held.c.handed_over_at,
            Transaction.processed_at <= as_of,
        )
    )
    rows = []
    for r in s.execute(q):
        t = r.Transaction
        rows.append(
            _action_row(
                r.case_id,
                ActionStep.PARTNER_PAYMENT,
                key_for(r.case_id, "payment", t.transaction_id),
                {
                    "claim_id": r.partner_claim_id,
                    "amount": f"{cents(t.amount):.2f}",
                    "paid_at": t.processed_at.isoformat(),
                },
                as_of,
                lease_until,
            )
        )
    return rows


def _item_notices(s, as_of, lease_until, shard, shards) -> list[dict[str, Any]]:
    """Items that arose after the handover (a further installment fell due, costs), each
    added once under its own key."""
    held = _with_partner(shard, shards)
    rows = []
    principal = (
        select(held.c.case_id, held.c.partner_claim_id, CaseItem)
        .join(CaseItem, CaseItem.case_id == held.c.case_id)
        .where(CaseItem.item_type == "principal", CaseItem.joined_at > held.c.handed_over_at)
    )
    for r in s.execute(principal):
        ci = r.CaseItem
        item = {
            "type": "principal",
            "amount": f"{cents(ci.amount):.2f}",
            "due_date": ci.due_date.isoformat(),
            "description": f"Rate {ci.installment_number}",
        }
        key = key_for(r.case_id, "items", f"installment-{ci.installment_number}")
        payload = {"claim_id": r.partner_claim_id, "items": [item]}
        rows.append(
            _action_row(r.case_id, ActionStep.PARTNER_ITEMS, key, payload, as_of, lease_until)
        )
    charges = (
        select(held.c.case_id, held.c.partner_claim_id, CaseCharge)
        .join(CaseCharge, CaseCharge.case_id == held.c.case_id)
        .where(CaseCharge.created_at > held.c.handed_over_at)
    )
    for r in s.execute(charges):
        c = r.CaseCharge
        item = {
            "type": c.kind,
            "amount": f"{cents(c.amount):.2f}",
            "date": c.day.isoformat(),
            "reason": c.reason,
            "description": cp.LABELS[c.kind][0],
        }
        key = key_for(r.case_id, "items", c.key)
        payload = {"claim_id": r.partner_claim_id, "items": [item]}
        rows.append(
            _action_row(r.case_id, ActionStep.PARTNER_ITEMS, key, payload, as_of, lease_until)
        )
    return rows


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
        cfgs = configs_for(s, (r.Case.merchant_id for r in rows), settings)
        claims = load_claims(s, [r.Case.case_id for r in rows], settings, as_of)
        rates = base_rates(settings.base_rates_file)
        today = local_date(as_of, zone)
        actions: list[dict[str, Any]] = []
        quiet: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for row in rows:
            case = row.Case
            cfg = cfgs[case.merchant_id]
            claim = claims.get(case.case_id)
            if claim is None:
                continue
            try:
                st = claim.statement(today, rates)
            except BaseRateUnknown:
                continue  # set aside by refresh_claims, with the reason
            facts = _to_facts(case, row, claim, st, cfg)
            step = next_step(facts, ladder_settings(cfg), as_of, zone)
            move = quiet_move(facts, step, as_of, cfg.min_claim_amount)
            if move is not None:
                quiet[(case.state, move[0].value, move[1])].append(case.case_id)
                continue
            if step is None:
                continue
            payload = build_payload(row, step.step, step.deadline, claim, st, cfg, as_of, settings)
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
        for (from_state, to_state, reason), case_ids in quiet.items():
            closing = CaseState(to_state).is_terminal
            values = {"next_step_at": None, "last_step_at": as_of}
            if closing:
                values |= {"closed_at": as_of, "close_reason": reason}
            move_cases(
                s,
                case_ids,
                CaseState(to_state),
                from_states=[CaseState(from_state)],
                actor=ACTOR,
                reason=reason,
                as_of=as_of,
                values=values,
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
    from dunning.tasks.mailer import message_id, open_sink, render_reminder

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
                msg = render_reminder(p, settings.mail_from, a.idempotency_key)
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
    want = FROM_STATES.get(ActionStep(a.step))
    if want is None:
        return True
    query = _CASE_STATE_LOCKED if is_postgres(conn.engine) else _CASE_STATE
    return conn.execute(query, {"case_id": a.case_id}).scalar() in {st.value for st in want}


def _left_state(a: Action) -> Result:
    """Not sent: the case moved (cancelled, paid, on hold) after the step was claimed. The
    action waits; settle_payments cancels it if the case is closed, a resume takes it up."""
    want = "/".join(st.value for st in FROM_STATES[ActionStep(a.step)])
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
        if ActionStep(a.step) not in FROM_STATES:
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
        elif step == ActionStep.PARTNER_ITEMS:
            out = partner.add_items(pclient, a.idempotency_key, p["claim_id"], p["items"], **kw)
        elif step == ActionStep.CANCEL_ORDER:
            if sclient is None:
                # Nothing can cancel it from here: an operator does, at the platform.
                out = partner.Outcome(partner.DONE, {"manual": "the source is a file"})
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
    mail_steps = tuple(st.value for st in MAIL_STEPS)
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
        refused = [r for r in failed if r.step == ActionStep.CANCEL_ORDER.value]
        await_cancellation(s, refused, as_of)
        touched = sorted({r.case_id for r in results})
        recompute_outstanding(s, touched)


def _insert_charges(s: Session, rows: list[dict[str, Any]]) -> None:
    """Charges caused by a done step; a (case, key) recorded before is not charged again."""
    if rows:
        s.execute(insert_for(s, CaseCharge.__table__).on_conflict_do_nothing(), rows)


def _charge_row(case_id: int, charge: dict[str, Any], as_of: datetime) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "key": charge["key"],
        "kind": charge["kind"],
        "day": date.fromisoformat(charge["day"]),
        "amount": _dec(charge["amount"]),
        "reason": charge["reason"],
        "created_at": as_of,
    }


def await_cancellation(s: Session, results: Sequence[Result], as_of: datetime) -> None:
    """A cancellation nothing here can perform (a file source, or the orders API refused):
    the case waits, visibly, for an operator to cancel the order at the platform and
    confirm (`dunning case confirm-cancellation`)."""
    for r in results:
        why = r.error or "the source is a file, not the orders API"
        move_cases(
            s,
            [r.case_id],
            CaseState.AWAITING_CANCELLATION,
            from_states=list(FROM_STATES[ActionStep.CANCEL_ORDER]),
            actor=ACTOR,
            reason=f"cancel order {r.payload['order_id']} at the platform ({why}), then "
            f"confirm: dunning case confirm-cancellation {r.case_id}",
            as_of=as_of,
            values={"last_step_at": as_of, "next_step_at": None},
        )


def _apply_done(s: Session, done: Sequence[Result], as_of: datetime) -> None:
    by_step: dict[str, list[Result]] = defaultdict(list)
    for r in done:
        by_step[r.step].append(r)
    for step_name in (ActionStep.REMINDER_1.value, ActionStep.REMINDER_2.value):
        rs = by_step.get(step_name, [])
        if not rs:
            continue
        step = ActionStep(step_name)
        (from_state,) = FROM_STATES[step]
        s.execute(
            update(CASES)
            .where(CASES.c.case_id == bindparam("cid"), CASES.c.state == from_state.value)
            .values(
                fees_amount=bindparam("fees"),
                interest_amount=bindparam("interest"),
                next_step_at=bindparam("next_at"),
            ),
            [
                {
                    "cid": r.case_id,
                    "fees": _dec(r.payload["case"]["fees_amount"]),
                    "interest": _dec(r.payload["case"]["interest_amount"]),
                    "next_at": datetime.fromisoformat(r.payload["case"]["next_step_at"]),
                }
                for r in rs
            ],
        )
        _insert_charges(
            s,
            [
                _charge_row(r.case_id, r.payload["charge"], as_of)
                for r in rs
                if "charge" in r.payload
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
    rs = by_step.get(ActionStep.TERMINATION_NOTICE.value, [])
    for r in rs:  # each with its own deadline in the history
        move_cases(
            s,
            [r.case_id],
            CaseState.TERMINATION_NOTICE,
            from_states=[CaseState.WITH_PARTNER],
            actor=ACTOR,
            reason=f"§ 498 BGB termination notice sent: arrears {r.payload['total']} "
            f"{r.payload['currency']} due by {r.payload['deadline']}",
            as_of=as_of,
            values={
                "last_step_at": as_of,
                "next_step_at": datetime.fromisoformat(r.payload["case"]["next_step_at"]),
                "interest_amount": _dec(r.payload["case"]["interest_amount"]),
            },
        )
    rs = by_step.get(ActionStep.HANDOVER.value, [])
    if rs:
        # The board's partner reference is the partner's claim id: its file number, which
        # operators quote on the phone.
        s.execute(
            update(CASES)
            .where(CASES.c.case_id == bindparam("cid"), CASES.c.state == CaseState.REMINDER_2.value)
            .values(
                partner_claim_id=bindparam("claim_id"),
                partner_reference=bindparam("claim_id"),
                partner_status=bindparam("pstatus"),
                partner_error=None,
                interest_amount=bindparam("interest"),
                fees_amount=bindparam("fees"),
            ),
            [
                {
                    "cid": r.case_id,
                    "claim_id": r.response.get("claim_id"),
                    "pstatus": r.response.get("status", "received"),
                    "interest": _dec(r.payload["case"]["interest_amount"]),
                    "fees": _dec(r.payload["case"]["fees_amount"]),
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
            .values(
                partner_claim_id=bindparam("claim_id"), partner_reference=bindparam("claim_id")
            ),
            [{"cid": r.case_id, "claim_id": r.response.get("claim_id")} for r in rs],
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
    manual = [r for r in rs if r.response.get("manual")]
    cancelled = [r for r in rs if not r.response.get("manual")]
    await_cancellation(s, manual, as_of)
    if cancelled:
        s.execute(
            update(CASES)
            .where(CASES.c.case_id == bindparam("cid"))
            .values(cancellation_costs=bindparam("costs")),
            [{"cid": r.case_id, "costs": _dec(r.payload["cancellation_costs"])} for r in cancelled],
        )
        _insert_charges(
            s,
            [
                _charge_row(
                    r.case_id,
                    {
                        "key": "cancellation",
                        "kind": CANCELLATION_COSTS,
                        "day": r.payload["day"],
                        "amount": r.payload["cancellation_costs"],
                        "reason": "Stornokosten",
                    },
                    as_of,
                )
                for r in cancelled
                if _dec(r.payload["cancellation_costs"]) > 0
            ],
        )
        for section_498 in (True, False):
            group = [r for r in cancelled if bool(r.payload.get("section_498")) == section_498]
            move_cases(
                s,
                [r.case_id for r in group],
                CaseState.ORDER_CANCELLED,
                from_states=list(FROM_STATES[ActionStep.CANCEL_ORDER]),
                actor=ACTOR,
                reason="order cancelled at the source"
                + (" after the § 498 BGB notice period" if section_498 else ""),
                as_of=as_of,
                values={"last_step_at": as_of, "next_step_at": None, "partner_error": None},
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
            .values(partner_told_paid=CASES.c.partner_told_paid + bindparam("amount")),
            [{"cid": r.case_id, "amount": _dec(r.payload["amount"])} for r in rs],
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
