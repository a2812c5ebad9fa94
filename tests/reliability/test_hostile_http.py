"""Hostile HTTP peers and sources, round two (issue 19), against real loopback servers.

A cursor cycle, endless cursors and a body dripping a byte every two seconds each end by
the read's deadline with one clear error and the watermark where it was; pages nested
10,000 deep are refused by both peers; a partner that refuses the token degrades the run
without stopping reminders; file sources outside DUNNING_SOURCE_ROOT are refused; the
source token goes only to DUNNING_SOURCE_URL's host; and after all of that no token and
no database password is found in PREFECT_HOME, the logs, the database or the mail folder.
"""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text

from dunning.config import get_settings
from dunning.db import get_engine, session_scope
from dunning.models.schema import Order, SyncWatermark
from tests.escalation_fixtures import at, make_case, one_time, settings_for
from tests.factories import order_record
from tests.reliability.test_hostile import (
    DB_SECRET,
    PARTNER_SECRET,
    SOURCE_SECRET,
    _prefect_records,
    _serve,
    _where,
)

AS_OF = datetime(2026, 11, 26, 6, tzinfo=UTC)
DEADLINE = 3.0  # DUNNING_READ_DEADLINE_SECONDS in these tests
DEEP = b"[" * 10_000 + b"]" * 10_000


class Peer(BaseHTTPRequestHandler):
    """The orders API (`/v1/orders`) and the partner (`/v1/claims`) misbehaving on demand:
    `mode` is records | cycle | endless | drip | deep | 401 | 403."""

    protocol_version = "HTTP/1.1"
    mode = "records"
    records: ClassVar[list] = []
    auth_seen: ClassVar[list] = []

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        cls = type(self)
        cls.auth_seen.append(self.headers.get("Authorization"))
        cursor = parse_qs(urlsplit(self.path).query).get("cursor", [""])[0]
        mode = cls.mode
        if mode in ("401", "403"):
            return self._send(int(mode), b'{"error": "no"}')
        if mode == "deep":
            return self._send(200, b'{"items": ' + DEEP + b', "next_cursor": null}')
        if mode == "drip":  # announces 1000 bytes, sends one every two seconds
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(2)
            except OSError:
                pass  # the client hung up: what we want
            return
        if mode == "cycle":  # start -> A -> B -> A -> ...
            nxt = {"": "A", "A": "B", "B": "A"}[cursor]
        elif mode == "endless":
            nxt = f"c{int(cursor[1:] or 0) + 1}"
        else:
            nxt = None
        items = cls.records if mode == "records" else []
        self._send(200, json.dumps({"items": items, "next_cursor": nxt}).encode())


def peer(mode: str = "records", records: list | None = None):
    server = _serve(type("P", (Peer,), {"mode": mode, "records": records or [], "auth_seen": []}))
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server


def stop(*servers) -> None:
    for s in servers:
        s.shutdown()
        s.server_close()


def configure(monkeypatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"DUNNING_{name.upper()}", value)
    get_settings.cache_clear()


def watermarks(url: str) -> dict[str, datetime | None]:
    with get_engine(url).connect() as conn:
        return dict(conn.execute(select(SyncWatermark.source, SyncWatermark.watermark)).all())


# --- paged reads with an overall deadline -----------------------------------------------


@pytest.mark.parametrize(
    ("mode", "words", "at_least"),
    [
        ("cycle", "a cycle", 0.0),
        ("endless", "deadline", DEADLINE - 0.5),
        ("drip", "deadline", DEADLINE - 0.5),
        ("deep", "deeper than 1024 levels", 0.0),
    ],
)
def test_an_orders_api_read_ends_with_one_error_and_the_watermark_stays(
    migrated_db, monkeypatch, mode, words, at_least
):
    from dunning.tasks.source import SourceError
    from dunning.tasks.sync_run import run_sync

    configure(monkeypatch, read_deadline_seconds=str(DEADLINE))
    stamp = "2026-11-20T10:00:00+00:00"
    server = peer("records", [order_record("o1", updated_at=stamp)])
    try:
        first = run_sync(migrated_db, server.url, as_of=AS_OF)
        assert first.counts.inserted == 1
        before = watermarks(migrated_db)
        assert list(before.values()) == [datetime.fromisoformat(stamp)]
        server.RequestHandlerClass.mode = mode  # the peer turns hostile
        started = time.monotonic()
        with pytest.raises(SourceError, match=words) as caught:
            run_sync(migrated_db, server.url, as_of=AS_OF + timedelta(days=1))
        took = time.monotonic() - started
    finally:
        stop(server)
    print(f"{mode}: ended after {took:.2f} s: {caught.value}")
    assert at_least <= took < DEADLINE + 1.0, took
    assert "\n" not in str(caught.value) and "Bearer" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert watermarks(migrated_db) == before  # untouched
    with session_scope(migrated_db) as s:
        assert s.scalar(select(Order.order_id)) == "o1"


