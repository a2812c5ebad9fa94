"""Help that shows what a user types.

Typer prints Python types in the help: `<str>`, `<int range> [x>=1]`, `<bool>` even after
`--help`, and `{NAME}` for a required argument. The help here shows nothing after a flag,
the choices of a choice (`table|json`), a plain word otherwise (TEXT, INTEGER, NUMBER,
DATE-TIME, PATH), and arguments as NAME. Applied once when `dunning.cli` is imported.
"""

from __future__ import annotations

from typing import Any

_PLAIN = {
    "str": "TEXT",
    "int": "INTEGER",
    "int range": "INTEGER",
    "float": "NUMBER",
    "float range": "NUMBER",
    "Decimal": "AMOUNT",
    "datetime": "DATE-TIME",
    "date": "DATE",
    "Path": "PATH",
}


def plain_type(shown: str | None, is_flag: bool) -> str | None:
    """What the help shows for an option's value, given Typer's `<...>` label."""
    if is_flag or shown is None:
        return None
    label = shown.removeprefix("<").removesuffix(">")
    if "|" in label:  # choices
        return label
    return _PLAIN.get(label, label.upper())


def apply() -> None:
    from typer import core

    if getattr(core.TyperOption, "_dunning_plain_help", False):
        return
    typer_option_type = core.TyperOption.display_type_rich
    typer_argument_type = core.TyperArgument.display_type_rich

    def option_type(self: Any, ctx: Any) -> str | None:
        if self.metavar is not None:
            return self.metavar
        return plain_type(typer_option_type(self, ctx), bool(self.is_flag))

    def argument_type(self: Any, ctx: Any) -> str | None:
        return plain_type(typer_argument_type(self, ctx), False)

    def argument_usage(self: Any) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")

    core.TyperOption.display_type_rich = option_type
    core.TyperArgument.display_type_rich = argument_type
    core.TyperOption._dunning_plain_help = True
    core.TyperArgument._usage_display_name = argument_usage
