"""Hold a replay's events between its two passes: by window, in memory up to a budget, on disk beyond it.

Pass 1 of a replay adds each decoded block (:meth:`Spool.add`); pass 2 takes
the windows back one at a time, in time order (:meth:`Spool.take`). So a log
bigger than memory replays with about one window's events in memory, plus the
budget. Each window's events come back in the order they were added (the
first copy of a duplicate is the first read), with the columns of
:data:`~tracker.report.EVENT_SCHEMA`; the rows that decide the sessions are
kept aside as they come (:meth:`Spool.session_rows`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Final

import polars as pl

from .report import EVENT_SCHEMA, session_rows

__all__ = ("DEFAULT_MEMORY_BYTES", "SPOOL_PREFIX", "Spool")

#: Events held in memory (estimated frame bytes) before they are written to the spool folder.
DEFAULT_MEMORY_BYTES: Final = 128 << 20
#: The name prefix of the temporary folder a spool creates (and removes) for the events it writes out.
SPOOL_PREFIX: Final = ".tracker-spool-"
_SECOND: Final = 1_000_000
#: Session rows gathered before they are reduced to a few per session again (and at least 4x the last reduction).
_REDUCE_ROWS: Final = 100_000


class Spool:
    """Events partitioned by window: in memory up to ``memory_bytes``, then in parquet files under ``directory``.

    The files go in a temporary folder created inside ``directory`` on the
    first spill and removed by :meth:`close` (a spool is a context manager).
    """

    def __init__(self, interval_s: int, directory: str | os.PathLike[str], *,
                 memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        if type(interval_s) is not int or interval_s < 1:
            raise ValueError(f"interval_s: must be a whole number of seconds >= 1, got {interval_s!r}")
        if type(memory_bytes) is not int or memory_bytes < 0:
            raise ValueError(f"memory_bytes: must be a whole number >= 0, got {memory_bytes!r}")
        self.interval_s = interval_s
        self.memory_bytes = memory_bytes
        self._every = interval_s * _SECOND
        self._parent = Path(directory)
        self._folder: Path | None = None
        self._memory: dict[int, list[pl.DataFrame]] = {}
        self._files: dict[int, list[Path]] = {}
        self._held = 0
        self._rows: list[pl.DataFrame] = []
        self._rows_height = 0
        self._rows_reduced = 0
        self.events = 0
        self.ts_min: int | None = None
        self.ts_max: int | None = None
        self.spills = 0
        self.spilled_bytes = 0

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    @property
    def folder(self) -> Path | None:
        """The temporary folder of the events written out, once there was a spill."""
        return self._folder

    def add(self, frame: pl.DataFrame) -> None:
        """Add events (columns of :data:`~tracker.report.EVENT_SCHEMA`), valid but maybe duplicated, in read order."""
        if frame.is_empty():
            return
        self.events += frame.height
        low, high = frame["ts"].min(), frame["ts"].max()
        assert isinstance(low, int)
        assert isinstance(high, int)
        self.ts_min = low if self.ts_min is None else min(self.ts_min, low)
        self.ts_max = high if self.ts_max is None else max(self.ts_max, high)
        rows = session_rows(frame)
        self._rows.append(rows)
        self._rows_height += rows.height
        if self._rows_height > max(_REDUCE_ROWS, 4 * self._rows_reduced):
            self._reduce_rows()
        parts = (frame.select(EVENT_SCHEMA.names()).with_columns(k=pl.col("ts") // self._every)
                 .partition_by("k", as_dict=True, include_key=False))
        for (k,), part in parts.items():
            assert isinstance(k, int)
            self._memory.setdefault(k, []).append(part)
            self._held += int(part.estimated_size())
        if self._held > self.memory_bytes:
            self._spill()

    def _reduce_rows(self) -> None:
        reduced = session_rows(pl.concat(self._rows))
        self._rows = [reduced]
        self._rows_height = self._rows_reduced = reduced.height

    def _spill(self) -> None:
        """Write every window held in memory to its own new file."""
        if self._folder is None:
            self._parent.mkdir(parents=True, exist_ok=True)
            self._folder = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=self._parent))
        for k, frames in sorted(self._memory.items()):
            files = self._files.setdefault(k, [])
            path = self._folder / f"{k}-{len(files)}.parquet"
            pl.concat(frames).write_parquet(path, compression="lz4", statistics=False)
            files.append(path)
            self.spilled_bytes += path.stat().st_size
        self._memory.clear()
        self._held = 0
        self.spills += 1

    def session_rows(self) -> pl.DataFrame:
        """The rows that decide the sessions of every event added (see :func:`~tracker.report.session_rows`)."""
        if len(self._rows) > 1:
            self._reduce_rows()
        return self._rows[0] if self._rows else pl.DataFrame(schema=EVENT_SCHEMA)

    def take(self, k: int) -> pl.DataFrame:
        """Window ``k``'s events in the order they were added, no longer held (not distinct: see
        :func:`~tracker.report.distinct`)."""
        paths = self._files.pop(k, [])
        frames = [pl.read_parquet(path) for path in paths] + self._memory.pop(k, [])
        for path in paths:
            path.unlink()
        self._held -= sum(int(frame.estimated_size()) for frame in frames[len(paths):])
        if not frames:
            return pl.DataFrame(schema=EVENT_SCHEMA)
        return pl.concat(frames) if len(frames) > 1 else frames[0]

    def close(self) -> None:
        """Forget every event and remove the spool's folder."""
        self._memory.clear()
        self._files.clear()
        self._held = 0
        if self._folder is not None:
            shutil.rmtree(self._folder)
            self._folder = None
