"""The case ladder as pure rules (SPEC §3): facts of a case + merchant settings + as_of ->
the one next step, or none.

scheduled --reminder_1--> reminder_1 --reminder_2--> reminder_2 --handover--> with_partner
with_partner --cancel_order (option cancellation, § 498 BGB guard)--> order_cancelled
with_partner --court_request (option court, partner reported `unsuccessful`)--> court

Days are calendar days on the merchant's zone; a step is due from local midnight of its
day, and never before the previous step happened plus its full gap, so a case started
late still gets its full gaps and a run skipped for weeks takes one step, not three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from dunning.models.enums import ActionStep, CaseState, DunningOption, PaymentPlan

LADDER_STATES = (
    CaseState.SCHEDULED,
    CaseState.REMINDER_1,
    CaseState.REMINDER_2,
    CaseState.WITH_PARTNER,
)
THREE_YEARS_DAYS = 3 * 365


@dataclass(frozen=True)
class InstallmentFact:
    number: int
    due_date: date
    amount: Decimal
    open_amount: Decimal  # still unpaid


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
    # The order's whole schedule (only needed for the § 498 guard of installment plans).
    installments: tuple[InstallmentFact, ...] = field(default=())


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


def cancellation_allowed(facts: CaseFacts, as_of: datetime, zone: ZoneInfo) -> bool:
    """§ 498 BGB for installment plans: at least two consecutive installments in default and
    at least 10 % of the price in default (5 % for a term over three years). Other plans:
    the order may be cancelled at handover."""
    if facts.payment_plan != PaymentPlan.INSTALLMENTS.value:
        return True
    today = _local(as_of, zone)
    schedule = sorted(facts.installments, key=lambda i: i.number)
    if not schedule or facts.order_total <= 0:
        return False
    in_default = [i for i in schedule if i.due_date < today and i.open_amount > 0]
    run = best = 0
    for inst in schedule:  # consecutive = neighbours in the schedule, both in default
        run = run + 1 if inst in in_default else 0
        best = max(best, run)
    if best < 2:
        return False
    term_days = (schedule[-1].due_date - schedule[0].due_date).days
    share = Decimal("0.05") if term_days > THREE_YEARS_DAYS else Decimal("0.10")
    open_in_default = sum((i.open_amount for i in in_default), Decimal(0))
    return open_in_default >= facts.order_total * share


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
    # with_partner: the branch of the case's option.
    if facts.handed_over_at is None or facts.partner_claim_id is None:
        return None
    if facts.handed_over_at >= as_of:
        return None  # handed over in this very run: the branch waits for the next one
    if facts.dunning_option == DunningOption.CANCELLATION.value:
        if cancellation_allowed(facts, as_of, zone):
            return Step(ActionStep.CANCEL_ORDER, CaseState.ORDER_CANCELLED)
        return None
    if facts.partner_status == "unsuccessful":
        return Step(ActionStep.COURT_REQUEST, CaseState.COURT)
    return None
