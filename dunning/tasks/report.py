"""Refresh the reporting table (the case board) set-based, in one transaction.

The board is the view `case_report` over the table `case_report_rows`. A scope's first
refresh (or one going back in time) rebuilds the rows; every later one, on the same day or
the next, rewrites only the rows of cases that changed, as logged by database triggers
(`case_report_pending`): the rows store each case's default date, and the view counts
overdue_days from the board's day (the newest refresh's local date), so midnight moves no
row. One DELETE and one INSERT ... SELECT over cases/orders/buyers, inside one transaction:
readers on PostgreSQL (MVCC) and on SQLite (WAL) keep seeing the old rows until the commit,
then the new ones; never a half-built or empty table. A table lock that readers do not
feel (PostgreSQL EXCLUSIVE: only plain SELECTs may run beside it) keeps two refreshes
from interleaving. The same transaction writes the day's snapshot and the `refresh` row of
`last_data_update`.

Example queries for analysts (PostgreSQL; the same on SQLite without `::`):

    -- the board's open claims per merchant and state, German label beside the code
    SELECT merchant_id, state, state_label, count(*), sum(outstanding_amount)
    FROM case_report GROUP BY 1, 2, 3 ORDER BY 1, 2;
    -- in progress ("In Bearbeitung") for more than 30 days
    SELECT case_id, order_id, state_label, overdue_days, outstanding_amount, currency
    FROM v_cases_in_progress WHERE overdue_days > 30 ORDER BY overdue_days DESC;
    -- trend: open amount per day and merchant over the last 90 days
    SELECT snapshot_date, merchant_id, sum(outstanding_amount) AS open_amount
    FROM case_report_daily WHERE snapshot_date >= current_date - 90
      AND state NOT IN ('paid', 'cancelled', 'uncollectible')
    GROUP BY 1, 2 ORDER BY 1, 2;
    -- how fresh is the data?
    SELECT name, updated_at FROM last_data_update ORDER BY name;
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    Date,
    column,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    table,
    text,
    true,
)

from dunning.config import get_settings
from dunning.crashpoints import crashpoint
from dunning.db import get_engine, prefer_index_lookups
from dunning.db.bulk_fill import defer_indexes, restore_indexes
from dunning.db.detect_sql import room_for_aggregates
from dunning.db.report_sql import (
    ROWCOUNT,
    SNAPSHOT_COLUMNS,
    add_to_snapshot,
    in_shard,
    lock_for_refresh,
    report_select,
    save_report_mark,
    take_pending,
    writes_hand_on_rows,
)
from dunning.db.sync_state import upsert_last_data_update
from dunning.db.types import UTCDateTime
from dunning.models.clock import local_date
from dunning.models.schema import (
    Case,
    CaseReportDaily,
    CaseReportRow,
    LastDataUpdate,
    ReportMark,
)
from dunning.models.sharding import check_shard
from dunning.tasks.prefect_task import task

REFRESH_NAME = "refresh"


@dataclass(frozen=True)
class RefreshResult:
    cases: int  # board rows of the scope after the refresh
    snapshot_rows: int  # snapshot rows written
    snapshot_date: date
    as_of: datetime
    mode: str = "rebuild"  # or "changed rows"
    rows_rewritten: int = 0
    changes_taken: int = 0  # rows of the pending log consumed


def search_fold(text: str) -> str:
    """How the search column is folded; apply the same to a search term."""
    return text.lower()


def _snapshot_select(day: date, as_of: datetime, shard: int | None, shards: int):
    r = CaseReportRow
    stmt = select(
        literal(day, Date).label("snapshot_date"),
        r.merchant_id,
        r.state,
        r.currency,
        func.count().label("case_count"),
        func.round(func.coalesce(func.sum(r.outstanding_amount), 0), 2),
        func.round(func.coalesce(func.sum(r.order_amount), 0), 2),
        func.round(func.coalesce(func.sum(r.paid_amount), 0), 2),
        literal(as_of, UTCDateTime()),
    ).group_by(r.merchant_id, r.state, r.currency)
    where = in_shard(r.merchant_id, shard, shards)
    if where is not None:
        stmt = stmt.where(where)
    return stmt


BOARD_TABLES = ("case_report_rows",)


def refresh_report(
    database_url: str,
    as_of: datetime,
    *,
    timezone: str = "Europe/Berlin",
    shard: int | None = None,
    shards: int = 1,
    full: bool = False,
) -> RefreshResult:
    """Bring the board (all cases, or one shard's merchants) and today's snapshot up to
    date: rebuild it on the scope's first refresh, when going back in time, or with `full`;
    otherwise rewrite only the rows of cases the triggers logged as changed
    (case_report_pending), also on a new day, so the cost follows the change, not the
    number of cases."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be an aware datetime")
    as_of = as_of.astimezone(UTC)
    engine = get_engine(database_url)
    day = local_date(as_of, ZoneInfo(timezone))
    scope = "all" if shard is None or shards <= 1 else f"{shard}/{shards}"
    with engine.begin() as conn:
        lock_for_refresh(conn)
        mark = conn.execute(select(ReportMark).where(ReportMark.scope == scope)).first()
        rebuild = full or mark is None or as_of < mark.as_of
        if not rebuild:
            prefer_index_lookups(conn)
        # The pending log is taken first: whatever commits from here on leaves its own row
        # for the next refresh, so no change is lost between taking and rewriting.
        taken = take_pending(conn, shard, shards, keep=not rebuild)
        if rebuild:
            # The first board of all: into an empty table, its indexes built once after
            # (bulk_fill; the trigram index alone made the insert 3.3 s instead of 0.2 s
            # at 285k cases, its build takes 1.2 s).
            deferred = scope == "all" and defer_indexes(conn, BOARD_TABLES)
            room_for_aggregates(conn)  # the joins of every case in memory, not on disk
            rewritten = _rewrite_rows(conn, as_of, timezone, shard, shards)
            if deferred:
                restore_indexes(conn, BOARD_TABLES)
            snapshot_rows = _rewrite_snapshot(conn, day, as_of, shard, shards)
        else:
            carried = 0
            if mark.board_day != day:
                carried = _carry_snapshot(conn, mark, day, as_of, shard, shards)
            # Today's snapshot moves by what the rewritten rows took away and brought.
            _create_delta_table(conn)
            rewritten = _rewrite_claimed(conn, as_of, timezone, shard, shards)
            snapshot_rows = carried + _apply_delta(conn, day, as_of)
        cases = conn.scalar(_count_rows(day, shard, shards)) or 0
        save_report_mark(conn, scope, day, as_of)
        details: dict[str, Any] = {
            "cases": cases,
            "snapshot_date": day.isoformat(),
            "mode": "rebuild" if rebuild else "changed rows",
            "rows_rewritten": rewritten,
        }
        if scope != "all":
            details["shard"] = scope
        upsert_last_data_update(conn, REFRESH_NAME, as_of, details)
        if not rebuild:
            conn.execute(text("DROP TABLE IF EXISTS report_claimed"))
            conn.execute(text("DROP TABLE IF EXISTS report_delta"))
        crashpoint("report.refresh")  # issue 9: crash tests kill here, before the commit
    return RefreshResult(
        cases=cases,
        snapshot_rows=snapshot_rows,
        snapshot_date=day,
        as_of=as_of,
        mode="rebuild" if rebuild else "changed rows",
        rows_rewritten=rewritten,
        changes_taken=taken,
    )


