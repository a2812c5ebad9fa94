"""Merchant settings and the rule over changing them (SPEC §2). Pure: no database."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from dunning.models.enums import DunningOption

OPTION_CHANGE_INTERVAL = timedelta(days=30)


class SettingsChangeRefused(ValueError):
    """A change the rules do not allow; the message names when it becomes possible."""

    def __init__(self, message: str, allowed_from: datetime | None = None):
        super().__init__(message)
        self.allowed_from = allowed_from


@dataclass(frozen=True)
class MerchantConfig:
    dunning_option: DunningOption
    auto_overdue: bool
    auto_chargebacks: bool
    reminder_1_days: int = 10
    reminder_2_days: int = 10
    handover_days: int = 10
    reminder_fee: Decimal = Decimal("0.00")
    chargeback_fee: Decimal = Decimal("0.00")
    cancellation_costs: Decimal = Decimal("0.00")
    interest_enabled: bool = False
    min_claim_amount: Decimal = Decimal("5.00")

    def as_json(self) -> dict[str, Any]:
        """Plain JSON values (enums and decimals as strings) for history rows."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            out[key] = str(value) if isinstance(value, (Decimal, DunningOption)) else value
        return out


def defaults_from(installation) -> MerchantConfig:
    """The settings of a merchant that never configured anything."""
    return MerchantConfig(
        dunning_option=DunningOption(installation.default_option),
        auto_overdue=installation.default_auto_overdue,
        auto_chargebacks=installation.default_auto_chargebacks,
        reminder_1_days=installation.default_reminder_1_days,
        reminder_2_days=installation.default_reminder_2_days,
        handover_days=installation.default_handover_days,
        reminder_fee=installation.default_reminder_fee,
        chargeback_fee=installation.default_chargeback_fee,
        cancellation_costs=installation.default_cancellation_costs,
    )


MONEY_FIELDS = ("reminder_fee", "chargeback_fee", "cancellation_costs", "min_claim_amount")


def validate_changes(
    changes: dict[str, Any], max_reminder_fee: Decimal | None = None
) -> dict[str, Any]:
    """Coerce and check requested values; unknown fields and bad values are refused. A
    reminder fee above the installation's cap is refused: fees may cover actual costs only."""
    fields = MerchantConfig.__dataclass_fields__
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        if value is None:
            continue
        if key not in fields:
            raise SettingsChangeRefused(f"unknown setting {key!r}")
        if key == "dunning_option":
            try:
                value = DunningOption(value)
            except ValueError:
                allowed = ", ".join(o.value for o in DunningOption)
                raise SettingsChangeRefused(
                    f"dunning option {value!r} is not one of: {allowed}"
                ) from None
        elif key.endswith("_days"):
            if int(value) < 1:
                raise SettingsChangeRefused(f"{key} must be at least 1 day, got {value}")
            value = int(value)
        elif key in MONEY_FIELDS:
            value = Decimal(str(value))
            if value < 0 or value != value.quantize(Decimal("0.01")):
                raise SettingsChangeRefused(f"{key} must be >= 0 with at most 2 decimals")
            value = value.quantize(Decimal("0.01"))
            if key == "reminder_fee" and max_reminder_fee is not None and value > max_reminder_fee:
                raise SettingsChangeRefused(
                    f"reminder_fee {value} is above the installation's cap of "
                    f"{max_reminder_fee} (DUNNING_MAX_REMINDER_FEE): a reminder fee may cover "
                    "actual costs only"
                )
        clean[key] = value
    return clean


def apply_change(
    current: MerchantConfig,
    option_changed_at: datetime | None,
    changes: dict[str, Any],
    as_of: datetime,
    zone: ZoneInfo,
    max_reminder_fee: Decimal | None = None,
) -> tuple[MerchantConfig, dict[str, list[Any]], datetime | None]:
    """Return (new settings, {field: [old, new]}, new option_changed_at) or refuse.

    The dunning option may change at most once every 30 days; the first choice away
    from the defaults counts as a change too. The other settings change freely.
    """
    clean = validate_changes(changes, max_reminder_fee)
    new = replace(current, **clean)
    diff = {
        key: [_plain(getattr(current, key)), _plain(getattr(new, key))]
        for key in clean
        if getattr(current, key) != getattr(new, key)
    }
    if "dunning_option" in diff:
        if option_changed_at is not None and as_of < option_changed_at + OPTION_CHANGE_INTERVAL:
            allowed = option_changed_at + OPTION_CHANGE_INTERVAL
            last = option_changed_at.astimezone(zone).date().isoformat()
            first = allowed.astimezone(zone)
            raise SettingsChangeRefused(
                f"the dunning option was changed on {last}; it may change once every 30 days, "
                f"next on {first.date().isoformat()} from {first:%H:%M} ({zone.key})",
                allowed_from=allowed,
            )
        option_changed_at = as_of
    return new, diff, option_changed_at


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, (Decimal, DunningOption)) else value
