from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from dunning.config import Settings
from dunning.models.enums import DunningOption
from dunning.models.merchant_settings import (
    SettingsChangeRefused,
    apply_change,
    defaults_from,
)

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def defaults():
    return defaults_from(Settings())


def test_defaults_are_court_and_both_switches_off():
    config = defaults()
    assert config.dunning_option is DunningOption.COURT
    assert (config.auto_overdue, config.auto_chargebacks) == (False, False)
    assert (config.reminder_1_days, config.reminder_2_days, config.handover_days) == (10, 10, 10)


def test_installation_can_change_the_defaults():
    config = defaults_from(Settings(default_option="cancellation", default_auto_overdue=True))
    assert config.dunning_option is DunningOption.CANCELLATION
    assert config.auto_overdue is True


def test_first_option_change_is_allowed_and_dated():
    new, diff, changed_at = apply_change(
        defaults(), None, {"dunning_option": "cancellation"}, T0, BERLIN
    )
    assert new.dunning_option is DunningOption.CANCELLATION
    assert diff == {"dunning_option": ["court", "cancellation"]}
    assert changed_at == T0


def test_second_change_inside_30_days_is_refused_with_the_date():
    first, _, changed_at = apply_change(
        defaults(), None, {"dunning_option": "cancellation"}, T0, BERLIN
    )
    with pytest.raises(SettingsChangeRefused) as refused:
        apply_change(
            first, changed_at, {"dunning_option": "court"}, T0 + timedelta(days=29), BERLIN
        )
    assert "2026-12-01" in str(refused.value)
    assert refused.value.allowed_from == T0 + timedelta(days=30)


def test_change_after_30_days_is_allowed():
    first, _, changed_at = apply_change(
        defaults(), None, {"dunning_option": "cancellation"}, T0, BERLIN
    )
    later = T0 + timedelta(days=30)
    new, _, again = apply_change(first, changed_at, {"dunning_option": "court"}, later, BERLIN)
    assert new.dunning_option is DunningOption.COURT
    assert again == later


def test_switches_change_freely_inside_the_30_days():
    first, _, changed_at = apply_change(
        defaults(), None, {"dunning_option": "cancellation"}, T0, BERLIN
    )
    new, diff, same = apply_change(
        first, changed_at, {"auto_overdue": True}, T0 + timedelta(hours=1), BERLIN
    )
    assert new.auto_overdue is True
    assert diff == {"auto_overdue": [False, True]}
    assert same == changed_at


def test_setting_the_same_option_again_is_no_change():
    first, _, changed_at = apply_change(
        defaults(), None, {"dunning_option": "cancellation"}, T0, BERLIN
    )
    _, diff, same = apply_change(
        first, changed_at, {"dunning_option": "cancellation"}, T0 + timedelta(days=1), BERLIN
    )
    assert diff == {}
    assert same == changed_at


@pytest.mark.parametrize("value", ["a", "b", "Court", "", "mahnbescheid"])
def test_unknown_option_is_rejected_by_name(value):
    with pytest.raises(SettingsChangeRefused, match="is not one of: court, cancellation"):
        apply_change(defaults(), None, {"dunning_option": value}, T0, BERLIN)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("reminder_fee", Decimal("-1"), "reminder_fee must be >= 0"),
        ("reminder_fee", Decimal("1.005"), "at most 2 decimals"),
        ("reminder_1_days", 0, "at least 1 day"),
        ("colour", "red", "unknown setting 'colour'"),
    ],
)
def test_bad_values_are_refused(field, value, message):
    with pytest.raises(SettingsChangeRefused, match=message):
        apply_change(defaults(), None, {field: value}, T0, BERLIN)
