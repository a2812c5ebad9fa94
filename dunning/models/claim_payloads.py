"""What the outside world is told about a claim, read from the ledger's `Statement`: the
items of a reminder or termination notice, and the partner's claim (contract v2, § 13a RDG:
creditor, basis, interest calculation, costs, payments). Pure: no database, no network."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from dunning.models.ledger import (
    CANCELLATION_COSTS,
    CHARGEBACK_FEE,
    FLAT_FEE,
    REMINDER_FEE,
    Charge,
    PrincipalItem,
    Statement,
)

LABELS = {
    "installment": ("Rate {n}", "Installment {n}"),
    "principal": ("Kaufpreis", "Purchase price"),
    "interest": ("Verzugszinsen (§ 288 BGB)", "Default interest (§ 288 BGB)"),
    REMINDER_FEE: ("Mahngebühr", "Reminder fee"),
    CHARGEBACK_FEE: ("Rücklastschriftgebühr", "Chargeback fee"),
    FLAT_FEE: ("Verzugspauschale (§ 288 Abs. 5 BGB)", "Flat default fee (§ 288 (5) BGB)"),
    CANCELLATION_COSTS: ("Stornokosten", "Cancellation costs"),
}


def key_for(case_id: int, step: str, suffix: str | None = None) -> str:
    """The idempotency key of a case's step: stable across runs, written before sending."""
    return f"case-{case_id}-{step}" + (f"-{suffix}" if suffix else "")


def reference_for(case_id: int) -> str:
    """Our reference of the claim at the partner (its own claim id is the board's)."""
    return f"DUN-{case_id}"


def money(value: Decimal) -> str:
    return f"{value:.2f}"


def item_key(kind: str, ref: str) -> str:
    """Stable key of an item: the partner is told each item once, by it."""
    return f"{kind}:{ref}"


def _principal_label(item: PrincipalItem, single: bool) -> tuple[str, str]:
    if single or item.number is None:
        return LABELS["principal"]
    de, en = LABELS["installment"]
    return de.format(n=item.number), en.format(n=item.number)


def principal_lines(s: Statement) -> list[dict[str, Any]]:
    single = len(s.items) == 1
    out = []
    for i in s.items:
        de, en = _principal_label(i, single)
        out.append(
            {
                "key": item_key("principal", i.ref),
                "type": "principal",
                "amount": money(i.amount),
                "open": money(s.open_items[i.ref]),
                "due_date": i.due_date.isoformat(),
                "label_de": de,
                "label_en": en,
            }
        )
    return out


def charge_line(c: Charge) -> dict[str, Any]:
    de, en = LABELS[c.kind]
    return {
        "key": item_key(c.kind, c.ref or c.day.isoformat()),
        "type": c.kind,
        "amount": money(c.amount),
        "date": c.day.isoformat(),
        "reason": c.reason,
        "label_de": de,
        "label_en": en,
    }


def interest_lines(s: Statement) -> list[dict[str, Any]]:
    de, en = LABELS["interest"]
    return [
        {
            "type": "interest",
            "amount": money(p.amount),
            "principal_base": money(p.principal_base),
            "from": p.start.isoformat(),
            "to": p.end.isoformat(),
            "rate_percent": f"{p.rate_percent:.2f}",
            "label_de": de,
            "label_en": en,
        }
        for p in s.interest_periods
        if p.amount > 0
    ]


def notice_items(s: Statement) -> dict[str, Any]:
    """The lines of a reminder or termination notice: principal items, charges, interest in
    one line (the period breakdown goes to the partner), what was paid, the total open."""
    lines = [
        {k: v for k, v in line.items() if k not in ("key", "open")} for line in principal_lines(s)
    ]
    lines += [{**charge_line(c), "due_date": None} for c in s.charges]
    if s.interest > 0:
        de, en = LABELS["interest"]
        lines.append(
            {
                "type": "interest",
                "amount": money(s.interest),
                "due_date": None,
                "label_de": de,
                "label_en": en,
            }
        )
    return {
        "items": lines,
        "paid": money(s.paid - s.overpaid),
        "total": money(s.total_open),
    }


def partner_items(s: Statement) -> list[dict[str, Any]]:
    """Every item of the claim for the partner: gross, each with its key; payments go
    separately (`partner_payments`)."""
    out = []
    for line in principal_lines(s):
        out.append(
            {
                "key": line["key"],
                "type": "principal",
                "amount": line["amount"],
                "due_date": line["due_date"],
                "description": line["label_de"],
            }
        )
    for c in s.charges:
        line = charge_line(c)
        out.append(
            {
                "key": line["key"],
                "type": c.kind,
                "amount": line["amount"],
                "date": line["date"],
                "reason": c.reason,
                "description": line["label_de"],
            }
        )
    for n, line in enumerate(interest_lines(s)):
        out.append(
            {
                "key": f"interest:{line['from']}:{n}",
                "type": "interest",
                "amount": line["amount"],
                "principal_base": line["principal_base"],
                "from": line["from"],
                "to": line["to"],
                "rate_percent": line["rate_percent"],
                "description": line["label_de"],
            }
        )
    return out


def wire_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item as the partner contract has it (our key stays with us)."""
    return {k: v for k, v in item.items() if k != "key"}


def partner_payments(s: Statement) -> list[dict[str, str]]:
    """Payments received up to the statement's day, by day, oldest first."""
    return [
        {"paid_at": a.day.isoformat(), "amount": money(a.amount - a.left)}
        for a in s.allocations
        if a.amount - a.left > 0
    ]


def first_default_day(s: Statement) -> date | None:
    days = [i.default_from for i in s.items if i.default_from is not None]
    return min(days) if days else None