def test_sync_cli_on_a_cursor_cycle_is_one_line_exit_2(sqlite_url, cli):
    server = peer("cycle")
    try:
        got = cli(
            "sync",
            env={"DUNNING_DATABASE_URL": sqlite_url, "DUNNING_SOURCE_URL": server.url},
        )
    finally:
        stop(server)
    lines = [line for line in got.stderr.splitlines() if line.strip()]
    assert got.returncode == 2 and len(lines) == 1, got.stdout + got.stderr
    assert "cycle" in lines[0] and "Traceback" not in got.stdout + got.stderr


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("cycle", "a cycle"),
        ("endless", "deadline"),
        ("drip", "deadline"),
        ("deep", "deeper than 1024 levels"),
        ("401", "refused the token \\(HTTP 401\\)"),
        ("403", "refused the token \\(HTTP 403\\)"),
    ],
)
def test_partner_updates_end_with_one_error_of_the_degraded_kind(mode, words):
    from dunning.tasks.http_client import TransientHTTPError, make_client
    from dunning.tasks.partner import list_updates

    server = peer(mode)
    started = time.monotonic()
    client = make_client(server.url, PARTNER_SECRET, 10)
    try:
        with pytest.raises(TransientHTTPError, match=words) as caught:
            list_updates(client, None, deadline=time.time() + DEADLINE)
        took = time.monotonic() - started  # the call, not the server's shutdown after it
    finally:
        client.close()
        stop(server)
    assert took < DEADLINE + 1.0, took
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert PARTNER_SECRET not in repr(caught.value.__dict__) + str(caught.value)


