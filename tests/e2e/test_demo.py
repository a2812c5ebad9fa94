"""`dunning demo`, as a new user runs it: twice, both clean, every state on the board."""

from __future__ import annotations

import re

import pytest

from dunning.models.enums import CaseState

pytestmark = pytest.mark.slow


def _states(output: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^\s+.+?\s{2,}(\w+)\s+(\d+)$", output, re.M)}


def test_demo_twice_starts_clean_and_shows_every_state(cli, tmp_path):
    first = cli("demo", cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Traceback" not in first.stdout + first.stderr
    states = _states(first.stdout)
    assert set(states) == {s.value for s in CaseState}, states
    mails = list((tmp_path / ".dunning/demo/mail").glob("*.eml"))
    assert mails and f"({len(mails)} .eml files)" in first.stdout

    second = cli("demo", cwd=tmp_path, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Traceback" not in second.stdout + second.stderr
    assert _states(second.stdout) == states  # same shop, same days: the same board
    assert len(list((tmp_path / ".dunning/demo/mail").glob("*.eml"))) == len(mails)
