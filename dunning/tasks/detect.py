"""Detect cases: overdue installments and chargebacks become collection cases. Set-based.

One transaction, a fixed handful of SQL statements per run whatever the number of orders:

1. candidates -> temp table `detect_orders`: orders synced since the last detection (after
   the newest synced_at it saw), orders with an installment that fell due or a transaction
   that happened between the last run's as_of and this one, and the open cases of merchants
   whose settings changed since (the chargeback fee). Nothing else can change the facts of
   an order, so an incremental run costs what changed, not what is open. The first run of a
   scope, a run going back in time, `full=True`, and one run a week (a safety net) take
   every order (unsharded: `detect_orders` is then a view of `orders`).
2. facts -> temp table `detect_facts`: per installment of a candidate order, owed, paid,
   chargeback date (merchant's calendar) and chargeback fee (the rules of
   `dunning.models.claims`), kept only where something is in default or a case is open.
3. open a case per order with an installment in default and no open case (never for
   cancelled/refunded orders, never again for an installment whose case an operator
   cancelled or the partner closed uncollectible); uq_cases_open_order backs it up.
4. join installments newly in default (and their chargeback fees) to open cases' claims
   (`case_items`); recompute items and case amounts; only changed rows are written.
5. close: claim vanished (nothing owed) -> `cancelled` with the reason; fully paid -> `paid`.

New cases open routed by the handover rules (`dunning.tasks.handover`) with their first
history row: on PostgreSQL those whose address is certainly complete within the opening
statement itself (one write per case), the others (and every new case on SQLite) by
`route_new_cases` at the end of the run. The handover step then re-checks blocked cases.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from contextlib import nullcontext
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, Numeric, bindparam, column, select, table, text
from sqlalchemy.orm import Session

from dunning.config import Settings, get_settings
from dunning.db import prefer_index_lookups, refresh_statistics
from dunning.db.bulk_fill import first_fill
from dunning.db.detect_sql import (
    OPEN,
    Spelling,
    analyze_temp_table,
    candidates_are_many,
    candidates_sql,
    changed_ids_where,
    changed_orders_sql,
    drop_temp_relation,
    facts_sql,
    room_for_aggregates,
    skip_conflicts,
    sorted_aggregates,
)
from dunning.db.handover_sql import (
    CASE_COLUMNS,
    first_step_candidates,
    open_routed_sql,
    routes_in_bulk,
    stage_first_steps,
)
from dunning.db.types import UTCDateTime
from dunning.models.claims import claim_outcome, refresh_outstanding, vanished_reason
from dunning.models.clock import local_date
from dunning.models.enums import OPEN_STATES, CaseState
from dunning.models.operator import first_step_at
from dunning.models.routing import ROUTE_REASONS, ROUTER
from dunning.models.schema import Case, DetectMark
from dunning.tasks.handover import route_new_cases
from dunning.tasks.prefect_task import task
from dunning.tasks.synced_since import FULL_EVERY, newest_stamp, scope_name, since_mark
from dunning.tasks.transitions import move_cases

ACTOR = "detect"
NO_NEW_CASE_STATUSES = "('cancelled', 'refunded')"
FIRST_FILL_TABLES = ("cases", "case_history", "case_items")  # what the opening fills
FIRST_FILL_FROM = 50_000  # orders; below, dropping and rebuilding costs more than it saves
# In default and claimable: an installment whose claim a closed case settled otherwise is
# not claimed again by a new case: given up (cancelled by an operator, uncollectible), or
# paid to the collection partner (the source never sees that money).
IN_DEFAULT = """f.owed - f.paid > 0 AND (f.due_date < :today OR f.cb_date IS NOT NULL)
  AND NOT EXISTS (SELECT 1 FROM cases gc JOIN case_items gi ON gi.case_id = gc.case_id
                  WHERE gc.order_id = f.order_id
                    AND (gc.state IN ('cancelled', 'uncollectible')
                         OR (gc.state = 'paid' AND gc.partner_paid_amount > 0))
                    AND gi.installment_number = f.number AND gi.item_type = 'principal')"""


def _typed(sql: str, **params: Any):
    """text() with typed binds: UTC timestamps, dates and money behave on both engines."""
    binds = []
    for name, value in params.items():
        if f":{name}" not in sql:
            continue
        if isinstance(value, datetime):
            binds.append(bindparam(name, value, type_=UTCDateTime()))
        elif isinstance(value, date):
            binds.append(bindparam(name, value, type_=Date()))
        elif isinstance(value, Decimal):
            binds.append(bindparam(name, value, type_=Numeric(14, 2)))
        else:
            binds.append(bindparam(name, value))
    return text(sql).bindparams(*binds)


# --- statements (module-level builders, so a test can EXPLAIN them) -----------------------


def opening_select(d: Spelling) -> str:
    """A new case per order in default, with its final amounts at once (CASE_COLUMNS).

    principal, paid, chargeback fees, default date and outstanding are what the joins and
    recomputations below would give it (principal items of the installments in default,
    fee items of the charged-back ones, CASE_TOTALS, refresh_outstanding): on a first run
    at a million orders, writing them here instead of updating every new case three more
    times saves ~30 s. The refreshes below (item amounts, fee deltas, case totals) skip them.
    """
    paid = paid_counted(d)
    principal = "ROUND(SUM(f.owed), 2)"
    paid_sum = f"ROUND(SUM({paid}), 2)"
    fees = (
        "ROUND(SUM(CASE WHEN f.cb_date IS NOT NULL AND f.cb_fee > 0 THEN f.cb_fee ELSE 0 END), 2)"
    )
    return f"""
