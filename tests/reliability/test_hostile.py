"""Hostile input: SQL metacharacters and Unicode, oversized fields, a 100 MB answer, a
partner that redirects elsewhere or presents an invalid certificate, and secrets that must
never show (tokens, the database password) in logs, artifacts, errors or --help.

Formula injection in the CSV export is covered by the report tests
(tests/integration/test_report_board.py, the `=HYPERLINK(...)` cases) and not repeated here.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import tracemalloc
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import text

from dunning.config import Settings
from dunning.db import session_scope
from tests.factories import address, order_record

AS_OF = datetime(2026, 2, 20, 6, tzinfo=UTC)
HOSTILE = [
    "Robert'); DROP TABLE cases;--",
    'Zoë "Ω" \\ 100%_x',
    "名前 𝒳 🦄",
    "O'Brien\" OR 1=1 --",
    "\u202eevil\u202c",
    "a%b_c*?[x]$1",
]


def hostile_records() -> list[dict]:
    out = []
    for i, h in enumerate(HOSTILE):
        out.append(
            order_record(
                f"o{i}'%_;--",
                merchant_id="m';--" if i % 2 else 'm"\\',
                merchant_name=h,
                product={"id": f"p{i}'--", "name": h},
                buyer=address(
                    first_name=h,
                    last_name=f"{h} {i}",
                    company_name=h,
                    street=h,
                    city=h,
                    email=f"o'brien+{i}@example.org",
                ),
            )
        )
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


def pipeline(url: str, source: str) -> None:
    from dunning.tasks.detect import detect_cases_core
    from dunning.tasks.handover import apply_handover_core
    from dunning.tasks.report import refresh_reporting_core
    from dunning.tasks.sync_run import run_sync

    cfg = Settings(database_url=url)
    run_sync(url, source, as_of=AS_OF)
    detect_cases_core(url, AS_OF, cfg)
    apply_handover_core(url, AS_OF, cfg)
    refresh_reporting_core(AS_OF, url)


def test_sql_metacharacters_and_unicode_stay_intact(migrated_db, cli, tmp_path):
    records = hostile_records()
    pipeline(migrated_db, str(write_jsonl(tmp_path / "orders.jsonl", records)))
    with session_scope(migrated_db) as s:
        assert s.execute(text("SELECT count(*) FROM quarantine")).scalar() == 0
        buyers = {r.order_id: r for r in s.execute(text("SELECT * FROM buyers"))}
        orders = {r.order_id: r for r in s.execute(text("SELECT * FROM orders"))}
        assert s.execute(text("SELECT count(*) FROM cases")).scalar() == len(records)
    for rec in records:
        b = buyers[rec["order_id"]]
        for name in ("first_name", "last_name", "company_name", "street", "city", "email"):
            assert getattr(b, name) == rec["buyer"][name], name
        assert orders[rec["order_id"]].product_name == rec["product"]["name"]
    env = {"DUNNING_DATABASE_URL": migrated_db}
    for i, rec in enumerate(records):
        if i not in (0, 1, 3):  # quotes, backslash, percent, underscore, unicode: enough
            continue
        for term in (rec["buyer"]["last_name"],) + ((rec["order_id"],) if i == 0 else ()):
            got = cli("cases", "--search", term, "--format", "json", env=env)
            assert got.returncode == 0, got.stderr
            rows = json.loads(got.stdout)
            assert [r["order_id"] for r in rows] == [rec["order_id"]], term
            assert rows[0]["first_name"] == rec["buyer"]["first_name"]
            assert rows[0]["last_name"] == rec["buyer"]["last_name"]
    got = cli("cases", "--merchant", "m';--", "--format", "json", env=env)
    assert got.returncode == 0 and len(json.loads(got.stdout)) == 3, got.stderr
    bad = "x' OR 1=1; DROP TABLE cases;--"
    for option in ("--status", "--min-amount", "--opened-from"):
        got = cli("cases", option, bad, env=env)
        assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr
    with session_scope(migrated_db) as s:  # still all there
        assert s.execute(text("SELECT count(*) FROM cases")).scalar() == len(records)


def test_oversized_fields_are_quarantined_not_fatal(migrated_db, tmp_path):
    records = [
        order_record("ok1"),
        order_record("long-name", buyer=address(first_name="X" * 10_000)),
        order_record("huge-line", product={"id": "p", "name": "Y" * (5 * 1024 * 1024)}),
        order_record("long-id-" + "z" * 100),
        order_record("ok2"),
    ]
    pipeline(migrated_db, str(write_jsonl(tmp_path / "orders.jsonl", records)))
    with session_scope(migrated_db) as s:
        stored = {r for (r,) in s.execute(text("SELECT order_id FROM orders"))}
        quarantined = s.execute(text("SELECT position, field, reason FROM quarantine")).all()
    assert stored == {"ok1", "ok2"}
    assert len(quarantined) == 3, quarantined
    assert all(q.reason for q in quarantined)


# --- a 100 MB answer --------------------------------------------------------------------


class _HugeHandler(BaseHTTPRequestHandler):
    size = 100 * 1024 * 1024
    announce = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.announce:
            self.send_header("Content-Length", str(self.size))
        self.end_headers()
        chunk = b'{"items": [' + b" " * (1024 * 1024 - 11)
        try:
            self.wfile.write(chunk)
            filler = b" " * (1024 * 1024)
            for _ in range(self.size // len(filler) - 1):
                self.wfile.write(filler)
        except OSError:
            pass  # the client hung up: what we want


def _serve(handler) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "no-length"])
def test_a_100_mb_answer_is_refused_without_holding_it(announce):
    from dunning.tasks.source import SourceError, open_source

    handler = type("H", (_HugeHandler,), {"announce": announce})
    if not announce:
        handler.protocol_version = "HTTP/1.0"  # body ends when the connection closes
    server = _serve(handler)
    try:
        src = open_source(f"http://127.0.0.1:{server.server_address[1]}", None, 10)
        tracemalloc.start()
        with pytest.raises(SourceError, match=r"(larger|more) than the limit"):
            for _ in src.batches("", None, 1000):
                pass
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        src.close()
    finally:
        server.shutdown()
        server.server_close()
    assert peak < 80 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


def test_sync_cli_refuses_a_100_mb_page_in_one_line(cli, sqlite_url):
    server = _serve(_HugeHandler)
    try:
        got = cli(
            "sync",
            "--source",
            f"http://127.0.0.1:{server.server_address[1]}",
            env={"DUNNING_DATABASE_URL": sqlite_url},
        )
    finally:
        server.shutdown()
        server.server_close()
    assert got.returncode != 0
    assert "Traceback" not in got.stderr + got.stdout
    assert "limit" in got.stderr + got.stdout


# --- a partner that redirects, or presents a certificate nobody signed -----------------


class _Counter(BaseHTTPRequestHandler):
    hits = 0
    target = ""

    def log_message(self, *args):
        pass

    def do_POST(self):
        type(self).hits += 1
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.target:
            self.send_response(307)
            self.send_header("Location", self.target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'{"claim_id": "CL-1", "status": "received"}'
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_partner_redirect_to_another_host_is_refused():
    from dunning.tasks import partner
    from dunning.tasks.http_client import make_client

    elsewhere = _serve(type("Elsewhere", (_Counter,), {"hits": 0}))
    other = f"http://localhost:{elsewhere.server_address[1]}/v1/claims"
    redirect = _serve(type("Redirect", (_Counter,), {"hits": 0, "target": other}))
    try:
        client = make_client(f"http://127.0.0.1:{redirect.server_address[1]}", "tok", 5)
        out = partner.hand_over(client, "case-1-handover", {"reference": "DUN-1"})
        client.close()
    finally:
        for s in (elsewhere, redirect):
            s.shutdown()
            s.server_close()
    assert out.status == partner.FAILED and "307" in (out.error or "")
    assert elsewhere.RequestHandlerClass.hits == 0  # never followed


@pytest.fixture
def self_signed_https(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Tls", (_Counter,), {"hits": 0}))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_invalid_tls_is_refused_with_a_clear_error(self_signed_https, cli, sqlite_url):
    from dunning.tasks import partner
    from dunning.tasks.http_client import make_client

    client = make_client(self_signed_https, "tok", 5)
    out = partner.hand_over(client, "case-1-handover", {"reference": "DUN-1"}, base_delay=0.01)
    client.close()
    assert out.status == partner.TRANSIENT  # waits, visibly, with the reason
    assert "CERTIFICATE_VERIFY_FAILED" in (out.error or "")
    got = cli("sync", "--source", self_signed_https, env={"DUNNING_DATABASE_URL": sqlite_url})
    text_out = got.stdout + got.stderr
    assert got.returncode != 0 and "Traceback" not in text_out, text_out
    assert "CERTIFICATE_VERIFY_FAILED" in text_out or "certificate" in text_out.lower()


# --- secrets and personal data ---------------------------------------------------------

SOURCE_SECRET = "src-T0ken-9f8e7d"
PARTNER_SECRET = "prt-T0ken-1a2b3c"
DB_SECRET = "dbPassw0rd-5x6y"


def _prefect_records(api_env: dict[str, str]) -> str:
    """Everything the Prefect server keeps of our runs: flow run parameters and names,
    logs, artifacts, events - as one JSON text to search."""
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> list:
        async with get_client() as client:
            runs = await client.read_flow_runs(limit=200)
            logs = await client.read_logs(limit=200)
            more = []
            offset = 200
            while len(logs) + len(more) == offset:
                batch = await client.read_logs(limit=200, offset=offset)
                more.extend(batch)
                offset += 200
                if not batch:
                    break
            artifacts = await client.read_artifacts(limit=200)
            return [
                [r.model_dump(mode="json") for r in runs],
                [x.model_dump(mode="json") for x in logs + more],
                [a.model_dump(mode="json") for a in artifacts],
            ]

    return json.dumps(asyncio.run(read()))


@pytest.mark.postgres
def test_secrets_and_buyer_data_never_show(postgres_url, prefect_api_env, smtp, cli, tmp_path):
    from sqlalchemy.engine import make_url

    from dunning.db import upgrade
    from dunning.sample.generator import generate_orders
    from dunning.servers import orders_api, partner_api
    from tests.reliability import crash_driver as drv

    upgrade(postgres_url)
    drv.configure_merchants(postgres_url, 2)
    secret_url = (
        make_url(postgres_url).set(password=DB_SECRET).render_as_string(hide_password=False)
    )
    records = list(generate_orders(30, merchants=2, seed=5, as_of=drv.START))
    source = orders_api.start(records, token=SOURCE_SECRET)
    partner = partner_api.start(token=PARTNER_SECRET)
    smtp_url, _ = smtp
    env = {
        **prefect_api_env,
        "DUNNING_DATABASE_URL": secret_url,
        "DUNNING_SOURCE_URL": source.url,
        "DUNNING_SOURCE_TOKEN": SOURCE_SECRET,
        "DUNNING_PARTNER_URL": partner.url,
        "DUNNING_PARTNER_TOKEN": PARTNER_SECRET,
        "DUNNING_SMTP_URL": smtp_url,
        "PREFECT_LOGGING_LEVEL": "DEBUG",
    }
    outputs = []
    try:
        # One run: sync (source token), partner updates (partner token), reminders (buyer
        # data), all on a database URL with a password.
        got = cli("run", "--as-of", drv.START.isoformat(), env=env)
        assert got.returncode == 0, got.stdout + got.stderr
        outputs.append(got.stdout + got.stderr)
        # errors: a refused token, an unreachable database
        bad = {**env, "DUNNING_SOURCE_TOKEN": SOURCE_SECRET + "-wrong"}
        got = cli("sync", env=bad)
        assert got.returncode != 0 and "Traceback" not in got.stderr
        outputs.append(got.stdout + got.stderr)
        unreachable = (
            make_url(secret_url).set(port=_closed_port()).render_as_string(hide_password=False)
        )
        got = cli("run", env={**env, "DUNNING_DATABASE_URL": unreachable})
        assert got.returncode != 0 and "Traceback" not in got.stderr, got.stderr
        outputs.append(got.stdout + got.stderr)
        from typer.testing import CliRunner

        from dunning.cli import app

        runner = CliRunner()
        for command in ("", "run", "sync", "cases", "case", "purge", "settings", "db", "serve",
                        "bootstrap", "demo", "generate", "bench"):  # fmt: skip
            got = runner.invoke(app, [*([command] if command else []), "--help"], env=env)
            assert got.exit_code == 0 and "Usage" in got.output, (command, got.output)
            outputs.append(got.output)
        got = cli("settings", "show", env=env)
        outputs.append(got.stdout + got.stderr)
    finally:
        source.stop()
        partner.stop()
    prefect_text = _prefect_records(prefect_api_env)
    everything = "\n".join(outputs) + prefect_text
    for secret in (SOURCE_SECRET, PARTNER_SECRET, DB_SECRET):
        assert secret not in everything, f"{secret} leaked: {_where(everything, secret)}"
    # Buyer e-mail and street are not in Prefect's logs, events or artifacts.
    leaked = [r["buyer"]["email"] for r in records if r["buyer"]["email"] in prefect_text]
    leaked += [
        r["buyer"]["street"]
        for r in records
        if r["buyer"].get("street") and f"{r['buyer']['street']} " in prefect_text
    ]
    assert not leaked, leaked[:5]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _where(haystack: str, needle: str) -> list[str]:
    out, i = [], haystack.find(needle)
    while i >= 0 and len(out) < 5:
        out.append(haystack[max(0, i - 150) : i + 40])
        i = haystack.find(needle, i + 1)
    return out


# --- issue 19 (1): mail headers from validated parts only -------------------------------

ATTACKER = "attacker@evil.example"
INJECTED_NAMES = [
    ("Erika\r\nBcc: " + ATTACKER, "Mustermann"),  # a header of the sender's choosing
    ("Erika", "Muster\nX-Injected: yes"),  # a line break without a colon
    ("\x1b[2JErika", "Muster\u202e\x85"),  # ESC, bidi override, NEL
]
REMINDER_DAY = date(2026, 1, 26)  # one_time(): due 01-15, reminder 1 ten days after default
BAD_ADDRESSES = [
    "victim@example.org, " + ATTACKER,
    "victim@example.org\nBcc: " + ATTACKER,
    f"Victim <victim@example.org>, <{ATTACKER}>",
]


@pytest.mark.parametrize("address_", [*BAD_ADDRESSES, "victim@example.org;" + ATTACKER, "victim"])
def test_an_address_that_is_not_exactly_one_is_quarantined(migrated_db, tmp_path, address_):
    from dunning.tasks.sync_run import run_sync

    records = [order_record("ok"), order_record("bad", buyer=address(email=address_))]
    result = run_sync(migrated_db, str(write_jsonl(tmp_path / "o.jsonl", records)), as_of=AS_OF)
    assert (result.counts.inserted, result.counts.quarantined) == (1, 1)
    with session_scope(migrated_db) as s:
        q = s.execute(text("SELECT order_id, field, reason FROM quarantine")).one()
    assert (q.order_id, q.field) == ("bad", "buyer.email")
    assert "victim" not in q.reason and "evil" not in q.reason  # the reason quotes no address


def test_injected_names_and_addresses_never_reach_the_headers(migrated_db, smtp, partner):
    """Some buyers carry injected names, some an address list that slipped in before the
    contract checked it (written straight into the table): the others get their mail, the
    injected address receives nothing, the broken ones are set aside with the reason."""
    from dunning.flows.artifacts import needs_human_rows
    from dunning.tasks.escalate import run_escalation
    from tests.escalation_fixtures import at, case, make_case, one_time, settings_for

    smtp_url, box = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url)
    normal = [make_case(migrated_db, one_time(f"n{i}")) for i in range(3)]
    named = [
        make_case(migrated_db, one_time(f"x{i}", buyer=address(first_name=f, last_name=last)))
        for i, (f, last) in enumerate(INJECTED_NAMES)
    ]
    listed = [make_case(migrated_db, one_time(f"l{i}")) for i in range(len(BAD_ADDRESSES))]
    with session_scope(migrated_db) as s:
        for i, bad in enumerate(BAD_ADDRESSES):
            s.execute(
                text("UPDATE buyers SET email = :e WHERE order_id = :o"), {"e": bad, "o": f"l{i}"}
            )
    stats = run_escalation(at(REMINDER_DAY), migrated_db, settings=cfg)
    assert stats["performed"] == {"reminder_1:done": 6, "reminder_1:failed": 3}, stats
    assert ATTACKER not in box.recipients and len(box.recipients) == 6
    for msg in box.messages:
        assert "Bcc" not in msg and "X-Injected" not in msg
        assert msg["Date"] and msg["Message-ID"]  # RFC 5322 origination date, stable id
        assert all("\n" not in v and "\x1b" not in v for v in msg.values())
    tos = sorted(str(m["To"]) for m in box.messages)
    assert any("Bcc: attacker" in t for t in tos)  # the name stays, quoted, in one header
    for case_id in normal + named:
        assert case(migrated_db, case_id).state == "reminder_1"
    rows = {r["case_id"]: r for r in needs_human_rows(migrated_db)[0]}
    for case_id in listed:
        c = case(migrated_db, case_id)
        assert c.state == "scheduled" and "not exactly one valid address" in c.partner_error
        assert "victim" not in c.partner_error and "evil" not in c.partner_error
        assert rows[case_id]["why"].startswith("Mail: reminder_1: mail:")
    # a second run does not retry them (failed, shown to operators) and sends nothing twice
    run_escalation(at(REMINDER_DAY), migrated_db, settings=cfg)
    assert len(box.recipients) == 6


def test_render_reminder_refuses_what_it_cannot_build():
    from dunning.tasks.mailer import MailBuildError, recipient

    ok = recipient({"first_name": "Zoë\r\n", "last_name": "Bcc: x\x1b[2J", "email": "z@x.org"})
    assert "\n" not in ok and "\r" not in ok and "\x1b" not in ok and ok.endswith("<z@x.org>")
    for bad in [*BAD_ADDRESSES, "", None, "a@b"]:
        with pytest.raises(MailBuildError) as info:
            recipient({"first_name": "Erika", "last_name": "M", "email": bad})
        assert "victim" not in str(info.value) and "Erika" not in str(info.value)


# --- issue 19 (5): timestamps bounded at the contract ------------------------------------


def test_poison_timestamps_are_quarantined_and_a_real_later_snapshot_wins(migrated_db, tmp_path):
    from dunning.tasks.sync_run import run_sync
    from tests.factories import sale, schedule

    def later(order_id: str, **kw) -> dict:
        return order_record(order_id, **{"updated_at": "2026-02-01T00:00:00+00:00", **kw})

    poison = {
        "west": later("west", updated_at="9999-12-31T23:59:59-12:00"),  # OverflowError before
        "y9999": later("y9999", updated_at="9999-12-31T23:59:59Z"),
        "old": later("old", order_date="1999-12-31T23:59:59+00:00"),
        "year1": later("year1", updated_at="0001-01-01T00:00:00+14:00"),
        "tx": later("tx", transactions=[sale("s1", 1, "99.00", datetime(2026, 3, 1, tzinfo=UTC))]),
        "due": later("due", installments=schedule(1, date(2101, 1, 1), "99.00")),
        "due1999": later("due1999", installments=schedule(1, date(1999, 12, 1), "99.00")),
    }
    fields = {
        "west": "updated_at",
        "y9999": "updated_at",
        "old": "order_date",
        "year1": "updated_at",
        "tx": "transactions[0].processed_at",
        "due": "installments[0].due_date",
        "due1999": "installments[0].due_date",
    }
    records = [order_record("ok"), *poison.values()]
    first = run_sync(migrated_db, str(write_jsonl(tmp_path / "a.jsonl", records)), as_of=AS_OF)
    assert (first.counts.inserted, first.counts.quarantined) == (1, len(poison))
    assert first.watermark_after == datetime.fromisoformat(order_record("ok")["updated_at"])
    with session_scope(migrated_db) as s:
        got = dict(s.execute(text("SELECT order_id, field FROM quarantine")).all())
    assert got == fields
    # the real next snapshot of y9999 (refunded) is taken: nothing bogus hides it
    refunded = later("y9999", status="refunded", updated_at="2026-02-19T00:00:00+00:00")
    second = run_sync(migrated_db, str(write_jsonl(tmp_path / "b.jsonl", [refunded])), as_of=AS_OF)
    assert second.counts.inserted == 1
    with session_scope(migrated_db) as s:
        status = s.execute(text("SELECT status FROM orders WHERE order_id = 'y9999'")).scalar()
    assert status == "refunded"


# --- issue 19 (4): terminal escapes -------------------------------------------------------

ESCAPES = ["\x1b[2J\x1b[H", "\x9b31mred", "\x07bell", "[red]rot[/red]", "[/]", "\u202eevil\u202c"]


def test_terminal_output_escapes_control_characters(migrated_db, cli, tmp_path):
    records = [
        order_record(f"e{i}\x1b[1m", buyer=address(first_name=f"Eve{i}", last_name=last))
        for i, last in enumerate(ESCAPES)
    ]
    pipeline(migrated_db, str(write_jsonl(tmp_path / "orders.jsonl", records)))
    env = {"DUNNING_DATABASE_URL": migrated_db, "COLUMNS": "200"}
    table = cli("cases", env=env)
    assert table.returncode == 0, table.stderr
    for raw in ("\x1b", "\x9b", "\x07", "\u202e"):
        assert raw not in table.stdout, repr(raw)
    assert "\\x1b[2J" in table.stdout and "\\x9b31mred" in table.stdout
    assert "[red]rot[/red]" in table.stdout and "[/]" in table.stdout  # shown, not markup
    as_json = cli("cases", "--format", "json", env=env)
    assert as_json.returncode == 0 and "\x1b" not in as_json.stdout and "\x9b" not in as_json.stdout
    assert sorted(r["last_name"] for r in json.loads(as_json.stdout)) == sorted(ESCAPES)
    as_csv = cli("cases", "--format", "csv", env=env)
    assert as_csv.returncode == 0 and "\x1b" not in as_csv.stdout and "\x9b" not in as_csv.stdout
    # a message quoting the user's own argument, with ESC and markup in it
    got = cli("case", "hold", "o\x1b[2J[/]", "--reason", "r", env=env)
    assert got.returncode == 2 and "Traceback" not in got.stderr
    assert got.stderr.strip().count("\n") == 0 and "\x1b" not in got.stderr
    assert "\\x1b[2J[/]" in got.stderr


# --- issue 19 (8): user mistakes are one line and exit code 2 ------------------------------

MISTAKES = [
    (("run", "--as-of", "0001-01-01"), "--as-of '0001-01-01' lies before 2000-01-01"),
    (("purge", "--closed-before", "0001-01-01"), "--closed-before '0001-01-01' lies before"),
    (("cases", "--limit", "9" * 23), "--limit must be between 1 and"),
    (("case", "hold", "9" * 23, "--reason", "r"), "no case with id or order id"),
    (("cases", "--format", "csv", "--output", "/dev/full"), "cannot write /dev/full"),
    (("case", "hold", "1", "--reason", "r", "--operator", "o" * 101), "--operator is longer"),
    (("settings", "set", "m" * 65, "--interest", "on"), "MERCHANT_ID is longer than 64"),
    (("settings", "show", "m" * 65), "MERCHANT_ID is longer than 64"),
]


def _one_line_error(got, words: str) -> None:
    out = got.stdout + got.stderr
    assert got.returncode == 2, out
    assert "Traceback" not in out, out
    assert got.stderr.strip().count("\n") == 0, got.stderr
    assert words in got.stderr, got.stderr


@pytest.mark.parametrize(("args", "words"), MISTAKES, ids=[" ".join(m[0])[:30] for m in MISTAKES])
def test_user_mistakes_are_one_line(db_url, cli, args, words):
    _one_line_error(cli(*args, env={"DUNNING_DATABASE_URL": db_url}), words)


def test_a_database_url_with_a_port_that_is_no_number(cli):
    url = "postgresql+psycopg://u:hunter2@h:notaport/db"
    got = cli("cases", env={"DUNNING_DATABASE_URL": url})
    _one_line_error(got, "DUNNING_DATABASE_URL has a port that is not a number")
    assert "hunter2" not in got.stderr


@pytest.mark.postgres
def test_an_unreachable_mail_server_ends_the_run_degraded(postgres_url, prefect_api_env, cli):
    from dunning.db import upgrade
    from dunning.sample.generator import generate_orders
    from dunning.servers import orders_api, partner_api
    from tests.reliability import crash_driver as drv

    upgrade(postgres_url)
    drv.configure_merchants(postgres_url, 2)
    source = orders_api.start(list(generate_orders(40, 2, 5, drv.START)), token="t")
    partner = partner_api.start(token="p")
    env = {
        **prefect_api_env,
        "DUNNING_DATABASE_URL": postgres_url,
        "DUNNING_SOURCE_URL": source.url,
        "DUNNING_SOURCE_TOKEN": "t",
        "DUNNING_PARTNER_URL": partner.url,
        "DUNNING_PARTNER_TOKEN": "p",
        "DUNNING_SMTP_URL": f"smtp://127.0.0.1:{_closed_port()}",
    }
    try:
        got = cli("run", "--as-of", drv.START.isoformat(), env=env)
    finally:
        source.stop()
        partner.stop()
    out = got.stdout + got.stderr
    assert got.returncode == 1, out
    assert "Traceback" not in out
    assert "degraded:" in got.stderr and "SMTP server was unreachable" in got.stderr, out
    with session_scope(postgres_url) as s:
        waiting = s.execute(
            text("SELECT count(*) FROM actions WHERE status = 'pending' AND step = 'reminder_1'")
        ).scalar()
    assert waiting > 0 and f"{waiting} reminder mail(s) wait" in got.stderr
    print(f"\nSMTP unreachable: exit {got.returncode}, {waiting} reminders waiting")


# --- issue 19 (7): purge gaps ------------------------------------------------------------


def test_purge_covers_quarantine_operator_texts_and_later_broken_snapshots(migrated_db, tmp_path):
    from decimal import Decimal

    from dunning.models.schema import Case, CaseHistory
    from dunning.tasks.purge import PURGED_TEXT, purge_closed, purge_quarantine
    from dunning.tasks.sync_run import run_sync

    old = datetime(2026, 1, 5, tzinfo=UTC)
    pii = "Zyxwvuta"  # a last name to look for everywhere afterwards
    buyer = address(last_name=pii, city="Quedlinburg")
    lines = [
        order_record("gone", buyer=buyer),
        order_record("never-valid", buyer=buyer, total_amount="1.234"),
        {"no_order_id": True, "buyer": buyer},
    ]
    run_sync(migrated_db, str(write_jsonl(tmp_path / "a.jsonl", lines)), as_of=old)
    recent = {"no_order_id": "recent", "buyer": address(last_name="Recent")}
    run_sync(migrated_db, str(write_jsonl(tmp_path / "b.jsonl", [recent])), as_of=AS_OF)
    closed = datetime(2026, 1, 20, tzinfo=UTC)
    with session_scope(migrated_db) as s:
        case = Case(
            order_id="gone",
            merchant_id="m1",
            kind="overdue",
            state="cancelled",
            dunning_option="court",
            currency="EUR",
            opened_at=old,
            default_date=date(2026, 1, 1),
            principal_amount=Decimal("99.00"),
            outstanding_amount=Decimal("99.00"),
            closed_at=closed,
            close_reason=f"cancelled by alice: Frau {pii} zieht um",
            partner_error=f"reminder_1: recipient refused: {{'e@x.org': (550, '')}} {pii}",
            updated_at=closed,
        )
        s.add(case)
        s.flush()
        for actor, at, reason in (("detect", old, "overdue"), ("alice", closed, f"{pii} rief an")):
            s.add(
                CaseHistory(case_id=case.case_id, at=at, actor=actor, to_state="x", reason=reason)
            )
    cutoff = datetime(2026, 2, 1, tzinfo=UTC)
    with session_scope(migrated_db) as s:
        assert purge_closed(s, cutoff, AS_OF) == 1
        assert purge_quarantine(s, cutoff) == 2  # the one without order id, the never-valid
    # a broken snapshot of the purged order arrives later, from another file
    late = order_record("gone", buyer=buyer, currency="Euro", updated_at="2026-02-10T00:00:00Z")
    run_sync(migrated_db, str(write_jsonl(tmp_path / "c.jsonl", [late])), as_of=AS_OF)
    with session_scope(migrated_db) as s:
        raws = dict(s.execute(text("SELECT digest, raw FROM quarantine")).all())
        history = dict(s.execute(text("SELECT actor, reason FROM case_history")).all())
        c = s.execute(text("SELECT close_reason, partner_error FROM cases")).one()
        city = s.execute(text("SELECT city FROM buyers WHERE order_id = 'gone'")).scalar()
    assert len(raws) == 4 and sum(r == "{}" for r in raws.values()) == 3
    assert [r for r in raws.values() if r != "{}"] == [orjson_line(recent)]  # not yet old
    assert history == {"detect": "overdue", "alice": PURGED_TEXT}
    assert pii not in (c.close_reason or "") and c.partner_error is None and city is None
    dump = _database_text(migrated_db)
    assert pii not in dump and "Quedlinburg" not in dump


def orjson_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False)


def _database_text(url: str) -> str:
    """Every text of every table, as one string to search."""
    from dunning.models.schema import Base

    out = []
    with session_scope(url) as s:
        for table in Base.metadata.sorted_tables:
            out += [repr(tuple(r)) for r in s.execute(table.select())]
    return "\n".join(out)
