"""A Prefect server of its own in a subprocess (`prefect server start` on a free port of
127.0.0.1): for the docs' screenshots and the end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen, dict[str, str]]:
    """Start the server with `env` (its PREFECT_HOME in `home`, the log in home/server.log);
    the server and `env` with PREFECT_API_URL pointing at it. Another free port if the one
    chosen was taken in between (another process may bind it after `free_port` let it go)."""
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
            stop(server)
            raise RuntimeError("prefect server did not answer within 90 s")
        output = (home / "server.log").read_text()
        if "address already in use" not in output:
            raise RuntimeError(f"prefect server exited: {output[-2000:]}")
    raise RuntimeError("prefect server found no free port in 3 tries")


def stop(server: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, 15)
    server.wait(timeout=30)
