"""Board filters, LIKE escaping, CSV dialects and neutralising, masking: pure functions."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from dunning.models.board import (
    GERMAN_HEADERS,
    BoardFilter,
    BoardFilterError,
    board_select,
    csv_encoding,
    escape_like,
    mask_email,
    mask_name,
    mask_street,
    mask_text,
    neutralise,
    parse_amount,
    rows_as_json,
    search_pattern,
    write_csv,
)
from dunning.models.schema import REPORT_COLUMNS

ROW = {
    "case_id": 7,
    "merchant_id": "m1",
    "order_id": "o7",
    "first_name": '=HYPERLINK("http://x")',
    "last_name": 'Müller; "der Ältere"',
    "payment_plan": "one_time_payment",
    "payment_method": "invoice",
    "kind": "overdue",
    "state": "reminder_1",
    "state_label": "1. Mahnung",
    "overdue_days": 12,
    "outstanding_amount": Decimal("1234.50"),
    "order_amount": Decimal("99.00"),
    "paid_amount": Decimal("0.00"),
    "cancellation_costs": Decimal("0.00"),
    "fees_amount": Decimal("2.50"),
    "interest_amount": Decimal("0.05"),
    "dunning_option": "court",
    "currency": "EUR",
    "opened_at": datetime(2026, 1, 16, 5, 0, tzinfo=UTC),
    "last_step_at": None,
    "next_step_at": datetime(2026, 2, 4, 6, 0, tzinfo=UTC),
    "partner_reference": "-1+2",
    "blocked_reason": "@tab\tline\r\nbreak",
    "waiting_reason": None,
    "refreshed_at": datetime(2026, 2, 1, 6, 0, tzinfo=UTC),
}


def _csv(dialect: str) -> tuple[bytes, list[list[str]]]:
    buf = io.BytesIO()
    text = io.TextIOWrapper(buf, encoding=csv_encoding(dialect), newline="")
    assert write_csv([ROW, ROW], text, dialect) == 2
    text.flush()
    raw = buf.getvalue()
    delimiter = ";" if dialect == "excel-de" else ","
    decoded = raw.decode("utf-8-sig" if dialect == "excel-de" else "utf-8")
    return raw, list(csv.reader(io.StringIO(decoded, newline=""), delimiter=delimiter))


def test_csv_excel_de_reads_back_with_bom_semicolon_decimal_comma():
    raw, rows = _csv("excel-de")
    assert raw.startswith(b"\xef\xbb\xbf")
    assert rows[0] == [GERMAN_HEADERS[c] for c in REPORT_COLUMNS]
    record = dict(zip(REPORT_COLUMNS, rows[1], strict=True))
    assert record["outstanding_amount"] == "1234,50"
    assert record["interest_amount"] == "0,05"
    assert record["last_name"] == 'Müller; "der Ältere"'
    assert record["first_name"] == '\'=HYPERLINK("http://x")'
    assert record["partner_reference"] == "'-1+2"
    assert record["blocked_reason"] == "'@tab\tline\r\nbreak"
    assert record["opened_at"] == "16.01.2026 06:00"  # Berlin time
    assert record["last_step_at"] == ""
    assert record["overdue_days"] == "12"
    assert rows[1] == rows[2] and len(rows) == 3


def test_csv_rfc4180_reads_back_with_comma_and_dot():
    raw, rows = _csv("rfc4180")
    assert not raw.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in raw
    assert rows[0] == list(REPORT_COLUMNS)
    record = dict(zip(REPORT_COLUMNS, rows[1], strict=True))
    assert record["outstanding_amount"] == "1234.50"
    assert record["first_name"].startswith("'=HYPERLINK")
    assert record["opened_at"] == "2026-01-16T05:00:00+00:00"


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_every_dangerous_prefix_is_neutralised(prefix):
    assert neutralise(prefix + "1+1") == "'" + prefix + "1+1"
    assert neutralise("a" + prefix) == "a" + prefix


def test_json_keys_are_report_columns_and_amounts_strings():
    (obj,) = rows_as_json([ROW])
    assert tuple(obj) == REPORT_COLUMNS
    assert obj["outstanding_amount"] == "1234.50"
    assert obj["overdue_days"] == 12
    assert obj["opened_at"] == "2026-01-16T05:00:00+00:00"


def test_like_wildcards_are_escaped():
    assert escape_like("50%_off\\") == "50\\%\\_off\\\\"
    assert search_pattern("MÜLLER") == "%müller%"
    assert search_pattern("'; DROP TABLE x;--") == "%'; drop table x;--%"


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()])
def test_filters_compile_to_bound_parameters_only(dialect):
    evil = "x'; DROP TABLE cases;--%_"
    f = BoardFilter.parse(
        status="in_progress",
        opened_from="2026-01-01",
        opened_to="2026-01-31",
        min_amount="10",
        max_amount="1.000,50",
        search=evil,
        merchant_id="m'1",
    )
    compiled = board_select(f).compile(dialect=dialect)
    sql = str(compiled)
    assert "DROP" not in sql and "m'1" not in sql
    params = compiled.params
    assert "m'1" in params.values()
    assert any(isinstance(v, str) and "drop table cases" in v for v in params.values())
    assert Decimal("1000.50") in params.values()


def test_period_bounds_are_local_days():
    f = BoardFilter.parse(opened_from="2026-01-01", opened_to="2026-01-31")
    params = board_select(f).compile(dialect=postgresql.dialect()).params
    moments = sorted(v for v in params.values() if isinstance(v, datetime))
    assert [m.astimezone(UTC) for m in moments] == [
        datetime(2025, 12, 31, 23, 0, tzinfo=UTC),
        datetime(2026, 1, 31, 23, 0, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "lost"}, "unknown status 'lost'"),
        ({"opened_from": "31.01.2026"}, "--from '31.01.2026' is not a date"),
        ({"opened_from": "2026-02-01", "opened_to": "2026-01-01"}, "is after --to"),
        ({"min_amount": "zehn"}, "--min-amount 'zehn' is not an amount"),
        ({"max_amount": "-5"}, "--max-amount '-5' must be an amount >= 0"),
        ({"min_amount": "20", "max_amount": "10"}, "is above --max-amount"),
    ],
)
def test_bad_filters_give_one_clear_line(kwargs, message):
    with pytest.raises(BoardFilterError) as info:
        BoardFilter.parse(**kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_status_accepts_states_and_in_progress():
    assert BoardFilter.parse(status="In-Progress").status == "in_progress"
    assert BoardFilter.parse(status="with_partner").status == "with_partner"
    assert BoardFilter.parse(opened_from="2026-01-05").opened_from == date(2026, 1, 5)
    assert parse_amount("1,234.50", "--x") == Decimal("1234.50")
    assert parse_amount("12,5", "--x") == Decimal("12.5")


def test_masking():
    assert mask_email("erika@example.org") == "e***@e***.org"
    assert mask_street("Heidestraße") == "H***"
    assert mask_name("Erika", "Mustermann") == "Erika M."
    assert mask_name('=HYPERLINK("http://x")', "Smith").startswith("'=")
    assert mask_text("422: zip invalid for jm@example.org") == "422: zip invalid for j***@e***.org"
