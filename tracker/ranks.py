"""The whole run's values, for its exact percentiles in bounded memory.

A run's percentiles need every value (a response time, a TTFT...) it ever
saw. :class:`SortedValues` keeps the newest ones in memory, sorted when asked;
past a budget they are written, sorted, to an unnamed temporary file (the
kernel frees it when the process ends, however it ends, so nothing is left
behind) and read through a memory map. An order statistic is found by
bisection over the values' bit patterns, counting values at or below with a
binary search in each sorted run: a few hundred page reads, whatever the
run's length. Memory stays at the budget however long the run; nothing here
is lost to a full disk (the values then stay in memory, and the write is
tried again at the next spill).

Percentiles use linear interpolation between order statistics (numpy's
default), as :func:`tracker.tables.stats` does for a window.
"""

from __future__ import annotations

import logging
import math
import mmap
import struct
import tempfile
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import polars as pl

__all__ = ("MEMORY_VALUES", "SortedValues")

#: Values held in memory before they are written out (8 bytes each).
MEMORY_VALUES: Final = 1 << 19

#: Values turned into Python floats at a time when written out (a long conversion would hold the GIL).
_SLICE: Final = 16_384
_SIGN: Final = 1 << 63
_ALL: Final = (1 << 64) - 1
_DOUBLE: Final = struct.Struct("<d")
_BITS: Final = struct.Struct("<Q")


def _ordered(value: float) -> int:
    """An unsigned integer that orders as ``value`` does (every double but NaN)."""
    bits: int = _BITS.unpack(_DOUBLE.pack(value))[0]
    return bits ^ _SIGN if not bits & _SIGN else ~bits & _ALL


def _unordered(key: int) -> float:
    bits = key ^ _SIGN if key & _SIGN else ~key & _ALL
    value: float = _DOUBLE.unpack(_BITS.pack(bits))[0]
    return value


class _Run:
    """Sorted values in an unnamed file, read through a memory map."""

    __slots__ = ("file", "map", "values")

    def __init__(self, folder: Path | None, values: array[float]) -> None:
        self.file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 (open as long as the run: closed by close())
        try:
            values.tofile(self.file)
            self.file.flush()
            self.map = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ)
        except BaseException:
            self.file.close()
            raise
        self.values: Sequence[float] = memoryview(self.map).cast("d")

    def close(self) -> None:
        if isinstance(self.values, memoryview):
            self.values.release()
        self.map.close()
        self.file.close()


class SortedValues:
    """A growing multiset of finite floats: its size and exact order statistics, in memory up to ``memory_values``
    values, beyond them in temporary files inside ``folder()`` (called when the first file is needed; None: the
    system's temporary folder)."""

    def __init__(self, folder: Callable[[], Path | None] = lambda: None, *, memory_values: int = MEMORY_VALUES,
                 warn: Callable[[str], None] | None = None, label: str = "values") -> None:
        if type(memory_values) is not int or memory_values < 1:
            raise ValueError(f"memory_values: must be a whole number >= 1, got {memory_values!r}")
        self._folder = folder
        self._label = label  # what the values are, for a warning
        self._limit = memory_values
        self._warn = warn if warn is not None else logging.getLogger("tracker.ranks").warning
        self._failing = False
        self._new: list[pl.Series] = []  # added since the last sort
        self._held = 0  # values in memory: the sorted ones and the new ones
        self._spill_at = memory_values  # (further after a failed write: not tried again at every add)
        self._memory = pl.Series("v", [], pl.Float64)  # sorted
        self._runs: list[_Run] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def files(self) -> int:
        """How many runs were written out."""
        return len(self._runs)

    def add(self, values: pl.Series) -> None:
        """Take more values (any order; no null, no NaN)."""
        if not values.len():
            return
        self._new.append(values.cast(pl.Float64))
        self._held += values.len()
        self._count += values.len()
        if self._held >= self._spill_at:
            self._spill()

    def _sorted(self) -> pl.Series:
        """The values in memory, sorted (by polars, which lets other threads run meanwhile)."""
        if self._new:
            self._memory = pl.concat([self._memory, *self._new], rechunk=True).sort()
            self._new = []
        return self._memory

    def _spill(self) -> None:
        """Write the values in memory out as one sorted run; on failure keep them, say so once."""
        memory = self._sorted()
        values: array[float] = array("d")
        for start in range(0, memory.len(), _SLICE):  # a slice at a time: never long without letting others run
            values.extend(memory.slice(start, _SLICE).to_list())
        try:
            folder = self._folder()
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
            run = _Run(folder, values)
        except OSError as exc:
            if not self._failing:
                where = f" in {exc.filename}" if exc.filename else ""
                self._warn(f"cannot write the run's {self._label} to a temporary file{where} ({exc.strerror or exc}); "
                           "keeping them in memory for now")
            self._failing, self._spill_at = True, self._held + self._limit
            return
        self._failing, self._spill_at = False, self._limit
        self._runs.append(run)
        self._memory, self._held = pl.Series("v", [], pl.Float64), 0

    def kth(self, k: int) -> float:
        """The ``k``-th smallest value (0-based), IndexError when there are not that many."""
        if not 0 <= k < self._count:
            raise IndexError(f"order statistic {k} of {self._count} values")
        memory = self._sorted()
        runs = [run.values for run in self._runs]
        if not runs:
            return float(memory[k]) + 0.0  # (+ 0.0: -0.0 and 0.0 are one value, written one way)
        ends = [(run[0], run[-1]) for run in runs] + ([(memory[0], memory[-1])] if memory.len() else [])
        low, high = _ordered(min(first for first, _ in ends)), _ordered(max(last for _, last in ends))
        while low < high:  # the smallest value with more than k values at or below it
            middle = (low + high) // 2
            value = _unordered(middle)
            below = sum(bisect_right(run, value) for run in runs)
            if memory.len():
                below += memory.search_sorted(value, side="right")
            if below > k:
                high = middle
            else:
                low = middle + 1
        # A stored value: the count rises only at one, and the search starts at the smallest stored (+ 0.0: where
        # -0.0 and 0.0 are both stored, which one the search meets first depends on the runs; write them one way).
        return _unordered(low) + 0.0

    def quantile(self, q: float) -> float | None:
        """The exact ``q`` quantile with linear interpolation (None without values)."""
        n = self._count
        if not n:
            return None
        h = (n - 1) * q
        lower = math.floor(h)
        if lower >= n - 1:
            return self.kth(n - 1)
        a = self.kth(lower)
        fraction = h - lower
        if not fraction:
            return a
        b = self.kth(lower + 1)
        step = b - a
        # (b - a overflows only between values of both signs near the largest double: weigh the two instead.)
        return a + fraction * step if math.isfinite(step) else a * (1 - fraction) + b * fraction

    def max(self) -> float | None:
        return self.kth(self._count - 1) if self._count else None

    def clear(self) -> None:
        """Forget every value (and remove the files)."""
        for run in self._runs:
            run.close()
        self._runs, self._new, self._held, self._count = [], [], 0, 0
        self._memory = pl.Series("v", [], pl.Float64)

    close = clear

