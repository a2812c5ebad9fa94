"""The queries behind a run's Prefect artifacts and events (`dunning.flows.artifacts`
renders and publishes them): transitions since a case_history id, blocked cases, partner
errors, failed actions, and the cases that need a human. Each reads on a connection of its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Row, case, func, or_, select

from dunning.db import get_engine
from dunning.models.enums import TERMINAL_STATES, ActionStatus, CaseState
from dunning.models.ladder import MAIL_STEPS
from dunning.models.schema import Action, Buyer, Case, CaseHistory, LastDataUpdate


def newest_history_id(database_url: str) -> int:
    with get_engine(database_url).connect() as conn:
        return _newest_history_id(conn)


def _newest_history_id(conn: Connection) -> int:
    """The newest case_history id (0 when empty)."""
    return int(conn.scalar(select(func.coalesce(func.max(CaseHistory.id), 0))) or 0)


@dataclass(frozen=True)
class RunCounts:
    steps: list[Row]  # (from_state, to_state, cases), most frequent first
    new_cases: list[Row]  # (kind, cases)
    blocked: list[Row]  # (blocked_reason, cases) blocked in the run and still blocked
    blocked_total: int  # blocked now, in total
    partner_errors: list[Row]  # (partner_error, cases) of open cases
    failed_actions: list[Row]  # (step, actions), all time


def run_counts(database_url: str, since_history_id: int, limit: int) -> RunCounts:
    with get_engine(database_url).connect() as conn:
        return _run_counts(conn, since_history_id, limit)


def _run_counts(conn: Connection, since_history_id: int, limit: int) -> RunCounts:
    """What happened in the run that wrote the case_history rows after `since_history_id`;
    at most `limit` rows of blocked reasons and partner errors."""
    h = CaseHistory
    steps = conn.execute(
        select(h.from_state, h.to_state, func.count())
        .where(h.id > since_history_id)
        .group_by(h.from_state, h.to_state)
        .order_by(func.count().desc(), h.to_state)
    ).all()
    new_cases = conn.execute(
        select(Case.kind, func.count())
        .join(h, h.case_id == Case.case_id)
        .where(h.id > since_history_id, h.from_state.is_(None))
        .group_by(Case.kind)
        .order_by(Case.kind)
    ).all()
    blocked = conn.execute(
        select(Case.blocked_reason, func.count(func.distinct(Case.case_id)))
        .join(h, h.case_id == Case.case_id)
        .where(
            h.id > since_history_id,
            h.to_state == CaseState.BLOCKED.value,
            Case.state == CaseState.BLOCKED.value,
        )
        .group_by(Case.blocked_reason)
        .order_by(func.count(func.distinct(Case.case_id)).desc())
        .limit(limit)
    ).all()
    blocked_total = conn.scalar(select(func.count()).where(Case.state == CaseState.BLOCKED.value))
    partner_errors = conn.execute(
        select(Case.partner_error, func.count())
        .where(
            Case.partner_error.is_not(None),
            Case.state.not_in([s.value for s in TERMINAL_STATES]),
        )
        .group_by(Case.partner_error)
        .order_by(func.count().desc())
        .limit(limit)
    ).all()
    failed_actions = conn.execute(
        select(Action.step, func.count())
        .where(Action.status == ActionStatus.FAILED.value)
        .group_by(Action.step)
        .order_by(Action.step)
    ).all()
    return RunCounts(steps, new_cases, blocked, blocked_total, partner_errors, failed_actions)


def needs_human_cases(database_url: str, limit: int) -> tuple[list[Row], int]:
    with get_engine(database_url).connect() as conn:
        return _needs_human_cases(conn, limit)


_HUMAN_STATES = (
    CaseState.AWAITING_APPROVAL.value,
    CaseState.BLOCKED.value,
    CaseState.AWAITING_CANCELLATION.value,
)


def _needs_human():
    """Awaiting approval, blocked, an order to cancel at the platform by hand, or an open
    case whose claim or mail was refused (partner_error)."""
    return or_(
        Case.state.in_(_HUMAN_STATES),
        Case.partner_error.is_not(None) & Case.state.not_in([s.value for s in TERMINAL_STATES]),
    )


def needs_human_counts(database_url: str) -> dict[str, int]:
    """How many cases need a human, per state; `refused` for open cases in the ladder whose
    claim or reminder was refused."""
    state = case((Case.state.in_(_HUMAN_STATES), Case.state), else_="refused")
    with get_engine(database_url).connect() as conn:
        rows = conn.execute(
            select(state, func.count()).where(_needs_human()).group_by(state).order_by(state)
        ).all()
    return {name: int(n) for name, n in rows}


def _needs_human_cases(conn: Connection, limit: int) -> tuple[list[Row], int]:
    """The cases that need a human, oldest first (at most `limit`), and how many in all."""
    condition = _needs_human()
    total = int(conn.scalar(select(func.count()).select_from(Case).where(condition)) or 0)
    rows = conn.execute(
        select(
            Case.case_id,
            Case.merchant_id,
            Case.order_id,
            Buyer.first_name,
            Buyer.last_name,
            Case.kind,
            Case.state,
            Case.blocked_reason,
            Case.partner_error,
            Case.outstanding_amount,
            Case.currency,
            Case.opened_at,
        )
        .outerjoin(Buyer, Buyer.order_id == Case.order_id)
        .where(condition)
        .order_by(Case.opened_at, Case.case_id)
        .limit(limit)
    ).all()
    return rows, total


def transitions_by_state(database_url: str, since_history_id: int) -> dict[str, int]:
    with get_engine(database_url).connect() as conn:
        return _transitions_by_state(conn, since_history_id)


def _transitions_by_state(conn: Connection, since_history_id: int) -> dict[str, int]:
    """case_history rows after `since_history_id` per to_state."""
    h = CaseHistory
    return dict(
        conn.execute(
            select(h.to_state, func.count()).where(h.id > since_history_id).group_by(h.to_state)
        ).all()
    )


def history_since(database_url: str, since_history_id: int) -> Iterator[Row]:
    """The case_history rows after `since_history_id` with the case's merchant, by id,
    streamed (5,000 rows a fetch)."""
    h = CaseHistory
    stmt = (
        select(h.id, h.case_id, h.at, h.actor, h.from_state, h.to_state, Case.merchant_id)
        .join(Case, Case.case_id == h.case_id)
        .where(h.id > since_history_id)
        .order_by(h.id)
    )
    with get_engine(database_url).connect() as conn:
        yield from conn.execute(stmt).yield_per(5000)


@dataclass(frozen=True)
class Waiting:
    """What waits on an outside system or a person: how many, and since when (oldest)."""

    count: int
    since: datetime | None


def waiting_on_outside(database_url: str) -> dict[str, Waiting]:
    """Pending actions that failed transiently (`partner` and `mail`) and cases awaiting a
    cancellation by hand (`cancellation`), each with the oldest start of the wait; and the
    last successful read of the source (`source`)."""
    mail_steps = [st.value for st in MAIL_STEPS]
    pending = (Action.status == ActionStatus.PENDING.value) & Action.last_error.is_not(None)
    queries = {
        "partner": select(func.count(), func.min(Action.created_at)).where(
            pending, Action.step.not_in(mail_steps)
        ),
        "mail": select(func.count(), func.min(Action.created_at)).where(
            pending, Action.step.in_(mail_steps)
        ),
        "cancellation": select(func.count(), func.min(Case.updated_at)).where(
            Case.state == CaseState.AWAITING_CANCELLATION.value
        ),
        # the source's last successful read (`since` is when the data was last current)
        "source": select(func.count(), func.max(LastDataUpdate.updated_at)).where(
            LastDataUpdate.name != "refresh"
        ),
    }
    with get_engine(database_url).connect() as conn:
        out = {}
        for name, query in queries.items():
            count, since = conn.execute(query).one()
            out[name] = Waiting(int(count or 0), since)
        return out
