"""Dunning and collections pipeline."""

__version__ = "0.1.0"