SELECT d.order_id AS order_id, d.merchant_id AS merchant_id,
       CASE WHEN MAX(CASE WHEN f.cb_date IS NOT NULL THEN 1 ELSE 0 END) = 1
            THEN 'chargeback' ELSE 'overdue' END AS kind,
       'awaiting_approval' AS state,
       COALESCE(ms.dunning_option, :default_option) AS dunning_option,
       d.currency AS currency, :as_of AS opened_at,
       COALESCE(MIN(CASE WHEN {paid} < f.owed THEN COALESCE(f.cb_date, f.due_date) END),
                MIN(COALESCE(f.cb_date, f.due_date))) AS default_date,
       {principal} AS principal_amount, {fees} AS fees_amount, 0 AS interest_amount,
       0 AS cancellation_costs, {paid_sum} AS paid_amount, 0 AS partner_paid_amount,
       ROUND({principal} + {fees} - {paid_sum}, 2) AS outstanding_amount, :as_of AS updated_at
FROM detect_orders d
JOIN detect_facts f ON f.order_id = d.order_id
LEFT JOIN merchant_settings ms ON ms.merchant_id = d.merchant_id
WHERE d.status NOT IN {NO_NEW_CASE_STATUSES} AND {IN_DEFAULT}
  AND NOT EXISTS (SELECT 1 FROM cases c WHERE c.order_id = d.order_id AND c.{OPEN})
GROUP BY d.order_id, d.merchant_id, d.currency, ms.dunning_option"""


def open_cases_sql(d: Spelling) -> str:
    """Open a case per order in default (`opening_select`), unrouted (SQLite)."""
    return f"""
INSERT INTO cases ({CASE_COLUMNS})
{opening_select(d)}
ORDER BY order_id
ON CONFLICT DO NOTHING
RETURNING case_id, state"""


# The open cases of the candidates from case id :from_id on: all of them before the new
# cases are opened (0), then the ones just opened (ids only grow).
OPEN_OF_CANDIDATES_SQL = f"""
INSERT INTO detect_open (case_id, order_id, status)
SELECT c.case_id, c.order_id, d.status
FROM cases c JOIN detect_orders d ON d.order_id = c.order_id
WHERE c.case_id >= :from_id AND c.{OPEN}
ON CONFLICT DO NOTHING"""


def paid_counted(d: Spelling) -> str:
    """Paid on the claim per installment (claims.InstallmentFacts.paid_against_owed)."""
    return d.greatest("f.paid - f.refunded", "0")


# The PostgreSQL text of the opening statement (tests EXPLAIN it by this name).
OPEN_CASES_SQL = open_routed_sql(opening_select(Spelling.for_postgres()), ROUTE_REASONS)


def join_principal_sql(d: Spelling, alone: bool = False) -> str:
    return f"""
INSERT INTO case_items (case_id, item_type, installment_number, due_date, default_date,
                        amount, paid_amount, joined_at)
SELECT o.case_id, 'principal', f.number, f.due_date, COALESCE(f.cb_date, f.due_date),
       f.owed, {paid_counted(d)}, :as_of
