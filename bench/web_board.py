"""Benchmark of the web area's case board (issue 17) on PostgreSQL.

    .venv/bin/python bench/web_board.py [--cases 1000000] [--database-url URL] [--runs 30]

Creates its own database `dunning_bench_web` on the server of `--database-url` (default
TEST_DATABASE_URL), migrates it, fills `case_report_rows` — the table under the board's view
`case_report` — with N cases set-based (INSERT ... SELECT generate_series; the secondary
indexes are dropped for the load and built again after it, as a bulk load would), then times
pages of the real app (Starlette in-process, a bearer token as a script sends it, the page
rendered) and a CSV export: median and p95 of `--runs` requests after two warm-up requests.
Writes the numbers with the machine to bench/results/<date>-web-board-<N>.json and prints a
Markdown table for bench/README.md ("Web board"). Drops the database at the end unless
--keep.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from dunning.bench.environment import libpq, machine_info

DB_NAME = "dunning_bench_web"
MERCHANTS = 20
HERE = Path(__file__).resolve().parent

FIRST = [
    "Jürgen", "Erika", "Zoë", "Hans", "Anna", "Özlem", "Lukas", "Marie", "Björn", "Lea",
    "Paul", "Sophie", "Jörg", "Mia", "Felix", "Emma", "Ali", "Hannah", "Noah", "Käthe",
]  # fmt: skip
LAST = [
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
    "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder",
    "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange",
    "Schmitt", "Werner", "Schmitz", "Krause", "Meier", "Lehmann", "Schmid", "Schulze",
    "Maier", "Köhler", "Herrmann", "König", "Walter", "Mayer", "Huber", "Kaiser", "Fuchs",
    "Peters", "Lang", "Scholz", "Möller", "Weiß", "Jung", "Hahn", "Schubert", "Vogel",
    "Friedrich", "Keller", "Günther", "Frank", "Berger", "Winkler", "Roth", "Beck", "Lorenz",
    "Baumann", "Franke", "Albrecht", "Schuster", "Simon", "Ludwig", "Böhm", "Winter", "Kraus",
    "Martin", "Schumacher", "Krämer", "Vogt", "Stein", "Jäger", "Otto", "Sommer", "Groß",
    "Seidel", "Heinrich", "Brandt", "Haas", "Schreiber", "Graf", "Schulte", "Dietrich",
    "Ziegler", "Kuhn", "Kühn", "Pohl", "Engel", "Horn", "Busch", "Bergmann", "Thomas",
    "Voigt", "Sauer", "Arnold", "Wolff", "Pfeiffer", "Nußbaum", "Gärtner", "Öztürk",
]  # fmt: skip
# (state, label, weight): most cases are in progress, as on a live board
STATES = [
    ("scheduled", "Mahnlauf geplant", 10), ("reminder_1", "1. Mahnung", 14),
    ("reminder_2", "2. Mahnung", 10), ("with_partner", "Beim Inkassopartner", 12),
    ("termination_notice", "Kündigungsandrohung", 3), ("court", "Gerichtliches Mahnverfahren", 3),
    ("awaiting_approval", "Warten auf Freigabe", 8), ("blocked", "Geblockt", 2),
    ("awaiting_cancellation", "Kündigung manuell ausführen", 1), ("on_hold", "Pausiert", 1),
    ("order_cancelled", "Gekündigt", 2), ("paid", "Bezahlt", 25),
    ("cancelled", "Abgebrochen", 6), ("uncollectible", "Uneinbringlich", 3),
]  # fmt: skip


def _array(values: list[str]) -> str:
    return "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def fill_sql(n: int) -> str:
    """One INSERT ... SELECT generate_series: N board rows, spread over merchants, states,
    names and two years of opening times."""
    weighted = [s for s, _, w in STATES for _ in range(w)]
    labels = {s: label for s, label, _ in STATES}
    state_at = f"({_array(weighted)})[1 + (g * 7) % {len(weighted)}]"
    label_case = " ".join(f"WHEN '{s}' THEN '{label}'" for s, label in labels.items())
    first = f"({_array(FIRST)})[1 + (g * 13) % {len(FIRST)}]"
    last = f"({_array(LAST)})[1 + (g * 31) % {len(LAST)}]"
    return f"""