def test_partner_answers_nested_deep_to_a_post_are_no_recursion_error():
    from dunning.tasks import partner
    from dunning.tasks.http_client import make_client

    class Deep(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(201)
            self.send_header("Content-Length", str(len(DEEP)))
            self.end_headers()
            self.wfile.write(DEEP)

    server = _serve(Deep)
    try:
        with make_client(f"http://127.0.0.1:{server.server_address[1]}", "t", 5) as client:
            out = partner.hand_over(client, "k", {"reference": "DUN-1"}, base_delay=0.01)
    finally:
        stop(server)
    assert out.status == partner.TRANSIENT and "deeper than 1024" in (out.error or "")


@pytest.mark.parametrize("mode", ["401", "403", "cycle", "deep"])
def test_a_partner_refusing_updates_does_not_stop_reminders(migrated_db, smtp, mode):
    from dunning.tasks.escalate import run_escalation

    smtp_url, _ = smtp
    server = peer(mode)
    d0 = date(2026, 1, 16)
    due = make_case(migrated_db, one_time("due"))
    held = make_case(migrated_db, one_time("held"), state="with_partner")
    with session_scope(migrated_db) as s:
        s.execute(
            text("UPDATE cases SET partner_claim_id = 'CL-1' WHERE case_id = :c"), {"c": held}
        )
    cfg = settings_for(migrated_db, smtp_url, server.url).model_copy(
        update={"partner_token": SecretStr(PARTNER_SECRET), "read_deadline_seconds": DEADLINE}
    )
    try:
        stats = run_escalation(at(d0 + timedelta(days=10)), migrated_db, settings=cfg)
    finally:
        stop(server)
    assert stats["performed"].get("reminder_1:done") == 1, stats  # reminders go on
    error = stats["partner_sync"]["error"]
    if mode in ("401", "403"):
        assert f"refused the token (HTTP {mode})" in error and "DUNNING_PARTNER_TOKEN" in error
    assert PARTNER_SECRET not in error
    assert not any(k.startswith("partner:") for k in watermarks(migrated_db))
    assert due != held


# --- sources are configuration ------------------------------------------------------------


def test_the_source_token_goes_only_to_the_configured_host(sqlite_url, monkeypatch):
    from dunning.tasks.source import SourceAuthError
    from dunning.tasks.sync_run import run_sync

    configured, other = peer(), peer()
    try:
        configure(monkeypatch, source_url=configured.url, source_token=SOURCE_SECRET)
        run_sync(sqlite_url, as_of=AS_OF)
        run_sync(sqlite_url, other.url, as_of=AS_OF)  # `--source http://elsewhere`
        other.RequestHandlerClass.mode = "401"
        with pytest.raises(SourceAuthError, match="no token was sent"):
            run_sync(sqlite_url, other.url, as_of=AS_OF)
    finally:
        stop(configured, other)
    assert configured.RequestHandlerClass.auth_seen == [f"Bearer {SOURCE_SECRET}"]
    assert other.RequestHandlerClass.auth_seen == [None, None]


@pytest.fixture
def outside(tmp_path: Path) -> dict[str, str]:
    """Sources that resolve outside the working folder (the default DUNNING_SOURCE_ROOT)."""
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    secret = elsewhere / "secrets.jsonl"
    secret.write_text(f"DUNNING_SOURCE_TOKEN={SOURCE_SECRET}\n")
    (tmp_path / "link.jsonl").symlink_to(secret)
    return {
        "environ": "/proc/self/environ",
        "dotdot": f"../{elsewhere.name}/secrets.jsonl",
        "file-url": f"file://{secret}",
        "symlink": "link.jsonl",
    }


def test_file_sources_outside_the_root_are_refused(sqlite_url, outside, cli, tmp_path):
    from dunning.tasks.source import SourceError
    from dunning.tasks.sync_run import run_sync

    for name, source in outside.items():
        with pytest.raises(SourceError, match="outside the folder sources may be read from"):
            run_sync(sqlite_url, source, as_of=AS_OF)
        got = cli("sync", "--source", source, env={"DUNNING_DATABASE_URL": sqlite_url})
        lines = [line for line in got.stderr.splitlines() if line.strip()]
        assert got.returncode == 2 and len(lines) == 1, (name, got.stdout, got.stderr)
        assert "DUNNING_SOURCE_ROOT" in lines[0] and "Traceback" not in got.stdout
    with session_scope(sqlite_url) as s:
        assert s.scalar(text("SELECT count(*) FROM quarantine")) == 0
    # The configured source itself, and a root that holds the file, are allowed.
    secret = (tmp_path / "link.jsonl").resolve()
    got = cli("sync", env={"DUNNING_DATABASE_URL": sqlite_url, "DUNNING_SOURCE_URL": str(secret)})
    assert got.returncode == 0, got.stderr
    got = cli(
        "sync",
        "--source",
        str(secret),
        env={"DUNNING_DATABASE_URL": sqlite_url, "DUNNING_SOURCE_ROOT": str(secret.parent)},
    )
    assert got.returncode == 0, got.stderr


def test_an_unparseable_line_is_kept_as_a_short_redacted_excerpt(sqlite_url, tmp_path):
    from dunning.tasks.sync_run import run_sync

    environ = (
        f"PATH=/usr/bin\0DUNNING_SOURCE_TOKEN={SOURCE_SECRET}\0"
        f"DUNNING_DATABASE_URL=postgresql+psycopg://app:{DB_SECRET}@db/dunning\0" + "X" * 5000
    )
    lines = [
        environ,
        f"Authorization: Bearer {PARTNER_SECRET}",
        f'{{"order_id": "o2", "token": "{PARTNER_SECRET}", ',  # cut off
        f"see postgresql://app:{DB_SECRET}@db/x",
    ]
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = run_sync(sqlite_url, str(path), as_of=AS_OF)
    assert result.counts.quarantined == len(lines)
    with session_scope(sqlite_url) as s:
        kept = list(s.scalars(text("SELECT raw FROM quarantine")))
    assert len(kept) == len(lines)
    for raw in kept:
        assert len(raw) < 300, raw
        for secret in (SOURCE_SECRET, PARTNER_SECRET, DB_SECRET):
            assert secret not in raw, raw
    assert any("PATH=***" in raw and "[cut:" in raw for raw in kept)


# --- nothing secret anywhere after failing runs ------------------------------------------


def _decoded(value: str) -> str:
    """A base64 payload (a pickled result or exception) as text; "" when it is none."""
    try:
        return base64.b64decode("".join(value.split()), validate=True).decode("latin-1")
    except ValueError:
        return ""


def _storage_text(home: Path) -> tuple[str, int]:
    """Every file under PREFECT_HOME as text, base64 payloads (whole files, or strings in a
    JSON result record) decoded: a pickled exception keeps its message as plain bytes."""
    parts, files = [], 0
    for path in home.rglob("*"):
        if not path.is_file():
            continue
        files += 1
        content = path.read_bytes().decode("utf-8", "backslashreplace")
        parts += [content, _decoded(content)]
        try:
            stack = [json.loads(content)]
        except ValueError:
            continue
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
            elif isinstance(value, str) and len(value) > 16:
                parts.append(_decoded(value))
    return "\n".join(parts), files


def _database_text(url: str) -> str:
    from dunning.models.schema import Base

    out = []
    with get_engine(url).connect() as conn:
        for table in Base.metadata.sorted_tables:
            out.extend(repr(tuple(row)) for row in conn.execute(select(table)))
    return "\n".join(out)


@pytest.mark.postgres
def test_no_secret_on_disk_or_in_logs_after_failing_runs(
    postgres_url, prefect_api_env, cli, tmp_path, monkeypatch, caplog
):
    from sqlalchemy.engine import make_url

    from dunning.db import upgrade
    from dunning.flows.sync import sync_orders
    from dunning.sample.generator import generate_orders
    from dunning.servers import orders_api, partner_api
    from tests.reliability import crash_driver as drv

    upgrade(postgres_url)
    drv.configure_merchants(postgres_url, 2)
    secret_url = (
        make_url(postgres_url).set(password=DB_SECRET).render_as_string(hide_password=False)
    )
    source = orders_api.start(
        list(generate_orders(30, merchants=2, seed=5, as_of=drv.START)), token=SOURCE_SECRET
    )
    refusing = partner_api.start(token="the-partner-wants-another-token")
    cycle = peer("cycle")
    mail = tmp_path / "mail"
    env = {
        **prefect_api_env,
        "DUNNING_DATABASE_URL": secret_url,
        "DUNNING_SOURCE_URL": source.url,
        "DUNNING_SOURCE_TOKEN": SOURCE_SECRET,
        "DUNNING_PARTNER_URL": refusing.url,
        "DUNNING_PARTNER_TOKEN": PARTNER_SECRET,
        "DUNNING_SMTP_URL": f"file:{mail}",
        "DUNNING_READ_DEADLINE_SECONDS": str(DEADLINE),
        "PREFECT_LOGGING_LEVEL": "DEBUG",
    }
    outputs = []
    try:
        got = cli("run", "--as-of", drv.START.isoformat(), env=env)
        assert got.returncode == 0, got.stdout + got.stderr
        outputs.append(got.stdout + got.stderr)
        with session_scope(postgres_url) as s:  # one claim with the partner: updates asked
            held = s.execute(
                text(
                    "UPDATE cases SET state = 'with_partner', partner_claim_id = 'CL-1' "
                    "WHERE case_id = (SELECT min(case_id) FROM cases)"
                )
            ).rowcount
        assert held == 1
        # 1. the partner refuses the token: the run completes, degraded
        later = (drv.START + timedelta(days=10)).isoformat()
        got = cli("run", "--as-of", later, env=env)
        assert got.returncode == 0, got.stdout + got.stderr
        outputs.append(got.stdout + got.stderr)
        # 2. a source outside the root
        got = cli("sync", "--source", "/proc/self/environ", env=env)
        assert got.returncode == 2 and "outside" in got.stderr, got.stderr
        outputs.append(got.stdout + got.stderr)
        # 3. runs that fail on a cursor cycle: by the CLI and as a flow in this process
        got = cli("run", env={**env, "DUNNING_SOURCE_URL": cycle.url})
        assert got.returncode == 2 and "cycle" in got.stderr, got.stdout + got.stderr
        outputs.append(got.stdout + got.stderr)
        configure(
            monkeypatch,
            database_url=secret_url,
            source_url=cycle.url,
            source_token=SOURCE_SECRET,
            read_deadline_seconds=str(DEADLINE),
        )
        state = sync_orders(return_state=True)
        assert state.is_failed() and "cycle" in state.message
    finally:
        stop(cycle)
        source.stop()
        refusing.stop()
    assert cycle.RequestHandlerClass.auth_seen[0] == f"Bearer {SOURCE_SECRET}"  # it was sent
    storage, files = _storage_text(Path(os.environ["PREFECT_HOME"]))
    assert files and "a cycle" in storage  # the failed runs' exceptions are in there
    prefect_text = _prefect_records(prefect_api_env)
    assert "refused the token (HTTP 401)" in prefect_text  # the degraded run said why
    mails = "\n".join(p.read_text("utf-8", "replace") for p in mail.rglob("*") if p.is_file())
    assert mails  # reminders went out
    places = {
        "PREFECT_HOME": storage,
        "Prefect logs, runs and artifacts": prefect_text,
        "command output": "\n".join(outputs),
        "captured logs": caplog.text,
        "database": _database_text(postgres_url),
        "mail folder": mails,
    }
    for where, haystack in places.items():
        for secret in (SOURCE_SECRET, PARTNER_SECRET, DB_SECRET):
            assert secret not in haystack, f"{secret} in {where}: {_where(haystack, secret)}"
