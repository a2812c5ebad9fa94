"""Benchmarks: the pipeline against a bare baseline, measured in the same run."""
