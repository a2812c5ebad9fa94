"""The board follows the change: later refreshes of a day rewrite only changed cases.

Triggers on cases, orders and buyers log the cases whose row is stale; a refresh on the
same local day takes that log and rewrites those rows only. Whatever the writer (detection,
escalation, operators, sync, purge, a hand-written UPDATE), the incremental board must equal
a full rebuild.
"""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import create_engine, func, select, text, update

from dunning.db import get_engine, session_scope
from dunning.models.schema import (
    REPORT_COLUMNS,
    Buyer,
    Case,
    CaseReport,
    CaseReportDaily,
    CaseReportPending,
    Order,
)
from dunning.tasks.report import refresh_report
from tests.report_fixtures import AS_OF, build_board

LATER = AS_OF + timedelta(hours=3)  # the same local day


def _board(url: str, *, with_refreshed_at: bool = False) -> dict[int, dict]:
    names = [c for c in REPORT_COLUMNS if with_refreshed_at or c != "refreshed_at"]
    cols = [getattr(CaseReport, c) for c in names] + [CaseReport.search_text]
    with get_engine(url).connect() as conn:
        return {r.case_id: dict(r._mapping) for r in conn.execute(select(*cols))}


def _snapshot(url: str) -> list[tuple]:
    d = CaseReportDaily
    cols = [d.snapshot_date, d.merchant_id, d.state, d.currency, d.case_count]
    cols += [d.outstanding_amount, d.order_amount, d.paid_amount]
    with get_engine(url).connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(*cols)))


def _pending(url: str) -> int:
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(CaseReportPending)) or 0


def _equals_a_full_rebuild(url: str, as_of) -> None:
    incremental, snapshot = _board(url), _snapshot(url)
    result = refresh_report(url, as_of, full=True)
    assert result.mode == "rebuild"
    assert _board(url) == incremental
    assert _snapshot(url) == snapshot


def test_a_later_refresh_of_the_day_rewrites_only_what_changed(migrated_db):
    build_board(migrated_db)
    first = refresh_report(migrated_db, AS_OF)
    assert (first.mode, first.rows_rewritten, first.cases) == ("rebuild", 6, 6)
    assert _pending(migrated_db) == 0  # the rebuild took the log of the inserts

    with session_scope(migrated_db) as s:  # every kind of writer the triggers cover
        s.execute(update(Case).where(Case.case_id == 1).values(state="reminder_2"))
        s.execute(update(Order).where(Order.order_id == "o2").values(total_amount=D("333.33")))
        s.execute(update(Buyer).where(Buyer.order_id == "o3").values(last_name="Schmidt"))
        s.execute(text("DELETE FROM cases WHERE case_id = 5"))
    result = refresh_report(migrated_db, LATER)
    assert result.mode == "changed rows"
    # case 1, the cases of o2 and o3 rewritten; case 5 only removed
    assert (result.cases, result.rows_rewritten, result.changes_taken) == (5, 3, 4)
    board = _board(migrated_db, with_refreshed_at=True)
    assert set(board) == {1, 2, 3, 4, 6}
    assert board[1]["state_label"] == "2. Mahnung"
    changed = {cid for cid, row in board.items() if row["refreshed_at"] == LATER}
    order_of = {cid: row["order_id"] for cid, row in board.items()}
    assert changed == {cid for cid in board if cid == 1 or order_of[cid] in ("o2", "o3")}
    assert all(board[c]["refreshed_at"] == AS_OF for c in set(board) - changed)
    assert _pending(migrated_db) == 0
    _equals_a_full_rebuild(migrated_db, LATER)


