"""The base rate of § 247 BGB as data: a shipped table, extendable by a file.

`dunning/models/base_rates.toml` ships the rates the Bundesbank published, with the day
they are known to cover (`known_until`). `DUNNING_BASE_RATES_FILE` names a file of the same
format whose rows are merged over the shipped ones, so a new half-year needs no release.
A day before the table is refused (`BaseRateUnknown`); a day past `known_until` uses the
last rate, and `BaseRates.stale(day)` lets the run say so.
"""

from __future__ import annotations

import tomllib
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from pathlib import Path

ENV_FILE = "DUNNING_BASE_RATES_FILE"


class BaseRateUnknown(ValueError):
    """A day the table does not reach back to, or a table file that cannot be read."""


@dataclass(frozen=True)
class BaseRates:
    rows: tuple[tuple[date, Decimal], ...]  # (first day, percent), ascending
    known_until: date

    @property
    def first_day(self) -> date:
        return self.rows[0][0]

    def rate_on(self, day: date) -> Decimal:
        """The base rate in percent on `day`."""
        index = bisect_right([start for start, _ in self.rows], day) - 1
        if index < 0:
            raise BaseRateUnknown(
                f"no base rate for {day.isoformat()}: the table starts on "
                f"{self.first_day.isoformat()} (extend it with {ENV_FILE})"
            )
        return self.rows[index][1]

    def changes_between(self, start: date, end: date) -> list[date]:
        """Days in (start, end] on which a new rate took effect."""
        return [d for d, _ in self.rows if start < d <= end]

    def stale(self, day: date) -> bool:
        """True when `day` lies past what the table is known to cover."""
        return day > self.known_until


def parse_table(text: str, origin: str) -> tuple[dict[date, Decimal], date | None]:
    try:
        data = tomllib.loads(text)
        rows = {}
        for row in data.get("rates", []):
            start, percent = row["from"], Decimal(str(row["percent"]))
            if not isinstance(start, date):
                raise TypeError(f"'from' must be a date, got {start!r}")
            rows[start] = percent
        known = data.get("known_until")
        if known is not None and not isinstance(known, date):
            raise TypeError(f"'known_until' must be a date, got {known!r}")
    except (tomllib.TOMLDecodeError, KeyError, TypeError, InvalidOperation) as exc:
        raise BaseRateUnknown(f"{origin}: not a base-rate table: {exc}") from None
    return rows, known


def build(*tables: tuple[dict[date, Decimal], date | None]) -> BaseRates:
    rows: dict[date, Decimal] = {}
    known: list[date] = []
    for table_rows, table_known in tables:
        rows.update(table_rows)
        if table_known is not None:
            known.append(table_known)
    if not rows:
        raise BaseRateUnknown("the base-rate table is empty")
    ordered = tuple(sorted(rows.items()))
    return BaseRates(ordered, max(known) if known else ordered[-1][0])


@cache
def _load(extra: str | None) -> BaseRates:
    shipped = resources.files("dunning.models").joinpath("base_rates.toml").read_text("utf-8")
    tables = [parse_table(shipped, "shipped base-rate table")]
    if extra:
        path = Path(extra)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise BaseRateUnknown(f"{ENV_FILE}={extra}: cannot read: {exc.strerror}") from None
        tables.append(parse_table(text, f"{ENV_FILE}={extra}"))
    return build(*tables)


def base_rates(extra_file: str | Path | None = None) -> BaseRates:
    """The shipped table, plus `extra_file` (the setting DUNNING_BASE_RATES_FILE)."""
    return _load(str(extra_file) if extra_file else None)
