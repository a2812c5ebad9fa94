"""From prefect.yaml to a finished pipeline run, the way a data engineer deploys it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dunning.db import session_scope
from dunning.deployments.definitions import deployment_specs
from dunning.models.schema import Case, CaseReport, Order
from tests.e2e.conftest import BIN

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]  # `prefect deploy` reads ./prefect.yaml


def run(args: list[str], env: dict[str, str], timeout: float = 240) -> str:
    result = subprocess.run(
        args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_bootstrap_deploy_worker_and_run(prefect_server, tmp_path: Path):
    from dunning.servers.partner_api import start as start_partner

    env = dict(prefect_server)
    db = f"sqlite:///{tmp_path / 'dunning.db'}"
    orders = tmp_path / "orders.jsonl"
    env.update(
        DUNNING_DATABASE_URL=db,
        DUNNING_SOURCE_URL=str(orders),
        DUNNING_SMTP_URL=f"file:{tmp_path / 'mail'}",
        # one day between the steps: the handover is due two runs after reminder 1
        DUNNING_DEFAULT_REMINDER_2_DAYS="1",
        DUNNING_DEFAULT_HANDOVER_DAYS="1",
    )
    run(
        [
            str(BIN / "dunning"),
            "generate",
            "--orders",
            "300",
            "--merchants",
            "3",
            "--seed",
            "7",
            "--out",
            str(orders),
            "--as-of",
            "2026-11-26",
        ],
        env,
    )

    assert "created work pool dunning" in run([str(BIN / "dunning"), "bootstrap"], env)
    assert "nothing to do" in run([str(BIN / "dunning"), "bootstrap"], env)
    run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env)
    # The hourly schedule would start a run as of now when the test crosses the full hour
    # (it did once in CI: that run escalated everything and the partner-down run found
    # nothing due). The test starts every run itself.
    run([str(BIN / "prefect"), "--no-prompt", "deployment", "schedule", "pause", "--all"], env)
    _parameter_forms_are_typed_and_described(env["PREFECT_API_URL"])

    with start_partner() as partner:
        env["DUNNING_PARTNER_URL"] = partner.url
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "dunning"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            pipeline = next(s for s in deployment_specs() if s.name == "dunning-run")
            flow_name = pipeline.load_flow().name
            out = run(
                [
                    str(BIN / "prefect"),
                    "deployment",
                    "run",
                    f"{flow_name}/dunning-run",
                    "--param",
                    "as_of=2026-11-26T06:00:00+01:00",
                    "--watch",
                    "--watch-timeout",
                    "300",
                ],
                env,
                timeout=360,
            )
            assert "Completed" in out
            _operator_hold_through_the_deployment(db, env)
            _partner_down_run_is_degraded_and_the_automation_fires(db, env, flow_name, partner)
        finally:
            _stop(worker)

    with session_scope(db) as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 300
        cases = s.scalar(select(func.count()).select_from(Case))
        assert cases > 0
        assert s.scalar(select(func.count()).select_from(CaseReport)) == cases


def _run_case_action(env: dict[str, str], action: str, case_id: int) -> str:
    """Run the case-action deployment to its end; the flow run's id."""
    out = run(
        [
            str(BIN / "prefect"),
            "deployment",
            "run",
            "case-action/case-action",
            "--param",
            f"action={action}",
            "--param",
            f'case_or_order_id="{case_id}"',  # --param reads JSON: a string
            "--param",
            "reason=e2e check",
            "--param",
            "operator=e2e",
            "--watch",
            "--watch-timeout",
            "120",
        ],
        env,
        timeout=180,
    )
    return re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)


def _operator_hold_through_the_deployment(db: str, env: dict[str, str]) -> None:
    """Issue 16: an operator's hold through the deployment is on the board when the run ends
    and emits dunning.case.on_hold; a refused hold ends "Refused", no traceback logged."""
    import json

    import httpx

    with session_scope(db) as s:
        case_id = s.scalar(select(func.min(Case.case_id)).where(Case.state == "awaiting_approval"))
    assert case_id is not None
    _run_case_action(env, "start", case_id)
    _run_case_action(env, "hold", case_id)
    board = run([str(BIN / "dunning"), "cases", "--format", "json"], env)
    (row,) = [r for r in json.loads(board) if r["case_id"] == case_id]
    assert row["state"] == "on_hold"

    api = env["PREFECT_API_URL"]
    deadline = time.monotonic() + 30
    events: list = []
    while not events and time.monotonic() < deadline:
        body = {"filter": {"event": {"name": ["dunning.case.on_hold"]}}, "limit": 10}
        events = httpx.post(f"{api}/events/filter", json=body, timeout=10).json()["events"]
        time.sleep(0.5 if not events else 0)
    resource = f"dunning.case.{case_id}"
    (event,) = [e for e in events if e["resource"]["prefect.resource.id"] == resource]
    assert event["payload"]["actor"] == "e2e" and event["payload"]["reason"] == "e2e check"

    refused_id = _run_case_action(env, "hold", case_id)
    state = httpx.get(f"{api}/flow_runs/{refused_id}", timeout=10).json()["state"]
    assert (state["type"], state["name"]) == ("COMPLETED", "Refused")
    assert "already on hold" in state["message"]
    logs = httpx.post(
        f"{api}/logs/filter",
        json={"logs": {"flow_run_id": {"any_": [refused_id]}}},
        timeout=10,
    ).json()
    # the worker logs WARNING and up here: a failed run's traceback would be among them
    assert not any("Traceback" in log["message"] or log["level"] >= 40 for log in logs), logs


