"""A real Prefect server in a subprocess, with its own home and SQLite database."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(home, env: dict[str, str]) -> tuple[subprocess.Popen, dict[str, str]]:
    """`prefect server start` on a free port; another free port if that one was taken in
    between (another test process may bind it after `free_port` let it go)."""
    for _ in range(3):
        port = free_port()
        env = dict(env, PREFECT_API_URL=f"http://127.0.0.1:{port}/api")
        with (home / "server.log").open("w") as log:
            server = subprocess.Popen(
                [
                    str(BIN / "prefect"),
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    return server, env
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                break
            time.sleep(0.5)
        else:
            _stop(server)
            pytest.fail("prefect server did not answer within 90 s")
        output = (home / "server.log").read_text()
        if "address already in use" not in output:
            pytest.fail(f"prefect server exited: {output[-2000:]}")
    pytest.fail("prefect server found no free port in 3 tries")


def _stop(server: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, 15)
    server.wait(timeout=30)


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
    server, env = _start_server(home, env)
    try:
        yield env
    finally:
        _stop(server)
