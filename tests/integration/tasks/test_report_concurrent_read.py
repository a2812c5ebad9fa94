"""A plain SQL client reads the board during refreshes: never an error, never empty."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta

import psycopg
from sqlalchemy.engine import make_url

from dunning.tasks.report import refresh_report
from tests.report_fixtures import AS_OF, many_cases

N = 3000


def _plain_client(url: str):
    """A connection of the driver itself, outside SQLAlchemy, as an analyst would open."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return sqlite3.connect(parsed.database, timeout=30, isolation_level=None)
    return psycopg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
        autocommit=True,
    )


def test_board_stays_readable_during_refresh(migrated_db):
    url = migrated_db
    many_cases(url, N)
    refresh_report(url, AS_OF)

    reads: list[tuple[float, int]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            conn = _plain_client(url)
            try:
                while not stop.is_set():
                    cur = conn.cursor()
                    cur.execute("SELECT count(*) FROM case_report")
                    reads.append((time.monotonic(), cur.fetchone()[0]))
                    cur.close()
            finally:
                conn.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    windows: list[tuple[float, float]] = []
    extra = 500
    try:
        while len(reads) < 5:
            time.sleep(0.01)
        for i in range(4):
            if i == 2:  # the board grows between refreshes: old or new count, nothing else
                many_cases(url, extra, merchant="more")
            start = time.monotonic()
            refresh_report(url, AS_OF + timedelta(minutes=i))
            windows.append((start, time.monotonic()))
        # A read after the last refresh sees the grown board (a loaded machine may not have
        # scheduled the reader since): wait for one, at most 30 s.
        last = windows[-1][1]
        deadline = time.monotonic() + 30
        while not any(t > last for t, _ in reads) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors
    counts = {c for _, c in reads}
    assert counts == {N, N + extra}, counts
    during = [c for t, c in reads if any(a <= t <= b for a, b in windows)]
    assert len(during) >= 3, "reads hardly overlapped the refreshes; the test proved nothing"
    assert min(during) >= N
