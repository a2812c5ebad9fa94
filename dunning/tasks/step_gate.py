"""The last check before a ladder step leaves (issue 9): lock the case row and make sure it
is still where the step starts from, and the outcome of one performed action (`Result`).

An operator's cancel or hold (which locks the same row) either comes first - the step is
not sent - or waits until the step is out and recorded as sent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, text

from dunning.db import is_postgres
from dunning.db.types import UTCDateTime
from dunning.models.enums import ActionStatus, ActionStep
from dunning.models.ladder import FROM_STATES
from dunning.models.schema import Action


@dataclass
class Result:
    action_id: int
    case_id: int
    step: str
    status: str  # done | failed | transient
    response: dict[str, Any]
    error: str | None
    payload: dict[str, Any]


_CASE_STATE = text("SELECT state FROM cases WHERE case_id = :case_id")


_CASE_STATE_LOCKED = text("SELECT state FROM cases WHERE case_id = :case_id FOR UPDATE")


_MARK_SENT = text(
    "UPDATE actions SET sent_at = :now WHERE id = :id AND status = :pending"
).bindparams(bindparam("now", type_=UTCDateTime()))


@contextmanager
def gate_connection(engine: Any) -> Iterator[Any]:
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


def gate(conn: Any, a: Action) -> bool:
    """Issue 9: just before a ladder step goes out, lock its case row (PostgreSQL) and check
    the case is still where the step starts from. An operator's cancel or hold (which locks
    the same row) then either comes first - the step is not sent - or waits until the step
    is out and recorded as sent. Notices to the partner (recall, payment) go regardless."""
    want = FROM_STATES.get(ActionStep(a.step))
    if want is None:
        return True
    query = _CASE_STATE_LOCKED if is_postgres(conn.engine) else _CASE_STATE
    return conn.execute(query, {"case_id": a.case_id}).scalar() in {st.value for st in want}


def left_state(a: Action) -> Result:
    """Not sent: the case moved (cancelled, paid, on hold) after the step was claimed. The
    action waits; settle_payments cancels it if the case is closed, a resume takes it up."""
    want = "/".join(st.value for st in FROM_STATES[ActionStep(a.step)])
    error = f"not sent: the case left {want} before sending"
    return Result(a.id, a.case_id, a.step, "transient", {}, error, a.payload or {})


def mark_accepted(conn: Any, action_id: int) -> None:
    """Issue 9: commit `sent_at` the moment the mail server accepted the message, so a
    crash before the batch's outcomes are recorded does not send it again. What is left is
    the window between the server's 250 reply and this commit (one UPDATE, ~1 ms)."""
    params = {"now": datetime.now(UTC), "id": action_id, "pending": ActionStatus.PENDING.value}
    conn.execute(_MARK_SENT, params)
    conn.commit()
