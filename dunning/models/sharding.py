"""Stable shards by merchant: `shard_key % shards == shard` selects one shard's merchants."""

from __future__ import annotations

import zlib


def shard_key(merchant_id: str) -> int:
    """CRC-32 of the id, non-negative 31 bits: the same on every machine and Python run."""
    return zlib.crc32(merchant_id.encode("utf-8")) & 0x7FFFFFFF


def check_shard(shard: int | None, shards: int) -> None:
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if shard is not None and not 0 <= shard < shards:
        raise ValueError(f"shard must be in 0..{shards - 1}, got {shard}")
