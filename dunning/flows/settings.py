"""Operator flow: change a merchant's dunning settings from the Prefect UI (a typed form).

Flat parameters, each with a description, so the form shows one typed field per setting:
the option and the switches are choices ("keep" leaves the setting as it is), days and fees
are empty to keep them. The database comes from the worker's settings, never the form.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.states import Completed, State
from pydantic import Field

from dunning.models.merchant_settings import SettingsChangeRefused
from dunning.tasks import merchant_settings as store

Switch = Literal["keep", "on", "off"]
_SWITCH = {"keep": None, "on": True, "off": False}


# One plain input per field in the Prefect form. "int | None" would be a type toggle
# there, and a null default fails the form's own validation when sent, so: days are an
# integer where 0 keeps the setting, amounts a decimal text where empty keeps it.
Days = Annotated[int, Field(ge=0)]
AMOUNT_PATTERN = r"^([0-9]{1,9}([.,][0-9]{1,2})?)?$"
Money = Annotated[str, Field(pattern=AMOUNT_PATTERN)]


def _days(value: int) -> int | None:
    return value or None


def _amount(text: str) -> Decimal | None:
    return Decimal(text.strip().replace(",", ".")) if text.strip() else None


@flow(
    name="change-merchant-settings",
    flow_run_name="settings {merchant_id} by {operator}",
    log_prints=False,
)
def change_merchant_settings(
    merchant_id: str,
    dunning_option: Literal["keep", "court", "cancellation"] = "keep",
    auto_overdue: Switch = "keep",
    auto_chargebacks: Switch = "keep",
    reminder_1_days: Days = 0,
    reminder_2_days: Days = 0,
    handover_days: Days = 0,
    reminder_fee: Money = "",
    chargeback_fee: Money = "",
    cancellation_costs: Money = "",
    interest_enabled: Switch = "keep",
    min_claim_amount: Money = "",
    operator: str = "operator",
    as_of: datetime | None = None,
) -> dict[str, list] | State:
    """Change a merchant's settings. A refusal (the 30-day rule) ends the run Completed,
    named "Refused", with the reason and the date as its message.

    Args:
        merchant_id: The merchant whose settings change.
        dunning_option: After the termination notice: court or cancellation (may change
            once in 30 days); keep leaves it.
        auto_overdue: Start overdue cases without review (on/off); keep leaves it.
        auto_chargebacks: Start chargebacks without review (on/off); keep leaves it.
        reminder_1_days: Days from the default to the first reminder; 0 keeps it.
        reminder_2_days: Days from the first to the second reminder; 0 keeps it.
        handover_days: Days from the second reminder to the handover; 0 keeps it.
        reminder_fee: Fee per reminder in EUR, e.g. 2.50 (at most the
            installation's cap); empty keeps it.
        chargeback_fee: Fee per chargeback in EUR, e.g. 15.00; empty keeps it.
        cancellation_costs: Costs of a cancellation in EUR, e.g. 5.00; empty keeps it.
        interest_enabled: Charge default interest on claims (on/off); keep leaves it.
        min_claim_amount: No handover or court below this principal, in EUR, e.g. 25.00;
            empty keeps it.
        operator: Who changes the settings, kept in the history: your name.
        as_of: When the change counts; empty means now.
    """
    when = as_of or datetime.now(UTC)
    logger = get_run_logger()
    changes = {
        "dunning_option": None if dunning_option == "keep" else dunning_option,
        "auto_overdue": _SWITCH[auto_overdue],
        "auto_chargebacks": _SWITCH[auto_chargebacks],
        "reminder_1_days": _days(reminder_1_days),
        "reminder_2_days": _days(reminder_2_days),
        "handover_days": _days(handover_days),
        "reminder_fee": _amount(reminder_fee),
        "chargeback_fee": _amount(chargeback_fee),
        "cancellation_costs": _amount(cancellation_costs),
        "interest_enabled": _SWITCH[interest_enabled],
        "min_claim_amount": _amount(min_claim_amount),
    }
    try:
        diff = store.change_in_database(merchant_id, changes, operator, when)
    except SettingsChangeRefused as exc:  # an answer, not an outage (issue 16)
        logger.info("merchant %s: refused: %s", merchant_id, exc)
        return Completed(message=f"merchant {merchant_id}: {exc}", name="Refused")
    if diff:
        for key, (old, new) in diff.items():
            logger.info("merchant %s: %s %s -> %s", merchant_id, key, old, new)
    else:
        logger.info("merchant %s: settings already so; nothing changed", merchant_id)
    return diff
