"""The Basiszinssatz of § 247 BGB as published by the Bundesbank, by the date it took effect.

It changes on 1 January and 1 July. Add a row each half-year; a date before the first
row uses the first row's rate (the table reaches far enough back for any open claim).
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import date
from decimal import Decimal

BASE_RATES: tuple[tuple[date, Decimal], ...] = (
    (date(2020, 1, 1), Decimal("-0.88")),
    (date(2020, 7, 1), Decimal("-0.88")),
    (date(2021, 1, 1), Decimal("-0.88")),
    (date(2021, 7, 1), Decimal("-0.88")),
    (date(2022, 1, 1), Decimal("-0.88")),
    (date(2022, 7, 1), Decimal("-0.88")),
    (date(2023, 1, 1), Decimal("1.62")),
    (date(2023, 7, 1), Decimal("3.12")),
    (date(2024, 1, 1), Decimal("3.62")),
    (date(2024, 7, 1), Decimal("3.37")),
    (date(2025, 1, 1), Decimal("2.27")),
    (date(2025, 7, 1), Decimal("1.27")),
)

_STARTS = [start for start, _ in BASE_RATES]


def base_rate_on(day: date) -> Decimal:
    """The base rate in percent that applies on `day`."""
    index = bisect_right(_STARTS, day) - 1
    return BASE_RATES[max(index, 0)][1]


def rate_changes_between(start: date, end: date) -> list[date]:
    """Dates in (start, end] on which a new base rate took effect."""
    return [d for d in _STARTS if start < d <= end]
