"""Issue 16: help shows what a user types, not Python types (`<bool>` after --help,
`<int range>`, `{NAME}`), and choices where there are choices."""

from __future__ import annotations

import click
import pytest
import typer
from typer.testing import CliRunner

from dunning.cli import app
from dunning.cli.help_style import plain_type


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


COMMANDS = sorted(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_plain_metavars(command):
    out = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output
    assert "Usage:" in out
    for python_type in ("<bool>", "<str>", "<int", "<float", "{", "range>"):
        assert python_type not in out, (command, python_type)


def test_status_lists_its_choices():
    out = CliRunner().invoke(app, ["cases", "--help"], env={"COLUMNS": "200"}).output
    assert "STATE" in out and "awaiting_approval" in out and "in_progress" in out


def test_plain_type():
    assert plain_type("<bool>", True) is None
    assert plain_type("<int range>", False) == "INTEGER"
    assert plain_type("<table|json>", False) == "table|json"
