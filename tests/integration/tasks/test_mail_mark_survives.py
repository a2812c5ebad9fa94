"""A mail the server accepted is recorded even when the gate's database connection dies
while it is on its way: the retry records it instead of sending it again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError

from dunning.db import get_engine, session_scope, upgrade
from dunning.models.schema import Action
from dunning.tasks.step_gate import mark_accepted
from tests.escalation_fixtures import make_case, one_time

pytestmark = pytest.mark.postgres


def test_sent_at_is_recorded_on_a_new_connection_when_the_gate_connection_dies(postgres_url):
    upgrade(postgres_url)
    case_id = make_case(postgres_url, one_time("o-1"))
    with session_scope(postgres_url) as s:
        action_id = s.execute(
            insert(Action)
            .values(
                case_id=case_id,
                step="reminder_1",
                idempotency_key=f"case-{case_id}-reminder_1",
                status="pending",
                attempts=0,
                created_at=datetime.now(UTC),
            )
            .returning(Action.id)
        ).scalar_one()
    engine = get_engine(postgres_url)
    with engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        conn.exec_driver_sql("SELECT 1 FROM cases FOR UPDATE")  # the gate's lock
        with engine.connect() as admin:  # the backend dies while the mail is on its way
            admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(DBAPIError):
            mark_accepted(conn, action_id, engine)
    with session_scope(postgres_url) as s:
        assert s.scalar(select(Action.sent_at).where(Action.id == action_id)) is not None
