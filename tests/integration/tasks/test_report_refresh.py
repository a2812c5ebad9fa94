"""The reporting table: every column by hand, idempotent refresh, snapshot, last update."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

from sqlalchemy import func, select, text, update

from dunning.db import get_engine, session_scope
from dunning.models.schema import (
    REPORT_COLUMNS,
    Case,
    CaseReport,
    CaseReportDaily,
    LastDataUpdate,
)
from dunning.tasks.report import refresh_report
from tests.report_fixtures import AS_OF, EXPECTED, build_board


def _report(url: str) -> dict[int, dict]:
    cols = [getattr(CaseReport, c) for c in REPORT_COLUMNS]
    with get_engine(url).connect() as conn:
        return {r.case_id: dict(r._mapping) for r in conn.execute(select(*cols))}


def _all_tables(url: str) -> tuple:
    """The board, the snapshot and the refresh time (not the refresh's own details)."""
    with get_engine(url).connect() as conn:
        return tuple(
            sorted(tuple(str(v) for v in r) for r in conn.execute(select(*cols)))
            for cols in (
                [CaseReport],
                [CaseReportDaily],
                [LastDataUpdate.name, LastDataUpdate.updated_at],
            )
        )


def test_every_column_matches_the_hand_computed_board(migrated_db):
    build_board(migrated_db)
    result = refresh_report(migrated_db, AS_OF)
    assert result.cases == 6
    got = _report(migrated_db)
    assert set(got) == set(EXPECTED)
    for case_id, expected in EXPECTED.items():
        assert set(expected) == set(REPORT_COLUMNS)
        for column in REPORT_COLUMNS:
            assert got[case_id][column] == expected[column], (case_id, column)
            if isinstance(expected[column], D):
                assert str(got[case_id][column]) == str(expected[column]), (case_id, column)


def test_refresh_is_idempotent_and_follows_changes(migrated_db):
    build_board(migrated_db)
    refresh_report(migrated_db, AS_OF)
    first = _all_tables(migrated_db)
    again = refresh_report(migrated_db, AS_OF)
    assert (again.mode, again.rows_rewritten) == ("changed rows", 0)
    assert _all_tables(migrated_db) == first

    # A case moves, a case vanishes from the source of truth: the next refresh follows.
    with session_scope(migrated_db) as s:
        s.execute(update(Case).where(Case.case_id == 1).values(state="reminder_2"))
        s.execute(text("DELETE FROM cases WHERE case_id = 5"))
    later = AS_OF + timedelta(days=1)
    refresh_report(migrated_db, later)
    got = _report(migrated_db)
    assert set(got) == {1, 2, 3, 4, 6}
    assert got[1]["state_label"] == "2. Mahnung"
    assert got[1]["overdue_days"] == 18
    assert got[3]["overdue_days"] == 11  # closed: frozen
    # a new day rewrites only the changed row; the others keep their time
    assert {c: r["refreshed_at"] for c, r in got.items()} == {1: later} | {
        c: AS_OF for c in (2, 3, 4, 6)
    }


def test_daily_snapshot_and_last_data_update(migrated_db):
    build_board(migrated_db)
    refresh_report(migrated_db, AS_OF)
    refresh_report(migrated_db, AS_OF + timedelta(hours=2))  # same day: replaced, not added
    with session_scope(migrated_db) as s:
        rows = (
            s.execute(
                select(CaseReportDaily).order_by(
                    CaseReportDaily.merchant_id, CaseReportDaily.state, CaseReportDaily.currency
                )
            )
            .scalars()
            .all()
        )
        snap = {(r.snapshot_date, r.merchant_id, r.state, r.currency): r for r in rows}
        assert len(rows) == 6
        day = date(2026, 2, 1)
        m1 = snap[(day, "m1", "with_partner", "EUR")]
        assert (m1.case_count, m1.outstanding_amount, m1.paid_amount) == (1, D("55.05"), D("50.30"))
        assert snap[(day, "m3", "scheduled", "CHF")].order_amount == D("80.00")
        assert s.scalar(select(func.count()).select_from(CaseReportDaily)) == 6
        ldu = s.get(LastDataUpdate, "refresh")
        assert ldu.updated_at == AS_OF + timedelta(hours=2)
        assert ldu.details["cases"] == 6
    refresh_report(migrated_db, AS_OF + timedelta(days=1))
    with session_scope(migrated_db) as s:
        days = s.scalars(select(CaseReportDaily.snapshot_date).distinct()).all()
        assert sorted(days) == [date(2026, 2, 1), date(2026, 2, 2)]


def test_view_of_cases_in_progress(migrated_db):
    build_board(migrated_db)
    refresh_report(migrated_db, AS_OF)
    with get_engine(migrated_db).connect() as conn:
        ids = sorted(r[0] for r in conn.execute(text("SELECT case_id FROM v_cases_in_progress")))
    assert ids == [1, 2, 6]


def test_shard_refresh_touches_only_its_merchants(migrated_db):
    from dunning.models.schema import Merchant

    build_board(migrated_db)
    with session_scope(migrated_db) as s:
        s.execute(update(Merchant).values(shard_key=0))
        s.execute(update(Merchant).where(Merchant.merchant_id == "m2").values(shard_key=3))
    refresh_report(migrated_db, AS_OF)
    with session_scope(migrated_db) as s:
        s.execute(update(Case).where(Case.case_id.in_([1, 4])).values(state="on_hold"))
    later = AS_OF + timedelta(days=1)
    result = refresh_report(migrated_db, later, shard=1, shards=2)  # m2 only: 3 % 2 == 1
    assert result.cases == 2
    got = _report(migrated_db)
    assert set(got) == set(EXPECTED)
    assert (got[4]["state"], got[4]["refreshed_at"]) == ("on_hold", later)
    assert (got[1]["state"], got[1]["refreshed_at"]) == ("reminder_1", AS_OF)


def test_the_first_board_builds_its_indexes_once_after_the_rows(migrated_db):
    """PostgreSQL: into an empty board the rows go first and the indexes are built after;
    every index of the model is there when the refresh commits."""
    from dunning.db.dialect import is_postgres
    from dunning.models.report_tables import CaseReportRow

    build_board(migrated_db)
    refresh_report(migrated_db, AS_OF)
    with get_engine(migrated_db).connect() as conn:
        if not is_postgres(conn):
            return
        present = set(
            conn.execute(
                text("SELECT indexname FROM pg_indexes WHERE tablename = 'case_report_rows'")
            ).scalars()
        )
    assert {i.name for i in CaseReportRow.__table__.indexes} | {"pk_case_report"} == present