FROM detect_open o
JOIN cases c ON c.case_id = o.case_id AND c.{OPEN}
JOIN detect_facts f ON f.order_id = o.order_id
WHERE o.status NOT IN {NO_NEW_CASE_STATUSES} AND {IN_DEFAULT}
  AND NOT EXISTS (SELECT 1 FROM case_items ci WHERE ci.case_id = o.case_id
                  AND ci.installment_number = f.number AND ci.item_type = 'principal')
ORDER BY o.case_id, f.number
{skip_conflicts(alone)}"""


def join_fees_sql(alone: bool = False) -> str:
    return f"""
INSERT INTO case_items (case_id, item_type, installment_number, due_date, default_date,
                        amount, paid_amount, joined_at)
SELECT o.case_id, 'chargeback_fee', f.number, f.due_date, f.cb_date,
       CASE WHEN o.case_id >= :first_new THEN f.cb_fee ELSE 0 END, 0, :as_of
FROM detect_open o
JOIN cases c ON c.case_id = o.case_id AND c.{OPEN}
JOIN case_items p ON p.case_id = o.case_id AND p.item_type = 'principal'
JOIN detect_facts f ON f.order_id = o.order_id AND f.number = p.installment_number
WHERE f.cb_date IS NOT NULL AND f.cb_fee > 0
  AND NOT EXISTS (SELECT 1 FROM case_items ci WHERE ci.case_id = o.case_id
                  AND ci.installment_number = f.number AND ci.item_type = 'chargeback_fee')
{skip_conflicts(alone)}"""


# fees_amount is shared with escalation (reminder fees): only the change of the
# chargeback part is added, never the whole column overwritten.
FEE_DELTA_SQL = f"""
UPDATE cases SET fees_amount = ROUND(cases.fees_amount + agg.delta, 2), updated_at = :as_of
FROM (
  SELECT ci.case_id, SUM(f.cb_fee - ci.amount) AS delta
  FROM detect_open o
  JOIN case_items ci ON ci.case_id = o.case_id AND ci.item_type = 'chargeback_fee'
   AND o.case_id < :first_new
  JOIN detect_facts f ON f.order_id = o.order_id AND f.number = ci.installment_number
  GROUP BY ci.case_id
) agg
WHERE cases.case_id = agg.case_id AND ROUND(agg.delta, 2) <> 0 AND cases.{OPEN}"""

FEE_ITEMS_SQL = f"""
UPDATE case_items SET amount = f.cb_fee
FROM detect_open o, cases c, detect_facts f
WHERE case_items.item_type = 'chargeback_fee' AND o.case_id = case_items.case_id
  AND c.case_id = o.case_id AND c.{OPEN} AND f.order_id = o.order_id
  AND f.number = case_items.installment_number AND o.case_id < :first_new
  AND case_items.amount <> f.cb_fee"""


def principal_items_sql(d: Spelling) -> str:
    paid = paid_counted(d)
    return f"""
UPDATE case_items SET amount = f.owed, paid_amount = {paid}
FROM detect_open o, cases c, detect_facts f
WHERE case_items.item_type = 'principal' AND o.case_id = case_items.case_id
  AND c.case_id = o.case_id AND c.{OPEN} AND f.order_id = o.order_id
  AND f.number = case_items.installment_number AND o.case_id < :first_new
  AND (case_items.amount <> f.owed OR case_items.paid_amount <> {paid})"""


# The outstanding amount moves with the totals in the same write: a second UPDATE of a row
# written earlier in the transaction runs the foreign key's check again (64 ms for 3,000
# cases of a day's first run at a million orders). `refresh_outstanding` after it catches
# the cases whose fees alone changed.
CASE_TOTALS_SQL = f"""
UPDATE cases SET principal_amount = agg.principal, paid_amount = agg.paid,
                 outstanding_amount = ROUND(agg.principal + cases.fees_amount
                     + cases.interest_amount + cases.cancellation_costs - agg.paid
                     - cases.partner_paid_amount, 2),
                 default_date = COALESCE(agg.earliest, cases.default_date), updated_at = :as_of
