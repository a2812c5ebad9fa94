"""The case ladder as pure rules (SPEC §3): facts of a case + merchant settings + as_of ->
the one next step, or none.

scheduled --reminder_1--> reminder_1 --reminder_2--> reminder_2 --handover--> with_partner
with_partner --termination_notice (option cancellation, installments, § 498 guard)-->
    termination_notice --cancel_order (after its deadline, guard still holds)--> order_cancelled
with_partner --cancel_order (option cancellation, one-time or subscription)--> order_cancelled
with_partner --court_request (option court, partner reported `unsuccessful`)--> court

Moves without an outside effect (`quiet_move`): a handover or court request for less than
the merchant's minimum claim closes the case `uncollectible`; a termination notice whose
deadline passed without the guard holding any more goes back to `with_partner`.

Days are calendar days on the merchant's zone; a step is due from local midnight of its
day, and never before the previous step happened plus its full gap, so a case started
late still gets its full gaps and a run skipped for weeks takes one step, not three.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from dunning.models.enums import ActionStep, CaseState, DunningOption, PaymentPlan

LADDER_STATES = (
    CaseState.SCHEDULED,
    CaseState.REMINDER_1,
    CaseState.REMINDER_2,
    CaseState.WITH_PARTNER,
    CaseState.TERMINATION_NOTICE,
)
TERMINATION_NOTICE_DAYS = 14  # § 498 (1) Nr. 2 BGB: at least two weeks

LADDER_STEPS = (
    ActionStep.REMINDER_1,
    ActionStep.REMINDER_2,
    ActionStep.HANDOVER,
    ActionStep.TERMINATION_NOTICE,
    ActionStep.CANCEL_ORDER,
    ActionStep.COURT_REQUEST,
)
MAIL_STEPS = (ActionStep.REMINDER_1, ActionStep.REMINDER_2, ActionStep.TERMINATION_NOTICE)
# Where each ladder step starts from: a step is sent only while its case is still there.
FROM_STATES = {
    ActionStep.REMINDER_1: (CaseState.SCHEDULED,),
    ActionStep.REMINDER_2: (CaseState.REMINDER_1,),
    ActionStep.HANDOVER: (CaseState.REMINDER_2,),
    ActionStep.TERMINATION_NOTICE: (CaseState.WITH_PARTNER,),
    ActionStep.CANCEL_ORDER: (CaseState.WITH_PARTNER, CaseState.TERMINATION_NOTICE),
    ActionStep.COURT_REQUEST: (CaseState.WITH_PARTNER,),
}
TO_STATE = {
    ActionStep.REMINDER_1: CaseState.REMINDER_1,
    ActionStep.REMINDER_2: CaseState.REMINDER_2,
    ActionStep.HANDOVER: CaseState.WITH_PARTNER,
    ActionStep.TERMINATION_NOTICE: CaseState.TERMINATION_NOTICE,
    ActionStep.CANCEL_ORDER: CaseState.ORDER_CANCELLED,
    ActionStep.COURT_REQUEST: CaseState.COURT,
}


@dataclass(frozen=True)
class CaseFacts:
    case_id: int
    state: str
    dunning_option: str
    default_date: date
    payment_plan: str = PaymentPlan.ONE_TIME.value
    started_at: datetime | None = None
    next_step_at: datetime | None = None
    reminder_1_at: datetime | None = None
    reminder_2_at: datetime | None = None
    handed_over_at: datetime | None = None
    partner_claim_id: str | None = None
    partner_status: str | None = None
    order_total: Decimal = Decimal("0")
    # Read from the claim ledger: § 498 guard, and open principal below the minimum claim.
    termination_allowed: bool = False
    below_minimum: bool = False
    open_principal: Decimal = Decimal("0")


@dataclass(frozen=True)
class LadderSettings:
    reminder_1_days: int = 10
    reminder_2_days: int = 10
    handover_days: int = 10


@dataclass(frozen=True)
class Step:
    step: ActionStep
    to_state: CaseState
    # Payment deadline a reminder names: the date the following step becomes due.
    deadline: date | None = None


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first moment of `day` on `zone`, as an aware datetime."""
    return datetime.combine(day, time(0), tzinfo=zone)


