"""The tail's checkpoint file: read back and checked against the run, or a foreign file of its name set aside.

A checkpoint is one JSON object, written atomically by :meth:`tracker.tail.Tail.checkpoint`: the files'
positions, the engine's state, the window files it names (``windows/``) and the tail's counters. Reading one
back never trusts it: it must be a regular file (a FIFO would block), of this :data:`CHECKPOINT_VERSION`, made
with this run's options for these logs, with counters of the right types. Anything else is a ``ValueError``
saying why, and the tail reads every log again from the start.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from .decoder import file_kind

__all__ = ("CHECKPOINT_FILE", "CHECKPOINT_VERSION", "WINDOWS_DIR", "Counters", "checkpoint_counters",
           "is_checkpoint", "load_checkpoint", "read_regular", "set_aside")

CHECKPOINT_FILE: Final = "checkpoint.json"
#: 3: window rows with TTFT and tokens, figures with the chat columns; 4: error rows with sessions, first and last
#: seen; 5: figures with the failed requests' latency; 7: figures with how many values of each kind they hold.
#: 8: the positions of every rotated sibling of a followed log (``rotated`` entries): none is read twice or left.
CHECKPOINT_VERSION: Final = 8
#: The folder, beside the checkpoint, of the window files it names.
WINDOWS_DIR: Final = "windows"
#: The run's options a checkpoint must have been made with, by the command-line option that sets each.
_OPTIONS: Final = {"interval_s": "--interval", "session_timeout_s": "--session-timeout", "goodput": "--goodput"}


def read_regular(path: Path) -> bytes:
    """A checkpoint file's bytes; ValueError when it is not a regular file (reading a FIFO would wait for ever)."""
    def regular(mode: int) -> None:
        if not stat.S_ISREG(mode):
            raise ValueError(f"it is {file_kind(mode)}, not a regular file")

    regular(path.stat().st_mode)  # first: a socket cannot be opened at all
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)), "rb") as stream:
        regular(os.fstat(stream.fileno()).st_mode)  # and again: it may have been replaced since
        return stream.read()


def is_checkpoint(path: Path) -> bool:
    """True when ``path`` holds a checkpoint of a tracker tail (of any version; damaged values or not)."""
    try:
        state = orjson.loads(read_regular(path))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and type(state.get("version")) is int and isinstance(state.get("targets"), list)


def load_checkpoint(path: Path, options: dict[str, object], targets: Sequence[str]) -> dict[str, Any]:
    """The checkpoint at ``path``, checked to be of this version and made with ``options`` (the values of
    :data:`_OPTIONS`' keys) for ``targets``; OSError when it cannot be read, ValueError saying what does not match.
    The parts it holds (positions, engine, windows...) are checked by those that take them."""
    state = orjson.loads(read_regular(path))
    if not isinstance(state, dict):
        raise ValueError(f"expected an object, got {type(state).__name__}")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"version {state.get('version')!r}, expected {CHECKPOINT_VERSION}")
    for key, option in _OPTIONS.items():
        if state.get(key) != options[key]:
            raise ValueError(f"it was made with {option} {state.get(key)!r}")
    if state.get("targets") != list(targets):
        raise ValueError(f"it was made for other logs: {state.get('targets')!r}")
    return state


@dataclass(frozen=True, slots=True)
class Counters:
    """The tail's counters a checkpoint holds, checked."""

    closed_until: int | None  # the end of the windows closed so far (None: none)
    written_end: int | None
    late: int
    events: int
    rejected: dict[str, int]  # by reason
    breaches: set[tuple[str, int]]  # the threshold breaches said so far: (threshold, window start)
    quarantine_lost: int  # rejected lines that could not be quarantined


def checkpoint_counters(state: dict[str, Any]) -> Counters:
    """The counters of a checkpoint's state; ValueError when one is missing or of the wrong type."""
    closed, late, events, rejected, written_end, breaches = (
        state.get(k) for k in ("closed_until", "late", "events", "rejected", "written_end", "breaches"))
    if not ((closed is None or type(closed) is int) and type(late) is int and late >= 0
            and type(events) is int and events >= 0 and (written_end is None or type(written_end) is int)
            and isinstance(breaches, list) and all(
                isinstance(b, list) and len(b) == 2 and isinstance(b[0], str) and type(b[1]) is int for b in breaches)
            and isinstance(rejected, dict) and all(type(v) is int and v >= 0 for v in rejected.values())):
        raise ValueError("its counters are damaged")
    lost = state.get("quarantine_lost", 0)
    if type(lost) is not int or lost < 0:
        raise ValueError(f"its count of lines not quarantined is damaged: {lost!r}")
    return Counters(closed, written_end, late, events, rejected, {(text, start) for text, start in breaches}, lost)


def set_aside(stale: Path, warn: Callable[[str], None]) -> bool:
    """Keep a file named as the checkpoint that is not a tracker checkpoint under another name
    (``checkpoint.json.not-a-checkpoint-STAMP``), never replacing one; False (said) when it cannot be moved, so
    checkpoints cannot be saved there."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = stale.with_name(f"{CHECKPOINT_FILE}.not-a-checkpoint-{stamp}")
    for n in range(1, 10_000):  # never over another one set aside
        if not aside.exists() and not aside.is_symlink():
            break
        aside = stale.with_name(f"{CHECKPOINT_FILE}.not-a-checkpoint-{stamp}-{n}")
    try:
        os.link(stale, aside)  # (fails if that name was taken meanwhile: nothing is replaced)
        stale.unlink()
    except OSError as exc:
        warn(f"{stale} is not a tracker checkpoint and cannot be set aside ({exc.strerror or exc}): left alone "
             "(checkpoints cannot be saved there)")
        return False
    warn(f"{stale} is not a tracker checkpoint (or is damaged): kept as {aside.name}")
    return True
