"""Claiming the due steps: find due cases set-based, claim them with their actions in one
transaction per batch (SPEC §3, §4).

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

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, or_, select, update

from dunning.config import Settings
from dunning.db import Scope, session_scope
from dunning.db.case_locks import begin_claim, skip_locked
from dunning.models.base_rates import BaseRateUnknown, base_rates
from dunning.models.claim_payloads import key_for
from dunning.models.clock import local_date
from dunning.models.enums import ActionStatus, ActionStep, CaseState, DunningOption
from dunning.models.ladder import FROM_STATES, CaseFacts, LadderSettings, next_step, quiet_move
from dunning.models.ledger import Statement, below_minimum, termination_guard
from dunning.models.merchant_settings import MerchantConfig
from dunning.models.schema import Action, Buyer, Case, Merchant, Order
from dunning.tasks.claim_events import ClaimInput, load_claims
from dunning.tasks.escalation_rows import ACTIONS, ACTOR, action_row, insert_actions
from dunning.tasks.merchant_settings import configs_for
from dunning.tasks.partner_notices import claim_partner_notices
from dunning.tasks.step_payloads import build_payload
from dunning.tasks.transitions import move_cases

# How long a claimed action is this run's alone; past it, the next run sends it again.
LEASE = timedelta(minutes=15)
# Cases per claim transaction: their rows stay locked until it commits.
CLAIM_BATCH = 2000


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


def claim_due(
    url: str,
    as_of: datetime,
    settings: Settings,
    shard: int | None = None,
    shards: int = 1,
    lease: timedelta = LEASE,
    batch: int = CLAIM_BATCH,
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
    batch: int = CLAIM_BATCH,
    now: datetime | None = None,
) -> Iterator[list[int]]:
    """`claim_due` batch by batch (one committed transaction each), so sending can start
    while the next batch is claimed."""
    now = now or datetime.now(UTC)
    lease_until = now + lease
    yield _reclaim_pending(url, now, lease_until, shard, shards)
    yield claim_partner_notices(url, as_of, now, lease_until, shard, shards)
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
        ids = list(s.scalars(Scope(shard, shards).apply(eligible, Case.merchant_id)))
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
        retry_ids = list(s.scalars(Scope(shard, shards).apply(retry, Case.merchant_id)))
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


def _claim_batch(url, as_of, settings, shard, shards, lease_until, batch, last_id, now):
    zone = settings.zone
    with session_scope(url) as s:
        begin_claim(s)
        q = (
            Scope(shard, shards)
            .apply(_facts_query(as_of), Case.merchant_id)
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
                action_row(
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
        ids = insert_actions(s, actions)
        return ids, next_last
