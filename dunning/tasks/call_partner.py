"""Calling the partner (handover, items, payments, court, recall) and the orders API
(cancellation) for the claimed actions, a few at once, each ladder step gated."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from dunning.config import Settings
from dunning.crashpoints import crashpoint
from dunning.models.enums import ActionStep
from dunning.models.ladder import FROM_STATES
from dunning.models.schema import Action
from dunning.tasks.step_gate import Result, gate, left_state


def call_partner_and_source(
    actions: Sequence[Action],
    settings: Settings,
    workers: int = 8,
    attempts: int = 4,
    base_delay: float = 0.2,
    url: str | None = None,
) -> list[Result]:
    from dunning.db import get_engine
    from dunning.tasks import partner, source_cancel
    from dunning.tasks.http_client import make_client

    if not actions:
        return []
    timeout = settings.http_timeout_seconds
    pclient = make_client(settings.partner_url, settings.partner_token, timeout)
    sclient = (
        make_client(settings.source_url, settings.source_token, timeout)
        if source_cancel.is_http(settings.source_url)
        else None
    )
    kw = {"attempts": attempts, "base_delay": base_delay}

    engine = get_engine(url or settings.database_url)

    def one(a: Action) -> Result:
        if ActionStep(a.step) not in FROM_STATES:
            return call(a)
        # The case row stays locked (PostgreSQL) during the call: see _gate.
        with engine.connect() as conn:
            if not gate(conn, a):
                return left_state(a)
            result = call(a)
            conn.commit()
            return result

    def call(a: Action) -> Result:
        p = a.payload or {}
        step = ActionStep(a.step)
        if step == ActionStep.HANDOVER:
            out = partner.hand_over(pclient, a.idempotency_key, p["claim"], **kw)
        elif step == ActionStep.COURT_REQUEST:
            out = partner.request_court(pclient, a.idempotency_key, p["claim_id"], **kw)
        elif step == ActionStep.PARTNER_PAYMENT:
            out = partner.report_payment(
                pclient, a.idempotency_key, p["claim_id"], p["amount"], p["paid_at"], **kw
            )
        elif step == ActionStep.RECALL:
            out = partner.recall(pclient, a.idempotency_key, p["claim_id"], p["reason"], **kw)
        elif step == ActionStep.PARTNER_ITEMS:
            out = partner.add_items(pclient, a.idempotency_key, p["claim_id"], p["items"], **kw)
        elif step == ActionStep.CANCEL_ORDER:
            if sclient is None:
                # Nothing can cancel it from here: an operator does, at the platform.
                out = partner.Outcome(partner.DONE, {"manual": "the source is a file"})
            else:
                out = source_cancel.cancel_order(
                    sclient, a.idempotency_key, p["order_id"], p["case_reference"], **kw
                )
        else:  # pragma: no cover
            raise ValueError(step)
        crashpoint("partner.answered")
        return Result(a.id, a.case_id, a.step, out.status, out.response, out.error, p)

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(one, actions))
    finally:
        pclient.close()
        if sclient is not None:
            sclient.close()
