"""What every command shares: the console, settings, argument checks, one-line errors."""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from typing import NoReturn

from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from dunning.config import Settings, get_settings
from dunning.models.clock import parse_as_of
from dunning.models.controls import escape_controls
from dunning.models.operator import login_name  # noqa: F401  (the CLI commands import it here)


class SafeConsole(Console):
    """Text from data reaches the terminal here (names, order ids, reasons, paths). Every
    string printed - messages, table titles, cells - has its control characters escaped
    (ESC[2J would clear the screen); markup is off unless a call asks for it (`[/]` in a
    name would raise, `[red]` would style). Text objects: build them with `shown()`."""

    def __init__(self, **kwargs) -> None:
        super().__init__(markup=False, emoji=False, **kwargs)

    def render_str(self, text: str, **kwargs) -> Text:
        return super().render_str(escape_controls(text, keep="\n\t"), **kwargs)


console = SafeConsole()
err_console = SafeConsole(stderr=True)


def shown(value: object) -> Text:
    """A cell or part of a message from data: control characters escaped, never markup."""
    return Text(escape_controls("" if value is None else str(value)))


class UserError(Exception):
    """A mistake of the user's; printed as one line, exit code 2, never a traceback."""


def fail(message: str, code: int = 2) -> NoReturn:
    # shown(): the message may quote data or arguments; its line breaks are escaped too
    line = Text.assemble(("error:", "bold red"), " ", shown(message))
    err_console.print(line, highlight=False, soft_wrap=True)
    sys.exit(code)


def settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"DUNNING_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise UserError(f"invalid settings: {problems}") from None


def as_of_option(text: str | None, option: str = "--as-of") -> datetime:
    try:
        return parse_as_of(text, settings().zone, option)
    except ValueError as exc:
        raise UserError(str(exc)) from None


# --- argument checks: every command validates the same kinds of values the same way ---

MAX_LIMIT = 1_000_000_000  # a row count; beyond it the databases' integers overflow


def limit_option(value: int | None) -> int | None:
    """Typer callback of `--limit`: a positive row count a database can take."""
    if value is not None and not 1 <= value <= MAX_LIMIT:
        raise UserError(f"--limit must be between 1 and {MAX_LIMIT:,}; got {value}"[:200])
    return value


def short_text(value: str | None, what: str, max_length: int) -> str | None:
    """A name that goes into a column of `max_length`: non-empty, no control characters."""
    if value is None:
        return None
    if not value.strip():
        raise UserError(f"{what} must not be empty")
    if len(value) > max_length:
        raise UserError(f"{what} is longer than {max_length} characters ({len(value)})")
    if not value.isprintable():
        raise UserError(f"{what} contains a control character")
    return value


def operator_option(value: str | None) -> str | None:
    """Typer callback of `--operator`: who acts, kept in history (100 characters)."""
    return short_text(value, "--operator", 100)


def merchant_id_argument(value: str) -> str:
    """Typer callback of MERCHANT_ID: a merchant id as the order contract allows it."""
    return short_text(value, "MERCHANT_ID", 64)


def database_url(override: str | None = None) -> str:
    """The database URL, validated, with the schema brought up to date."""
    from dunning.db import DatabaseConfigError, ensure_schema, normalise_url

    url = override or settings().database_url
    try:
        url = normalise_url(url)
        ensure_schema(url)
    except DatabaseConfigError as exc:
        raise UserError(str(exc)) from None
    return url


AS_OF_HELP = (
    "Act as if it were this moment (ISO date or timestamp; naive = local zone). Default: now."
)


class _NoTracebackForExpectedErrors(logging.Filter):
    """Prefect logs a failed task or flow with its traceback. For errors that say what to
    do (a missing source file, a refused token, an unreachable partner) the message is the
    whole story: keep the line, drop the traceback. Anything unexpected keeps it."""

    def __init__(self, expected: tuple[type[BaseException], ...]):
        super().__init__()
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.expected):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_expected_tracebacks() -> None:
    """Attach the filter to Prefect's console handlers (call after importing prefect)."""
    from sqlalchemy.exc import OperationalError

    from dunning.db import DatabaseConfigError
    from dunning.models.merchant_settings import SettingsChangeRefused
    from dunning.models.operator import ActionRefused
    from dunning.tasks.http_client import TransientHTTPError
    from dunning.tasks.source import SourceError

    expected = (
        SourceError,
        TransientHTTPError,
        DatabaseConfigError,
        SettingsChangeRefused,
        ActionRefused,
        OperationalError,
    )
    quiet = _NoTracebackForExpectedErrors(expected)
    loggers = [logging.getLogger()] + [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith("prefect")
    ]
    for logger in loggers:
        for handler in logger.handlers:
            handler.addFilter(quiet)
