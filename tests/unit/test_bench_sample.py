"""The benchmark's sample files: by order id, or shuffled."""

from __future__ import annotations

from pathlib import Path

import orjson

from dunning.bench.config import BenchConfig
from dunning.bench.sample import write_sample


def _write(cfg: BenchConfig, folder: Path) -> tuple[list[bytes], list[bytes], int, int]:
    folder.mkdir()
    cold, delta, n, changed, _ = write_sample(cfg, folder)
    return cold.read_bytes().splitlines(), delta.read_bytes().splitlines(), n, changed


def _ids(lines: list[bytes]) -> list[str]:
    return [orjson.loads(line)["order_id"] for line in lines]


def test_a_shuffled_cold_file_holds_the_same_orders_in_another_order(tmp_path: Path):
    cfg = BenchConfig(orders=300, merchants=5, changed_fraction=0.1)
    ordered, delta, n, changed = _write(cfg, tmp_path / "ordered")
    cfg.shuffled = True
    shuffled, delta_s, n_s, changed_s = _write(cfg, tmp_path / "shuffled")

    assert n == n_s == 300 and changed == changed_s > 0
    assert _ids(ordered) == sorted(_ids(ordered))  # the generator writes by order id
    assert _ids(shuffled) != sorted(_ids(shuffled))
    assert sorted(shuffled) == sorted(ordered)  # the same snapshots, byte for byte
    assert delta_s == delta  # the change file does not depend on the cold file's order
    again, *_ = _write(cfg, tmp_path / "again")
    assert again == shuffled  # the seed decides the order