FROM (
  SELECT ci.case_id, ROUND(SUM(ci.amount), 2) AS principal,
         ROUND(SUM(ci.paid_amount), 2) AS paid,
         MIN(CASE WHEN ci.paid_amount < ci.amount THEN ci.default_date END) AS earliest
  FROM detect_open o
  JOIN case_items ci ON ci.case_id = o.case_id AND ci.item_type = 'principal'
  WHERE o.case_id < :first_new
  GROUP BY ci.case_id
) agg
WHERE cases.case_id = agg.case_id AND cases.{OPEN}
  AND (cases.principal_amount <> agg.principal OR cases.paid_amount <> agg.paid
       OR cases.default_date <> COALESCE(agg.earliest, cases.default_date))"""

CLOSING_SQL = f"""
SELECT c.case_id, c.principal_amount, c.outstanding_amount, o.status
FROM detect_open o JOIN cases c ON c.case_id = o.case_id AND c.{OPEN}
WHERE c.principal_amount <= 0 OR c.outstanding_amount <= 0"""


def _create_temp_tables(session: Session, d: Spelling, every_order: bool = False) -> None:
    """The run's working tables. `every_order` (an unsharded full run): the candidates are
    every order, so `detect_orders` is a view of `orders` instead of a copy (copying and
    indexing a million rows took 1.6 s; the statements reading it barely notice)."""
    _drop_temp_tables(session)
    if every_order:
        session.execute(
            text(
                "CREATE TEMPORARY VIEW detect_orders AS "
                "SELECT order_id, merchant_id, status, currency FROM orders"
            )
        )
    else:
        session.execute(
            text(
                f"CREATE TEMPORARY TABLE detect_orders (order_id {d.key} PRIMARY KEY, "
                f"merchant_id {d.key} NOT NULL, status VARCHAR(16) NOT NULL, "
                "currency VARCHAR(3) NOT NULL)"
            )
        )
    session.execute(
        text(
            f"CREATE TEMPORARY TABLE detect_facts (order_id {d.key} NOT NULL, "
            "number INTEGER NOT NULL, due_date DATE NOT NULL, owed NUMERIC(14, 2) NOT NULL, "
            "paid NUMERIC(14, 2) NOT NULL, cb_fee NUMERIC(14, 2) NOT NULL, cb_date DATE, "
            "refunded NUMERIC(14, 2) NOT NULL, "
            "PRIMARY KEY (order_id, number))"
        )
    )
    # The open cases of the candidates, looked up once: the statements after the facts
    # start from these few rows instead of finding them again through cases' indexes.
    session.execute(
        text(
            "CREATE TEMPORARY TABLE detect_open (case_id BIGINT PRIMARY KEY, "
            f"order_id {d.key} NOT NULL, status VARCHAR(16) NOT NULL)"
        )
    )


def _drop_temp_tables(session: Session) -> None:
    for name in ("detect_steps", "detect_open", "detect_facts", "detect_changed"):
        session.execute(text(f"DROP TABLE IF EXISTS {name}"))
    drop_temp_relation(session, "detect_orders")  # a table, or a view (a full run)


def detect(
    session: Session,
    as_of: datetime,
    installation: Settings,
    *,
    shard: int | None = None,
    shards: int = 1,
    full: bool = False,
) -> dict[str, Any]:
    """Run detection in the session's transaction; returns counts."""
    scope = scope_name(shard, shards)
    mark = session.get(DetectMark, scope)
    full = full or mark is None or as_of < mark.as_of or as_of - mark.full_as_of >= FULL_EVERY
    # The first run of a large shop fills empty tables: their indexes (all but the primary
    # keys) and foreign keys come back at the end (bulk_fill), each key checked by one join.
    # Entered before anything is read; not for one shard of several (its locks would hold
    # up the others).
    filling = (
        first_fill(session.connection(), FIRST_FILL_TABLES, ("orders", FIRST_FILL_FROM))
        if full and shard is None
        else nullcontext()
    )
    with filling as alone:
        return _detect(session, as_of, installation, shard, shards, full, mark, bool(alone))