def refresh_cases(database_url: str, case_ids: list[int], *, timezone: str) -> datetime | None:
    """Rewrite the board rows of these cases (an operator just moved them) and today's
    snapshot by what they took away and brought, as of the board's own time (the newest
    refresh), so the rows agree with the rest of the board. Returns that time, or None
    when the board was never refreshed (nothing to keep current). Their pending-log rows
    are taken first: a change committed meanwhile leaves its own row for the next refresh."""
    engine = get_engine(database_url)
    with engine.begin() as conn:
        lock_for_refresh(conn)
        as_of = conn.scalar(select(func.max(ReportMark.as_of)))
        if as_of is None or not case_ids:
            return as_of
        as_of = as_of.astimezone(UTC)
        prefer_index_lookups(conn)
        ids = sorted({int(i) for i in case_ids})
        conn.execute(delete(_PENDING).where(_PENDING.c.case_id.in_(ids)))
        conn.execute(text("DROP TABLE IF EXISTS report_claimed"))
        conn.execute(text("CREATE TEMPORARY TABLE report_claimed (case_id BIGINT PRIMARY KEY)"))
        conn.execute(insert(_CLAIMED), [{"case_id": i} for i in ids])
        _create_delta_table(conn)
        _rewrite_claimed(conn, as_of, timezone, None, 1)
        _apply_delta(conn, local_date(as_of, ZoneInfo(timezone)), as_of)
        conn.execute(text("DROP TABLE IF EXISTS report_claimed"))
        conn.execute(text("DROP TABLE IF EXISTS report_delta"))
    return as_of


_PENDING = table("case_report_pending", column("case_id"))
_CLAIMED = table("report_claimed", column("case_id"))
_DELTA_COLUMNS = ("merchant_id", "state", "currency", "n", "outstanding", "order_amount", "paid")
_DELTA = table("report_delta", *(column(c) for c in _DELTA_COLUMNS))


