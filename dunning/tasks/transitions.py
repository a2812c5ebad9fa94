"""Move cases between states set-based, writing one history row per moved case.

Every state change of every writer goes through `move_cases`, so the history is complete
and two concurrent writers cannot both move the same case: the guard `state IN
from_states` is part of the UPDATE, and only rows it actually changed get history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from dunning.models.enums import CaseState
from dunning.models.schema import Case, CaseHistory

CHUNK = 5000


def move_cases(
    session: Session,
    case_ids: Iterable[int],
    to_state: CaseState,
    *,
    from_states: Sequence[CaseState],
    actor: str,
    reason: str | None,
    as_of: datetime,
    values: dict[str, Any] | None = None,
) -> list[int]:
    """Move those of `case_ids` that are in one of `from_states`; return the moved ids.

    One guarded UPDATE per from-state tells exactly which rows moved from where, without
    a separate read that another writer could overtake. `values` are further columns to
    set on the moved rows (e.g. next_step_at).
    """
    ids = list(case_ids)
    if to_state in from_states:
        raise ValueError(f"{to_state} cannot be both target and source of a move")
    moves: list[tuple[int, str | None, str]] = []
    for from_state in from_states:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            rows = session.execute(
                update(Case)
                .where(Case.case_id.in_(chunk), Case.state == from_state.value)
                .values(state=to_state.value, updated_at=as_of, **(values or {}))
                .returning(Case.case_id)
                .execution_options(synchronize_session=False)
            ).all()
            moves.extend((r[0], from_state.value, to_state.value) for r in rows)
    record_history(session, moves, actor=actor, reason=reason, as_of=as_of)
    return [case_id for case_id, _, _ in moves]


def record_history(
    session: Session,
    moves: Sequence[tuple[int, str | None, str]],
    *,
    actor: str,
    reason: str | None,
    as_of: datetime,
) -> None:
    """Bulk-insert history rows for (case_id, from_state, to_state) triples."""
    if not moves:
        return
    session.execute(
        insert(CaseHistory),
        [
            {
                "case_id": case_id,
                "at": as_of,
                "actor": actor,
                "from_state": from_state,
                "to_state": to_state,
                "reason": reason,
            }
            for case_id, from_state, to_state in moves
        ],
    )
