"""Issue 16: a run whose steps had to wait ends Completed named "Degraded", says so at the
top of its summary, emits `dunning.run.degraded`; a clean run stays plain "Completed"."""

from __future__ import annotations

import socket
import time
from datetime import date, timedelta

import pytest

from dunning.config import get_settings
from tests.escalation_fixtures import at, make_case, one_time

D0 = date(2026, 1, 16)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nobody listens


@pytest.fixture
def run_env(migrated_db, prefect_harness, tmp_path, monkeypatch):
    source = tmp_path / "orders.jsonl"
    source.write_text("", encoding="utf-8")
    monkeypatch.setenv("DUNNING_DATABASE_URL", migrated_db)
    monkeypatch.setenv("DUNNING_SOURCE_URL", str(source))
    monkeypatch.setenv("DUNNING_SMTP_URL", f"file:{tmp_path / 'mail'}")
    monkeypatch.setenv("DUNNING_PARTNER_URL", f"http://127.0.0.1:{closed_port()}")
    get_settings.cache_clear()
    yield migrated_db
    get_settings.cache_clear()


def final_state(state):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id).state


def degraded_events(flow_run_id) -> list:
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    flt = EventFilter(
        event=EventNameFilter(name=["dunning.run.degraded"]),
        related=EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
    )
    with get_client(sync_client=True) as client:
        for _ in range(40):
            events = client.read_events(filter=flt, limit=50).events
            if events:
                return events
            time.sleep(0.5)
    return []


def summary_markdown(flow_run_id) -> str:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    from dunning.flows.artifacts import SUMMARY_KEY

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[SUMMARY_KEY])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        )
    return artifact.data


def test_partner_unreachable_run_ends_degraded(run_env):
    from dunning.flows.pipeline import dunning_run

    make_case(run_env, one_time("o-1"))
    for day in (10, 20):  # two reminders by mail: nothing waits yet
        clean = dunning_run(as_of=at(D0 + timedelta(days=day)))
        assert isinstance(clean, dict) and "degraded" not in clean
    as_of = at(D0 + timedelta(days=30))  # the handover is due; the partner does not answer
    state = dunning_run(as_of=as_of, return_state=True)
    stored = final_state(state)
    assert (stored.name, stored.type.value) == ("Degraded", "COMPLETED")
    assert stored.message.startswith("degraded: partner unreachable since ")
    summary = state.result()
    assert "partner" in summary["degraded"]
    run_id = state.state_details.flow_run_id
    first_line = summary_markdown(run_id).splitlines()[0]
    assert first_line.startswith("**Run degraded**: partner unreachable since ")
    (event,) = degraded_events(run_id)
    assert "partner" in event.payload["reasons"]

    direct = dunning_run(as_of=as_of + timedelta(hours=1))  # callers still get the summary
    assert isinstance(direct, dict) and "partner" in direct["degraded"]


def test_clean_run_stays_completed(run_env):
    from dunning.flows.pipeline import dunning_run

    state = dunning_run(as_of=at(D0 + timedelta(days=40)), return_state=True)
    stored = final_state(state)
    assert (stored.name, stored.type.value) == ("Completed", "COMPLETED")
    assert "degraded" not in state.result()
    assert not summary_markdown(state.state_details.flow_run_id).startswith("**Run degraded")


def test_bootstrap_automations_watch_every_pipeline_deployment(prefect_harness):
    from prefect.automations import Automation

    from dunning.deployments.bootstrap import (
        AUTOMATION_DEGRADED,
        AUTOMATION_FAILED,
        AUTOMATION_STALE,
        bootstrap,
    )
    from dunning.deployments.definitions import PIPELINE_TAG, deployment_specs

    bootstrap()
    degraded = Automation.read(name=AUTOMATION_DEGRADED)
    assert degraded.trigger.expect == {"prefect.flow-run.Degraded"}
    assert "records prefect.automation.triggered" in degraded.description.lower()
    for name in (AUTOMATION_STALE, AUTOMATION_FAILED, AUTOMATION_DEGRADED):
        related = Automation.read(name=name).trigger.match_related
        assert related["prefect.resource.id"] == [f"prefect.tag.{PIPELINE_TAG}"], name
    pipeline_flows = {"dunning-run", "dunning-run-sharded"}
    pipeline = [s for s in deployment_specs() if s.load_flow().name in pipeline_flows]
    assert len(pipeline) == 3 and all(PIPELINE_TAG in s.tags for s in pipeline)

    # bootstrap after an upgrade brings a changed automation back to its definition
    degraded.description = "edited by hand"
    degraded.update()
    assert f"automation {AUTOMATION_DEGRADED!r}" in bootstrap().updated
    assert Automation.read(name=AUTOMATION_DEGRADED).description != "edited by hand"
    assert not bootstrap().updated


def test_source_unreachable_run_sends_nothing_and_ends_degraded(run_env, monkeypatch):
    """Issue 16: the orders API down: nothing is detected or sent on stale data (a buyer may
    have paid), the board is refreshed, and the run ends Degraded saying why."""
    from dunning.flows.pipeline import dunning_run

    make_case(run_env, one_time("o-1"))
    monkeypatch.setenv("DUNNING_SOURCE_URL", f"http://127.0.0.1:{closed_port()}/orders")
    get_settings.cache_clear()
    state = dunning_run(as_of=at(D0 + timedelta(days=10)), return_state=True)
    stored = final_state(state)
    assert (stored.name, stored.type.value) == ("Degraded", "COMPLETED")
    assert stored.message.startswith("degraded: source unreachable")
    summary = state.result()
    assert summary["escalate"] == {"skipped": "source unreachable"}
    assert summary["detect"] == {"skipped": "source unreachable"}
    assert summary["report"]["cases"] == 1
    assert "source" in summary["degraded"]
