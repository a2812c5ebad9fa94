"""Operator actions on SQLite and PostgreSQL: start, cancel, hold, resume and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from dunning.config import Settings
from dunning.db import session_scope
from dunning.models.operator import ActionRefused
from dunning.models.schema import Case, CaseHistory
from dunning.tasks.case_ops import case_action_core
from dunning.tasks.detect import detect_cases_core
from dunning.tasks.handover import apply_handover_core
from tests.factories import address, load_orders, order_record, sale

DAY = datetime(2026, 1, 20, 12, tzinfo=UTC)


def run(url: str, as_of: datetime = DAY) -> None:
    detect_cases_core(url, as_of, Settings())
    apply_handover_core(url, as_of, Settings())


def case(url: str, order_id: str) -> Case:
    with session_scope(url) as s:
        return s.scalars(select(Case).where(Case.order_id == order_id)).one()


def last_history(url: str, case_id: int) -> tuple:
    with session_scope(url) as s:
        h = s.scalars(
            select(CaseHistory)
            .where(CaseHistory.case_id == case_id)
            .order_by(CaseHistory.id.desc())
            .limit(1)
        ).one()
        return (h.actor, h.from_state, h.to_state, h.reason)


def act(url, action, ref, reason="checked", operator="anna", as_of=DAY + timedelta(hours=1)):
    return case_action_core(action, str(ref), reason, operator, as_of, url)


@pytest.fixture
def db(migrated_db):
    load_orders(
        migrated_db,
        [
            order_record("o1"),
            order_record("o2"),
            order_record("blk", buyer=address(house_number="")),
        ],
    )
    run(migrated_db)
    return migrated_db


def test_start_by_order_id_enters_the_ladder_with_full_gaps(db):
    result = act(db, "start", "o1", reason="customer known")
    c = case(db, "o1")
    assert (result["from_state"], result["to_state"]) == ("awaiting_approval", "scheduled")
    assert c.state == "scheduled" and c.started_at == DAY + timedelta(hours=1)
    # due 01-15 + 10 days = 01-25 00:00 Berlin: not yet passed, so that is the first step
    assert c.next_step_at == datetime(2026, 1, 24, 23, tzinfo=UTC)
    assert c.dunning_option == "court"
    assert last_history(db, c.case_id) == (
        "anna",
        "awaiting_approval",
        "scheduled",
        "start: customer known",
    )
    with pytest.raises(ActionRefused, match=f"case {c.case_id} is already started"):
        act(db, "start", c.case_id)


def test_late_start_is_due_now(db):
    late = datetime(2026, 3, 1, 8, tzinfo=UTC)
    act(db, "start", "o1", as_of=late)
    assert case(db, "o1").next_step_at == late


def test_hold_and_resume_return_to_the_step(db):
    act(db, "start", "o1")
    c = case(db, "o1")
    act(db, "hold", c.case_id, reason="customer disputes")
    held = case(db, "o1")
    assert held.state == "on_hold" and held.held_from_state == "scheduled"
    assert last_history(db, c.case_id)[1:] == ("scheduled", "on_hold", "hold: customer disputes")
    with pytest.raises(ActionRefused, match="already on hold"):
        act(db, "hold", c.case_id)
    act(db, "resume", c.case_id, reason="dispute settled")
    resumed = case(db, "o1")
    assert resumed.state == "scheduled" and resumed.held_from_state is None
    assert resumed.next_step_at == c.next_step_at
    with pytest.raises(ActionRefused, match="not on hold; nothing to resume"):
        act(db, "resume", c.case_id)


def test_hold_refused_before_the_ladder(db):
    c = case(db, "o2")
    with pytest.raises(ActionRefused, match="not in the dunning ladder"):
        act(db, "hold", c.case_id)


def test_cancel_then_every_action_refused(db):
    c = case(db, "o2")
    act(db, "cancel", "o2", reason="goodwill", operator="ben")
    done = case(db, "o2")
    assert done.state == "cancelled" and done.close_reason == "cancelled by ben: goodwill"
    assert last_history(db, c.case_id) == (
        "ben",
        "awaiting_approval",
        "cancelled",
        "cancel: goodwill",
    )
    for action in ("cancel", "start", "hold", "resume"):
        with pytest.raises(ActionRefused, match=f"^case {c.case_id} is cancelled; nothing to"):
            act(db, action, c.case_id)
    # the order's newest case is found by order id too
    with pytest.raises(ActionRefused, match="is cancelled; nothing to cancel"):
        act(db, "cancel", "o2")
    # the installment given up is not claimed again by a new case
    run(db, DAY + timedelta(days=3))
    with session_scope(db) as s:
        assert len(s.scalars(select(Case).where(Case.order_id == "o2")).all()) == 1


def pay_in_full_and_run(db) -> None:
    """The buyer of o1 pays the whole order; the next day's run sees it."""
    paid = order_record(
        "o1", updated_at="2026-01-02T00:00:00+00:00", transactions=[sale("s1", 1, "99.00", DAY)]
    )
    load_orders(db, [paid])
    run(db, DAY + timedelta(days=1))


def test_paid_case_refuses_cancel_with_the_issue_message(db):
    pay_in_full_and_run(db)
    c = case(db, "o1")
    assert c.state == "paid"
    with pytest.raises(ActionRefused) as err:
        act(db, "cancel", c.case_id)
    assert str(err.value) == f"case {c.case_id} is paid; nothing to cancel"


def test_held_case_is_paid_at_once(db):
    act(db, "start", "o1")
    act(db, "hold", "o1", reason="dispute")
    pay_in_full_and_run(db)
    assert case(db, "o1").state == "paid"


