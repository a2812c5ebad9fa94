"""The benchmark's shop: the cold file and the delta file, and the sync's reader alone."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from dunning.bench.config import INCREMENTAL_AFTER, BenchConfig


def write_sample(cfg: BenchConfig, folder: Path) -> tuple[Path, Path, int, int, datetime]:
    """The cold file and the delta file (changed snapshots), in one pass of the generator.
    `cfg.shuffled`: the cold file's lines in an order drawn from the seed (the generator
    writes them by order id, so each table's rows lie in key order, as few real exports do)."""
    from dunning.sample.generator import generate_orders, mutate_orders

    cold, delta = folder / "orders.jsonl", folder / "delta.jsonl"
    as_of_2 = cfg.as_of + INCREMENTAL_AFTER
    written = 0
    with cold.open("wb") as out:
        buf: list[bytes] = []

        def tee(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            nonlocal written
            for rec in records:
                buf.append(orjson.dumps(rec))
                written += 1
                if len(buf) >= 2000 and not cfg.shuffled:
                    out.write(b"\n".join(buf) + b"\n")
                    buf.clear()
                yield rec

        records = generate_orders(cfg.orders, cfg.merchants, cfg.seed, cfg.as_of)
        changed = 0
        with delta.open("wb") as dout:
            for rec in mutate_orders(tee(records), cfg.changed_fraction, cfg.seed, as_of_2):
                dout.write(orjson.dumps(rec) + b"\n")
                changed += 1
        if cfg.shuffled:
            random.Random(f"shuffle-{cfg.seed}").shuffle(buf)
        if buf:
            out.write(b"\n".join(buf) + b"\n")
    return cold, delta, written, changed, as_of_2


def parse_validate(path: Path, as_of: datetime, copy_to: str | None = None) -> int:
    """What the sync's reader does, without the database: read, parse and validate the
    file in groups of `READ_GROUP` lines, each group's rows freed as the reader frees them
    once encoded; with `copy_to` (a source name), encoded for COPY into batches of 5,000
    orders, as the load's workers hand them to the writer."""
    from dunning.tasks.read_groups import READ_GROUP, prepared_batches
    from dunning.tasks.source import open_source
    from dunning.tasks.sync_chunks import gc_paused

    size = READ_GROUP if copy_to is None else 5000
    src = open_source(str(path))
    valid = 0
    with gc_paused():
        try:
            for b, prepared in prepared_batches(src, "", None, size, as_of=as_of, copy_to=copy_to):
                valid += len(prepared.orders)
                if b.done:
                    break
        finally:
            src.close()
    return valid
