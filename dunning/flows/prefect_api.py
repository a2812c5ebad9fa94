"""One Prefect API for this process and the processes it spawns.

Without PREFECT_API_URL, Prefect starts a temporary server for each process that runs a
flow; processes that run shards side by side would each start their own (seconds each)
and write to one SQLite file at once. `shared_prefect_api` gives the URL to hand them
instead: the API this process is set to, or one temporary local server started here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def shared_prefect_api(database: Path | None = None) -> Iterator[str]:
    """The URL of the Prefect API to use in this block, here and in spawned processes
    (`using_prefect_api`). A temporary server started here keeps its runs in `database`
    (a SQLite file; default: Prefect's own) and stops at the end of the block."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    )

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    server = SubprocessASGIServer()  # the one Prefect's ephemeral mode would start
    started_here = not server.running
    if started_here:
        name = "PREFECT_SERVER_DATABASE_CONNECTION_URL"
        before = os.environ.get(name)
        if database is not None:
            os.environ[name] = f"sqlite+aiosqlite:///{database}"
        try:
            server.start(timeout=max(90, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
        finally:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before
    try:
        with using_prefect_api(server.api_url):
            yield server.api_url
    finally:
        if started_here:
            server.stop()


@contextmanager
def using_prefect_api(url: str | None) -> Iterator[None]:
    """Flows run in this block report to the Prefect API at `url` (None: as configured)."""
    if not url:
        yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: url}):
        yield
