"""Midnight moves overdue_days, not rows: the board stores each case's default date and the
view `case_report` counts to the board's day (the local date of the newest refresh). A fixed
shop's board before and after a day change, as `dunning cases --format json` prints it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from dunning.db import get_engine
from dunning.models.schema import CaseReportDaily
from dunning.tasks.report import refresh_report
from tests.report_fixtures import AS_OF, build_board

# 2026-02-01 23:30 UTC is 00:30 on 2 February in Berlin: the merchant's next day.
NEXT_DAY = datetime(2026, 2, 1, 23, 30, tzinfo=UTC)
# Default dates 01-15, 01-05, 01-10 (paid, closed 01-21 local), 01-31, 02-03, 01-19.
DAYS = {
    AS_OF: {1: 17, 2: 27, 3: 11, 4: 1, 5: 0, 6: 13},
    NEXT_DAY: {1: 18, 2: 28, 3: 11, 4: 2, 5: 0, 6: 14},
    AS_OF + timedelta(days=3): {1: 20, 2: 30, 3: 11, 4: 4, 5: 1, 6: 16},
}


def _board_json(cli, url: str) -> list[dict]:
    result = cli("cases", "--format", "json", env={"DUNNING_DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _without_days(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "overdue_days"} for row in rows]


def test_the_board_after_a_day_change_shows_the_expected_overdue_days(migrated_db, cli):
    build_board(migrated_db)
    refresh_report(migrated_db, AS_OF)
    before = _board_json(cli, migrated_db)
    assert {r["case_id"]: r["overdue_days"] for r in before} == DAYS[AS_OF]
    for as_of in (NEXT_DAY, AS_OF + timedelta(days=3)):
        result = refresh_report(migrated_db, as_of)
        assert (result.mode, result.rows_rewritten) == ("changed rows", 0)
        after = _board_json(cli, migrated_db)
        assert {r["case_id"]: r["overdue_days"] for r in after} == DAYS[as_of]
        assert _without_days(after) == _without_days(before)  # every other column as it was


def test_a_day_change_with_no_change_writes_no_board_row(migrated_db):
    build_board(migrated_db)
    refresh_report(migrated_db, AS_OF)
    result = refresh_report(migrated_db, NEXT_DAY)
    assert (result.rows_rewritten, result.changes_taken, result.cases) == (0, 0, 6)
    # the new day's snapshot is the last day's, carried over (one row per group, not case)
    d = CaseReportDaily
    with get_engine(migrated_db).connect() as conn:
        stmt = select(d.snapshot_date, func.sum(d.case_count)).group_by(d.snapshot_date)
        days = {day: int(n) for day, n in conn.execute(stmt)}
    assert list(days.values()) == [6, 6]
    assert result.snapshot_rows == 6
    full = refresh_report(migrated_db, NEXT_DAY, full=True)
    assert (full.mode, full.rows_rewritten, full.snapshot_rows) == ("rebuild", 6, 6)


def test_the_migration_carries_the_board_over_with_its_overdue_days(db_url, cli):
    """0012 on a database whose board was built by the code before: the view shows the
    same overdue_days, and the next day moves them without a rebuild."""
    from alembic import command
    from sqlalchemy import Date, column, delete, insert, table

    from dunning.db import alembic_config, upgrade
    from dunning.db.types import UTCDateTime
    from dunning.models.schema import CaseReport
    from tests.report_fixtures import EXPECTED

    command.upgrade(alembic_config(db_url), "0011")
    build_board(db_url)
    names = [n for n in EXPECTED[1] if n != "waiting_reason"] + ["search_text"]  # 0013's
    old = table("case_report", *(column(n, CaseReport.__table__.c[n].type) for n in names))
    with get_engine(db_url).begin() as conn:
        conn.execute(insert(old), [{n: row.get(n) for n in names} for row in EXPECTED.values()])
        marks = table("report_marks", column("scope"), column("rebuilt_day", Date()))
        marks.append_column(column("as_of", UTCDateTime()))
        conn.execute(insert(marks).values(scope="all", rebuilt_day=AS_OF.date(), as_of=AS_OF))
        conn.execute(delete(table("case_report_pending")))  # as that refresh took it
    upgrade(db_url)
    rows = _board_json(cli, db_url)
    assert {r["case_id"]: r["overdue_days"] for r in rows} == DAYS[AS_OF]
    assert refresh_report(db_url, NEXT_DAY).rows_rewritten == 0
    after = _board_json(cli, db_url)
    assert {r["case_id"]: r["overdue_days"] for r in after} == DAYS[NEXT_DAY]


def test_a_new_day_after_another_scope_refreshed_sums_its_snapshot_from_the_board(migrated_db):
    """The last day's snapshot is carried over only when no other scope refreshed since;
    otherwise the new day's is summed from the board. Either way it equals a rebuild's."""
    from sqlalchemy import update

    from dunning.db import session_scope
    from dunning.models.schema import Case

    build_board(migrated_db)
    refresh_report(migrated_db, AS_OF)
    refresh_report(migrated_db, AS_OF + timedelta(hours=1), shard=1, shards=2)
    with session_scope(migrated_db) as s:
        s.execute(update(Case).where(Case.case_id == 1).values(state="on_hold"))
    result = refresh_report(migrated_db, NEXT_DAY)
    assert (result.mode, result.rows_rewritten) == ("changed rows", 1)
    d = CaseReportDaily
    snapshot = select(d.snapshot_date, d.merchant_id, d.state, d.currency, d.case_count)
    snapshot = snapshot.add_columns(d.outstanding_amount, d.order_amount, d.paid_amount)
    with get_engine(migrated_db).connect() as conn:
        carried = sorted(tuple(r) for r in conn.execute(snapshot))
    refresh_report(migrated_db, NEXT_DAY, full=True)
    with get_engine(migrated_db).connect() as conn:
        assert sorted(tuple(r) for r in conn.execute(snapshot)) == carried
