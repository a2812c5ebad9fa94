"""What operators see in Prefect: artifacts read back from the API, events, run names."""

from __future__ import annotations

import csv
import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import insert

from dunning.config import get_settings
from dunning.db import session_scope
from dunning.models.schema import CaseHistory
from tests.report_fixtures import AS_OF, HYPERLINK, SECRETS, build_board

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _history(url: str, rows: list[tuple[int, str | None, str]]) -> None:
    with session_scope(url) as s:
        s.execute(
            insert(CaseHistory),
            [
                {
                    "case_id": c,
                    "at": AS_OF,
                    "actor": "test",
                    "from_state": a,
                    "to_state": b,
                    "reason": None,
                }
                for c, a, b in rows
            ],
        )


def _artifacts(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        run = client.read_flow_run(flow_run_id)
    return {a.key: a for a in arts}, run


def test_summary_needs_human_and_events_read_back_from_the_api(migrated_db):
    from prefect import flow
    from prefect.runtime import flow_run

    from dunning.flows.artifacts import (
        NEEDS_HUMAN_KEY,
        SUMMARY_KEY,
        current_history_id,
        emit_case_events,
        flow_run_namer,
        publish_needs_human,
        publish_run_summary,
    )

    url = migrated_db
    build_board(url)
    _history(url, [(1, None, "scheduled")])  # an earlier run
    since = current_history_id(url)
    _history(
        url,
        [
            (4, None, "blocked"),
            (5, None, "awaiting_approval"),
            (1, "scheduled", "reminder_1"),
            (2, "reminder_2", "with_partner"),
        ],
    )

    @flow(flow_run_name=flow_run_namer("dunning-run"))
    def fake_run(as_of, database_url: str, since_history_id: int):
        publish_run_summary(database_url, since_history_id, title="dunning-run test")
        publish_needs_human(database_url)
        events = emit_case_events(database_url, since_history_id)
        return str(flow_run.id), events

    run_id, events = fake_run(AS_OF, url, since)
    assert events == 4
    arts, run = _artifacts(run_id)
    assert run.name == "dunning-run 2026-02-01T07:00 merchant=all"

    summary = arts[SUMMARY_KEY].data
    assert "## New cases: 2" in summary
    assert "Mahnlauf geplant (scheduled) | 1 |" not in summary  # the earlier run's row
    assert "| Mahnlauf geplant (scheduled) | 1. Mahnung (reminder_1) | 1 |" in summary
    assert "| missing address fields: street, zip_code | 1 |" in summary
    assert "422: zip invalid for j***@e***.org" in summary

    table = arts[NEEDS_HUMAN_KEY].data
    rows = json.loads(table) if isinstance(table, str) else table
    by_case = {r["case_id"]: r for r in rows}
    assert sorted(by_case) == [2, 4, 5]  # partner 422, blocked, awaiting approval
    assert by_case[2]["buyer"] == "Jürgen M."
    assert by_case[2]["why"].startswith("Partner: 422")
    assert by_case[5]["buyer"] == "Zoë S."

    text = summary + json.dumps(rows, ensure_ascii=False)
    for secret in [*SECRETS, "Müller", "Mustermann", "O'Brien", HYPERLINK]:
        assert secret not in text, secret

    # The events reached the server: one per history row of this run, named by state.
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    names: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            page = client.read_events(
                EventFilter(
                    event=EventNameFilter(prefix=["dunning.case."]),
                    related=EventRelatedFilter(id=[f"prefect.flow-run.{run_id}"]),
                ),
                limit=50,
            )
        names = sorted(e.event for e in page.events)
        if len(names) >= 4:
            break
        time.sleep(0.5)
    assert names == [
        "dunning.case.awaiting_approval",
        "dunning.case.blocked",
        "dunning.case.reminder_1",
        "dunning.case.with_partner",
    ]


def test_refresh_and_export_flows(migrated_db, tmp_path, monkeypatch):
    from prefect.runtime import flow_run  # noqa: F401

    from dunning.flows.export import EXPORT_KEY, export_cases_csv
    from dunning.flows.report import refresh_reporting
    from dunning.models.board import BoardFilter

    url = migrated_db
    build_board(url)
    monkeypatch.setenv("DUNNING_DATABASE_URL", url)  # configuration, not a run parameter
    get_settings.cache_clear()
    state = refresh_reporting(as_of=AS_OF, return_state=True)
    assert state.is_completed()
    assert state.result()["cases"] == 6
    _, run = _artifacts(state.state_details.flow_run_id)
    assert run.name == "refresh-reporting 2026-02-01T07:00 merchant=all"

    out = tmp_path / "export.csv"
    state = export_cases_csv(
        filters=BoardFilter(merchant_id="m2"),
        output=str(out),
        dialect="excel-de",
        as_of=AS_OF + timedelta(hours=1),
        return_state=True,
    )
    assert state.is_completed()
    with out.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    assert [r[0] for r in rows[1:]] == ["4", "3"]
    assert rows[2][3] == "'" + HYPERLINK
    arts, run = _artifacts(state.state_details.flow_run_id)
    assert run.name == "export-cases 2026-02-01T08:00 merchant=m2"
    md = arts[EXPORT_KEY].data
    assert "rows: 2" in md and out.resolve().as_uri() in md
    assert "web area" not in md

    # DUNNING_WEB_URL: no file on the worker, the artifact links to the web area's view
    monkeypatch.setenv("DUNNING_WEB_URL", "https://inkasso.example.com/")
    get_settings.cache_clear()
    monkeypatch.setattr("dunning.flows.export.DEFAULT_HOME", tmp_path / "home")
    state = export_cases_csv(
        filters=BoardFilter(merchant_id="m2", status="blocked"),
        dialect="rfc4180",
        as_of=AS_OF + timedelta(hours=2),
        return_state=True,
    )
    assert state.is_completed()
    assert state.result() == (
        "https://inkasso.example.com/cases.csv?merchant=m2&status=blocked&dialect=rfc4180"
    )
    assert not (tmp_path / "home").exists()
    md = _artifacts(state.state_details.flow_run_id)[0][EXPORT_KEY].data
    assert "(https://inkasso.example.com/cases?merchant=m2&status=blocked)" in md
    assert "rows: 1" in md and "file:" not in md
    # a file asked for is still written, and linked beside the web area
    out2 = tmp_path / "asked.csv"
    export_cases_csv(filters=BoardFilter(merchant_id="m2"), output=str(out2), as_of=AS_OF)
    assert out2.exists()
    get_settings.cache_clear()


def test_sync_progress_artifact():
    from prefect import flow
    from prefect.runtime import flow_run

    from dunning.flows.artifacts import SYNC_PROGRESS_KEY, SyncProgress

    @flow
    def long_sync() -> str:
        with SyncProgress(total=1000, description="orders") as progress:
            for done in range(0, 1001, 100):
                progress.update(done)
        return str(flow_run.id)

    run_id = long_sync()
    arts, _ = _artifacts(run_id)
    assert arts[SYNC_PROGRESS_KEY].type == "progress"
    assert float(arts[SYNC_PROGRESS_KEY].data) == 100.0
