"""What the partner must hear of a case it holds, claimed as actions like any step: the
recall of a case closed here, payments received at the source, items that arose after the
handover. Each notice has its own key, so it is claimed once however often runs look."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, or_, select

from dunning.db import Scope, session_scope
from dunning.db.case_locks import begin_claim
from dunning.models import claim_payloads as cp
from dunning.models.claim_payloads import key_for
from dunning.models.enums import ActionStep, CaseState
from dunning.models.ledger import cents
from dunning.models.schema import Action, Case, CaseCharge, CaseItem, Transaction
from dunning.tasks.escalation_rows import action_row, insert_actions

OPEN_PARTNER_STATES = (
    CaseState.WITH_PARTNER,
    CaseState.TERMINATION_NOTICE,
    CaseState.AWAITING_CANCELLATION,
    CaseState.COURT,
    CaseState.ORDER_CANCELLED,
)


def claim_partner_notices(url, as_of, now, lease_until, shard, shards) -> list[int]:
    """Tell the partner what it must know: a recall for a closed case it holds, and
    payments received at the source for a case it holds."""
    with session_scope(url) as s:
        begin_claim(s)
        done_recall = select(Action.case_id).where(
            Action.step == ActionStep.RECALL.value,
        )
        q = select(Case.case_id, Case.state, Case.partner_claim_id, Case.close_reason).where(
            Case.state.in_([CaseState.PAID.value, CaseState.CANCELLED.value]),
            Case.partner_claim_id.is_not(None),
            or_(
                Case.partner_status.is_(None),
                Case.partner_status.not_in(["recalled", "paid", "closed"]),
            ),
            Case.case_id.not_in(done_recall),
        )
        rows = []
        for r in s.execute(Scope(shard, shards).apply(q, Case.merchant_id)):
            reason = "paid" if r.state == CaseState.PAID.value else "cancelled_by_creditor"
            if (
                r.state == CaseState.CANCELLED.value
                and "withdraw" in (r.close_reason or "").lower()
            ):
                reason = "withdrawn"
            rows.append(
                action_row(
                    r.case_id,
                    ActionStep.RECALL,
                    key_for(r.case_id, "recall"),
                    {"claim_id": r.partner_claim_id, "reason": reason},
                    as_of,
                    lease_until,
                )
            )
        rows += _payment_notices(s, as_of, lease_until, shard, shards)
        rows += _item_notices(s, as_of, lease_until, shard, shards)
        return insert_actions(s, rows)


def _with_partner(shard, shards):
    q = select(Case.case_id, Case.partner_claim_id, Case.handed_over_at).where(
        Case.state.in_([st.value for st in OPEN_PARTNER_STATES]),
        Case.partner_claim_id.is_not(None),
        Case.handed_over_at.is_not(None),
    )
    return Scope(shard, shards).apply(q, Case.merchant_id).subquery()


def _payment_notices(s, as_of, lease_until, shard, shards) -> list[dict[str, Any]]:
    """Each payment received at the source after the handover, told once (by its
    transaction id) with the day it arrived; what was paid before is in the claim."""
    held = _with_partner(shard, shards)
    q = (
        select(held.c.case_id, held.c.partner_claim_id, Transaction)
        .join(Case, Case.case_id == held.c.case_id)
        .join(Transaction, Transaction.order_id == Case.order_id)
        .join(
            CaseItem,
            and_(
                CaseItem.case_id == held.c.case_id,
                CaseItem.item_type == "principal",
                CaseItem.installment_number == func.coalesce(Transaction.installment_number, 1),
            ),
        )
        .where(
            Transaction.type == "sale",
            Transaction.processed_at > held.c.handed_over_at,
            Transaction.processed_at <= as_of,
        )
    )
    rows = []
    for r in s.execute(q):
        t = r.Transaction
        rows.append(
            action_row(
                r.case_id,
                ActionStep.PARTNER_PAYMENT,
                key_for(r.case_id, "payment", t.transaction_id),
                {
                    "claim_id": r.partner_claim_id,
                    "amount": f"{cents(t.amount):.2f}",
                    "paid_at": t.processed_at.isoformat(),
                },
                as_of,
                lease_until,
            )
        )
    return rows


def _item_notices(s, as_of, lease_until, shard, shards) -> list[dict[str, Any]]:
    """Items that arose after the handover (a further installment fell due, costs), each
    added once under its own key."""
    held = _with_partner(shard, shards)
    rows = []
    principal = (
        select(held.c.case_id, held.c.partner_claim_id, CaseItem)
        .join(CaseItem, CaseItem.case_id == held.c.case_id)
        .where(CaseItem.item_type == "principal", CaseItem.joined_at > held.c.handed_over_at)
    )
    for r in s.execute(principal):
        ci = r.CaseItem
        item = {
            "type": "principal",
            "amount": f"{cents(ci.amount):.2f}",
            "due_date": ci.due_date.isoformat(),
            "description": f"Rate {ci.installment_number}",
        }
        key = key_for(r.case_id, "items", f"installment-{ci.installment_number}")
        payload = {"claim_id": r.partner_claim_id, "items": [item]}
        rows.append(
            action_row(r.case_id, ActionStep.PARTNER_ITEMS, key, payload, as_of, lease_until)
        )
    charges = (
        select(held.c.case_id, held.c.partner_claim_id, CaseCharge)
        .join(CaseCharge, CaseCharge.case_id == held.c.case_id)
        .where(CaseCharge.created_at > held.c.handed_over_at)
    )
    for r in s.execute(charges):
        c = r.CaseCharge
        item = {
            "type": c.kind,
            "amount": f"{cents(c.amount):.2f}",
            "date": c.day.isoformat(),
            "reason": c.reason,
            "description": cp.LABELS[c.kind][0],
        }
        key = key_for(r.case_id, "items", c.key)
        payload = {"claim_id": r.partner_claim_id, "items": [item]}
        rows.append(
            action_row(r.case_id, ActionStep.PARTNER_ITEMS, key, payload, as_of, lease_until)
        )
    return rows
