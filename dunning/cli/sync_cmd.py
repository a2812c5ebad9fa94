"""`dunning sync` (orders from the source) and `dunning generate` (a sample shop)."""

from __future__ import annotations

from pathlib import Path

import typer

from dunning.cli.common import (
    AS_OF_HELP,
    UserError,
    as_of_option,
    console,
    database_url,
    settings,
    shown,
)


def sync(
    source: str | None = typer.Option(
        None,
        "--source",
        help="JSON Lines file (file:PATH, file:///PATH, a path; .jsonl.gz too) inside "
        "DUNNING_SOURCE_ROOT (default: the working folder), or the orders API (http(s)://...; "
        "DUNNING_SOURCE_TOKEN is sent only to the host of DUNNING_SOURCE_URL). "
        "Default: DUNNING_SOURCE_URL.",
        show_default=False,
    ),
    full: bool = typer.Option(False, "--full", help="Ignore the watermark: read everything."),
    database_url_opt: str | None = typer.Option(
        None,
        "--database-url",
        help="Database URL; default DUNNING_DATABASE_URL.",
        show_default=False,
    ),
    as_of: str | None = typer.Option(None, "--as-of", help=AS_OF_HELP, show_default=False),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Records per batch (default DUNNING_BATCH_SIZE)."
    ),
) -> None:
    """Sync orders from the source: validate, quarantine what breaks the contract, upsert
    the rest (newest updated_at wins), then print the counts."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from dunning.tasks.http_client import TransientHTTPError
    from dunning.tasks.orders_sink import SyncCounts
    from dunning.tasks.source import SourceError
    from dunning.tasks.sync_run import run_sync

    moment = as_of_option(as_of)
    url = database_url(database_url_opt)
    installation = settings()
    source_url = source or installation.source_url
    progress = Progress(
        TextColumn("[bold]sync[/]"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    )
    task_id = None

    def on_progress(counts: SyncCounts, done: int | None, total: int | None) -> None:
        # a file reports bytes (a real bar); the API has no total (the bar pulses)
        nonlocal task_id
        if task_id is None:
            task_id = progress.add_task("sync", total=None)
        progress.update(
            task_id,
            total=total or None,
            completed=done or 0,
            description=f"{counts.read:,} read, {counts.quarantined:,} quarantined",
        )

    try:
        with progress:
            result = run_sync(
                url,
                source_url,
                full=full,
                as_of=moment,
                batch_size=batch_size,
                on_progress=on_progress,
            )
    except (SourceError, TransientHTTPError) as exc:
        raise UserError(str(exc)) from None
    _print_result(result)


def _print_result(result) -> None:
    from rich.table import Table

    c = result.counts
    table = Table(title=shown(f"Sync of {result.source}"), show_header=True)
    for column in ("read", "inserted", "updated", "unchanged", "quarantined", "skipped"):
        table.add_column(column, justify="right")
    table.add_row(
        *(f"{v:,}" for v in (c.read, c.inserted, c.updated, c.unchanged, c.quarantined, c.skipped))
    )
    console.print(table)
    console.print(
        "counts: " + " ".join(f"{k}={v}" for k, v in c.as_dict().items()),
        highlight=False,
        soft_wrap=True,
    )
    rate = c.read / result.seconds if result.seconds > 0 else 0
    console.print(
        f"{c.read:,} records in {result.seconds:.1f} s ({rate:,.0f}/s); "
        f"watermark {result.watermark_after.isoformat() if result.watermark_after else '-'}"
        + (" (full reload)" if result.full else ""),
        soft_wrap=True,
    )
    if c.read == 0:
        console.print("Nothing new at the source.")
    if c.quarantined:
        console.print(
            f"[yellow]{c.quarantined:,} record(s) quarantined[/]: they broke the contract; "
            "the table `quarantine` names the field and the reason of each.",
            markup=True,
        )
    if c.resolved:
        console.print(f"{c.resolved:,} quarantine entr(y/ies) resolved by a valid snapshot.")


def generate(
    orders: int = typer.Option(1000, "--orders", min=0, help="How many orders."),
    merchants: int = typer.Option(20, "--merchants", min=1, help="How many merchants."),
    seed: int = typer.Option(1, "--seed", help="Same seed, same shop."),
    out: Path = typer.Option(
        ..., "--out", help="Output file: .jsonl, or .jsonl.gz for gzip.", show_default=False
    ),
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        help="The shop's 'now': orders are dated over the 120 days before it. Default: now.",
        show_default=False,
    ),
) -> None:
    """Write a deterministic sample shop as JSON Lines (the demo and the benchmark use it)."""
    from rich.progress import Progress

    from dunning.sample import generate_orders, write_jsonl

    moment = as_of_option(as_of)
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name such as shop.jsonl")

    def counted():
        with Progress(console=console, transient=True) as bar:
            task_id = bar.add_task("generate", total=orders)
            for i, record in enumerate(generate_orders(orders, merchants, seed, moment), 1):
                if i % 5000 == 0:
                    bar.update(task_id, completed=i)
                yield record

    try:
        count = write_jsonl(counted(), out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    console.print(
        f"Wrote {count:,} orders of {merchants:,} merchants (seed {seed}, as of "
        f"{moment.isoformat()}) to {out}."
    )