def _local(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def due_at(facts: CaseFacts, cfg: LadderSettings, zone: ZoneInfo) -> datetime | None:
    """When the next reminder/handover step of the case becomes due; None if no timed step."""
    state = CaseState(facts.state)
    if state == CaseState.SCHEDULED:
        moment = local_midnight(facts.default_date + timedelta(days=cfg.reminder_1_days), zone)
        # Started late by an operator (or detection set a later start): not before that.
        for floor in (facts.started_at, facts.next_step_at):
            if floor is not None and floor > moment:
                moment = floor
        return moment
    if state == CaseState.REMINDER_1 and facts.reminder_1_at is not None:
        day = _local(facts.reminder_1_at, zone) + timedelta(days=cfg.reminder_2_days)
        return local_midnight(day, zone)
    if state == CaseState.REMINDER_2 and facts.reminder_2_at is not None:
        day = _local(facts.reminder_2_at, zone) + timedelta(days=cfg.handover_days)
        return local_midnight(day, zone)
    return None


def deadline_after(
    state: CaseState, sent_at: datetime, cfg: LadderSettings, zone: ZoneInfo
) -> date:
    """The payment deadline a reminder sent at `sent_at` names: the next step's date."""
    days = cfg.reminder_2_days if state == CaseState.REMINDER_1 else cfg.handover_days
    return _local(sent_at, zone) + timedelta(days=days)


def next_step(
    facts: CaseFacts, cfg: LadderSettings, as_of: datetime, zone: ZoneInfo
) -> Step | None:
    """The one step the case should take at `as_of`, or None. On hold and terminal: none."""
    state = CaseState(facts.state)
    if state not in LADDER_STATES:
        return None
    if state in (CaseState.SCHEDULED, CaseState.REMINDER_1, CaseState.REMINDER_2):
        moment = due_at(facts, cfg, zone)
        if moment is None or as_of < moment:
            return None
        if state == CaseState.SCHEDULED:
            return Step(
                ActionStep.REMINDER_1,
                CaseState.REMINDER_1,
                deadline_after(CaseState.REMINDER_1, as_of, cfg, zone),
            )
        if state == CaseState.REMINDER_1:
            return Step(
                ActionStep.REMINDER_2,
                CaseState.REMINDER_2,
                deadline_after(CaseState.REMINDER_2, as_of, cfg, zone),
            )
        return Step(ActionStep.HANDOVER, CaseState.WITH_PARTNER)
    if facts.handed_over_at is None or facts.partner_claim_id is None:
        return None
    if facts.handed_over_at >= as_of:
        return None  # handed over in this very run: the branch waits for the next one
    if state == CaseState.TERMINATION_NOTICE:
        if notice_due(facts, as_of) and facts.termination_allowed:
            return Step(ActionStep.CANCEL_ORDER, CaseState.ORDER_CANCELLED)
        return None
    # with_partner: the branch of the case's option.
    if facts.dunning_option == DunningOption.CANCELLATION.value:
        if facts.payment_plan != PaymentPlan.INSTALLMENTS.value:
            return Step(ActionStep.CANCEL_ORDER, CaseState.ORDER_CANCELLED)
        if facts.termination_allowed:
            deadline = _local(as_of, zone) + timedelta(days=TERMINATION_NOTICE_DAYS)
            return Step(ActionStep.TERMINATION_NOTICE, CaseState.TERMINATION_NOTICE, deadline)
        return None
    if facts.partner_status == "unsuccessful":
        return Step(ActionStep.COURT_REQUEST, CaseState.COURT)
    return None


def notice_due(facts: CaseFacts, as_of: datetime) -> bool:
    """The termination notice's deadline has passed (next_step_at is the day after it)."""
    return facts.next_step_at is not None and as_of >= facts.next_step_at


def quiet_move(
    facts: CaseFacts, step: Step | None, as_of: datetime, minimum: Decimal
) -> tuple[CaseState, str] | None:
    """A move without an outside effect, taken instead of `step` (see the module doc)."""
    closing = (ActionStep.HANDOVER, ActionStep.COURT_REQUEST)
    if step is not None and step.step in closing and facts.below_minimum:
        what = "not handed over" if step.step == ActionStep.HANDOVER else "no court procedure"
        return (
            CaseState.UNCOLLECTIBLE,
            f"open principal {facts.open_principal:.2f} below the minimum claim "
            f"{minimum:.2f}: {what}",
        )
    if (
        CaseState(facts.state) == CaseState.TERMINATION_NOTICE
        and notice_due(facts, as_of)
        and not facts.termination_allowed
    ):
        return CaseState.WITH_PARTNER, "§ 498 BGB: arrears paid within the notice period"
    return None
