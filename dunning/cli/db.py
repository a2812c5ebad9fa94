"""`dunning db`: the schema."""

from __future__ import annotations

import typer

from dunning.cli.common import UserError, console, settings

app = typer.Typer(help="Create or upgrade the database schema.", no_args_is_help=True)


@app.command()
def upgrade(
    database_url: str | None = typer.Option(
        None, help="Database URL; default DUNNING_DATABASE_URL.", show_default=False
    ),
) -> None:
    """Bring the schema to the newest revision. Safe to run any number of times."""
    from dunning.db import DatabaseConfigError, normalise_url, safe_url
    from dunning.db import upgrade as run_upgrade

    url = database_url or settings().database_url
    try:
        before, after = run_upgrade(normalise_url(url))
    except DatabaseConfigError as exc:
        raise UserError(str(exc)) from None
    where = safe_url(url)
    if before == after:
        console.print(f"{where}: schema already at revision {after}; nothing to do.")
    else:
        console.print(f"{where}: schema upgraded from {before or 'empty'} to {after}.")
