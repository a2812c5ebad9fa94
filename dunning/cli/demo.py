"""`dunning demo`: the embedded default, from nothing to a case board."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from dunning.cli.common import console

DEMO_HOME = Path(".dunning/demo")


def demo(
    home: Path = typer.Option(DEMO_HOME, help="Folder for the demo's database, data and mail."),
    orders: int = typer.Option(1200, min=10, help="Orders in the sample shop."),
    merchants: int = typer.Option(4, min=1, help="Merchants in the sample shop."),
    seed: int = typer.Option(42, help="Seed of the sample shop."),
) -> None:
    """Sample shop, local partner and orders API, mail to a folder: ~90 days in a minute.

    Starts clean every time: the folder is emptied first.
    """
    from dunning.demo import prepare_environment

    prepare_environment(home)  # before prefect is imported
    from dunning.demo import run_demo
    from dunning.models.enums import STATE_LABELS, CaseState

    started = time.monotonic()
    with console.status("Running the pipeline over 90 simulated days (10 runs)…"):
        result = run_demo(home, orders=orders, merchants=merchants, seed=seed)
    elapsed = time.monotonic() - started

    _print_board(result.database_url)
    console.print()
    console.print(
        f"[bold]Demo finished[/] in {elapsed:.0f} s: {result.runs} pipeline runs.", markup=True
    )
    for state in CaseState:
        if result.states.get(state.value):
            console.print(
                f"  {STATE_LABELS[state]:<30} {state.value:<18} {result.states[state.value]:>5}"
            )
    db = home / "dunning.db"
    console.print(
        f"""
Where to look:
  reminder e-mails   {home / "mail"}/  ({result.mails} .eml files)
  database (SQLite)  {db}
  the case board     DUNNING_DATABASE_URL=sqlite:///{db} dunning cases --status in_progress
  the Prefect UI     PREFECT_HOME={home / "prefect"} prefect server start
                     then open http://127.0.0.1:4200 (flow runs of the demo are there)""",
        highlight=False,
    )
    console.print(web_hint(result.database_url), highlight=False)


def web_hint(url: str, port: int = 8080) -> str:
    """The one command that serves the web area on the demo's database, and an operator
    token to log in with (made as `dunning web token create --operator demo` makes it)."""
    import shlex

    from dunning.cli.web_cmd import new_token

    _, secret = new_token(url, None, "demo")
    command = f"DUNNING_DATABASE_URL={shlex.quote(url)} dunning web --port {port}"
    return f"""
The web area (settings, case board, actions), as operator "demo":
  {command}
  then open http://127.0.0.1:{port}/ and log in with this token (shown once):
  {secret}"""


def _print_board(url: str) -> None:
    from dunning.cli.cases_cmd import print_board

    print_board(url, limit=15)
