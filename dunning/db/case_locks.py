"""How a run keeps others off the cases it works on, per database.

PostgreSQL locks rows: a claim skips the cases another run holds, the gate before a step
locks its one case row. SQLite locks the whole file on write: a claim takes the writer lock
before it reads, and a single row needs no lock of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Select, text
from sqlalchemy.orm import Session

from dunning.db.dialect import is_postgres


def begin_claim(session: Session) -> None:
    """Start a claim transaction. SQLite: take the writer lock before reading, so no other
    run can claim in between (PostgreSQL locks the rows it reads instead)."""
    if not is_postgres(session.get_bind()):
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def skip_locked(query: Select, session: Session, of: Any) -> Select:
    """`query` locking the rows of `of` it returns, past those another run holds
    (PostgreSQL); SQLite's writer lock (`begin_claim`) already covers them."""
    if is_postgres(session.get_bind()):
        return query.with_for_update(of=of, skip_locked=True)
    return query


# Built once: the gate runs once per step, thousands of steps per run.
_CASE_STATE = text("SELECT state FROM cases WHERE case_id = :case_id")
_CASE_STATE_LOCKED = text("SELECT state FROM cases WHERE case_id = :case_id FOR UPDATE")


def locked_case_state(conn: Connection, case_id: int) -> str | None:
    """The case's state, its row locked until `conn` commits (PostgreSQL)."""
    query = _CASE_STATE_LOCKED if is_postgres(conn.engine) else _CASE_STATE
    return conn.execute(query, {"case_id": case_id}).scalar()


@contextmanager
def unflushed_commits(engine: Engine) -> Iterator[Connection]:
    """A connection whose commits do not wait for the WAL flush (PostgreSQL): only a crash
    of the database server itself within that flush delay could lose one. The connection
    goes back to the pool as it came. SQLite: a plain connection."""
    with engine.connect() as conn:
        if not is_postgres(engine):
            yield conn
            return
        conn.exec_driver_sql("SET synchronous_commit = off")
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            conn.exec_driver_sql("RESET synchronous_commit")
            conn.commit()
