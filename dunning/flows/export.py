"""`export_cases_csv`: the filtered case board as a CSV file, with a link artifact.

`export_cases` is the plain-Python core; the flow adds the run name and the artifact. With
DUNNING_WEB_URL set and no `output` asked for, no file is written on the worker: the artifact
links to the filtered board and its CSV download in `dunning web` instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger

from dunning.config import DEFAULT_HOME, get_settings
from dunning.flows.artifacts import flow_run_namer
from dunning.models.board import BoardFilter, csv_encoding, mask_text, write_csv
from dunning.models.weblinks import board_csv_url, board_url
from dunning.tasks.report import last_data_updates, query_board

EXPORT_KEY = "cases-export"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    description: str


def default_export_path(as_of: datetime) -> Path:
    return DEFAULT_HOME / "exports" / f"cases-{as_of.astimezone(UTC):%Y%m%dT%H%M%SZ}.csv"


def export_cases(
    database_url: str,
    filters: BoardFilter,
    output: Path,
    dialect: Literal["excel-de", "rfc4180"] = "excel-de",
    timezone: str = "Europe/Berlin",
) -> ExportResult:
    """Write the filtered board to `output` (atomically: a temp file, then rename)."""
    rows, _ = query_board(database_url, filters, timezone=timezone)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding=csv_encoding(dialect), newline="") as fh:
        count = write_csv(rows, fh, dialect, timezone)
    tmp.replace(output)
    return ExportResult(path=output.resolve(), rows=count, description=filters.describe())


@dataclass(frozen=True)
class WebLinks:
    view: str  # the filtered board
    csv: str  # its CSV download


def web_links(web_url: str, filters: BoardFilter, dialect: str) -> WebLinks:
    return WebLinks(board_url(web_url, filters), board_csv_url(web_url, filters, dialect))


def export_markdown(
    result: ExportResult | None,
    dialect: str,
    refreshed: datetime | None,
    links: WebLinks | None = None,
    *,
    rows: int | None = None,
    description: str = "",
) -> str:
    """The artifact: the web area's view and download when `links`, the worker's file when
    `result` (both when a file was asked for and the web area is known)."""
    stand = f"{refreshed:%Y-%m-%d %H:%M} UTC" if refreshed else "never refreshed"
    lines = ["# Case board export\n\n"]
    if links is not None:
        lines.append(f"- view in the web area: [filtered board]({links.view})\n")
        lines.append(f"- download: [CSV]({links.csv})\n")
    if result is not None:
        lines.append(f"- file: [{result.path.name}]({result.path.as_uri()})\n")
        lines.append(f"- path: `{result.path}`\n")
        rows, description = result.rows, result.description
    return (
        "".join(lines) + f"- rows: {rows}\n"
        f"- filters: {mask_text(description)}\n"
        f"- dialect: {dialect}\n"
        f"- board as of (last refresh): {stand}\n"
    )


@flow(
    name="export-cases-csv",
    flow_run_name=flow_run_namer("export-cases"),
    description="Write the filtered case board as CSV (excel-de or rfc4180).",
)
def export_cases_csv(
    filters: BoardFilter | None = None,
    output: str | None = None,
    dialect: Literal["excel-de", "rfc4180"] = "excel-de",
    as_of: datetime | None = None,
) -> str:
    """Export the board's cases that match `filters` as CSV; link it in an artifact.

    Args:
        filters: Which cases: state, opening dates, amounts, search text, merchant.
        output: Where the worker writes the file; empty: the web area serves the CSV if
            one is configured, else a dated file in the working folder.
        dialect: excel-de (semicolons, decimal commas, for German Excel) or rfc4180.
        as_of: The moment the run counts as (ISO date-time with offset); empty means now.
    """
    from prefect.artifacts import create_markdown_artifact

    settings = get_settings()
    as_of = as_of or datetime.now(UTC)
    url = settings.database_url
    filters = filters or BoardFilter()
    refreshed = next((when for name, when, _ in last_data_updates(url) if name == "refresh"), None)
    links = web_links(settings.web_url, filters, dialect) if settings.web_url else None
    if links is not None and output is None:  # the web area serves it; no file on the worker
        _, rows = query_board(url, filters, timezone=settings.timezone, limit=0)
        create_markdown_artifact(
            markdown=export_markdown(
                None, dialect, refreshed, links, rows=rows, description=filters.describe()
            ),
            key=EXPORT_KEY,
            description=f"CSV export: {rows} cases (web area)",
        )
        get_run_logger().info("%d cases; the CSV is at the web area's /cases.csv", rows)
        return links.csv
    path = Path(output) if output else default_export_path(as_of)
    result = export_cases(url, filters, path, dialect, settings.timezone)
    create_markdown_artifact(
        markdown=export_markdown(result, dialect, refreshed, links),
        key=EXPORT_KEY,
        description=f"CSV export: {result.rows} cases",
    )
    get_run_logger().info("exported %d cases to %s", result.rows, result.path)
    return str(result.path)
