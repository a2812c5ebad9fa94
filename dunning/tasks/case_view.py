"""What operators read about one case and about the merchants: plain reads, no Prefect.

`case_details` is `dunning case show`: the case, its amounts, its history and its outside
actions with their outcomes. `merchants_overview` is `dunning merchants`: every merchant
known from orders or settings, its settings in short, and its open cases.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, union

from dunning.config import Settings
from dunning.db import session_scope
from dunning.models.enums import OPEN_STATES, STATE_LABELS, CaseState
from dunning.models.schema import Action, Case, CaseHistory, Merchant, MerchantSettings, Order
from dunning.tasks.case_ops import resolve_case
from dunning.tasks.merchant_settings import configs_for

AMOUNT_FIELDS = (
    "principal_amount",
    "fees_amount",
    "interest_amount",
    "cancellation_costs",
    "paid_amount",
    "partner_paid_amount",
    "outstanding_amount",
)
CASE_FIELDS = (
    "case_id",
    "order_id",
    "merchant_id",
    "kind",
    "state",
    "held_from_state",
    "dunning_option",
    "currency",
    "default_date",
    "opened_at",
    "started_at",
    "reminder_1_at",
    "reminder_2_at",
    "handed_over_at",
    "last_step_at",
    "next_step_at",
    "blocked_reason",
    "partner_reference",
    "partner_status",
    "partner_error",
    "closed_at",
    "close_reason",
)


def state_label(state: str | None) -> str | None:
    if state is None:
        return None
    try:
        return STATE_LABELS.get(CaseState(state), state)
    except ValueError:
        return state


def case_details(database_url: str, ref: str) -> dict[str, Any]:
    """One case by case id or order id (raises CaseNotFound): its fields, amounts, history
    (oldest first) and actions (oldest first, with status, attempts, error, outcome)."""
    with session_scope(database_url) as session:
        case = resolve_case(session, ref)
        details: dict[str, Any] = {name: getattr(case, name) for name in CASE_FIELDS}
        details["state_label"] = state_label(case.state)
        details["order_amount"] = session.scalar(
            select(Order.total_amount).where(Order.order_id == case.order_id)
        )
        details["amounts"] = {name: getattr(case, name) for name in AMOUNT_FIELDS}
        details["history"] = [
            {
                "at": h.at,
                "actor": h.actor,
                "from_state": h.from_state,
                "to_state": h.to_state,
                "reason": h.reason,
            }
            for h in session.scalars(
                select(CaseHistory)
                .where(CaseHistory.case_id == case.case_id)
                .order_by(CaseHistory.id)
            )
        ]
        details["actions"] = [
            {
                "step": a.step,
                "status": a.status,
                "attempts": a.attempts,
                "created_at": a.created_at,
                "sent_at": a.sent_at,
                "done_at": a.done_at,
                "last_error": a.last_error,
                "outcome": outcome(a.response),
                "idempotency_key": a.idempotency_key,
            }
            for a in session.scalars(
                select(Action).where(Action.case_id == case.case_id).order_by(Action.id)
            )
        ]
    return details


def outcome(response: dict[str, Any] | None) -> str | None:
    """The action's response in one line (message id, claim id, status ...)."""
    if not response:
        return None
    return ", ".join(f"{k}: {v}" for k, v in sorted(response.items()) if not isinstance(v, dict))


def merchants_overview(database_url: str, installation: Settings) -> list[dict[str, Any]]:
    """Every merchant known from orders (the merchants table) or from settings, by id."""
    with session_scope(database_url) as session:
        ids = union(select(Merchant.merchant_id), select(MerchantSettings.merchant_id))
        all_ids = sorted(session.scalars(select(ids.subquery().c.merchant_id)))
        names = dict(session.execute(select(Merchant.merchant_id, Merchant.name)).tuples().all())
        configured = set(session.scalars(select(MerchantSettings.merchant_id)))
        open_states = sorted(s.value for s in OPEN_STATES)
        open_cases = dict(
            session.execute(
                select(Case.merchant_id, func.count())
                .where(Case.state.in_(open_states))
                .group_by(Case.merchant_id)
            )
            .tuples()
            .all()
        )
        configs = configs_for(session, all_ids, installation)
    rows = []
    for merchant_id in all_ids:
        config = configs[merchant_id]
        rows.append(
            {
                "merchant_id": merchant_id,
                "name": names.get(merchant_id),
                "has_orders": merchant_id in names,
                "configured": merchant_id in configured,
                "settings": config.as_json(),
                "open_cases": int(open_cases.get(merchant_id, 0)),
            }
        )
    return rows


def json_ready(value: Any) -> Any:
    """Dates as ISO text, amounts as text with two decimals; lists and dicts throughout."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_ready(v) for v in value]
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime) or hasattr(value, "isoformat"):
        return value.isoformat()
    return value
