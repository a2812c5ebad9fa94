"""Installation settings, read from `DUNNING_*` environment variables and `.env`.

Secrets are `SecretStr`: they print as `**********` and never reach logs or `--help`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path(".dunning")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DUNNING_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_HOME}/dunning.db",
        description="SQLAlchemy URL; sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
    )
    source_url: str = Field(
        default=str(DEFAULT_HOME / "orders.jsonl"),
        description="JSON Lines file (file:PATH, file:///PATH, bare path) or http(s) orders API",
    )
    source_token: SecretStr | None = None
    source_root: Path | None = Field(
        default=None,
        description="Folder that file sources given with --source must lie in (symlinks "
        "resolved); default: the working folder. DUNNING_SOURCE_URL itself is always allowed",
    )
    partner_url: str = "http://127.0.0.1:8765"
    partner_token: SecretStr | None = None
    smtp_url: str = Field(
        default=f"file:{DEFAULT_HOME}/mail",
        description="smtp://host:port, or file:FOLDER that receives .eml files",
    )
    mail_from: str = "Mahnwesen <mahnwesen@example.com>"
    timezone: str = "Europe/Berlin"
    # Issue 17: where `dunning web` is served (https://inkasso.example.com); when set, the
    # CSV export and the needs-human artifact link to its pages instead of a worker's file.
    web_url: str | None = Field(
        default=None, description="base URL of `dunning web`, e.g. https://inkasso.example.com"
    )

    # Defaults of a merchant that never configured anything (SPEC §2).
    default_option: Literal["court", "cancellation"] = "court"
    default_auto_overdue: bool = False
    default_auto_chargebacks: bool = False
    default_reminder_1_days: int = Field(default=10, ge=1)
    default_reminder_2_days: int = Field(default=10, ge=1)
    default_handover_days: int = Field(default=10, ge=1)
    default_reminder_fee: Decimal = Decimal("0")
    default_chargeback_fee: Decimal = Decimal("0")
    default_cancellation_costs: Decimal = Decimal("0")
    max_reminder_fee: Decimal = Field(
        default=Decimal("2.50"), ge=0, description="cap of a merchant's reminder fee"
    )
    base_rates_file: str | None = Field(
        default=None, description="TOML file of base rates that extends the shipped table"
    )

    # The platform is the creditor of every claim (§ 13a RDG).
    creditor_name: str = "Example Platform GmbH"
    creditor_address: str = "Musterstraße 1, 10115 Berlin, DE"
    creditor_contact: str = "inkasso@example.com, +49 30 1234567"
    creditor_register: str = "Amtsgericht Berlin-Charlottenburg HRB 000000"

    http_timeout_seconds: float = Field(default=10.0, gt=0)
    read_deadline_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Wall-clock limit of one paged read (the orders API, partner updates)",
    )
    batch_size: int = Field(default=5000, ge=1)

    @field_validator("web_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("DUNNING_WEB_URL must start with http:// or https://")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin"
            ) from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@lru_cache
def get_settings() -> Settings:
    return Settings()


@contextmanager
def configured(**values: str) -> Iterator[Settings]:
    """This process's settings with `values` (`database_url=...` is DUNNING_DATABASE_URL)
    for the block, put back afterwards: how a run in this process is pointed at a database
    and a source (flows take them from the settings only, never as parameters)."""
    names = {f"DUNNING_{key.upper()}": value for key, value in values.items()}
    before = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
