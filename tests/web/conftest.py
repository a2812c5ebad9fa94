"""The web area on a real database (SQLite, and PostgreSQL where the server fixture has one):
the report fixtures' board of three merchants, tokens for m1, m2 and operator alice, the app
in-process (TestClient) or served by uvicorn on 127.0.0.1 and a free port, and one headless
Debian Chromium for the whole session (driven by Playwright, never `playwright install`)."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.report_fixtures import AS_OF, build_board

CHROMIUM = Path("/usr/bin/chromium")
CSRF = re.compile(r'name="csrf" value="([^"]*)"')


@dataclass
class Site:
    url: str  # database
    m1: str  # token secrets
    m2: str
    alice: str
    m1_id: int


@pytest.fixture
def site(migrated_db: str) -> Site:
    from dunning.tasks.report import refresh_report
    from dunning.web.tokens import create_token

    build_board(migrated_db)
    refresh_report(migrated_db, AS_OF)
    m1_id, m1 = create_token(migrated_db, merchant_id="m1", operator=None, created_by="test")
    _, m2 = create_token(migrated_db, merchant_id="m2", operator=None, created_by="test")
    _, alice = create_token(migrated_db, merchant_id=None, operator="alice", created_by="test")
    return Site(migrated_db, m1, m2, alice, m1_id)


@pytest.fixture
def app(site: Site):
    from dunning.config import get_settings
    from dunning.web.app import create_app

    return create_app(site.url, get_settings())


@pytest.fixture
def client_for(app):
    """A TestClient logged in with a token (through the login form)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    def make(token: str | None = None) -> TestClient:
        client = TestClient(app, base_url="http://127.0.0.1")
        if token is not None:
            login(client, token)
        return client

    return make


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def login(client, token: str):
    page = client.get("/login")
    return client.post(
        "/login",
        data={"csrf": csrf_of(page.text), "token": token, "next": "/"},
        follow_redirects=False,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1 and a free port, in a thread."""
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("web server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


# Per module, not per session: Playwright's sync API leaves its event loop set as the
# thread's running loop until it stops, and Prefect's sync calls (`state.result()`, the
# client) then return coroutines to any later test of the same worker.
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if shutil.which("apt-get") is None:
            pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)")
        pytest.fail("no /usr/bin/chromium: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True, locale="de-DE")
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    context.close()
