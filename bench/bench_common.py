"""Small helpers shared by the benchmark scripts (run from the repository root as ``python bench/NAME.py``)."""

from __future__ import annotations

import argparse
from importlib import metadata

__all__ = ("positive", "version")


def version(dist: str) -> str:
    """The installed version of ``dist``, or ``not installed``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1 (``200_000`` allowed)."""
    value = int(text.replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
