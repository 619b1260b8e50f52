"""Defaults and bounds that several modules and the command line share; imports nothing (so the command
line is built without polars)."""

from __future__ import annotations

from typing import Final

__all__ = (
    "DEFAULT_GRACE_S",
    "DEFAULT_INTERVAL_S",
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_MEMORY_BYTES",
    "MAX_INTERVAL_S",
)

#: Window length (seconds) of replay, tail and the original API.
DEFAULT_INTERVAL_S: Final = 300
#: The longest window: 366 days.
MAX_INTERVAL_S: Final = 366 * 86_400
#: How long after a window's end the tail waits for its stragglers before writing it (seconds).
DEFAULT_GRACE_S: Final = 5
#: Window rows held in memory (estimated bytes, keys included) before the least recently used are written out.
DEFAULT_MEMORY_BYTES: Final = 128 << 20
#: A longer line is rejected as ``too_long`` (newline included).
DEFAULT_MAX_LINE_BYTES: Final = 1 << 20