_CLAIMED_ARRAY = text("cases.case_id = ANY(ARRAY(SELECT case_id FROM report_claimed))")


def _claimed_ids():
    return select(_CLAIMED.c.case_id)


def _create_delta_table(conn: Connection) -> None:
    conn.execute(text("DROP TABLE IF EXISTS report_delta"))
    conn.execute(
        text(
            "CREATE TEMPORARY TABLE report_delta (merchant_id VARCHAR(64), state VARCHAR(24), "
            "currency VARCHAR(3), n INTEGER, outstanding NUMERIC(16, 2), "
            "order_amount NUMERIC(16, 2), paid NUMERIC(16, 2))"
        )
    )


# The columns of a board row that its snapshot group is keyed and summed by.
_SUMMED = (
    CaseReportRow.merchant_id,
    CaseReportRow.state,
    CaseReportRow.currency,
    CaseReportRow.outstanding_amount,
    CaseReportRow.order_amount,
    CaseReportRow.paid_amount,
)


def _board_sums(rows, sign: int):
    """`sign` times the snapshot sums of `rows` (board rows, or what a write returned)."""
    c = rows.c
    return select(
        c.merchant_id,
        c.state,
        c.currency,
        sign * func.count(),
        sign * func.coalesce(func.sum(c.outstanding_amount), 0),
        sign * func.coalesce(func.sum(c.order_amount), 0),
        sign * func.coalesce(func.sum(c.paid_amount), 0),
    ).group_by(c.merchant_id, c.state, c.currency)


def _rewrite_claimed(conn: Connection, as_of, timezone, shard, shards) -> int:
    """Rewrite the board rows of the claimed cases (report_claimed) and stage in
    report_delta what the old rows took away and the new ones bring. PostgreSQL stages
    both from the rows its DELETE and INSERT return: reading them by key before and after
    took 0.2 s of a day's first refresh at a million orders. SQLite reads them."""
    names, select_stmt = report_select(conn, as_of, timezone, shard, shards)
    claimed = CaseReportRow.case_id.in_(_claimed_ids())
    wipe = delete(CaseReportRow).where(claimed)
    scope = in_shard(CaseReportRow.merchant_id, shard, shards)
    if scope is not None:
        wipe = wipe.where(scope)
    bulk = writes_hand_on_rows(conn)
    # PostgreSQL: the claimed ids as one array, looked up in the cases' key; joined as a
    # table, the planner read all cases instead (a day's 11,000 changed of 300,000).
    fill = insert(CaseReportRow).from_select(
        names, select_stmt.where(_CLAIMED_ARRAY if bulk else Case.case_id.in_(_claimed_ids()))
    )
    stage, into = insert(_DELTA), list(_DELTA_COLUMNS)
    if not bulk:
        board = CaseReportRow.__table__
        conn.execute(stage.from_select(into, _board_sums(board, -1).where(claimed)))
        conn.execute(wipe)
        rewritten = conn.execute(fill, execution_options=ROWCOUNT).rowcount
        conn.execute(stage.from_select(into, _board_sums(board, 1).where(claimed)))
        return rewritten
    for sign, name, write in ((-1, "gone", wipe), (1, "added", fill)):
        rows = write.returning(*_SUMMED).cte(name)
        conn.execute(stage.from_select(into, _board_sums(rows, sign)).add_cte(rows))
    added = select(func.coalesce(func.sum(_DELTA.c.n), 0)).where(_DELTA.c.n > 0)
    return conn.scalar(added) or 0


def _apply_delta(conn: Connection, day: date, as_of: datetime) -> int:
    """Add the staged differences to today's snapshot rows; drop groups left empty. Cost
    follows the changed cases, not the merchants' case counts (the first refresh of the
    day built the snapshot whole). Returns the snapshot rows changed."""
    d = _DELTA.c
    changed = or_(
        func.sum(d.n) != 0,
        func.sum(d.outstanding) != 0,
        func.sum(d.order_amount) != 0,
        func.sum(d.paid) != 0,
    )
    sums = (
        select(
            literal(day, Date),
            d.merchant_id,
            d.state,
            d.currency,
            func.sum(d.n),
            func.round(func.sum(d.outstanding), 2),
            func.round(func.sum(d.order_amount), 2),
            func.round(func.sum(d.paid), 2),
            literal(as_of, UTCDateTime()),
        )
        .where(true())  # SQLite: INSERT ... SELECT before ON CONFLICT needs a WHERE
        .group_by(d.merchant_id, d.state, d.currency)
        .having(changed)
    )
    written = add_to_snapshot(conn, sums)
    daily = CaseReportDaily
    conn.execute(delete(daily).where(daily.snapshot_date == day, daily.case_count == 0))
    return written