def _detect(
    session: Session,
    as_of: datetime,
    installation: Settings,
    shard: int | None,
    shards: int,
    full: bool,
    mark: DetectMark | None,
    alone: bool,
) -> dict[str, Any]:
    zone = installation.zone
    d = Spelling.of(session)
    today = local_date(as_of, zone)
    scope = scope_name(shard, shards)
    # Orders synced since the last run (dunning.tasks.synced_since).
    synced_max, synced_count = newest_stamp(session)
    params: dict[str, Any] = {
        "as_of": as_of,
        "today": today,
        "tz": zone.key,
        "default_fee": installation.default_chargeback_fee,
        "default_option": installation.default_option,
        "shard": shard,
        "shards": shards,
    }
    sync_inclusive = False
    if not full:
        assert mark is not None
        last_synced, sync_inclusive = since_mark(session, mark.synced_mark, mark.synced_count)
        params.update(
            sync_from=last_synced,
            due_from=local_date(mark.as_of, zone),
            due_to=today,
            tx_from=mark.as_of,
            tx_to=as_of,
        )

    room_for_aggregates(session)
    if not full:
        prefer_index_lookups(session.connection())
    every_order = full and shard is None
    _create_temp_tables(session, d, every_order)
    if not every_order:
        ids_where = None
        if not full and d.postgres:
            changed = "CREATE TEMPORARY TABLE detect_changed AS " + changed_orders_sql(
                sync_inclusive
            )
            ids_where = changed_ids_where(session.execute(_typed(changed, **params)).rowcount)
        candidates = candidates_sql(
            full=full, sharded=shard is not None, sync_inclusive=sync_inclusive, ids_where=ids_where
        )
        session.execute(
            _typed(
                "INSERT INTO detect_orders (order_id, merchant_id, status, currency) " + candidates,
                **params,
            )
        )
        # before the facts: how many candidates decides how to join them
        analyze_temp_table(session, "detect_orders")
    session.execute(text(OPEN_OF_CANDIDATES_SQL), {"from_id": 0})
    whole = _read_whole(session, full, shard)
    with sorted_aggregates(session, whole):
        session.execute(
            _typed(
                "INSERT INTO detect_facts "
                "(order_id, number, due_date, owed, paid, cb_fee, cb_date, refunded) "
                + facts_sql(d, every_order=whole, few=not (full or whole)),
                **params,
            )
        )
    analyze_temp_table(session, "detect_facts")
    candidates = session.scalar(text("SELECT COUNT(*) FROM detect_orders")) or 0

    opened = _open_cases(session, d, params, installation, alone)
    opened_count = sum(n for _, _, n, _ in opened)
    # Fee items of the cases just opened carry their amount at once (opening_select put
    # it into fees_amount); older cases get theirs through FEE_DELTA_SQL.
    params["first_new"] = min((first for *_, first in opened), default=2**62)
    analyze_temp_table(session, "detect_open")
    # With the statistics of before this transaction (on a first run: nothing) the planner
    # joins the new cases by nested loops (>10 min at 1M orders).
    refresh_statistics(session.connection(), ("cases",), opened_count)
    joined = session.execute(_typed(join_principal_sql(d, alone), **params)).rowcount or 0
    refresh_statistics(session.connection(), ("case_items",), joined)
    fees = session.execute(_typed(join_fees_sql(alone), **params)).rowcount or 0
    # Fee items come after the principal items' ANALYZE: without a second one the planner
    # believes there are none and walks every fee item to update a few.
    refresh_statistics(session.connection(), ("case_items",), fees)
    session.execute(_typed(FEE_DELTA_SQL, **params))
    session.execute(_typed(FEE_ITEMS_SQL, **params))
    session.execute(_typed(principal_items_sql(d), **params))
    session.execute(_typed(CASE_TOTALS_SQL, **params))
    # Cases opened by this run got their final amounts from opening_select: the refreshes
    # below look at the cases that were open before (on a first run: none).
    in_scope = Case.case_id.in_(select(column("case_id")).select_from(table("detect_open"))) & (
        Case.case_id < params["first_new"]
    )
    refresh_outstanding(session, where=in_scope & Case.state.in_([s.value for s in OPEN_STATES]))

    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for case_id, principal, outstanding, status in session.execute(text(CLOSING_SQL)):
        outcome = claim_outcome(Decimal(str(principal)), Decimal(str(outstanding)))
        if outcome == "paid":
            groups[("paid", "claim fully paid")].append(case_id)
        elif outcome == "cancelled":
            groups[("cancelled", vanished_reason(status))].append(case_id)
    closed = {"paid": 0, "cancelled": 0}
    for (outcome, reason), ids in groups.items():
        moved = move_cases(
            session,
            ids,
            CaseState(outcome),
            from_states=sorted(OPEN_STATES),
            actor=ACTOR,
            reason=reason,
            as_of=as_of,
            values={"closed_at": as_of, "close_reason": reason, "next_step_at": None},
        )
        closed[outcome] += len(moved)
    _drop_temp_tables(session)
    routed = _routed_counts(opened)
    if opened_count > sum(routed.values()):  # addresses the opening could not be sure of
        new_ones = Case.case_id >= params["first_new"]
        for state, n in route_new_cases(session, as_of, installation, new_ones).items():
            if state != "checked":
                routed[state] = routed.get(state, 0) + n
        # The statistics taken after the opening saw these cases unrouted: without a second
        # look the handover step's lookup of blocked cases by state, planned for one row,
        # took 11 s at a million orders instead of 0.1 s.
        refresh_statistics(session.connection(), ("cases",), opened_count)

    if mark is None:
        mark = DetectMark(scope=scope, full_as_of=as_of)
        session.add(mark)
    if (
        mark.as_of != as_of
        or mark.synced_mark != synced_max
        or mark.synced_count != synced_count
        or (full and mark.full_as_of != as_of)
    ):
        mark.as_of = as_of
        mark.synced_mark = synced_max
        mark.synced_count = synced_count
        mark.updated_at = as_of
        if full:
            mark.full_as_of = as_of
    return {
        "mode": "full" if full else "incremental",
        "candidates": int(candidates),
        "new_cases": opened_count,
        "items_joined": int(joined),
        "paid": closed["paid"],
        "cancelled": closed["cancelled"],
        **{f"routed_{state}": n for state, n in sorted(routed.items())},
    }


