"""`dunning demo`: the embedded default, from nothing to a case board."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from dunning.cli.common import console

DEMO_HOME = Path(".dunning/demo")


def demo(
    home: Path = typer.Option(DEMO_HOME, help="Folder for the demo's database, data and mail."),
) -> None:
    """Fresh SQLite database, sample shop, local servers, mail to a folder; then the board."""
    from dunning.db import upgrade

    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    url = f"sqlite:///{home / 'dunning.db'}"
    _, revision = upgrade(url)
    console.print(f"Demo database ready at {home / 'dunning.db'} (schema {revision}).")