# The fields an operator picks from a list: each must be an enum in the form.
CHOICES = {
    "case-action": {"action"},
    "merchant-settings": {"dunning_option", "auto_overdue", "auto_chargebacks", "interest_enabled"},
    "export-cases-csv": {"dialect", "filters.status"},
}


def _fields(schema: dict) -> dict[str, dict]:
    """Every field of a parameter schema, nested models' fields as parent.child."""
    fields: dict[str, dict] = {}
    for name, prop in schema.get("properties", {}).items():
        fields[name] = prop
        for ref in [p.get("$ref") for p in prop.get("anyOf", [])] + [prop.get("$ref")]:
            if ref:
                model = schema["definitions"][ref.rsplit("/", 1)[1]]
                for child, child_prop in model["properties"].items():
                    fields[f"{name}.{child}"] = child_prop
    return fields


def _enum(prop: dict) -> list | None:
    return prop.get("enum") or next((p["enum"] for p in prop.get("anyOf", []) if "enum" in p), None)


def _parameter_forms_are_typed_and_described(api: str) -> None:
    """Issue 16: the forms the server shows have no database_url, a description for every
    field and an enum for every choice (read back from the server, as the UI reads them)."""
    import json

    import httpx

    deployments = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
    assert {d["name"] for d in deployments} >= set(CHOICES) | {"dunning-run"}
    schedules = [s for d in deployments for s in d["schedules"]]
    assert schedules and not any(s["active"] for s in schedules), schedules  # paused above
    for deployment in deployments:
        schema = deployment["parameter_openapi_schema"]
        name = deployment["name"]
        assert "database_url" not in json.dumps(schema), name
        fields = _fields(schema)
        undescribed = [f for f, prop in fields.items() if not prop.get("description")]
        assert not undescribed, f"{name}: no description for {undescribed}"
        for choice in CHOICES.get(name, ()):
            assert _enum(fields[choice]), f"{name}: {choice} is not a choice"


def _stop(worker: subprocess.Popen) -> None:
    """The worker's process group: asked to stop, then killed should its shutdown hang (a
    Prefect worker once took over 30 s after SIGTERM in CI, with every check passed)."""
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)


def _partner_down_run_is_degraded_and_the_automation_fires(
    db: str, env: dict[str, str], flow: str, partner
) -> None:
    """Issue 16: with the partner unreachable the deployed run ends "Degraded" (a Completed
    state of its own name), its summary's first line says so, and the automation of
    `dunning bootstrap` fires (its prefect.automation.triggered event, read back)."""
    import httpx

    from dunning.deployments.bootstrap import AUTOMATION_DEGRADED
    from dunning.flows.artifacts import SUMMARY_KEY

    api = env["PREFECT_API_URL"]
    with session_scope(db) as s:  # the sample's merchants review every case: start three
        waiting = s.scalars(
            select(Case.case_id).where(Case.state == "awaiting_approval").limit(3)
        ).all()
    for case_id in waiting:
        start = [str(BIN / "dunning"), "case", "start", str(case_id), "--reason", "e2e"]
        run([*start, "--as-of", "2026-11-26T07:00:00+01:00"], env)
    for day in (27, 28, 29):  # reminder 1 and 2 by mail, then the handovers are due
        if day == 29:
            partner.stop()  # the partner goes down: this run must say so
        out = run(
            [
                str(BIN / "prefect"),
                "deployment",
                "run",
                f"{flow}/dunning-run",
                "--param",
                f"as_of=2026-11-{day}T06:00:00+01:00",
                "--watch",
                "--watch-timeout",
                "300",
            ],
            env,
            timeout=360,
        )
    run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)
    state = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state"]
    assert (state["type"], state["name"]) == ("COMPLETED", "Degraded"), state
    assert "partner unreachable" in state["message"]
    (summary,) = httpx.post(
        f"{api}/artifacts/filter",
        json={
            "artifacts": {"key": {"any_": [SUMMARY_KEY]}},
            "flow_runs": {"id": {"any_": [run_id]}},
        },
        timeout=10,
    ).json()
    assert summary["data"].splitlines()[0].startswith("**Run degraded**"), summary["data"][:300]

    (automation,) = httpx.post(
        f"{api}/automations/filter",
        json={"automations": {"name": {"any_": [AUTOMATION_DEGRADED]}}},
        timeout=10,
    ).json()
    fired: list = []
    deadline = time.monotonic() + 60
    while not fired and time.monotonic() < deadline:
        body = {
            "filter": {
                "event": {"name": ["prefect.automation.triggered"]},
                "resource": {"id": [f"prefect.automation.{automation['id']}"]},
            },
            "limit": 10,
        }
        fired = httpx.post(f"{api}/events/filter", json=body, timeout=10).json()["events"]
        time.sleep(0 if fired else 1)
    assert fired, "the degraded automation did not fire"
    triggering = fired[0]["payload"]["triggering_event"]
    assert triggering["event"] == "prefect.flow-run.Degraded"
    assert triggering["resource"]["prefect.resource.id"] == f"prefect.flow-run.{run_id}"
