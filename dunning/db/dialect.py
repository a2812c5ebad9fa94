"""Where SQLite and PostgreSQL differ: the only module that asks which one it talks to.

Everything else spells SQL once, through these helpers: an INSERT with ON CONFLICT, the
local date of a timestamp, GREATEST/LEAST, Unicode lower-casing, row locks, planner hints.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

Bind = Engine | Connection | Session


def dialect_name(bind: Bind) -> str:
    if isinstance(bind, Session):
        bind = bind.get_bind()
    return bind.dialect.name


def is_postgres(bind: Bind) -> bool:
    return dialect_name(bind) == "postgresql"


def insert_for(bind: Bind, table: Any):
    """INSERT with the dialect's ON CONFLICT clauses (both engines spell them alike)."""
    if is_postgres(bind):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def upsert(bind: Bind, table: Any, values: dict[str, Any], key: list[str]):
    """INSERT `values`, or on a conflict over `key` set every other column to its value."""
    stmt = insert_for(bind, table).values(**values)
    changed = {name: stmt.excluded[name] for name in values if name not in key}
    return stmt.on_conflict_do_update(index_elements=key, set_=changed)


# --- SQL spelled per dialect, for statements written as text --------------------------------


def greatest(bind: Bind, *args: str) -> str:
    return f"{'GREATEST' if is_postgres(bind) else 'MAX'}({', '.join(args)})"


def least(bind: Bind, *args: str) -> str:
    return f"{'LEAST' if is_postgres(bind) else 'MIN'}({', '.join(args)})"


def local_date_sql(bind: Bind, expr: str, zone_param: str = ":tz") -> str:
    """The calendar date of timestamp `expr` in the time zone bound as `zone_param`."""
    if is_postgres(bind):
        return f"CAST(timezone({zone_param}, {expr}) AS DATE)"
    return f"dunning_local_date({expr}, {zone_param})"


def for_update(bind: Bind, skip_locked: bool = False) -> str:
    """The row-lock clause of a SELECT (SQLite locks the whole file on write: none)."""
    if not is_postgres(bind):
        return ""
    return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"


# --- SQLite: functions PostgreSQL has built in, registered on every new connection -----------


def _lower(value: str | None) -> str | None:
    return None if value is None else value.lower()


def _local_date(value: str | None, zone: str) -> str | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return moment.astimezone(ZoneInfo(zone)).date().isoformat()


def register_sqlite_functions(dbapi_connection: Any, _record: Any = None) -> None:
    """`dunning_lower(text)` (Unicode) and `dunning_local_date(ts, zone)`; a connect hook."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.create_function("dunning_lower", 1, _lower, deterministic=True)
        dbapi_connection.create_function("dunning_local_date", 2, _local_date, deterministic=True)


# --- PostgreSQL planner hints ------------------------------------------------------------------


# What the planner should assume of a random page read in runs that touch few rows: the
# default 4.0 describes spinning disks; with the working set in RAM or on SSD, 1.1 is the
# usual value. With 4.0, a run over a few thousand changed orders hash-joined whole tables
# of millions of rows instead of looking them up (3x slower at a million orders).
FEW_ROWS_RANDOM_PAGE_COST = 1.1


def prefer_index_lookups(conn) -> None:
    """For this transaction (PostgreSQL): plan as a run over few rows should - by index."""
    if is_postgres(conn):
        conn.exec_driver_sql(f"SET LOCAL random_page_cost = {FEW_ROWS_RANDOM_PAGE_COST}")


# Rows one run must write to a table before its planner statistics are refreshed at once.
ANALYZE_MIN_ROWS = 5000


def refresh_statistics(conn, tables: tuple[str, ...], changed: int) -> bool:
    """ANALYZE `tables` (PostgreSQL) when `statistics_stale` says so for the first."""
    if not statistics_stale(conn, tables[0], changed):
        return False
    for table in tables:
        conn.exec_driver_sql(f"ANALYZE {table}")
    return True


def statistics_stale(conn, table: str, changed: int) -> bool:
    """Whether `table`'s statistics (PostgreSQL) are stale after this run wrote `changed` of
    its rows: more than ANALYZE_MIN_ROWS and more than a tenth of what the planner believes
    it holds (autovacuum's own threshold, without waiting for it). ANALYZE sees the
    transaction's own rows and samples 30,000 rows per table: well under a second.

    Why: after a first load, or after handover moved every new case to `scheduled`, the
    statistics still describe the table as it was; with them, lookups of a few thousand
    orders became full scans and the escalation's claim of due cases a nested loop over
    every case (15 s per batch at a million orders instead of milliseconds)."""
    if not is_postgres(conn) or changed <= ANALYZE_MIN_ROWS:
        return False
    believed = conn.exec_driver_sql(
        "SELECT reltuples FROM pg_class WHERE relname = %(t)s", {"t": table}
    ).scalar()
    return changed > 0.1 * max(believed or 0, 0)
