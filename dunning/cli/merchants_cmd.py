"""`dunning merchants` and `dunning case show`: what operators read (table or JSON)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Any

import typer

from dunning.cli.common import UserError, console, database_url, settings, shown


class Format(StrEnum):
    table = "table"
    json = "json"


FORMAT_HELP = "table or json."


def print_json(data: Any) -> None:
    from dunning.models.controls import escape_json_text
    from dunning.tasks.case_view import json_ready

    sys.stdout.write(escape_json_text(json.dumps(json_ready(data), ensure_ascii=False, indent=2)))
    sys.stdout.write("\n")
    sys.stdout.flush()


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def merchants(
    fmt: Format = typer.Option(Format.table, "--format", help=FORMAT_HELP),
) -> None:
    """Known merchants (from orders or settings): their settings in short, their open cases."""
    from rich.table import Table

    from dunning.tasks.case_view import merchants_overview

    rows = merchants_overview(database_url(), settings())
    if fmt is Format.json:
        print_json(rows)
        return
    if not rows:
        console.print("No merchants yet: no orders synced and no settings stored.")
        return
    with_names = any(row["name"] for row in rows)
    table = Table(
        title=f"Merchants: {len(rows)}",
        caption="auto: overdue/chargebacks without review · days: to reminder 1/2/partner",
    )
    table.add_column("merchant", no_wrap=True)
    if with_names:
        table.add_column("name")
    table.add_column("option")
    table.add_column("auto")
    table.add_column("days")
    table.add_column("fee", justify="right")
    table.add_column("open", justify="right")
    table.add_column("note")
    for row in rows:
        s = row["settings"]
        note = []
        if not row["has_orders"]:
            note.append("no orders yet")
        if not row["configured"]:
            note.append("defaults")
        cells = [shown(row["merchant_id"])]
        if with_names:
            cells.append(shown(row["name"] or ""))
        cells += [
            s["dunning_option"],
            f"{_on_off(s['auto_overdue'])}/{_on_off(s['auto_chargebacks'])}",
            f"{s['reminder_1_days']}/{s['reminder_2_days']}/{s['handover_days']}",
            s["reminder_fee"],
            str(row["open_cases"]),
            ", ".join(note),
        ]
        table.add_row(*cells)
    console.print(table)


def show_case(ref: str, fmt: Format) -> None:
    """`dunning case show`: the case, its amounts, history and actions."""
    from rich.table import Table

    from dunning.models.operator import ActionRefused
    from dunning.tasks.case_view import CASE_FIELDS, case_details

    installation = settings()
    try:
        case = case_details(database_url(), ref)
    except ActionRefused as exc:  # CaseNotFound
        raise UserError(str(exc)) from None
    if fmt is Format.json:
        print_json(case)
        return
    zone = installation.zone

    def when(value: Any) -> str:
        if value is None:
            return ""
        return f"{value.astimezone(zone):%Y-%m-%d %H:%M}" if hasattr(value, "hour") else str(value)

    head = Table(title=shown(f"Case {case['case_id']} (order {case['order_id']})"))
    head.add_column("field")
    head.add_column("value")
    for key in CASE_FIELDS[2:]:  # the case and order ids are in the title
        value = case[key]
        if value is None:
            continue
        text = when(value) if key.endswith("_at") else str(value)
        if key == "state":
            text = f"{value} ({case['state_label']})"
        head.add_row(key, shown(text))
    console.print(head)
    amounts = Table(title="Amounts")
    amounts.add_column("amount")
    amounts.add_column(case["currency"], justify="right")
    if case["order_amount"] is not None:
        amounts.add_row("order_amount", f"{case['order_amount']:.2f}")
    for key, value in case["amounts"].items():
        amounts.add_row(key, f"{value:.2f}")
    console.print(amounts)
    history = Table(title=f"History: {len(case['history'])}")
    for header in ("when", "who", "from", "to", "reason"):
        history.add_column(header, overflow="fold")
    for h in case["history"]:
        history.add_row(
            when(h["at"]),
            shown(h["actor"]),
            h["from_state"] or "",
            h["to_state"],
            shown(h["reason"] or ""),
        )
    console.print(history)
    if not case["actions"]:
        console.print("Actions: none (no reminder, handover or cancellation yet).")
        return
    actions = Table(title=f"Actions: {len(case['actions'])}")
    for header in ("step", "status", "attempts", "created", "done", "outcome / error"):
        actions.add_column(header, overflow="fold")
    for a in case["actions"]:
        actions.add_row(
            a["step"],
            a["status"],
            str(a["attempts"]),
            when(a["created_at"]),
            when(a["done_at"]),
            shown(a["last_error"] or a["outcome"] or ""),
        )
    console.print(actions)
