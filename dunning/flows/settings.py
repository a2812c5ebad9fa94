"""Operator flow: change a merchant's dunning settings from the Prefect UI (a typed form)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from prefect import flow, get_run_logger
from prefect.states import Completed, State
from pydantic import BaseModel, Field

from dunning.models.merchant_settings import SettingsChangeRefused
from dunning.tasks import merchant_settings as store


class SettingsChange(BaseModel):
    """Leave a field empty to keep it. The dunning option may change once every 30 days."""

    dunning_option: Literal["court", "cancellation"] | None = None
    auto_overdue: bool | None = Field(None, description="Start overdue cases without review")
    auto_chargebacks: bool | None = Field(None, description="Start chargebacks without review")
    reminder_1_days: int | None = Field(None, ge=1)
    reminder_2_days: int | None = Field(None, ge=1)
    handover_days: int | None = Field(None, ge=1)
    reminder_fee: Decimal | None = Field(None, ge=0, decimal_places=2)
    chargeback_fee: Decimal | None = Field(None, ge=0, decimal_places=2)
    cancellation_costs: Decimal | None = Field(None, ge=0, decimal_places=2)
    interest_enabled: bool | None = None
    min_claim_amount: Decimal | None = Field(
        None, ge=0, decimal_places=2, description="No handover or court below this principal"
    )


@flow(
    name="change-merchant-settings",
    flow_run_name="settings {merchant_id} by {operator}",
    log_prints=False,
)
def change_merchant_settings(
    merchant_id: str,
    changes: SettingsChange,
    operator: str,
    as_of: datetime | None = None,
) -> dict[str, list] | State:
    """Change a merchant's settings. A refusal (the 30-day rule) ends the run Completed,
    named "Refused", with the reason and the date as its message."""
    when = as_of or datetime.now(UTC)
    logger = get_run_logger()
    try:
        diff = store.change_in_database(merchant_id, changes.model_dump(), operator, when)
    except SettingsChangeRefused as exc:  # an answer, not an outage (issue 16)
        logger.info("merchant %s: refused: %s", merchant_id, exc)
        return Completed(message=f"merchant {merchant_id}: {exc}", name="Refused")
    if diff:
        for key, (old, new) in diff.items():
            logger.info("merchant %s: %s %s -> %s", merchant_id, key, old, new)
    else:
        logger.info("merchant %s: settings already so; nothing changed", merchant_id)
    return diff
