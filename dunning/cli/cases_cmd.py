"""`dunning cases`: the case board in the terminal, or as CSV/JSON."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path

import typer

from dunning.cli.common import UserError, console, database_url, limit_option, settings, shown
from dunning.models.enums import CaseState

# The board's status filter: every state, or in_progress for the open ones (the help lists
# them; a wrong one is refused in one line by the board's filter).
STATUSES = ("in_progress", *CaseState)


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class CsvDialect(StrEnum):
    excel_de = "excel-de"
    rfc4180 = "rfc4180"


TABLE_COLUMNS = (
    ("case_id", "Fall"),
    ("merchant_id", "Händler"),
    ("order_id", "Bestellung"),
    ("name", "Kunde"),
    ("kind", "Art"),
    ("state_label", "Status"),
    ("overdue_days", "Tage"),
    ("outstanding_amount", "Offen"),
    ("paid_amount", "Bezahlt"),
    ("opened_at", "Eröffnet"),
    ("next_step_at", "Nächster Schritt"),
    ("note", "Hinweis"),  # why it is blocked, or why its step waits
)
# What fits an 80-column terminal: the rest is in --format csv/json.
NARROW_COLUMNS = (
    "case_id",
    "order_id",
    "name",
    "state_label",
    "overdue_days",
    "outstanding_amount",
)


def cases(
    status: str | None = typer.Option(
        None,
        "--status",
        metavar="STATE",
        help="A case state, or in_progress for every open one: " + ", ".join(STATUSES) + ".",
    ),
    opened_from: str | None = typer.Option(
        None, "--from", help="Opened on or after this local date (YYYY-MM-DD)."
    ),
    opened_to: str | None = typer.Option(
        None, "--to", help="Opened on or before this local date (YYYY-MM-DD)."
    ),
    min_amount: str | None = typer.Option(None, "--min-amount", help="Outstanding at least."),
    max_amount: str | None = typer.Option(None, "--max-amount", help="Outstanding at most."),
    search: str | None = typer.Option(
        None, "--search", help="Order id, first or last name (any case, umlauts included)."
    ),
    merchant: str | None = typer.Option(None, "--merchant", help="Only this merchant."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, csv or json."),
    dialect: CsvDialect = typer.Option(
        CsvDialect.excel_de,
        "--dialect",
        help="CSV: excel-de (UTF-8 BOM, ';', decimal comma) or rfc4180 (',', dot).",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write CSV/JSON to this file instead of the terminal."
    ),
    limit: int | None = typer.Option(
        None, "--limit", help="At most this many rows (table default: 200).", callback=limit_option
    ),
) -> None:
    """The case board: filter, show, or export the reporting table."""
    from dunning.models.board import BoardFilter, BoardFilterError
    from dunning.tasks.report import query_board

    try:
        board_filter = BoardFilter.parse(
            status=status,
            opened_from=opened_from,
            opened_to=opened_to,
            min_amount=min_amount,
            max_amount=max_amount,
            search=search,
            merchant_id=merchant,
        )
    except BoardFilterError as exc:
        raise UserError(str(exc)) from None
    if output is not None and fmt is Format.table:
        raise UserError("--output needs --format csv or --format json")
    if output is not None and (output.is_dir() or not output.parent.exists()):
        raise UserError(f"--output {output}: not a file in an existing folder")

    installation = settings()
    url = database_url()
    if limit is None and fmt is Format.table:
        limit = 200
    rows, total = query_board(url, board_filter, timezone=installation.timezone, limit=limit)

    if fmt is Format.table:
        _print_table(url, rows, total, board_filter.describe(), installation.zone)
        return
    try:
        _write(rows, fmt, dialect, output, installation.zone)
    except OSError as exc:  # a full disk, /dev/full, a closed pipe: one line, not a traceback
        where = "standard output" if output is None else str(output)
        raise UserError(f"cannot write {where}: {exc.strerror or exc}") from None
    if output is not None:
        console.print(f"{len(rows)} of {total} cases written to {output}", highlight=False)


def _write(rows, fmt: Format, dialect: CsvDialect, output: Path | None, zone) -> None:
    from dunning.models.board import csv_encoding, write_csv, write_json

    if fmt is Format.json:
        if output is None:
            write_json(rows, sys.stdout)
            sys.stdout.flush()
        else:
            with output.open("w", encoding="utf-8") as fh:
                write_json(rows, fh)
    else:
        if output is None:
            stream = open(  # noqa: SIM115 - stdout's own fd, left open
                sys.stdout.fileno(),
                "w",
                encoding=csv_encoding(dialect.value),
                newline="",
                closefd=False,
            )
            sys.stdout.flush()
            write_csv(rows, stream, dialect.value, zone)
            stream.flush()
        else:
            with output.open("w", encoding=csv_encoding(dialect.value), newline="") as fh:
                write_csv(rows, fh, dialect.value, zone)


def _print_table(url, rows, total, description, zone) -> None:
    from rich.table import Table

    from dunning.tasks.report import last_data_updates

    updates = last_data_updates(url)
    if updates:
        parts = [f"{name} {when.astimezone(zone):%Y-%m-%d %H:%M %Z}" for name, when, _ in updates]
        console.print("Last data update: " + " · ".join(parts), highlight=False)
    else:
        console.print(
            "Last data update: never (the case board has not been refreshed yet; "
            "`dunning run` refreshes it)",
            highlight=False,
        )
    if not rows:
        console.print(f"No cases match ({description}).", highlight=False)
        return
    table = Table(title=shown(f"Cases ({description}): {len(rows)} of {total}"))
    columns = TABLE_COLUMNS
    if console.width < 140:
        columns = tuple(c for c in TABLE_COLUMNS if c[0] in NARROW_COLUMNS)
    for _, header in columns:
        justify = "right" if header in ("Fall", "Tage", "Offen", "Bezahlt") else "left"
        table.add_column(header, justify=justify, overflow="fold")
    for row in rows:
        cells = []
        for key, _ in columns:
            if key == "note":
                value = row["blocked_reason"] or row["waiting_reason"] or ""
            elif key == "name":
                value = f"{row['first_name'] or ''} {row['last_name'] or ''}".strip()
            elif key in ("outstanding_amount", "paid_amount"):
                value = f"{row[key]:.2f} {row['currency']}"
            elif key in ("opened_at", "next_step_at"):
                value = "" if row[key] is None else f"{row[key].astimezone(zone):%Y-%m-%d %H:%M}"
            else:
                value = "" if row[key] is None else str(row[key])
            cells.append(shown(value))  # never markup; ESC and other controls escaped
        table.add_row(*cells)
    console.print(table)
    if total > len(rows):
        console.print(f"Showing {len(rows)} of {total}; narrow the filters or use --limit.")


def print_board(url: str, limit: int = 20) -> None:
    """The unfiltered board, newest first, as `dunning cases` prints it (used by the demo)."""
    from dunning.models.board import BoardFilter
    from dunning.tasks.report import query_board

    installation = settings()
    board_filter = BoardFilter.parse()
    rows, total = query_board(url, board_filter, timezone=installation.timezone, limit=limit)
    _print_table(url, rows, total, board_filter.describe(), installation.zone)