def test_blocked_start_needs_a_complete_address(db):
    c = case(db, "blk")
    assert c.state == "blocked"
    with pytest.raises(ActionRefused, match="address incomplete \\(missing house_number\\)"):
        act(db, "start", "blk")
    with session_scope(db) as s:  # the address is fixed at the source and synced
        from dunning.models.schema import Buyer

        s.get(Buyer, "blk").house_number = "4"
    act(db, "start", "blk", reason="address fixed")
    started = case(db, "blk")
    assert started.state == "scheduled" and started.blocked_reason is None


def test_unknown_case_and_missing_reason(db):
    with pytest.raises(ActionRefused, match="no case with id or order id 'nope'"):
        act(db, "start", "nope")
    with pytest.raises(ActionRefused, match="a reason is required"):
        act(db, "cancel", "o2", reason=" ")


def test_cli_actions_and_refusals(db, cli):
    env = {"DUNNING_DATABASE_URL": db}
    c = case(db, "o2")
    ok = cli("case", "start", "o2", "--reason", "looks fine", "--operator", "cara", env=env)
    assert ok.returncode == 0, ok.stderr
    assert f"case {c.case_id} (order o2): awaiting_approval → scheduled" in ok.stdout
    hold = cli("case", "hold", str(c.case_id), "--reason", "call", env=env)
    assert hold.returncode == 0, hold.stderr
    cancel = cli("case", "cancel", "o2", "--reason", "refund agreed", env=env)
    assert cancel.returncode == 0, cancel.stderr
    again = cli("case", "cancel", str(c.case_id), "--reason", "again", env=env)
    assert again.returncode != 0
    assert f"case {c.case_id} is cancelled; nothing to cancel" in again.stderr
    assert "Traceback" not in again.stderr
    missing = cli("case", "resume", "o2", env=env)  # --reason is required
    assert missing.returncode != 0
    with session_scope(db) as s:
        actors = [
            h.actor
            for h in s.scalars(
                select(CaseHistory).where(CaseHistory.case_id == c.case_id).order_by(CaseHistory.id)
            )
        ]
    assert actors[:2] == ["handover", "cara"] and len(actors) == 4


def _run_logs(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


def test_case_action_flow_emits_the_event_and_a_refusal_is_an_answer(
    db, prefect_harness, monkeypatch
):
    import prefect.events

    from dunning.config import get_settings
    from dunning.flows.cases import case_action

    monkeypatch.setenv("DUNNING_DATABASE_URL", db)  # configuration, not a run parameter
    get_settings.cache_clear()
    sent: list[dict] = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kw: sent.append(kw))
    result = case_action(
        action="start",
        case_or_order_id="o1",
        reason="ok",
        operator="ui",
        as_of=DAY + timedelta(hours=2),
    )
    assert result["to_state"] == "scheduled"
    (event,) = sent
    assert event["event"] == "dunning.case.scheduled"
    assert event["resource"]["prefect.resource.id"] == f"dunning.case.{result['case_id']}"
    assert event["payload"]["actor"] == "ui" and event["payload"]["reason"] == "ok"
    assert event["payload"]["from_state"] == "awaiting_approval"
    assert event["id"] is not None  # derived from the flow run: a retry does not repeat it

    state = case_action(action="start", case_or_order_id="o1", reason="ok", return_state=True)
    assert state.name == "Refused" and state.type.value == "COMPLETED"
    assert state.message.startswith(f"case {result['case_id']} is already started")
    assert "Traceback" not in "\n".join(_run_logs(state.state_details.flow_run_id))
    assert len(sent) == 1  # a refusal moves nothing, so no event

    # a real error still fails the run
    import dunning.tasks.case_ops

    def broken(*args, **kwargs):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(dunning.tasks.case_ops, "perform_action", broken)
    failed = case_action(action="hold", case_or_order_id="o1", reason="x", return_state=True)
    assert failed.is_failed()


def _board_row(url: str, case_id: int) -> dict:
    from dunning.db import get_engine
    from dunning.models.schema import CaseReport

    with get_engine(url).connect() as conn:
        row = conn.execute(select(CaseReport).where(CaseReport.case_id == case_id)).first()
    return dict(row._mapping) if row else {}


def _snapshot(url: str) -> list[tuple]:
    from dunning.db import get_engine
    from dunning.models.schema import CaseReportDaily as d

    cols = [d.snapshot_date, d.merchant_id, d.state, d.currency, d.case_count]
    cols += [d.outstanding_amount, d.order_amount, d.paid_amount]
    with get_engine(url).connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(*cols)))


def test_the_board_row_is_current_when_the_action_returns(db):
    from dunning.tasks.report import refresh_report

    board_time = DAY + timedelta(hours=1)
    refresh_report(db, board_time)
    c = case(db, "o1")
    result = act(db, "start", "o1", as_of=DAY + timedelta(hours=2))
    assert result["board_as_of"] == board_time
    row = _board_row(db, c.case_id)
    assert row["state"] == "scheduled" and row["state_label"] == "Mahnlauf geplant"
    assert row["next_step_at"] == case(db, "o1").next_step_at
    # the row shows the board's time, as the others do
    assert row["refreshed_at"] == board_time
    act(db, "hold", "o1", reason="dispute", as_of=DAY + timedelta(hours=3))
    assert _board_row(db, c.case_id)["state"] == "on_hold"
    # the row and today's snapshot equal what a full rebuild at the board's time gives
    rows, snapshot = _board_row(db, c.case_id), _snapshot(db)
    refresh_report(db, board_time, full=True)
    assert _board_row(db, c.case_id) == rows and _snapshot(db) == snapshot


def test_an_action_before_any_refresh_leaves_the_board_to_it(db):
    result = act(db, "start", "o1")
    assert result["board_as_of"] is None and _board_row(db, result["case_id"]) == {}
