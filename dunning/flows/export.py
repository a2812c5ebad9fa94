"""`export_cases_csv`: the filtered case board as a CSV file, with a link artifact.

`export_cases` is the plain-Python core; the flow adds the run name and the artifact.
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


def export_markdown(result: ExportResult, dialect: str, refreshed: datetime | None) -> str:
    stand = f"{refreshed:%Y-%m-%d %H:%M} UTC" if refreshed else "never refreshed"
    return (
        "# Case board export\n\n"
        f"- file: [{result.path.name}]({result.path.as_uri()})\n"
        f"- path: `{result.path}`\n"
        f"- rows: {result.rows}\n"
        f"- filters: {mask_text(result.description)}\n"
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
    from prefect.artifacts import create_markdown_artifact

    settings = get_settings()
    as_of = as_of or datetime.now(UTC)
    url = settings.database_url
    path = Path(output) if output else default_export_path(as_of)
    result = export_cases(url, filters or BoardFilter(), path, dialect, settings.timezone)
    refreshed = next((when for name, when, _ in last_data_updates(url) if name == "refresh"), None)
    create_markdown_artifact(
        markdown=export_markdown(result, dialect, refreshed),
        key=EXPORT_KEY,
        description=f"CSV export: {result.rows} cases",
    )
    get_run_logger().info("exported %d cases to %s", result.rows, result.path)
    return str(result.path)
