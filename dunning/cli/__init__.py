"""The `dunning` command. Each command group lives in its own module here."""

from __future__ import annotations

import sys

import typer

from dunning.cli import (
    bench_cmd,  # issue 8
    case_cmd,
    cases_cmd,
    db,
    demo,
    help_style,
    merchants_cmd,
    purge_cmd,
    run_cmd,
    serve_cmd,
    settings_cmd,
    sync_cmd,  # issue 3
    web_cmd,  # issue 17
)
from dunning.cli.common import UserError, fail

help_style.apply()

app = typer.Typer(
    name="dunning",
    help=(
        "Dunning and collections pipeline: overdue installments and chargebacks pursued "
        "through reminders, a collection partner, and the court dunning procedure or the "
        "cancellation of the order.\n\nConfiguration comes from DUNNING_* environment "
        "variables or a .env file (see README)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(db.app, name="db")
app.add_typer(settings_cmd.app, name="settings")
app.command("demo")(demo.demo)
app.add_typer(case_cmd.app, name="case")  # issue 4
app.add_typer(web_cmd.app, name="web")  # issue 17
app.command("run")(run_cmd.run)  # issue 4
app.command("cases")(cases_cmd.cases)
app.command("merchants")(merchants_cmd.merchants)
app.command("serve")(serve_cmd.serve)
app.command("bootstrap")(serve_cmd.bootstrap)
app.command("purge")(purge_cmd.purge)
app.command("bench")(bench_cmd.bench)  # issue 8
app.command("sync")(sync_cmd.sync), app.command("generate")(sync_cmd.generate)  # issue 3


def main() -> None:
    """Console entry point: user mistakes become one line, not a traceback."""
    from sqlalchemy.exc import OperationalError

    from dunning.db import DatabaseConfigError

    try:
        app()
    except UserError as exc:
        fail(str(exc))
    except DatabaseConfigError as exc:
        fail(str(exc))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        fail(f"database not reachable: {reason}", code=3)
    except KeyboardInterrupt:
        sys.exit(130)