def test_a_new_day_rewrites_only_changed_rows_yet_overdue_days_move(migrated_db):
    build_board(migrated_db)
    refresh_report(migrated_db, AS_OF)
    before = _board(migrated_db, with_refreshed_at=True)
    with session_scope(migrated_db) as s:
        s.execute(update(Case).where(Case.case_id == 6).values(state="reminder_1"))
    next_day = AS_OF + timedelta(days=1)
    result = refresh_report(migrated_db, next_day)
    assert (result.mode, result.rows_rewritten, result.changes_taken) == ("changed rows", 1, 1)
    after = _board(migrated_db, with_refreshed_at=True)
    assert {c for c, r in after.items() if r["refreshed_at"] == next_day} == {6}
    open_ids = [c for c, r in before.items() if r["state"] not in ("paid", "cancelled")]
    moved = {c for c in open_ids if after[c]["overdue_days"] == before[c]["overdue_days"] + 1}
    assert moved == set(open_ids) - {5}  # case 5 defaults after the next day: still 0
    assert after[3]["overdue_days"] == before[3]["overdue_days"]  # closed: frozen
    _equals_a_full_rebuild(migrated_db, next_day)  # board and the new day's snapshot
    # going back in time rebuilds, and the days count to that day again
    assert refresh_report(migrated_db, AS_OF).mode == "rebuild"
    back = _board(migrated_db)
    assert all(back[c]["overdue_days"] == before[c]["overdue_days"] for c in before)


def test_random_writes_then_incremental_equals_rebuild(migrated_db):
    """Many rounds of random writes to cases, orders and buyers; after each, the incremental
    board and snapshot equal a full rebuild."""
    build_board(migrated_db)
    refresh_report(migrated_db, AS_OF)
    rng = random.Random(7)
    states = ["reminder_1", "reminder_2", "with_partner", "on_hold", "paid", "cancelled"]
    for round_ in range(6):
        with session_scope(migrated_db) as s:
            ids = list(s.scalars(select(Case.case_id)))
            orders = list(s.scalars(select(Order.order_id)))
            for _ in range(3):
                what = rng.choice(("state", "amount", "order", "buyer"))
                if what == "state":
                    s.execute(
                        update(Case)
                        .where(Case.case_id == rng.choice(ids))
                        .values(state=rng.choice(states))
                    )
                elif what == "amount":
                    s.execute(
                        update(Case)
                        .where(Case.case_id == rng.choice(ids))
                        .values(outstanding_amount=D(rng.randint(0, 99999)) / 100)
                    )
                elif what == "order":
                    s.execute(
                        update(Order)
                        .where(Order.order_id == rng.choice(orders))
                        .values(payment_method=rng.choice(("sepa", "paypal", "invoice")))
                    )
                else:
                    s.execute(
                        update(Buyer)
                        .where(Buyer.order_id == rng.choice(orders))
                        .values(first_name=rng.choice(("Ana", "Ölaf", None)))
                    )
        at = LATER + timedelta(minutes=round_)
        assert refresh_report(migrated_db, at).mode == "changed rows"
        _equals_a_full_rebuild(migrated_db, at)


@pytest.mark.postgres
def test_a_change_committed_during_a_refresh_is_not_lost(postgres_url):
    """A writer changes case 1 while a refresh runs (uncommitted when the refresh takes the
    log, even though case 1 already had a committed log row): its change shows on the next
    refresh. A unique log key would have swallowed it (ON CONFLICT DO NOTHING against the
    row the refresh then deletes)."""
    from dunning.db import upgrade

    upgrade(postgres_url)
    build_board(postgres_url)
    refresh_report(postgres_url, AS_OF)
    with session_scope(postgres_url) as s:
        s.execute(update(Case).where(Case.case_id == 1).values(state="reminder_2"))
    writer = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with writer.connect() as conn:
        conn.execute(update(Case).where(Case.case_id == 1).values(state="on_hold"))
        refresh_report(postgres_url, LATER)  # sees reminder_2; on_hold is not committed yet
        assert _board(postgres_url)[1]["state"] == "reminder_2"
        conn.commit()
    writer.dispose()
    refresh_report(postgres_url, LATER + timedelta(minutes=1))
    assert _board(postgres_url)[1]["state"] == "on_hold"
