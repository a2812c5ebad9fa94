"""bootstrap compares an automation with the one on the server whatever order the sets of
its trigger iterate in (a set read back can iterate otherwise than the one built here)."""

from __future__ import annotations

from dunning.deployments.bootstrap import _canonical


def test_lists_of_strings_compare_in_any_order_and_nothing_else_changes():
    here = {"trigger": {"expect": ["prefect.flow-run.Failed", "prefect.flow-run.Crashed"]}}
    there = {"trigger": {"expect": ["prefect.flow-run.Crashed", "prefect.flow-run.Failed"]}}
    assert _canonical(here) == _canonical(there)
    assert _canonical({"expect": ["a"], "n": 1}) != _canonical({"expect": ["b"], "n": 1})
    actions = [{"type": "do-nothing"}, {"type": "send-notification"}]
    assert _canonical({"actions": actions}) == {"actions": actions}  # order kept
