"""From prefect.yaml to a finished pipeline run, the way a data engineer deploys it."""

from __future__ import annotations

import os
import signal
import subprocess
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
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)

    with session_scope(db) as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 300
        cases = s.scalar(select(func.count()).select_from(Case))
        assert cases > 0
        assert s.scalar(select(func.count()).select_from(CaseReport)) == cases
