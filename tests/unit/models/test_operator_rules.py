"""Which operator action is allowed from which state, and the refusals (no database)."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from dunning.models.enums import IN_PROGRESS_STATES, TERMINAL_STATES, CaseState
from dunning.models.operator import ActionRefused, decide, first_step_at

S = CaseState


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
@pytest.mark.parametrize("action", ["start", "cancel", "hold", "resume"])
def test_terminal_cases_refuse_everything(state, action):
    with pytest.raises(ActionRefused, match=f"^case 17 is {state}; nothing to {action}$"):
        decide(action, 17, state, reason="x")


def test_the_issue_example():
    with pytest.raises(ActionRefused) as err:
        decide("cancel", 17, "paid", reason="customer called")
    assert str(err.value) == "case 17 is paid; nothing to cancel"


@pytest.mark.parametrize("state", sorted(set(CaseState) - TERMINAL_STATES))
def test_cancel_from_every_open_state(state):
    assert decide("cancel", 1, state, reason="x") is S.CANCELLED


def test_start_from_awaiting_approval():
    assert decide("start", 1, S.AWAITING_APPROVAL, reason="ok") is S.SCHEDULED


def test_start_from_blocked_only_with_a_complete_address():
    with pytest.raises(ActionRefused, match="blocked: address incomplete \\(missing house"):
        decide("start", 3, S.BLOCKED, address_problems=["missing house_number"], reason="x")
    assert decide("start", 3, S.BLOCKED, reason="fixed") is S.SCHEDULED


@pytest.mark.parametrize("state", sorted(IN_PROGRESS_STATES | {S.ON_HOLD}))
def test_start_refused_once_started(state):
    with pytest.raises(ActionRefused, match="already started"):
        decide("start", 5, state, reason="x")


@pytest.mark.parametrize("state", sorted(IN_PROGRESS_STATES))
def test_hold_and_resume_return_to_the_same_step(state):
    assert decide("hold", 1, state, reason="dispute") is S.ON_HOLD
    assert decide("resume", 1, S.ON_HOLD, held_from_state=state, reason="ok") is state


@pytest.mark.parametrize("state", [S.AWAITING_APPROVAL, S.BLOCKED])
def test_hold_refused_outside_the_ladder(state):
    with pytest.raises(ActionRefused, match="not in the dunning ladder"):
        decide("hold", 2, state, reason="x")


def test_hold_twice_and_resume_without_hold_refused():
    with pytest.raises(ActionRefused, match="already on hold"):
        decide("hold", 2, S.ON_HOLD, reason="x")
    with pytest.raises(ActionRefused, match="not on hold; nothing to resume"):
        decide("resume", 2, S.REMINDER_1, reason="x")


def test_reason_required_and_unknown_action():
    with pytest.raises(ActionRefused, match="a reason is required"):
        decide("cancel", 2, S.SCHEDULED, reason="  ")
    with pytest.raises(ActionRefused, match="unknown action 'pause'"):
        decide("pause", 2, S.SCHEDULED, reason="x")


def test_first_step_at_local_midnight_or_now():
    zone = ZoneInfo("Europe/Berlin")
    early = datetime(2026, 1, 1, tzinfo=UTC)
    # 2026-01-15 + 10 days = 2026-01-25 00:00 Berlin = 2026-01-24 23:00 UTC
    assert first_step_at(date(2026, 1, 15), 10, early, zone) == datetime(
        2026, 1, 24, 23, tzinfo=UTC
    )
    late = datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert first_step_at(date(2026, 1, 15), 10, late, zone) == late
