"""The last check before a ladder step leaves (issue 9): lock the case row and make sure it
is still where the step starts from, and the outcome of one performed action (`Result`).

An operator's cancel or hold (which locks the same row) either comes first - the step is
not sent - or waits until the step is out and recorded as sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, text

from dunning.db.case_locks import locked_case_state
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


_MARK_SENT = text(
    "UPDATE actions SET sent_at = :now WHERE id = :id AND status = :pending"
).bindparams(bindparam("now", type_=UTCDateTime()))


def gate(conn: Any, a: Action) -> bool:
    """Issue 9: just before a ladder step goes out, lock its case row (PostgreSQL) and check
    the case is still where the step starts from. An operator's cancel or hold (which locks
    the same row) then either comes first - the step is not sent - or waits until the step
    is out and recorded as sent. Notices to the partner (recall, payment) go regardless."""
    want = FROM_STATES.get(ActionStep(a.step))
    if want is None:
        return True
    return locked_case_state(conn, a.case_id) in {st.value for st in want}


def left_state(a: Action) -> Result:
    """Not sent: the case moved (cancelled, paid, on hold) after the step was claimed. The
    action waits; settle_payments cancels it if the case is closed, a resume takes it up."""
    want = "/".join(st.value for st in FROM_STATES[ActionStep(a.step)])
    error = f"not sent: the case left {want} before sending"
    return Result(a.id, a.case_id, a.step, "transient", {}, error, a.payload or {})


def mark_accepted(conn: Any, action_id: int, engine: Any = None) -> None:
    """Issue 9: commit `sent_at` the moment the mail server accepted the message, so a
    crash before the batch's outcomes are recorded does not send it again. What is left is
    the window between the server's 250 reply and this commit (one UPDATE, ~1 ms).

    The gate's connection can die while the message is on its way (a terminated backend, a
    dropped network): then `sent_at` is recorded on a new connection of `engine` before the
    error goes on, so the retry records the mail instead of sending it again."""
    from sqlalchemy.exc import DBAPIError

    params = {"now": datetime.now(UTC), "id": action_id, "pending": ActionStatus.PENDING.value}
    try:
        conn.execute(_MARK_SENT, params)
        conn.commit()
    except DBAPIError:
        if engine is None:
            raise
        with engine.begin() as fresh:  # the lock died with the old connection
            fresh.execute(_MARK_SENT, params)
        raise
