"""Parse+validate (the sync's reader alone) against the bare baseline's parse, same file.

    DUNNING_SOURCE_ROOT=DIR .venv/bin/python bench/parse_validate.py DIR/FILE [--runs 3]

FILE: JSON Lines from `dunning generate`; `--json OUT` keeps the result. Both sides read
the whole file; the runs alternate (baseline, reader, baseline, ...) so a change in the
machine's load hits both; the best run of each is reported, wall and CPU time, with the
load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from dunning.bench.baseline import _open, parse_batch
from dunning.bench.sample import parse_validate
from dunning.tasks.sync_chunks import gc_paused


def baseline_parse(path: Path) -> int:
    """The baseline's parse phase alone: orjson and bare tuples, no COPY."""
    orders = 0
    with gc_paused(), _open(path) as source:
        while batch := parse_batch(source)[0]:
            orders += len(batch)
    return orders


def timed(fn, path: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds (the CPU time of this process is what a shared machine's other
    work disturbs least) and the count `fn` returns."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = fn(path)
    return time.perf_counter() - wall, time.process_time() - cpu, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    load_before = os.getloadavg()
    base, reader = [], []
    orders = valid = 0
    for _ in range(args.runs):
        *seconds, orders = timed(baseline_parse, args.file)
        base.append(seconds)
        *seconds, valid = timed(lambda p: parse_validate(p, args.batch_size), args.file)
        reader.append(seconds)
    result: dict = {"file": args.file.name, "orders": orders, "valid": valid}
    for i, clock in enumerate(("wall", "cpu")):
        b, r = min(s[i] for s in base), min(s[i] for s in reader)
        result[clock] = {
            "baseline_parse_seconds": [round(s[i], 3) for s in base],
            "parse_validate_seconds": [round(s[i], 3) for s in reader],
            "baseline_parse_per_s": round(orders / b),
            "parse_validate_per_s": round(orders / r),
            "ratio": round(r / b, 2),
        }
    result |= {
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
