"""A real Prefect server in a subprocess, with its own home and SQLite database."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dunning.deployments import prefect_server as prefect_server_process

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start `prefect server start`; yield the environment that points at it."""
    home = tmp_path_factory.mktemp("prefect-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DUNNING_"))}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    server, env = prefect_server_process.start(home, env)
    try:
        yield env
    finally:
        prefect_server_process.stop(server)
