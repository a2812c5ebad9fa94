"""What one benchmark run is asked to do: the shop, the server, the rounds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

DEFAULT_AS_OF = datetime(2026, 11, 26, 6, tzinfo=UTC)
# The incremental run comes one scheduled run (an hour) after the cold one.
INCREMENTAL_AFTER = timedelta(hours=1)


@dataclass
class BenchConfig:
    orders: int
    merchants: int
    changed_fraction: float = 0.01
    server_url: str = ""  # any database on the server; a fresh one is created beside it
    shards: int = 1
    seed: int = 1
    as_of: datetime = DEFAULT_AS_OF
    escalation_steps: int = 10_000
    escalation_rounds: int = 3
    keep_database: bool = False
    shuffled: bool = False  # the cold file's orders in random order, not by order id
    workdir: Path | None = None
