"""Pull the partner's claim updates (`GET /v1/claims?updated_since=`) and apply them.

The watermark is the partner's own `updated_at` of the newest change applied, kept in
`sync_watermarks` under `partner:<url>`; it advances only in the transaction that applied
the changes, so a crash re-reads, never skips. Applying is idempotent.

paid -> case `paid`; partial payments -> `partner_paid_amount`; payment_plan/in_progress/
received -> status only; unsuccessful -> option court: the ladder requests the court
procedure next; a case with nothing left to do (order already cancelled, or the court
procedure failed) -> `uncollectible`; court_filed -> status; closed -> `uncollectible`
unless paid.
"""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, update

from dunning.config import Settings, get_settings
from dunning.db import session_scope
from dunning.models.enums import CaseState
from dunning.models.schema import Case, SyncWatermark
from dunning.tasks.prefect_task import task
from dunning.tasks.transitions import move_cases

ACTOR = "partner-sync"
CASES = Case.__table__
HELD_BY_PARTNER = (CaseState.WITH_PARTNER, CaseState.COURT, CaseState.ORDER_CANCELLED)


def watermark_name(partner_url: str) -> str:
    return f"partner:{partner_url.rstrip('/')}"


def sync_partner_updates(url: str, as_of: datetime, settings: Settings) -> dict[str, int]:
    """Fetch the partner's changes since the watermark and apply them; returns counters.
    Raises TransientHTTPError (or a kind of it) when the partner cannot be reached, refuses
    the token, or pages without end: the caller logs it and the steps go on; the watermark
    stays, so the next run reads the same changes."""
    from dunning.tasks.http_client import make_client
    from dunning.tasks.partner import list_updates

    name = watermark_name(settings.partner_url)
    with session_scope(url) as s:
        if (
            s.scalar(select(Case.case_id).where(Case.partner_claim_id.is_not(None)).limit(1))
            is None
        ):
            return {"updates": 0}  # nothing ever handed over: nothing to ask the partner
        row = s.get(SyncWatermark, name)
        since = row.watermark.isoformat() if row and row.watermark else None
    with make_client(
        settings.partner_url, settings.partner_token, settings.http_timeout_seconds
    ) as c:
        items = list_updates(c, since, deadline=time.time() + settings.read_deadline_seconds)
    if not items:
        return {"updates": 0}
    return apply_updates(url, items, as_of, name)


def apply_updates(
    url: str, items: list[dict[str, Any]], as_of: datetime, name: str
) -> dict[str, int]:
    stats = {"updates": len(items), "paid": 0, "uncollectible": 0, "unknown": 0}
    newest = max(datetime.fromisoformat(i["updated_at"].replace("Z", "+00:00")) for i in items)
    latest: dict[str, dict[str, Any]] = {}
    for item in items:  # oldest first: the last one per claim wins
        latest[item["claim_id"]] = item
    with session_scope(url) as s:
        ids = list(latest)
        cases: dict[str, tuple[int, str, str]] = {}
        for start in range(0, len(ids), 5000):
            for r in s.execute(
                select(
                    CASES.c.case_id, Case.partner_claim_id, CASES.c.state, Case.dunning_option
                ).where(Case.partner_claim_id.in_(ids[start : start + 5000]))
            ):
                cases[r.partner_claim_id] = (r.case_id, r.state, r.dunning_option)
        stats["unknown"] = len(set(ids) - set(cases))
        updates = []
        paid, uncollectible = [], []
        for claim_id, item in latest.items():
            if claim_id not in cases:
                continue
            case_id, state, _option = cases[claim_id]
            status = item["status"]
            updates.append(
                {
                    "cid": case_id,
                    "pstatus": status,
                    "ppaid": Decimal(str(item.get("paid_amount") or "0")),
                    "at": as_of,
                }
            )
            if status == "paid":
                paid.append(case_id)
            elif status == "closed" or (
                status == "unsuccessful"
                and (state in (CaseState.COURT.value, CaseState.ORDER_CANCELLED.value))
            ):
                uncollectible.append(case_id)
        if updates:
            s.execute(
                update(CASES)
                .where(CASES.c.case_id == bindparam("cid"))
                .values(
                    partner_status=bindparam("pstatus"),
                    partner_paid_amount=bindparam("ppaid"),
                    updated_at=bindparam("at"),
                ),
                updates,
            )
        stats["paid"] = len(
            move_cases(
                s,
                paid,
                CaseState.PAID,
                from_states=list(HELD_BY_PARTNER),
                actor=ACTOR,
                reason="collection partner reports the claim paid",
                as_of=as_of,
                values={"closed_at": as_of, "close_reason": "paid to the collection partner"},
            )
        )
        stats["uncollectible"] = len(
            move_cases(
                s,
                uncollectible,
                CaseState.UNCOLLECTIBLE,
                from_states=list(HELD_BY_PARTNER),
                actor=ACTOR,
                reason="collection partner closed the claim without success",
                as_of=as_of,
                values={"closed_at": as_of, "close_reason": "partner: no success"},
            )
        )
        from dunning.models.claims import refresh_outstanding as recompute_outstanding

        recompute_outstanding(s, [u["cid"] for u in updates])
        row = s.get(SyncWatermark, name)
        if row is None:
            s.add(SyncWatermark(source=name, watermark=newest, cursor=None, updated_at=as_of))
        elif row.watermark is None or newest > row.watermark:
            row.watermark = newest
            row.updated_at = as_of
    return stats


# Tasks that hold a token (partner, source, mail): no result is written to Prefect's
# storage (issue 19); their errors carry method, URL and status only (http_client.py).
@task(
    name="sync-partner-updates",
    retries=2,
    retry_delay_seconds=[2, 10],
    persist_result=False,
    calls_outside=True,
)
def sync_partner_task(url: str, as_of: datetime) -> dict[str, Any]:
    """Partner updates. An unreachable partner (already retried with backoff by the HTTP
    client), one that refuses the token or pages without end is a warning, not a failure:
    the steps go on, the updates come next run."""
    from prefect import get_run_logger

    from dunning.tasks.http_client import TransientHTTPError

    try:
        return sync_partner_updates(url, as_of, get_settings())
    except TransientHTTPError as exc:
        get_run_logger().warning("partner updates not fetched this run (%s); steps go on", exc)
        return {"error": str(exc)}