def _open_cases(
    session: Session, d: Spelling, params: dict[str, Any], installation: Settings, alone: bool
) -> list[tuple[str, bool, int, int]]:
    """Open the new cases and add them to `detect_open`: (state, routed, how many, lowest
    case id) per state and routed-or-not. PostgreSQL opens those whose address is certainly
    complete already routed by the handover rules (`open_routed_sql`), their first steps
    computed here once per (default date, reminder_1_days)."""
    if not routes_in_bulk(session):
        rows = session.execute(_typed(open_cases_sql(d), **params)).all()
        if not rows:
            return []
        first = min(case_id for case_id, _ in rows)
        session.execute(text(OPEN_OF_CANDIDATES_SQL), {"from_id": first})
        states = Counter(state for _, state in rows)
        return [(state, False, n, first) for state, n in states.items()]
    rules = {
        "router": ROUTER,
        "auto_overdue": installation.default_auto_overdue,
        "auto_cb": installation.default_auto_chargebacks,
        "r1_days": installation.default_reminder_1_days,
    }
    as_of, zone = params["as_of"], installation.zone
    stage_first_steps(
        session,
        [
            (day, n, first_step_at(day, n, as_of, zone))
            for day, n in first_step_candidates(session, rules)
        ],
    )
    sql = open_routed_sql(opening_select(d), ROUTE_REASONS, alone)
    return [tuple(r) for r in session.execute(_typed(sql, **params, **rules))]


def _routed_counts(opened: list[tuple[str, bool, int, int]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for state, routed, n, _ in opened:
        if routed:
            counts[state] += n
    return dict(counts)


def _read_whole(session: Session, full: bool, shard: int | None) -> bool:
    """Build the facts from whole tables instead of through detect_orders, unsharded: a
    full run, or (PostgreSQL) candidates that are a large part of all orders (joining 300k
    candidates to the tables took 19 s at a million orders, reading them whole 9 s). Facts
    of orders that are no candidates are never used: every later statement reaches facts
    through detect_orders."""
    if shard is not None:  # other shards' open cases are no candidates of this run
        return False
    if full:
        return True
    return candidates_are_many(session)


def detect_cases_core(
    database_url: str,
    as_of: datetime,
    installation: Settings,
    *,
    shard: int | None = None,
    shards: int = 1,
    full: bool = False,
) -> dict[str, Any]:
    """Plain-Python core of the detect_cases flow: one transaction."""
    from dunning.crashpoints import crashpoint
    from dunning.db import session_scope

    with session_scope(database_url) as session:
        result = detect(session, as_of, installation, shard=shard, shards=shards, full=full)
        crashpoint("detect.commit")  # issue 9: crash tests kill here, before the commit
    return result


@task(name="detect-cases", retries=2, retry_delay_seconds=[2, 10])
def detect_task(
    database_url: str, as_of: datetime, shard: int | None, shards: int, full: bool
) -> dict[str, Any]:
    """Detection as one task run: idempotent (one transaction), so a retry is safe."""
    return detect_cases_core(
        database_url, as_of, get_settings(), shard=shard, shards=shards, full=full
    )
