"""Handover's statements where SQLite and PostgreSQL differ (`dunning.tasks.handover` runs
them). Issue 8: on PostgreSQL the new cases whose address is certainly complete are routed
by one statement, and the next steps of scheduled cases are written from arrays in one
UPDATE; on SQLite every new case takes the generic path (read, classify, ORM updates)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from dunning.db.dialect import is_postgres
from dunning.models.address import REQUIRED_FIELDS, certainly_complete_sql
from dunning.models.schema import Case


def routes_in_bulk(session: Session) -> bool:
    """Whether routing takes the one-statement paths below (PostgreSQL)."""
    return is_postgres(session)


# The planner's statistics rarely know of the cases just opened (it expects one): `plan`
# is MATERIALIZED, and the guard (still unrouted, still awaiting approval) compares with
# what plan read rather than with constants, which an index on state or the partial index
# of unrouted cases would answer; so the UPDATE finds each case by its key instead of
# walking such an index once per case (6 s instead of 0.1 s for 5k new cases at 1M orders).
# `fresh` first: the address test runs on the new cases' buyers only; as a filter of the
# join the planner ran it on every buyer (0.43 s of 2.5 s at 200k orders, 57k new cases).
_ROUTE_COMPLETE_PG = """
WITH fresh AS MATERIALIZED (
  SELECT c.case_id, c.state, c.routed_at, c.kind, c.default_date, c.merchant_id, {address}
  FROM cases c JOIN buyers b ON b.order_id = c.order_id
  WHERE c.routed_at IS NULL AND c.state = 'awaiting_approval' AND {scope}
), plan AS MATERIALIZED (
  SELECT c.case_id, c.state, c.routed_at, c.kind, c.default_date,
         CASE WHEN ms.dunning_option IS NULL
              THEN CASE WHEN c.kind = 'chargeback' THEN :auto_cb ELSE :auto_overdue END
              ELSE CASE WHEN c.kind = 'chargeback' THEN ms.auto_chargebacks
                        ELSE ms.auto_overdue END END AS auto,
         s.at AS first_step_at, COALESCE(ms.dunning_option, :option) AS option
  FROM fresh c
  LEFT JOIN merchant_settings ms ON ms.merchant_id = c.merchant_id
  LEFT JOIN unnest(CAST(:step_dates AS date[]), CAST(:step_days AS int[]),
                   CAST(:step_at AS timestamptz[])) AS s(d, n, at)
         ON s.d = c.default_date
        AND s.n = {r1_days}
  WHERE {complete}
), routed AS (
  UPDATE cases SET
    state = CASE WHEN p.auto THEN 'scheduled' ELSE 'awaiting_approval' END,
    routed_at = :as_of, updated_at = :as_of, blocked_reason = NULL,
    started_at = CASE WHEN p.auto THEN :as_of ELSE cases.started_at END,
    next_step_at = CASE WHEN p.auto THEN p.first_step_at ELSE cases.next_step_at END,
    dunning_option = CASE WHEN p.auto THEN p.option ELSE cases.dunning_option END
  FROM plan p
  WHERE cases.case_id = p.case_id AND cases.state = p.state
    AND cases.routed_at IS NOT DISTINCT FROM p.routed_at
  RETURNING cases.case_id, cases.state, p.kind, p.auto
), history AS (
  INSERT INTO case_history (case_id, at, actor, from_state, to_state, reason)
  SELECT case_id, :as_of, :actor, NULL, state, CASE {reasons} END FROM routed
)
SELECT state, COUNT(*) FROM routed GROUP BY state
"""

# reminder_1_days of the case's merchant (merchant_rules: the defaults without settings)
_R1_DAYS_PG = "CASE WHEN ms.dunning_option IS NULL THEN :r1_days ELSE ms.reminder_1_days END"

_UNROUTED_STEPS_PG = """
SELECT DISTINCT c.default_date, {r1_days}
FROM cases c LEFT JOIN merchant_settings ms ON ms.merchant_id = c.merchant_id
WHERE c.routed_at IS NULL AND c.state = 'awaiting_approval' AND {scope}
"""


def _scope(sharded: bool) -> str:
    if not sharded:
        return "TRUE"
    return "c.merchant_id IN (SELECT merchant_id FROM merchants WHERE shard_key % :shards = :shard)"


def unrouted_steps(session: Session, params: dict[str, Any]) -> list[tuple[date, int]]:
    """The distinct (default_date, reminder_1_days) of the new cases not routed yet, in the
    scope of `params` (`shard`, `shards`; `r1_days`: the default without settings)."""
    sql = _UNROUTED_STEPS_PG.format(scope=_scope(params["shard"] is not None), r1_days=_R1_DAYS_PG)
    return [(d, n) for d, n in session.execute(text(sql), params)]


def route_complete(
    session: Session, params: dict[str, Any], reasons: dict[tuple[str, bool], str]
) -> list[tuple[str, int]]:
    """Route, in one statement, the new cases whose address is certainly complete, with
    their first step (`step_dates`, `step_days` -> `step_at`) and first history row (the
    reason by case kind and auto-handover switch); returns (state, count) per state."""
    when = " ".join(
        f"WHEN kind = '{kind}' AND auto = {str(auto).upper()} THEN '{reason}'"
        for (kind, auto), reason in reasons.items()
    )
    sql = _ROUTE_COMPLETE_PG.format(
        scope=_scope(params["shard"] is not None),
        address=", ".join(f"b.{field}" for field in REQUIRED_FIELDS),
        complete=certainly_complete_sql("c"),
        reasons=when,
        r1_days=_R1_DAYS_PG,
    )
    return [(state, int(n)) for state, n in session.execute(text(sql), params)]


def route_scheduled(
    session: Session, values: dict[str, Any], ladder: list[dict[str, Any]]
) -> list[int]:
    """First routing to `scheduled` with each case's next step and option, guarded like
    the generic path (not routed yet, still awaiting approval); returns the moved ids."""
    moved: list[int] = []
    sql = text(
        "UPDATE cases SET state = :state, routed_at = :routed_at, updated_at = :updated_at, "
        "blocked_reason = :blocked_reason, started_at = :started_at, "
        "next_step_at = v.n, dunning_option = v.o "
        "FROM unnest(CAST(:ids AS bigint[]), CAST(:ns AS timestamptz[]), "
        "CAST(:os AS varchar[])) AS v(id, n, o) "
        "WHERE cases.case_id = v.id AND cases.routed_at IS NULL "
        "AND cases.state = 'awaiting_approval' RETURNING cases.case_id"
    )
    step = 50_000
    for start in range(0, len(ladder), step):
        part = ladder[start : start + step]
        moved += session.scalars(
            sql,
            {
                **values,
                "ids": [v["case_id"] for v in part],
                "ns": [v["next_step_at"] for v in part],
                "os": [v["dunning_option"] for v in part],
            },
        ).all()
    return moved


def write_ladder(session: Session, values: list[dict[str, Any]]) -> None:
    """next_step_at and dunning_option per case (`case_id`). Issue 8: on PostgreSQL one
    UPDATE from arrays (an executemany of 270k rows took 14 s at a million orders; this
    ~3 s)."""
    if not is_postgres(session):
        session.execute(update(Case).execution_options(synchronize_session=False), values)
        return
    session.execute(
        text(
            "UPDATE cases SET next_step_at = v.n, dunning_option = v.o "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:ns AS timestamptz[]), "
            "CAST(:os AS varchar[])) AS v(id, n, o) WHERE cases.case_id = v.id"
        ),
        {
            "ids": [v["case_id"] for v in values],
            "ns": [v["next_step_at"] for v in values],
            "os": [v["dunning_option"] for v in values],
        },
    )
