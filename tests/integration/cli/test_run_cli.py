"""`dunning run`: sync -> detect -> handover as one parent flow; a rerun changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from dunning.db import session_scope
from tests.factories import address, chargeback, order_record, sale


def write_source(path: Path, house_number: str | None = None, minute: int = 0) -> Path:
    stamp = datetime(2026, 1, 1, 12, minute, tzinfo=UTC).isoformat()
    records = [
        order_record("late", updated_at=stamp),
        order_record(
            "ontime",
            updated_at=stamp,
            transactions=[sale("s1", 1, "99.00", datetime(2026, 1, 14, tzinfo=UTC))],
        ),
        order_record(
            "cb",
            updated_at=stamp,
            transactions=[
                sale("s1", 1, "99.00", datetime(2026, 1, 10, tzinfo=UTC)),
                chargeback("c1", "s1", "99.00", datetime(2026, 1, 18, tzinfo=UTC)),
            ],
        ),
        order_record("nohouse", updated_at=stamp, buyer=address(house_number=house_number)),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def dump(url: str) -> dict[str, list]:
    with session_scope(url) as s:
        return {
            t: [tuple(r) for r in s.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
            for t in ("cases", "case_items", "case_history")
        }


def states(url: str) -> dict[str, str]:
    with session_scope(url) as s:
        return dict(s.execute(text("SELECT order_id, state FROM cases")).all())


def test_dunning_run_cli_twice_with_the_same_as_of(sqlite_url, cli, tmp_path, prefect_api_env):
    source = write_source(tmp_path / "orders.jsonl")
    env = {
        **prefect_api_env,  # the session's server; the demo test starts a temporary one
        "DUNNING_DATABASE_URL": sqlite_url,
        "DUNNING_SOURCE_URL": str(source),
    }
    args = ("run", "--as-of", "2026-01-20T12:00:00Z")
    first = cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    assert "dunning run as of 2026-01-20T12:00:00+00:00" in first.stdout
    assert "new_cases=3" in first.stdout
    assert "Traceback" not in first.stderr
    assert states(sqlite_url) == {
        "late": "awaiting_approval",
        "cb": "awaiting_approval",
        "nohouse": "blocked",
    }
    before = dump(sqlite_url)
    second = cli(*args, env=env)
    assert second.returncode == 0, second.stderr
    assert "new_cases=0" in second.stdout
    assert dump(sqlite_url) == before  # no new cases, no new history rows, no row touched


def test_run_refuses_a_bad_as_of(sqlite_url, cli):
    bad = cli("run", "--as-of", "next tuesday", env={"DUNNING_DATABASE_URL": sqlite_url})
    assert bad.returncode == 2
    assert "is not an ISO date or timestamp" in bad.stderr and "Traceback" not in bad.stderr


def configure(monkeypatch, **env: str) -> None:
    """Flows read the database and the source from the settings only (issue 19)."""
    from dunning.config import get_settings

    for name, value in env.items():
        monkeypatch.setenv(f"DUNNING_{name.upper()}", value)
    get_settings.cache_clear()


def test_parent_flow_rerun_and_a_later_sync_fixing_the_address(
    migrated_db, prefect_harness, tmp_path, monkeypatch
):
    from dunning.flows.pipeline import dunning_run

    source = str(write_source(tmp_path / "orders.jsonl"))
    configure(monkeypatch, database_url=migrated_db, source_url=source)
    as_of = datetime(2026, 1, 20, 12, tzinfo=UTC)
    first = dunning_run(as_of=as_of)
    assert set(first) >= {"as_of", "sync", "detect", "handover"}
    assert first["detect"]["new_cases"] == 3
    before = dump(migrated_db)
    again = dunning_run(as_of=as_of)
    assert again["detect"]["new_cases"] == 0
    assert dump(migrated_db) == before
    # the source fixes the address; the next run routes the blocked case on
    fixed = str(write_source(tmp_path / "orders2.jsonl", house_number="9", minute=5))
    later = datetime(2026, 1, 21, 12, tzinfo=UTC)
    configure(monkeypatch, source_url=fixed)
    dunning_run(as_of=later)
    assert states(migrated_db)["nohouse"] == "awaiting_approval"


def test_dunning_run_with_a_missing_source_is_one_error_without_traceback(
    cli, sqlite_url, tmp_path, prefect_api_env
):
    result = cli(
        "run",
        env={
            **prefect_api_env,
            "DUNNING_DATABASE_URL": sqlite_url,
            "DUNNING_SOURCE_URL": str(tmp_path / "nowhere.jsonl"),
        },
    )
    assert result.returncode == 2
    assert "dunning run failed: source file not found" in result.stderr
    assert "dunning generate" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