INSERT INTO case_report_rows (
  case_id, merchant_id, order_id, first_name, last_name, payment_plan, payment_method, kind,
  state, state_label, default_date, outstanding_amount, order_amount, paid_amount,
  cancellation_costs, fees_amount, interest_amount, dunning_option, currency, opened_at,
  last_step_at, next_step_at, partner_reference, blocked_reason, refreshed_at, search_text)
SELECT g, merchant_id, order_id, first_name, last_name, payment_plan, payment_method, kind,
       state, CASE state {label_case} END, current_date - overdue_days, outstanding,
       order_amount, paid,
       costs, fees, interest, dunning_option, 'EUR', opened_at,
       opened_at + interval '10 days', NULL, NULL,
       CASE WHEN state = 'blocked' THEN 'missing address fields: street' END,
       now(),
       lower(translate(order_id || ' ' || first_name || ' ' || last_name, 'ÄÖÜ', 'äöü'))
FROM (
  SELECT g,
         'm' || lpad((g % {MERCHANTS})::text, 2, '0') AS merchant_id,
         'o-' || g AS order_id,
         {first} AS first_name,
         {last} AS last_name,
         (ARRAY['one_time_payment','breakdown_payment','abonnement'])[1 + g % 3] AS payment_plan,
         (ARRAY['invoice','sepa','credit_card','paypal','sofort'])[1 + g % 5] AS payment_method,
         CASE WHEN g % 10 = 0 THEN 'chargeback' ELSE 'overdue' END AS kind,
         {state_at} AS state,
         ((g * 17) % 200)::int AS overdue_days,
         round(((g * 7919) % 200000) / 100.0, 2) AS outstanding,
         round(((g * 7919) % 200000) / 100.0 + (g % 50), 2) AS order_amount,
         round((g % 50)::numeric, 2) AS paid,
         CASE WHEN g % 7 = 0 THEN 15.00 ELSE 0 END AS costs,
         round(((g % 3) * 2.5)::numeric, 2) AS fees,
         round(((g % 11) * 0.37)::numeric, 2) AS interest,
         CASE WHEN g % 4 = 0 THEN 'cancellation' ELSE 'court' END AS dunning_option,
         timestamptz '2025-01-01 00:00+00' + (g * interval '63 seconds') AS opened_at
  FROM generate_series(1::bigint, {n}) AS g
) AS s
"""


def prepare(server_url: str, n: int) -> tuple[str, dict[str, float]]:
    from dunning.db import upgrade

    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {DB_NAME}"))
        conn.execute(text(f"CREATE DATABASE {DB_NAME}"))
    admin.dispose()
    url = make_url(server_url).set(database=DB_NAME).render_as_string(hide_password=False)
    upgrade(url)
    timings: dict[str, float] = {}
    engine = create_engine(url)
    with engine.begin() as conn:
        indexes = conn.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'case_report_rows'"
                " AND indexname <> 'pk_case_report'"
            )
        ).all()
        for name, _ in indexes:
            conn.execute(text(f"DROP INDEX {name}"))
        started = time.perf_counter()
        conn.execute(text(fill_sql(n)))
        # the board's day, from which the view counts overdue_days
        conn.execute(
            text(
                "INSERT INTO report_marks (scope, board_day, as_of) "
                "VALUES ('all', current_date, now())"
            )
        )
        timings["insert_s"] = time.perf_counter() - started
        started = time.perf_counter()
        for _, definition in indexes:
            conn.execute(text(definition))
        timings["indexes_s"] = time.perf_counter() - started
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        started = time.perf_counter()
        conn.execute(text("VACUUM ANALYZE case_report_rows"))
        timings["vacuum_analyze_s"] = time.perf_counter() - started
    engine.dispose()
    return url, timings


def deep_cursor(url: str, n: int) -> str:
    """The keyset cursor of the row in the middle of the newest-first board."""
    engine = create_engine(url)
    with engine.connect() as conn:
        opened, case_id = conn.execute(
            text(
                "SELECT opened_at, case_id FROM case_report"
                " ORDER BY opened_at DESC, case_id DESC OFFSET :o LIMIT 1"
            ),
            {"o": n // 2},
        ).one()
    engine.dispose()
    return f"{opened.astimezone(UTC).isoformat()}~{case_id}"


def time_requests(client, path: str, headers: dict[str, str], runs: int) -> dict[str, Any]:
    for _ in range(2):  # warm-up: plans, caches
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    samples = []
    size = 0
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        size = len(response.content)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return {
        "path": path,
        "runs": runs,
        "median_ms": round(statistics.median(samples), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(samples[-1], 1),
        "bytes": size,
    }


def run(server_url: str, n: int, runs: int, csv_runs: int, keep: bool) -> dict[str, Any]:
    from dunning.config import get_settings
    from dunning.web.app import create_app
    from dunning.web.tokens import create_token

    url, load = prepare(server_url, n)
    info = machine_info(libpq(url))  # the machine as `dunning bench` records it
    engine = create_engine(url)
    with engine.connect() as conn:
        csv_rows = conn.execute(
            text("SELECT count(*) FROM case_report WHERE merchant_id = 'm01'")
        ).scalar()
    engine.dispose()
    _, operator = create_token(url, merchant_id=None, operator="bench", created_by="bench")
    _, merchant = create_token(url, merchant_id="m01", operator=None, created_by="bench")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    app = create_app(url, get_settings())
    client = TestClient(app, base_url="http://127.0.0.1")
    as_operator = {"authorization": f"Bearer {operator}"}
    as_merchant = {"authorization": f"Bearer {merchant}"}
    after = deep_cursor(url, n)
    from urllib.parse import quote

    cases = {
        "first page (operator, all merchants)": ("/cases", as_operator),
        "deep page, keyset (middle of all cases)": (f"/cases?after={quote(after)}", as_operator),
        "filtered: status in progress": ("/cases?status=in_progress", as_operator),
        "filtered: status blocked": ("/cases?status=blocked", as_operator),
        "searched: name fragment 'müll'": ("/cases?search=m%C3%BCll", as_operator),
        "searched: order id fragment": ("/cases?search=o-12345", as_operator),
        "merchant m01: first page": ("/cases", as_merchant),
        "merchant m01: in progress, searched 'schä'": (
            "/cases?status=in_progress&search=sch%C3%A4",
            as_merchant,
        ),
        "sorted by outstanding (offset, page 1)": ("/cases?sort=-outstanding_amount", as_operator),
    }
    pages = {name: time_requests(client, p, h, runs) for name, (p, h) in cases.items()}
    export = time_requests(client, "/cases.csv?merchant=m01", as_operator, csv_runs)
    export["rows"] = csv_rows
    export["rows_per_s"] = round(csv_rows / (export["median_ms"] / 1000))
    client.close()
    info["load_after"] = [round(x, 2) for x in os.getloadavg()]
    if not keep:
        admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
        admin.dispose()
    return {
        "benchmark": "web-board",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cases": n,
        "merchants": MERCHANTS,
        "machine": info,
        "load": {k: round(v, 1) for k, v in load.items()},
        "pages": pages,
        "csv_export": export,
    }


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "| request | median ms | p95 ms |",
        "|---|---:|---:|",
        *(f"| {name} | {p['median_ms']} | {p['p95_ms']} |" for name, p in result["pages"].items()),
        f"| CSV export, one merchant ({result['csv_export']['rows']:,} rows) | "
        f"{result['csv_export']['median_ms']} | {result['csv_export']['p95_ms']} |",
        "",
        f"{result['cases']:,} cases over {result['merchants']} merchants; {m['cpu']}, "
        f"{m['cores']} cores, load average {m['load_1_5_15'][0]:.1f} before and "
        f"{m['load_after'][0]:.1f} after; PostgreSQL {m['postgresql']}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--csv-runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url or TEST_DATABASE_URL (a PostgreSQL server)")
    result = run(args.database_url, args.cases, args.runs, args.csv_runs, args.keep)
    label = f"{args.cases // 1000}k" if args.cases < 1_000_000 else f"{args.cases // 10**6}m"
    out = args.json or HERE / "results" / f"{datetime.now(UTC):%Y-%m-%d}-web-board-{label}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result["load"]))
    print(markdown(result))
    print(f"\nwritten: {out.relative_to(HERE.parent) if out.is_relative_to(HERE.parent) else out}")


if __name__ == "__main__":
    main()
