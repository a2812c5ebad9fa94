"""A sample shop: deterministic order records for the demo, the tests and the benchmark."""

from dunning.sample.generator import generate_orders, mutate_orders, write_jsonl

__all__ = ["generate_orders", "mutate_orders", "write_jsonl"]
