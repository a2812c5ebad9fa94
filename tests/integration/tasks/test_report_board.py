"""Board queries on both engines: filters combined, search with wildcards, quotes, Unicode."""

from __future__ import annotations

import pytest

from dunning.models.board import BoardFilter
from dunning.tasks.report import query_board, refresh_report
from tests.report_fixtures import AS_OF, build_board


@pytest.fixture
def board(migrated_db):
    build_board(migrated_db)
    refresh_report(migrated_db, AS_OF)
    return migrated_db


def ids(url: str, **filters) -> list[int]:
    rows, total = query_board(url, BoardFilter.parse(**filters))
    assert total == len(rows)
    return sorted(r["case_id"] for r in rows)


def test_single_filters(board):
    assert ids(board) == [1, 2, 3, 4, 5, 6]
    assert ids(board, status="in_progress") == [1, 2, 6]
    assert ids(board, status="blocked") == [4]
    assert ids(board, merchant_id="m2") == [3, 4]
    assert ids(board, min_amount="55.05") == [1, 2, 6]
    assert ids(board, max_amount="20") == [3, 4, 5]
    # Case 4 opened 2026-01-31 22:59 UTC = 2026-01-31 23:59 Berlin: still the 31st.
    assert ids(board, opened_from="2026-01-31") == [4]
    assert ids(board, opened_to="2026-01-11") == [2, 3]


def test_filters_combined(board):
    assert ids(board, status="in_progress", merchant_id="m1") == [1, 2]
    assert ids(board, status="in_progress", merchant_id="m1", min_amount="60") == [1]
    assert ids(
        board,
        status="in_progress",
        opened_from="2026-01-10",
        opened_to="2026-01-31",
        min_amount="50",
        max_amount="100",
        search="müller",
    ) == [6]
    assert ids(board, status="paid", search="smith", merchant_id="m2") == [3]
    assert ids(board, status="paid", search="smith", merchant_id="m1") == []


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("müller", [2, 6]),  # Müller and MÜLLER
        ("MÜLLER", [2, 6]),
        ("Jürgen Müller", [2]),  # first and last name together
        ("ZOË", [5]),
        ("straßer", [5]),
        ("%", [5]),  # only the order id x%_5 holds a literal percent sign
        ("_", [5]),
        ("x%_", [5]),
        ("o_", []),  # "_" is not a wildcard
        ("'", [4]),  # O'Brien
        ("o'brien", [4]),
        (";--", [5]),  # Straßer;--
        ("'; DROP TABLE case_report;--", []),
        ("o1", [1]),
        ("hyperlink(", [3]),
        ("\\", []),
    ],
)
def test_search(board, term, expected):
    assert ids(board, search=term) == expected


def test_limit_reports_the_total(board):
    rows, total = query_board(board, BoardFilter(), limit=2)
    assert (len(rows), total) == (2, 6)
    # Newest opened first.
    assert [r["case_id"] for r in rows] == [4, 5]


@pytest.mark.postgres
def test_the_search_text_is_the_same_whether_lower_folds_umlauts_or_not(postgres_url, monkeypatch):
    """PostgreSQL under a UTF-8 LC_CTYPE folds Ä itself; under C the board translates first.
    Both spellings write the same search text."""
    from sqlalchemy import text

    import dunning.db.report_sql as report_sql
    from dunning.db import get_engine, upgrade

    upgrade(postgres_url)
    build_board(postgres_url)

    def search_texts() -> list[str]:
        refresh_report(postgres_url, AS_OF, full=True)
        with get_engine(postgres_url).connect() as conn:
            return list(conn.scalars(text("SELECT search_text FROM case_report_rows ORDER BY 1")))

    with get_engine(postgres_url).connect() as conn:
        native = report_sql._lower_folds_umlauts(conn)
    first = search_texts()
    monkeypatch.setattr(report_sql, "_lower_folds_umlauts", lambda bind: not native)
    assert search_texts() == first
    assert any("müller" in t for t in first)
