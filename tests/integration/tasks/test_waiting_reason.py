"""Issue 16: a case whose due step waits on an outside system says why on the board,
from the first failed attempt until the step is sent."""

from __future__ import annotations

import socket
from datetime import date, timedelta

from sqlalchemy import select

from dunning.db import session_scope
from dunning.models.schema import CaseReport
from dunning.tasks.escalate import run_escalation
from dunning.tasks.report import refresh_report
from tests.escalation_fixtures import at, case, make_case, one_time, settings_for

D0 = date(2026, 1, 16)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _board_reason(url: str, case_id: int) -> str | None:
    with session_scope(url) as s:
        return s.scalar(select(CaseReport.waiting_reason).where(CaseReport.case_id == case_id))


def test_the_board_says_why_a_step_waits_until_it_is_sent(migrated_db, smtp, partner):
    smtp_url, _ = smtp
    case_id = make_case(migrated_db, one_time("o-1"))
    down = settings_for(migrated_db, smtp_url, f"http://127.0.0.1:{_closed_port()}")
    for days in (10, 20):  # the two reminders by mail
        run_escalation(at(D0 + timedelta(days=days)), migrated_db, settings=down)
    assert case(migrated_db, case_id).state == "reminder_2"
    day = at(D0 + timedelta(days=30))  # the handover is due; the partner does not answer
    stats = run_escalation(day, migrated_db, settings=down)
    assert stats["performed"] == {"handover:transient": 1}, stats
    first = case(migrated_db, case_id).waiting_reason
    assert first.startswith("handover waits for the partner since 2026-02-15 05:00 UTC: ")
    refresh_report(migrated_db, day)
    assert _board_reason(migrated_db, case_id) == first

    run_escalation(day + timedelta(hours=1), migrated_db, settings=down)
    assert case(migrated_db, case_id).waiting_reason == first  # since the first attempt

    up = settings_for(migrated_db, smtp_url, partner.url)
    stats = run_escalation(day + timedelta(hours=2), migrated_db, settings=up)
    assert stats["performed"] == {"handover:done": 1}, stats
    assert case(migrated_db, case_id).waiting_reason is None
    refresh_report(migrated_db, day + timedelta(hours=2))
    assert _board_reason(migrated_db, case_id) is None
