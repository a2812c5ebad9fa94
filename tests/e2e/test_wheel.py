"""The package as a user installs it: a wheel in a fresh virtualenv, run from a folder that is
not the repository. Catches what a checkout hides: data files left out of the wheel, paths
computed from the source tree, imports of `tests` or of the repo root."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def sh(args: list[str | Path], cwd: Path, env: dict[str, str] | None = None, timeout=300) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from this checkout, installed with the pinned dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    sh([BIN / "uv", "build", "--wheel", "-q", "-o", root / "dist", REPO], cwd=root)
    wheel = next((root / "dist").glob("dunning-*.whl"))
    venv = root / "venv"
    sh([BIN / "uv", "venv", "-q", "--python", BIN / "python", venv], cwd=root)
    pins = ["-r", REPO / "requirements.lock"]
    python = venv / "bin" / "python"
    sh([BIN / "uv", "pip", "install", "-q", "--python", python, *pins, wheel], root)
    return venv / "bin"


def test_the_deployment_commands_start_from_any_folder(installed, tmp_path):
    for command in ("serve", "bootstrap"):
        assert "Usage" in sh([installed / "dunning", command, "--help"], cwd=tmp_path)
    # the deployments ship in the package and load by module path, not from the source tree
    code = (
        "from dunning.deployments.definitions import deployment_specs\n"
        "print(sorted(s.load_flow().name for s in deployment_specs()))"
    )
    out = sh([installed / "python", "-c", code], cwd=tmp_path)
    assert "dunning-run" in out and "case-action" in out


def test_dunning_run_against_a_file_source(installed, tmp_path, prefect_server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNNING_")}
    env.update(prefect_server)
    env.update(
        DUNNING_DATABASE_URL=f"sqlite:///{tmp_path / 'dunning.db'}",
        DUNNING_SOURCE_URL=str(tmp_path / "orders.jsonl"),
        DUNNING_SMTP_URL=f"file:{tmp_path / 'mail'}",
    )
    generate = ["generate", "--orders", "200", "--merchants", "2", "--as-of", "2026-11-26"]
    sh([installed / "dunning", *generate, "--out", "orders.jsonl"], cwd=tmp_path, env=env)
    out = sh([installed / "dunning", "run", "--as-of", "2026-11-26"], cwd=tmp_path, env=env)
    assert "sync" in out and "detect" in out, out
    board = sh([installed / "dunning", "cases", "--format", "json"], cwd=tmp_path, env=env)
    assert '"case_id"' in board, board[:500]
