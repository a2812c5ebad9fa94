"""`dunning settings`: a merchant's dunning settings, with history."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

import typer
from rich.table import Table
from rich.text import Text

from dunning.cli.common import (
    AS_OF_HELP,
    UserError,
    as_of_option,
    console,
    database_url,
    err_console,
    login_name,
    merchant_id_argument,
    operator_option,
    settings,
    shown,
)

app = typer.Typer(help="Show or change a merchant's dunning settings.", no_args_is_help=True)


class Switch(StrEnum):
    on = "on"
    off = "off"


class Option(StrEnum):
    court = "court"
    cancellation = "cancellation"


@app.command()
def show(
    merchant_id: str = typer.Argument(
        ..., metavar="MERCHANT_ID", help="The merchant's id.", callback=merchant_id_argument
    ),
) -> None:
    """Current settings, defaults marked, and the change history."""
    from dunning.db import session_scope
    from dunning.tasks import merchant_settings as store

    url = database_url()
    installation = settings()
    with session_scope(url) as session:
        config, row = store.load(session, merchant_id, installation)
        changes = store.history(session, merchant_id)
        known = store.merchant_known(session, merchant_id)
    if not known and row is None:
        raise UserError(
            f"unknown merchant {merchant_id!r}: no orders and no settings stored "
            "(`dunning merchants` lists the known ones)"
        )
    table = Table(title=f"Merchant {merchant_id}" + ("" if known else " (no orders seen yet)"))
    table.add_column("setting")
    table.add_column("value")
    for key, value in config.as_json().items():
        table.add_row(key, _show(value))
    console.print(table)
    if row is None:
        console.print("Never configured: these are the installation's defaults.")
    else:
        if row.option_changed_at is not None:
            from dunning.models.merchant_settings import OPTION_CHANGE_INTERVAL

            nxt = (row.option_changed_at + OPTION_CHANGE_INTERVAL).astimezone(installation.zone)
            console.print(f"Dunning option may change again from {nxt:%Y-%m-%d %H:%M %Z}.")
        hist = Table(title="History")
        for col in ("when", "who", "changes"):
            hist.add_column(col)
        for entry in changes:
            what = ", ".join(f"{k}: {_show(a)} → {_show(b)}" for k, (a, b) in entry.changes.items())
            when = entry.changed_at.astimezone(installation.zone)
            hist.add_row(f"{when:%Y-%m-%d %H:%M %Z}", entry.changed_by, what)
        console.print(hist)


@app.command("set")
def set_(
    merchant_id: str = typer.Argument(
        ..., metavar="MERCHANT_ID", help="The merchant's id.", callback=merchant_id_argument
    ),
    option: Option | None = typer.Option(
        None, "--option", help="court: reminders, partner, court. cancellation: ..., cancel order."
    ),
    auto_overdue: Switch | None = typer.Option(
        None, "--auto-overdue", help="Start dunning of new overdue cases without review."
    ),
    auto_chargebacks: Switch | None = typer.Option(
        None, "--auto-chargebacks", help="Start dunning of new chargeback cases without review."
    ),
    reminder_1_days: int | None = typer.Option(None, help="Days from default to reminder 1."),
    reminder_2_days: int | None = typer.Option(None, help="Days from reminder 1 to reminder 2."),
    handover_days: int | None = typer.Option(None, help="Days from reminder 2 to the partner."),
    reminder_fee: str | None = typer.Option(None, help="Fee per reminder, e.g. 2.50."),
    chargeback_fee: str | None = typer.Option(None, help="Chargeback fee if the bank gives none."),
    cancellation_costs: str | None = typer.Option(None, help="Costs of a cancellation."),
    interest: Switch | None = typer.Option(None, "--interest", help="Default interest, § 288 BGB."),
    min_claim_amount: str | None = typer.Option(
        None, help="No handover or court below this open principal, e.g. 5.00."
    ),
    as_of: str | None = typer.Option(None, "--as-of", help=AS_OF_HELP),
    operator: str | None = typer.Option(
        None,
        "--operator",
        help="Who makes the change, kept in history (default: your login name).",
        callback=operator_option,
    ),
) -> None:
    """Change settings. The dunning option may change at most once every 30 days."""
    from dunning.db import session_scope
    from dunning.models.merchant_settings import SettingsChangeRefused
    from dunning.tasks import merchant_settings as store

    def money(text: str | None, name: str) -> Decimal | None:
        if text is None:
            return None
        try:
            return Decimal(text.replace(",", "."))
        except ArithmeticError:
            raise UserError(f"--{name.replace('_', '-')} {text!r} is not an amount") from None

    changes = {
        "dunning_option": option.value if option else None,
        "auto_overdue": None if auto_overdue is None else auto_overdue is Switch.on,
        "auto_chargebacks": None if auto_chargebacks is None else auto_chargebacks is Switch.on,
        "interest_enabled": None if interest is None else interest is Switch.on,
        "reminder_1_days": reminder_1_days,
        "reminder_2_days": reminder_2_days,
        "handover_days": handover_days,
        "reminder_fee": money(reminder_fee, "reminder_fee"),
        "chargeback_fee": money(chargeback_fee, "chargeback_fee"),
        "cancellation_costs": money(cancellation_costs, "cancellation_costs"),
        "min_claim_amount": money(min_claim_amount, "min_claim_amount"),
    }
    if all(v is None for v in changes.values()):
        raise UserError("nothing to change; give at least one option (see --help)")
    moment = as_of_option(as_of)
    url = database_url()
    operator = operator or login_name()
    try:
        with session_scope(url) as session:
            _, diff = store.change(session, merchant_id, changes, moment, operator, settings())
            known = store.merchant_known(session, merchant_id)
    except SettingsChangeRefused as exc:
        raise UserError(f"merchant {merchant_id}: {exc}") from None
    if not known:
        warning = Text.assemble(
            ("warning:", "bold yellow"),
            " ",
            shown(
                f"merchant {merchant_id!r} has no orders yet; the settings are stored for "
                "when it has (a typo? `dunning merchants` lists the known ones)"
            ),
        )
        err_console.print(warning, highlight=False, soft_wrap=True)
    if not diff:
        console.print(f"merchant {merchant_id}: settings already so; nothing changed.")
        return
    for key, (old, new) in diff.items():
        console.print(f"merchant {merchant_id}: {key} {_show(old)} → {_show(new)}")


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
