"""What the escalation writes: `actions` rows under their unique keys, and case moves under
its actor name."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from dunning.db import insert_for
from dunning.models.enums import ActionStatus
from dunning.models.schema import Action

ACTIONS = Action.__table__

# Who moved a case, in its history.
ACTOR = "escalation"


def action_row(case_id, step, key, payload, as_of, lease_until) -> dict[str, Any]:
    """A pending action, leased to this run until `lease_until`."""
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


def insert_actions(session: Session, rows: list[dict[str, Any]]) -> list[int]:
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
