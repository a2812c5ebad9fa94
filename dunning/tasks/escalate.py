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
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from dunning.config import Settings
from dunning.crashpoints import crashpoint
from dunning.db import insert_for, session_scope
from dunning.db.case_locks import begin_claim, skip_locked
from dunning.models import claim_payloads as cp
from dunning.models.base_rates import BaseRateUnknown, base_rates
from dunning.models.claim_payloads import key_for
from dunning.models.claims import refresh_outstanding
from dunning.models.clock import local_date
from dunning.models.enums import (
    ActionStatus,
    ActionStep,
    CaseState,
    DunningOption,
)
from dunning.models.ladder import (
    FROM_STATES,
    LADDER_STEPS,
    MAIL_STEPS,
    CaseFacts,
    LadderSettings,
    next_step,
    quiet_move,
)
from dunning.models.ledger import (
    Statement,
    below_minimum,
    cents,
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
from dunning.tasks.call_partner import call_partner_and_source
from dunning.tasks.claim_events import (
    ClaimInput,
    load_claims,
    replayed_case_ids,
    store_amounts,
)
from dunning.tasks.merchant_settings import configs_for
from dunning.tasks.send_mail import send_reminders
from dunning.tasks.step_outcomes import record_outcomes
from dunning.tasks.step_payloads import build_payload
from dunning.tasks.transitions import move_cases

log = logging.getLogger(__name__)
ACTIONS = Action.__table__
CASES = Case.__table__

ACTOR = "escalation"
LEASE = timedelta(minutes=15)
CHUNK = 2000
OPEN_PARTNER_STATES = (
    CaseState.WITH_PARTNER,
    CaseState.TERMINATION_NOTICE,
    CaseState.AWAITING_CANCELLATION,
    CaseState.COURT,
    CaseState.ORDER_CANCELLED,
)
OPEN_STATES = tuple(s for s in CaseState if not s.is_terminal)


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
        refresh_outstanding(s, None)
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
        begin_claim(s)
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
        begin_claim(s)
        q = (
            _shard_filter(_facts_query(as_of), shard, shards)
            .where(Case.case_id > last_id)
            .limit(batch)
        )
        rows = s.execute(skip_locked(q, s, of=Case)).all()
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


# The statements of every single step, built once: building them per step cost more CPU
# than their round trips (thousands of steps per run, all in one Python process).


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
        for n, ids in enumerate(claim_batches(url, as_of, settings, shard, shards)):
            if ids:
                crashpoint("escalate.claimed")
                claimed += len(ids)
                futures.append(
                    sender.submit(perform, url, ids, as_of, settings, workers, attempts, base_delay)
                )
            if n == 1:
                # The first two batches (actions taken up again, notices to the partner)
                # may concern any case; the claims that follow lock their cases and could
                # wait on those outcomes while the outcomes wait on them (a deadlock seen on
                # PostgreSQL). Finish them first; the later batches are disjoint by case id.
                for future in futures:
                    performed += future.result()
                futures = []
        for future in futures:
            performed += future.result()
    stats["claimed"] = claimed
    stats["performed"] = dict(performed)
    return stats


__all__ = ["claim_due", "escalate", "perform", "record_outcomes", "settle_payments"]
