"""Handover's statements where SQLite and PostgreSQL differ. On PostgreSQL detection opens
the new cases whose address is certainly complete already routed (`open_routed_sql`), and
the next steps of scheduled cases are written from arrays in one UPDATE; on SQLite every
new case takes the generic path (`dunning.tasks.handover.route_new_cases`: read, classify,
ORM updates)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from dunning.db.detect_sql import skip_conflicts
from dunning.db.dialect import is_postgres
from dunning.models.address import certainly_complete_sql
from dunning.models.schema import Case


def routes_in_bulk(session: Session) -> bool:
    """Whether routing takes the one-statement paths below (PostgreSQL)."""
    return is_postgres(session)


# The handover rules inside detection's opening statement (PostgreSQL): a new case whose
# address is certainly complete opens routed, so it is written once (routing it by an
# UPDATE afterwards rewrote every new case and its index entries: 7.2 s of a million-order
# first run). `n` is the opening row (kind, merchant_id, default_date, ...), `b` its buyer,
# `ms` its merchant's settings (none: the installation's defaults), `s` the first steps
# computed in Python once per (default date, reminder_1_days) (`stage_first_steps`).
_R1_DAYS_PG = "CASE WHEN ms.dunning_option IS NULL THEN :r1_days ELSE ms.reminder_1_days END"
_AUTO_PG = """COALESCE(CASE WHEN ms.dunning_option IS NULL
              THEN CASE WHEN n.kind = 'chargeback' THEN :auto_cb ELSE :auto_overdue END
              ELSE CASE WHEN n.kind = 'chargeback' THEN ms.auto_chargebacks
                        ELSE ms.auto_overdue END END, FALSE)"""

# Every default day of the facts with every reminder_1_days in use: a few more pairs than
# the cases need, found without joining the facts to their orders (0.5 s at 1M orders).
_FIRST_STEPS_PG = """
SELECT f.day, r.days
FROM (SELECT DISTINCT COALESCE(cb_date, due_date) AS day FROM detect_facts) f
CROSS JOIN (SELECT reminder_1_days AS days FROM merchant_settings
            UNION SELECT CAST(:r1_days AS INTEGER)) r
"""

CASE_COLUMNS = (
    "order_id, merchant_id, kind, state, dunning_option, currency, opened_at, default_date, "
    "principal_amount, fees_amount, interest_amount, cancellation_costs, paid_amount, "
    "partner_paid_amount, outstanding_amount, updated_at"
)


def first_step_candidates(session: Session, params: dict[str, Any]) -> list[tuple[date, int]]:
    """Every (default date, reminder_1_days) a case opened from detect_facts may need: each
    fact's default day with each reminder_1_days of the merchants' settings and the
    installation's (`r1_days`), for merchants without settings."""
    return [(d, n) for d, n in session.execute(text(_FIRST_STEPS_PG), params)]


def stage_first_steps(session: Session, steps: list[tuple[date, int, datetime]]) -> None:
    """The first steps (default date, reminder_1_days, when) into the temp table
    `detect_steps` the opening statement looks up by key (joined from an array, the planner
    rescanned it for every new case: 0.3 s of 5,700)."""
    session.execute(text("DROP TABLE IF EXISTS detect_steps"))
    session.execute(
        text(
            "CREATE TEMPORARY TABLE detect_steps (d DATE, days INTEGER, at TIMESTAMPTZ, "
            "PRIMARY KEY (d, days))"
        )
    )
    session.execute(
        text(
            "INSERT INTO detect_steps SELECT * FROM unnest(CAST(:d AS date[]), "
            "CAST(:n AS int[]), CAST(:at AS timestamptz[]))"
        ),
        {
            "d": [d for d, _, _ in steps],
            "n": [n for _, n, _ in steps],
            "at": [a for *_, a in steps],
        },
    )
    session.execute(text("ANALYZE detect_steps"))


def open_routed_sql(
    opening_select: str, reasons: dict[tuple[str, bool], str], alone: bool = False
) -> str:
    """Insert the rows of `opening_select` (CASE_COLUMNS, one per new case) routed where
    the address is certainly complete (and the first step known): `scheduled` with its
    first step when the auto-handover switch of its kind is on, else `awaiting_approval`;
    with their first history row by the handover rules (`:router`, reason by kind and
    switch). The others open unrouted for `route_new_cases`. Every new case joins
    detection's open cases of its candidates (`detect_open`). Returns (state, routed,
    how many, lowest case id) per state and routed-or-not: the new cases themselves are not
    sent back (285k rows at a million orders). The laterals end in OFFSET 0 so that each
    is computed once per row: inlined, the address check (six regular expressions) ran
    again for each of the four columns that read `routed`. `alone`: see `skip_conflicts`."""
    when = " ".join(
        f"WHEN kind = '{kind}' AND state {'=' if auto else '<>'} 'scheduled' THEN '{reason}'"
        for (kind, auto), reason in reasons.items()
    )
    values = ", ".join(
        "CASE WHEN r.routed AND a.auto THEN 'scheduled' ELSE 'awaiting_approval' END"
        if c == "state"
        else f"CAST(n.{c} AS timestamptz)"
        if c.endswith("_at")
        else f"n.{c}"
        for c in CASE_COLUMNS.split(", ")
    )
    return f"""
WITH opened AS (
  INSERT INTO cases ({CASE_COLUMNS}, routed_at, started_at, next_step_at)
  SELECT {values},
         CASE WHEN r.routed THEN CAST(:as_of AS timestamptz) END,
         CASE WHEN r.routed AND a.auto THEN CAST(:as_of AS timestamptz) END,
         CASE WHEN r.routed AND a.auto THEN s.at END
  FROM ({opening_select}) n
  LEFT JOIN buyers b ON b.order_id = n.order_id
  LEFT JOIN merchant_settings ms ON ms.merchant_id = n.merchant_id
  LEFT JOIN detect_steps s ON s.d = n.default_date AND s.days = {_R1_DAYS_PG}
  CROSS JOIN LATERAL (SELECT {_AUTO_PG} AS auto OFFSET 0) a
  CROSS JOIN LATERAL (SELECT COALESCE({certainly_complete_sql("b")}, FALSE)
                             AND (NOT a.auto OR s.at IS NOT NULL) AS routed OFFSET 0) r
  ORDER BY n.order_id
  {skip_conflicts(alone)}
  RETURNING case_id, order_id, kind, state, routed_at
), history AS (
  INSERT INTO case_history (case_id, at, actor, from_state, to_state, reason)
  SELECT case_id, CAST(:as_of AS timestamptz), :router, NULL, state, CASE {when} END
  FROM opened WHERE routed_at IS NOT NULL
), candidates AS (
  INSERT INTO detect_open (case_id, order_id, status)
  SELECT o.case_id, o.order_id, d.status FROM opened o JOIN detect_orders d USING (order_id)
)
SELECT state, routed_at IS NOT NULL, COUNT(*), MIN(case_id) FROM opened GROUP BY 1, 2"""


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
