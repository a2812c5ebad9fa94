"""What each ladder step sends, built from the claim ledger's statement at `as_of`: the
reminder and termination notice e-mails, the partner's claim (contract v2), the order
cancellation and the court request."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from dunning.config import Settings
from dunning.models import claim_payloads as cp
from dunning.models.base_rates import base_rates
from dunning.models.clock import local_date
from dunning.models.enums import ActionStep, PaymentPlan
from dunning.models.ledger import REMINDER_FEE, Charge, Statement, arrears, reminder_fee
from dunning.models.merchant_settings import MerchantConfig
from dunning.models.schema import Buyer, Case
from dunning.tasks.claim_events import ClaimInput


def _buyer_dict(b: Buyer) -> dict[str, Any]:
    return {
        "type": b.buyer_type,
        "first_name": b.first_name,
        "last_name": b.last_name,
        "company_name": b.company_name,
        "email": b.email,
        "street": b.street,
        "house_number": b.house_number,
        "zip_code": b.zip_code,
        "city": b.city,
        "country_code": b.country_code,
        "locale": b.locale,
    }


def _creditor(settings: Settings) -> dict[str, str]:
    return {
        "name": settings.creditor_name,
        "address": settings.creditor_address,
        "contact": settings.creditor_contact,
        "register": settings.creditor_register,
    }


def _midnight_after(day: date, zone) -> str:
    """The first moment after `day` on the merchant's calendar, in UTC."""
    nxt = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return nxt.astimezone(UTC).isoformat()


def _notice(row, claim_items, level, deadline, settings) -> dict[str, Any]:
    case: Case = row.Case
    zone = settings.zone
    return {
        "level": level,
        "buyer": _buyer_dict(row.Buyer),
        "order": {
            "order_id": case.order_id,
            "product": row.product_name or case.order_id,
            "order_date": local_date(row.order_date, zone).isoformat(),
            "merchant_name": row.merchant_name or case.merchant_id,
        },
        "currency": case.currency,
        **claim_items,
        "deadline": deadline.isoformat(),
        "option": case.dunning_option,
        "creditor": _creditor(settings),
    }


def build_payload(
    row: Any,
    step: ActionStep,
    deadline: date | None,
    claim: ClaimInput,
    st: Statement,
    cfg: MerchantConfig,
    as_of: datetime,
    settings: Settings,
) -> dict[str, Any]:
    """What a step sends, read from the claim's statement at `as_of`."""
    case: Case = row.Case
    zone = settings.zone
    today = local_date(as_of, zone)
    if step in (ActionStep.REMINDER_1, ActionStep.REMINDER_2):
        level = 1 if step == ActionStep.REMINDER_1 else 2
        creates_default = claim.invoice and level == 1
        fee = reminder_fee(level, creates_default, cfg.reminder_fee, settings.max_reminder_fee)
        charge = None
        if fee > 0:
            charge = Charge(REMINDER_FEE, today, fee, f"{level}. Mahnung", f"reminder_{level}")
            st = claim.statement(today, base_rates(settings.base_rates_file), charge)
        assert deadline is not None
        payload = _notice(row, cp.notice_items(st), level, deadline, settings)
        payload["case"] = {
            "fees_amount": cp.money(st.fees),
            "interest_amount": cp.money(st.interest),
            "next_step_at": _midnight_after(deadline - timedelta(days=1), zone),
        }
        if charge is not None:
            payload["charge"] = {
                "key": charge.ref,
                "kind": charge.kind,
                "day": charge.day.isoformat(),
                "amount": cp.money(charge.amount),
                "reason": charge.reason,
            }
        return payload
    if step == ActionStep.TERMINATION_NOTICE:
        assert deadline is not None
        items = cp.notice_items(st)
        items["total"] = cp.money(arrears(st))
        payload = _notice(row, items, 3, deadline, settings)
        payload["case"] = {
            "interest_amount": cp.money(st.interest),
            "next_step_at": _midnight_after(deadline, zone),
        }
        return payload
    if step == ActionStep.HANDOVER:
        reference = cp.reference_for(case.case_id)
        first_reminder = (
            local_date(case.reminder_1_at, zone).isoformat() if case.reminder_1_at else None
        )
        first_day = cp.first_default_day(st) or case.default_date + timedelta(days=1)
        items = cp.partner_items(st)
        body = {
            "reference": reference,
            "order_id": case.order_id,
            "kind": case.kind,
            "escalation": case.dunning_option,
            "creditor": {
                "merchant_id": case.merchant_id,
                "name": settings.creditor_name,
                "address": settings.creditor_address,
            },
            "debtor": {k: v for k, v in _buyer_dict(row.Buyer).items() if k != "locale"},
            "currency": case.currency,
            "contract_date": local_date(row.order_date, zone).isoformat(),
            "default_date": first_day.isoformat(),
            "first_reminder_date": first_reminder,
            "subject": row.product_name or case.order_id,
            "items": [cp.wire_item(i) for i in items],
            "payments": cp.partner_payments(st),
        }
        return {
            "claim": body,
            "reference": reference,
            "case": {"interest_amount": cp.money(st.interest), "fees_amount": cp.money(st.fees)},
        }
    if step == ActionStep.CANCEL_ORDER:
        return {
            "order_id": case.order_id,
            "case_reference": cp.reference_for(case.case_id),
            "cancellation_costs": cp.money(cfg.cancellation_costs),
            "section_498": row.payment_plan == PaymentPlan.INSTALLMENTS.value,
            "day": today.isoformat(),
        }
    if step == ActionStep.COURT_REQUEST:
        return {"claim_id": case.partner_claim_id}
    raise ValueError(step)
