"""Detection's SQL where SQLite and PostgreSQL differ (`dunning.tasks.detect` runs it): the
spelling of its statement texts, and the planner settings and statistics only PostgreSQL
has."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.orm import Session

from dunning.db.dialect import is_postgres


class Spelling:
    """How detection's statement texts are spelled on one database. The local date reads
    the merchant's zone from the bound parameter `:tz` (SQLite: `dunning_local_date`,
    registered on every connection by the engine)."""

    def __init__(self, postgres: bool):
        self.postgres = postgres

    @classmethod
    def of(cls, session: Session) -> Spelling:
        return cls(is_postgres(session))

    @classmethod
    def for_postgres(cls) -> Spelling:
        """The PostgreSQL spelling without a session (module-level statement texts)."""
        return cls(True)

    def local_date(self, expr: str) -> str:
        if self.postgres:
            return f"CAST(timezone(:tz, {expr}) AS DATE)"
        return f"dunning_local_date({expr}, :tz)"

    def greatest(self, *args: str) -> str:
        return f"{'GREATEST' if self.postgres else 'MAX'}({', '.join(args)})"

    def least(self, *args: str) -> str:
        return f"{'LEAST' if self.postgres else 'MIN'}({', '.join(args)})"


def room_for_aggregates(session: Session) -> None:
    """PostgreSQL: the fact aggregates of a full run spill to disk with the 4 MB default
    work_mem; no JIT compile either."""
    if is_postgres(session):
        session.execute(text("SET LOCAL work_mem = '256MB'"))
        session.execute(text("SET LOCAL jit = off"))


@contextmanager
def sorted_aggregates(session: Session, wanted: bool) -> Iterator[None]:
    """PostgreSQL, `wanted`: aggregate by sorting within the block. Summing a million
    orders' sales per installment in a hash table took 1.3 s, grouping them in key order
    0.5 s; the planner, misjudging the number of groups, picks the hash."""
    if not (wanted and is_postgres(session)):
        yield
        return
    session.execute(text("SET LOCAL enable_hashagg = off"))
    yield  # an error aborts the transaction, and the setting ends with it
    session.execute(text("SET LOCAL enable_hashagg = on"))


def analyze_temp_table(session: Session, name: str) -> None:
    """PostgreSQL: statistics of a temp table just filled (autovacuum never sees them)."""
    if is_postgres(session):
        session.execute(text(f"ANALYZE {name}"))


def candidates_are_many(session: Session) -> bool:
    """Whether detect_orders holds a large part of all orders (PostgreSQL's estimate of
    the orders table); always False on SQLite."""
    if not is_postgres(session):
        return False
    candidates = session.scalar(text("SELECT COUNT(*) FROM detect_orders")) or 0
    total = session.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'orders'")) or 0
    return candidates > 50_000 and candidates > 0.1 * total
