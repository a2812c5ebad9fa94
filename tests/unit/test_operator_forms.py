"""Issue 16: the operator forms are flat and typed: every field described, every choice an
enum, no database URL (it comes from the worker's environment)."""

from __future__ import annotations

import re

import pytest
from prefect.utilities.callables import parameter_schema

from dunning.flows.cases import case_action
from dunning.flows.settings import change_merchant_settings

CHOICES = {
    "change-merchant-settings": {
        "dunning_option": ["keep", "court", "cancellation"],
        "auto_overdue": ["keep", "on", "off"],
        "auto_chargebacks": ["keep", "on", "off"],
        "interest_enabled": ["keep", "on", "off"],
    },
    "case-action": {"action": ["start", "cancel", "hold", "resume", "confirm-cancellation"]},
}


@pytest.mark.parametrize("flow", [change_merchant_settings, case_action], ids=lambda f: f.name)
def test_every_field_described_every_choice_an_enum(flow):
    schema = parameter_schema(flow).model_dump()
    properties = schema["properties"]
    assert "database_url" not in properties and "changes" not in properties
    assert [k for k, v in properties.items() if not v.get("description")] == []
    assert {k: v["enum"] for k, v in properties.items() if "enum" in v} == CHOICES[flow.name]
    assert all(v.get("type") != "object" for v in properties.values())  # flat, no nesting


def test_settings_fields_are_plain_inputs_whose_defaults_keep():
    """No type toggles ("anyOf") and no null defaults: the Prefect form sends what it shows."""
    properties = parameter_schema(change_merchant_settings).model_dump()["properties"]
    for key in ("reminder_1_days", "reminder_2_days", "handover_days"):
        assert (properties[key]["type"], properties[key]["default"]) == ("integer", 0)
    for key in ("reminder_fee", "chargeback_fee", "cancellation_costs", "min_claim_amount"):
        assert (properties[key]["type"], properties[key]["default"]) == ("string", "")
        assert re.fullmatch(properties[key]["pattern"], "2,50")
        assert not re.fullmatch(properties[key]["pattern"], "-1")
