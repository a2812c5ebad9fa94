"""`dunning cases` as a user runs it: table, JSON, CSV under both dialects, bad filters."""

from __future__ import annotations

import csv
import io
import json

import pytest

from dunning.models.board import GERMAN_HEADERS
from dunning.models.schema import REPORT_COLUMNS
from dunning.tasks.report import refresh_report
from tests.report_fixtures import AS_OF, HYPERLINK, build_board


@pytest.fixture
def board(migrated_db):
    build_board(migrated_db)
    refresh_report(migrated_db, AS_OF)
    return migrated_db


def run(cli, url, *args):
    result = cli("cases", *args, env={"DUNNING_DATABASE_URL": url, "COLUMNS": "200"})
    return result


def test_table_shows_last_data_update_and_german_labels(board, cli):
    result = run(cli, board, "--status", "in_progress")
    assert result.returncode == 0, result.stderr
    first_line = result.stdout.splitlines()[0]
    assert first_line.startswith("Last data update: refresh 2026-02-01 07:00 CET")
    assert "Beim Inkassopartner" in result.stdout
    assert "Mahnlauf geplant" in result.stdout
    assert "Smith" not in result.stdout  # the paid case is not in progress
    assert "3 of 3" in result.stdout


def test_json_keys_amounts_and_combined_filters(board, cli):
    result = run(cli, board, "--format", "json", "--merchant", "m1", "--min-amount", "50")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [d["case_id"] for d in data] == [1, 2]
    assert all(tuple(d) == REPORT_COLUMNS for d in data)
    assert data[1]["paid_amount"] == "50.30"
    assert data[1]["state_label"] == "Beim Inkassopartner"
    result = run(cli, board, "--format", "json", "--search", "MÜLLER", "--to", "2026-01-10")
    assert [d["case_id"] for d in json.loads(result.stdout)] == [2]


@pytest.mark.parametrize("dialect", ["excel-de", "rfc4180"])
def test_csv_file_reads_back_and_neutralises_formulas(board, cli, tmp_path, dialect):
    out = tmp_path / f"cases-{dialect}.csv"
    result = run(cli, board, "--format", "csv", "--dialect", dialect, "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "6 of 6 cases written" in result.stdout
    raw = out.read_bytes()
    german = dialect == "excel-de"
    assert raw.startswith(b"\xef\xbb\xbf") == german
    with out.open(encoding="utf-8-sig" if german else "utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";" if german else ","))
    header = [GERMAN_HEADERS[c] for c in REPORT_COLUMNS] if german else list(REPORT_COLUMNS)
    assert rows[0] == header
    records = {r[0]: dict(zip(REPORT_COLUMNS, r, strict=True)) for r in rows[1:]}
    assert len(records) == 6
    assert records["3"]["first_name"] == "'" + HYPERLINK
    assert not any(cell.startswith("=") for r in rows for cell in r)
    assert records["2"]["paid_amount"] == ("50,30" if german else "50.30")
    assert records["5"]["last_name"] == "Straßer;--"
    assert records["5"]["order_id"] == "x%_5"


def test_csv_to_stdout(board, cli):
    result = run(cli, board, "--format", "csv", "--dialect", "rfc4180", "--status", "blocked")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout, newline="")))
    assert rows[0] == list(REPORT_COLUMNS)
    assert [r[0] for r in rows[1:]] == ["4"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "lost"], "unknown status 'lost'"),
        (["--from", "1.1.2026"], "--from '1.1.2026' is not a date"),
        (["--min-amount", "viel"], "--min-amount 'viel' is not an amount"),
        (["--min-amount", "9", "--max-amount", "1"], "is above --max-amount"),
        (["--output", "x.csv"], "--output needs --format csv"),
    ],
)
def test_bad_filter_values_give_one_error_line(board, cli, args, message):
    result = run(cli, board, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
