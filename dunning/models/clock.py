"""Time as a parameter: parse `--as-of`, and count calendar days on the merchant's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


def parse_as_of(text: str | None, zone: ZoneInfo) -> datetime:
    """ISO date or timestamp -> aware UTC. A naive value is read on `zone`; None is now."""
    if text is None or text == "":
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--as-of {text!r} is not an ISO date or timestamp (e.g. 2026-11-26 or "
            "2026-11-26T06:00:00+01:00)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The calendar date of `moment` on `zone` (a payment due on the 10th is late on the 11th)."""
    return moment.astimezone(zone).date()
