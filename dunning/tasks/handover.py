"""Apply the handover rules (SPEC §2): route new cases, re-check blocked ones. Set-based.

Detection opens each case routed: on PostgreSQL those whose address is certainly complete
within its opening statement (`dunning.db.handover_sql.open_routed_sql`), the others by
`route_new_cases` at its end. The handover step re-checks the blocked cases whose order
changed since the last run (all blocked cases weekly) and routes any new case left
unrouted. Cases are read with their buyer and merchant settings, classified with the pure
rules (address completeness, the auto-handover switch of the case's kind), and written by
one guarded UPDATE per outcome group:

- incomplete address -> `blocked`, the fields named, whatever the switches say;
- auto-handover on for the case's kind -> `scheduled`, next_step_at = max(local midnight of
  default_date + reminder_1_days, as_of), recording the dunning option it starts with;
- off -> `awaiting_approval` (an operator starts or cancels it).

The first routing writes the case's first history row (from_state NULL).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, true, update
from sqlalchemy.orm import Session

from dunning.config import Settings, get_settings
from dunning.db.handover_sql import (
    route_scheduled,
    routes_in_bulk,
    write_ladder,
)
from dunning.models.address import REQUIRED_FIELDS, check_address
from dunning.models.enums import CaseKind, CaseState
from dunning.models.operator import first_step_at
from dunning.models.routing import ROUTE_REASONS, ROUTER
from dunning.models.schema import Buyer, Case, HandoverMark, Merchant, MerchantSettings, Order
from dunning.tasks.prefect_task import task
from dunning.tasks.synced_since import FULL_EVERY, newest_stamp, scope_name, since_mark
from dunning.tasks.transitions import CHUNK, move_cases, record_history

ACTOR = ROUTER


@dataclass(frozen=True)
class Route:
    state: CaseState
    reason: str
    blocked_reason: str | None = None


def merchant_rules(row: Any, installation: Settings) -> tuple[bool, bool, int, str]:
    """(auto_overdue, auto_chargebacks, reminder_1_days, dunning_option) of a merchant."""
    if row.ms_option is None:
        return (
            installation.default_auto_overdue,
            installation.default_auto_chargebacks,
            installation.default_reminder_1_days,
            installation.default_option,
        )
    return (bool(row.auto_overdue), bool(row.auto_chargebacks), row.r1_days, row.ms_option)


def decide_route(kind: str, buyer: dict[str, Any], auto_overdue: bool, auto_cb: bool) -> Route:
    check = check_address(buyer)
    if not check.complete:
        return Route(CaseState.BLOCKED, check.reason or "", check.reason)
    chargeback = kind == CaseKind.CHARGEBACK
    auto = auto_cb if chargeback else auto_overdue
    reason = ROUTE_REASONS[
        (CaseKind.CHARGEBACK.value if chargeback else CaseKind.OVERDUE.value, auto)
    ]
    return Route(CaseState.SCHEDULED if auto else CaseState.AWAITING_APPROVAL, reason)


def _query(where):
    return (
        select(
            Case.case_id,
            Case.kind,
            Case.default_date,
            Case.blocked_reason,
            MerchantSettings.dunning_option.label("ms_option"),
            MerchantSettings.auto_overdue,
            MerchantSettings.auto_chargebacks,
            MerchantSettings.reminder_1_days.label("r1_days"),
            *(getattr(Buyer, f) for f in REQUIRED_FIELDS),
        )
        .outerjoin(Buyer, Buyer.order_id == Case.order_id)
        .outerjoin(MerchantSettings, MerchantSettings.merchant_id == Case.merchant_id)
        .where(where)
    )


def route(
    session: Session,
    as_of: datetime,
    installation: Settings,
    *,
    shard: int | None = None,
    shards: int = 1,
) -> dict[str, int]:
    """Route new cases and re-check blocked ones; returns counts per outcome."""
    zone = installation.zone
    scope = true()
    if shard is not None:
        scope = Case.merchant_id.in_(
            select(Merchant.merchant_id).where(Merchant.shard_key % shards == shard)
        )
    counts: dict[str, int] = defaultdict(int)
    ladder_values: list[dict[str, Any]] = []

    # 1. new cases left unrouted: detection routes what it opens (`route_new_cases`), so
    # these are only cases opened before it did.
    counts.update(route_new_cases(session, as_of, installation, scope))
    new_checked = counts.pop("checked", 0)

    # 2. blocked cases: re-checked when their order changed since the last run (a newer
    # snapshot may bring the missing address); every one on a first run and once a week.
    mark_scope = scope_name(shard, shards)
    mark = session.get(HandoverMark, mark_scope)
    newest, newest_count = newest_stamp(session)
    full = mark is None or as_of < mark.full_as_of or as_of - mark.full_as_of >= FULL_EVERY
    blocked = and_(Case.state == CaseState.BLOCKED.value, scope)
    if not full:
        assert mark is not None
        since, inclusive = since_mark(session, mark.synced_mark, mark.synced_count)
        synced = Order.synced_at >= since if inclusive else Order.synced_at > since
        blocked = and_(blocked, Case.order_id.in_(select(Order.order_id).where(synced)))
    blocked_rows = session.execute(_query(blocked)).all()
    unblock: dict[Route, list[Any]] = defaultdict(list)
    reasons: list[dict[str, Any]] = []
    for row in blocked_rows:
        auto_o, auto_c, _, _ = merchant_rules(row, installation)
        buyer = {f: getattr(row, f) for f in REQUIRED_FIELDS}
        target = decide_route(row.kind, buyer, auto_o, auto_c)
        if target.state is CaseState.BLOCKED:
            if target.blocked_reason != row.blocked_reason:
                reasons.append({"case_id": row.case_id, "blocked_reason": target.blocked_reason})
            continue
        unblock[target].append(row)
    for target, rows in unblock.items():
        by_id = {r.case_id: r for r in rows}
        values = {"blocked_reason": None}
        if target.state is CaseState.SCHEDULED:
            values["started_at"] = as_of
        moved = move_cases(
            session,
            list(by_id),
            target.state,
            from_states=[CaseState.BLOCKED],
            actor=ACTOR,
            reason=f"address complete; {target.reason}",
            as_of=as_of,
            values=values,
        )
        counts["unblocked"] += len(moved)
        counts[target.state.value] += len(moved)
        if target.state is CaseState.SCHEDULED:
            ladder_values += [_ladder(by_id[cid], as_of, installation, zone) for cid in moved]
    if reasons:
        session.execute(update(Case).execution_options(synchronize_session=False), reasons)
    if ladder_values:
        write_ladder(session, ladder_values)
    if mark is None:
        mark = HandoverMark(scope=mark_scope, full_as_of=as_of)
        session.add(mark)
    mark.synced_mark, mark.synced_count, mark.updated_at = newest, newest_count, as_of
    if full:
        mark.full_as_of = as_of
    counts["checked"] = new_checked + len(blocked_rows)
    return dict(counts)


def route_new_cases(
    session: Session, as_of: datetime, installation: Settings, scope: Any = None
) -> dict[str, int]:
    """First routing of the new cases not routed yet (in `scope`, a condition on Case):
    read with buyer and settings, classified by `decide_route`, one guarded UPDATE per
    outcome, history from NULL. Detection calls it for the cases it opened (on PostgreSQL
    only those whose address the opening statement could not be sure of); the handover step
    for any left over. Returns counts per state and `checked` (the cases read)."""
    zone = installation.zone
    counts: dict[str, int] = defaultdict(int)
    bulk = routes_in_bulk(session)
    new_rows = session.execute(
        _query(
            and_(
                Case.routed_at.is_(None),
                Case.state == CaseState.AWAITING_APPROVAL.value,
                true() if scope is None else scope,
            )
        )
    ).all()
    groups: dict[Route, list[Any]] = defaultdict(list)
    for row in new_rows:
        auto_o, auto_c, _, _ = merchant_rules(row, installation)
        buyer = {f: getattr(row, f) for f in REQUIRED_FIELDS}
        groups[decide_route(row.kind, buyer, auto_o, auto_c)].append(row)
    for target, rows in groups.items():
        values: dict[str, Any] = {
            "state": target.state.value,
            "routed_at": as_of,
            "updated_at": as_of,
            "blocked_reason": target.blocked_reason,
        }
        if target.state is CaseState.SCHEDULED:
            values["started_at"] = as_of
        by_id = {r.case_id: r for r in rows}
        ids = list(by_id)
        moved: list[int] = []
        if target.state is CaseState.SCHEDULED and bulk:
            # Issue 8: state and ladder in one UPDATE per row, from arrays (writing each
            # new case twice cost ~25 s at a million orders).
            ladder = [_ladder(r, as_of, installation, zone) for r in rows]
            moved = route_scheduled(session, values, ladder)
            ids = []
        for start in range(0, len(ids), CHUNK):
            moved += session.scalars(
                update(Case)
                .where(
                    Case.case_id.in_(ids[start : start + CHUNK]),
                    Case.routed_at.is_(None),
                    Case.state == CaseState.AWAITING_APPROVAL.value,
                )
                .values(**values)
                .returning(Case.case_id)
                .execution_options(synchronize_session=False)
            ).all()
        record_history(
            session,
            [(cid, None, target.state.value) for cid in moved],
            actor=ACTOR,
            reason=target.reason,
            as_of=as_of,
        )
        counts[target.state.value] += len(moved)
        if target.state is CaseState.SCHEDULED and not bulk:
            write_ladder(session, [_ladder(by_id[cid], as_of, installation, zone) for cid in moved])

    counts["checked"] = len(new_rows)
    return dict(counts)


def _ladder(row: Any, as_of: datetime, installation: Settings, zone) -> dict[str, Any]:
    _, _, r1_days, option = merchant_rules(row, installation)
    return {
        "case_id": row.case_id,
        "next_step_at": first_step_at(row.default_date, r1_days, as_of, zone),
        "dunning_option": option,
    }


def apply_handover_core(
    database_url: str,
    as_of: datetime,
    installation: Settings,
    *,
    shard: int | None = None,
    shards: int = 1,
) -> dict:
    """Plain-Python core of the apply_handover_rules flow: one transaction."""
    from dunning.db import refresh_statistics, session_scope

    with session_scope(database_url) as session:
        counts = route(session, as_of, installation, shard=shard, shards=shards)
        # Every new case left `awaiting_approval`: the statistics escalation plans its
        # claim of due cases with must say so.
        moved = sum(n for key, n in counts.items() if key not in ("checked", "unblocked"))
        refresh_statistics(session.connection(), ("cases",), moved)
        return counts


@task(name="apply-handover-rules", retries=2, retry_delay_seconds=[2, 10])
def handover_task(
    database_url: str, as_of: datetime, shard: int | None, shards: int
) -> dict[str, int]:
    """The handover rules as one task run (one transaction per batch: a retry is safe)."""
    return apply_handover_core(database_url, as_of, get_settings(), shard=shard, shards=shards)
