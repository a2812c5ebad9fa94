"""Shared fixtures: databases on SQLite and PostgreSQL, one Prefect harness, the CLI.

Prefect reads its settings at import, so its home and analytics switch are set here,
before anything imports prefect.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

_PREFECT_HOME = tempfile.mkdtemp(prefix="dunning-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Tests never read a developer's .env or real settings by accident.
for _name in list(os.environ):
    if _name.startswith("DUNNING_"):
        del os.environ[_name]

import pytest  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

# The loopback servers and SMTP as fixtures of every test folder.
from tests.escalation_fixtures import orders_api, partner, smtp  # noqa: E402, F401

REPO = Path(__file__).resolve().parents[1]
NO_POSTGRES = (
    "NO POSTGRESQL: set TEST_DATABASE_URL=postgresql+psycopg://USER@HOST:PORT/DB "
    "or run a Docker engine for testcontainers; PostgreSQL tests are SKIPPED"
)


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str | None]:
    """A PostgreSQL server URL (any database on it), or None when there is none."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver="psycopg") as container:
            yield container.get_connection_url()
        return
    if os.environ.get("TEST_REQUIRE_POSTGRES"):
        pytest.fail(NO_POSTGRES + " (and TEST_REQUIRE_POSTGRES is set)")
    yield None


def _admin_url(server: str) -> str:
    url = make_url(server)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


@pytest.fixture
def postgres_url(postgres_server: str | None) -> Iterator[str]:
    """A fresh, empty database of its own on the PostgreSQL server; dropped afterwards."""
    if postgres_server is None:
        pytest.skip(NO_POSTGRES)
    admin = _admin_url(postgres_server)
    name = f"dunning_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from dunning.db import dispose_engine

        dispose_engine(url)
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'dunning.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on its own PostgreSQL database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def migrated_db(db_url: str) -> str:
    from dunning.db import upgrade

    upgrade(db_url)
    return db_url


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One ephemeral Prefect server for the whole session (start-up costs ~8 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def prefect_api_env(prefect_harness) -> dict[str, str]:
    """The environment that points a `dunning` subprocess at the session's Prefect server
    (no ephemeral server start per subprocess)."""
    from prefect.settings import get_current_settings

    return {
        "PREFECT_API_URL": str(get_current_settings().api.url),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test starts from the defaults in its own folder; no settings leak between tests."""
    from dunning.config import get_settings

    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the installed `dunning` console script as a user would."""
    exe = shutil.which("dunning", path=str(Path(sys.executable).parent)) or "dunning"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DUNNING_")}
    full_env.update(env or {})
    return subprocess.run(
        [exe, *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli
