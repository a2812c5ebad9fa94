"""Time as a parameter: parse `--as-of`, and count calendar days on the merchant's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

# A moment outside these is a typo (0001-01-01), not a date anyone runs or purges at.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 12, 31, 23, 59, 59, tzinfo=UTC)


def parse_as_of(text: str | None, zone: ZoneInfo, option: str = "--as-of") -> datetime:
    """ISO date or timestamp -> aware UTC. A naive value is read on `zone`; None is now."""
    if text is None or text == "":
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{option} {text!r} is not an ISO date or timestamp (e.g. 2026-11-26 or "
            "2026-11-26T06:00:00+01:00)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
        value = EARLIEST - timedelta(1) if value.year < 2000 else LATEST + timedelta(1)
    if value < EARLIEST:
        raise ValueError(f"{option} {text!r} lies before 2000-01-01")
    if value > LATEST:
        raise ValueError(f"{option} {text!r} lies too far in the future (after 2100-12-31)")
    return value


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The calendar date of `moment` on `zone` (a payment due on the 10th is late on the 11th)."""
    return moment.astimezone(zone).date()