def _rewrite_rows(conn, as_of, timezone, shard, shards) -> int:
    """Delete and re-insert the scope's board rows."""
    names, select_stmt = report_select(conn, as_of, timezone, shard, shards)
    wipe = delete(CaseReportRow)
    scope = in_shard(CaseReportRow.merchant_id, shard, shards)
    conn.execute(wipe if scope is None else wipe.where(scope))
    return conn.execute(
        insert(CaseReportRow).from_select(names, select_stmt), execution_options=ROWCOUNT
    ).rowcount


def _wipe_snapshot(conn, day, shard, shards) -> None:
    daily = CaseReportDaily
    wipe = delete(daily).where(daily.snapshot_date == day)
    scope = in_shard(daily.merchant_id, shard, shards)
    conn.execute(wipe if scope is None else wipe.where(scope))


def _rewrite_snapshot(conn, day, as_of, shard, shards) -> int:
    """Today's snapshot rows of the scope, from the whole board."""
    _wipe_snapshot(conn, day, shard, shards)
    rows = _snapshot_select(day, as_of, shard, shards)
    return conn.execute(
        insert(CaseReportDaily).from_select(SNAPSHOT_COLUMNS, rows), execution_options=ROWCOUNT
    ).rowcount


def _carry_snapshot(conn, mark, day, as_of, shard, shards) -> int:
    """A new day's snapshot of the scope starts as its last day's (one row per merchant,
    state and currency, not per case); the changes are added after. Only when no other
    scope refreshed since: otherwise the last day's rows may lack what that refresh moved,
    and the sums come from the board instead."""
    if conn.scalar(select(func.max(ReportMark.as_of))) > mark.as_of:
        return _rewrite_snapshot(conn, day, as_of, shard, shards)
    _wipe_snapshot(conn, day, shard, shards)
    d = CaseReportDaily
    rows = select(
        literal(day, Date),
        d.merchant_id,
        d.state,
        d.currency,
        d.case_count,
        d.outstanding_amount,
        d.order_amount,
        d.paid_amount,
        literal(as_of, UTCDateTime()),
    ).where(d.snapshot_date == mark.board_day)
    scope = in_shard(d.merchant_id, shard, shards)
    if scope is not None:
        rows = rows.where(scope)
    return conn.execute(
        insert(d).from_select(SNAPSHOT_COLUMNS, rows), execution_options=ROWCOUNT
    ).rowcount


def _count_rows(day: date, shard: int | None, shards: int):
    """The scope's board rows, as today's snapshot counts them (one row per merchant, state
    and currency, kept equal to the board by every refresh): counting the board itself read
    all of it, 35-57 ms of every hourly run at a million orders."""
    d = CaseReportDaily
    stmt = select(func.coalesce(func.sum(d.case_count), 0)).where(d.snapshot_date == day)
    scope = in_shard(d.merchant_id, shard, shards)
    return stmt if scope is None else stmt.where(scope)


def last_data_updates(database_url: str) -> list[tuple[str, datetime, dict[str, Any] | None]]:
    """All rows of last_data_update: `refresh` first, then the syncs by name."""
    with get_engine(database_url).connect() as conn:
        rows = conn.execute(
            select(LastDataUpdate.name, LastDataUpdate.updated_at, LastDataUpdate.details)
        ).all()
    rows.sort(key=lambda r: (r[0] != REFRESH_NAME, r[0]))
    return [(r[0], r[1], r[2]) for r in rows]


def query_board(
    database_url: str,
    board_filter: Any,
    *,
    timezone: str = "Europe/Berlin",
    limit: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """The filtered board rows (REPORT_COLUMNS dicts) and the total count of matches."""
    from dunning.models.board import board_count, board_select

    with get_engine(database_url).connect() as conn:
        rows = [
            dict(r._mapping)
            for r in conn.execute(board_select(board_filter, timezone, limit=limit))
        ]
        total = (
            len(rows) if limit is None else int(conn.scalar(board_count(board_filter, timezone)))
        )
    return rows, total


def refresh_reporting_core(
    as_of: datetime | None = None,
    database_url: str | None = None,
    shard: int | None = None,
    shards: int = 1,
) -> RefreshResult:
    check_shard(shard, shards)
    settings = get_settings()
    return refresh_report(
        database_url or settings.database_url,
        as_of or datetime.now(UTC),
        timezone=settings.timezone,
        shard=shard,
        shards=shards,
    )


@task(name="rebuild-case-report", retries=2, retry_delay_seconds=[2, 10])
def rebuild_case_report(
    as_of: datetime, database_url: str, shard: int | None, shards: int
) -> RefreshResult:
    return refresh_reporting_core(as_of, database_url, shard, shards)
