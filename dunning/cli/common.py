"""What every command shares: the console, settings, `--as-of`, and one-line errors."""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from typing import NoReturn

from pydantic import ValidationError
from rich.console import Console

from dunning.config import Settings, get_settings
from dunning.models.clock import parse_as_of

console = Console()
err_console = Console(stderr=True)


class UserError(Exception):
    """A mistake of the user's; printed as one line, exit code 2, never a traceback."""


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
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


def as_of_option(text: str | None) -> datetime:
    try:
        return parse_as_of(text, settings().zone)
    except ValueError as exc:
        raise UserError(str(exc)) from None


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
