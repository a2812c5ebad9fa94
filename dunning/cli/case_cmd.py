"""`dunning case start|cancel|hold|resume`: an operator's action on one case."""

from __future__ import annotations

import typer

from dunning.cli.common import (
    AS_OF_HELP,
    UserError,
    as_of_option,
    console,
    database_url,
    login_name,
    operator_option,
)
from dunning.cli.merchants_cmd import FORMAT_HELP, Format, show_case

app = typer.Typer(
    help="Show one case, or act on it as an operator: start, cancel, hold or resume it "
    "(with a reason).",
    no_args_is_help=True,
)

REF_HELP = "Case id, or order id (its open case)."
REASON_HELP = "Why; kept in the case history."
OPERATOR_HELP = "Who acts (default: your login name)."


def _act(action: str, ref: str, reason: str, operator: str | None, as_of: str | None) -> None:
    from dunning.models.operator import ActionRefused
    from dunning.tasks.case_ops import case_action_core

    when = as_of_option(as_of)
    url = database_url()
    who = operator or login_name()
    try:
        result = case_action_core(action, ref, reason, who, when, url)
    except ActionRefused as exc:
        raise UserError(str(exc)) from None
    line = (
        f"case {result['case_id']} (order {result['order_id']}): "
        f"{result['from_state']} → {result['to_state']}"
    )
    if result.get("next_step_at"):
        line += f"; first reminder due {result['next_step_at']:%Y-%m-%d %H:%M} UTC"
    console.print(line, highlight=False)


# One signature for every action: the same arguments, help and operator check.
CASE_OR_ORDER_ID = typer.Argument(..., metavar="CASE_OR_ORDER_ID", help=REF_HELP)
REASON = typer.Option(..., "--reason", help=REASON_HELP)
OPERATOR = typer.Option(None, "--operator", help=OPERATOR_HELP, callback=operator_option)
AS_OF = typer.Option(None, "--as-of", help=AS_OF_HELP)


def _action_command(action: str, doc: str) -> None:
    def command(
        case_or_order_id: str = CASE_OR_ORDER_ID,
        reason: str = REASON,
        operator: str | None = OPERATOR,
        as_of: str | None = AS_OF,
    ) -> None:
        _act(action, case_or_order_id, reason, operator, as_of)

    command.__doc__ = doc
    app.command(action)(command)


_action_command(
    "start", "Start dunning of a case awaiting approval (or blocked, once its address is complete)."
)
_action_command("cancel", "Cancel a case in any open state (a claim with the partner is recalled).")
_action_command("hold", "Pause a case in the ladder: no step runs until it is resumed.")
_action_command("resume", "Continue a held case from the step where it was paused.")
_action_command(
    "confirm-cancellation",
    "Record that the order was cancelled at the platform by hand (state awaiting_cancellation:"
    " the pipeline could not cancel it).",
)


@app.command("show")
def show(
    case_or_order_id: str = CASE_OR_ORDER_ID,
    fmt: Format = typer.Option(Format.table, "--format", help=FORMAT_HELP),
) -> None:
    """The case, its amounts, its history and its actions with their outcomes."""
    show_case(case_or_order_id, fmt)
