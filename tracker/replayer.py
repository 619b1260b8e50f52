"""Regenerate the reports from finished logs: decode, quarantine, aggregate, write.

Several logs (or globs) are read as one, merged by event time; an event
present in more than one is counted once. Rejected lines go to a quarantine
file and are counted; none stops the replay.

Two passes, so memory stays bounded however big the logs are: the first
decodes the logs block by block into a :class:`~tracker.spool.Spool` (events
by window, written to disk past a memory budget) and finds the sessions; the
second takes the windows back in time order, removes duplicates, aggregates
each with the :class:`~tracker.report.ReportBuilder` and writes its file.
"""

from __future__ import annotations

import errno
import glob
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from .batch import BLOCK_BYTES, read_file
from .decoder import Decoder, Quarantine
from .events import EVENT_TYPES
from .report import (
    DEFAULT_INTERVAL_S,
    SESSIONS_FILE_PREFIX,
    ReportBuilder,
    Reports,
    build_reports,
    distinct,
    events_frame,
    run_files,
    session_file,
    window_span,
    write_atomically,
)
from .spool import DEFAULT_MEMORY_BYTES, Spool

__all__ = ("QUARANTINE_FILE", "ReadStats", "ReplayResult", "expand_logs", "read_events", "replay")

QUARANTINE_FILE: Final = "quarantine.jsonl"


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay read and wrote."""

    logs: tuple[Path, ...]
    reports: Reports
    written: tuple[Path, ...]
    removed: tuple[Path, ...]
    read: ReadStats
    rejected: Counter[str]
    quarantine: Quarantine


def expand_logs(patterns: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Paths and glob patterns to a sorted list of files; a pattern that matches nothing is an error."""
    found: list[Path] = []
    for pattern in patterns:
        text = os.fspath(pattern)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise FileNotFoundError(errno.ENOENT, "no log matches this pattern", text)
            found.extend(Path(m) for m in matches)
        else:
            found.append(Path(text))
    return found


@dataclass(slots=True)
class ReadStats:
    """Counts of a read: distinct events by type, duplicates removed."""

    by_type: dict[str, int]
    duplicates: int

    @property
    def events(self) -> int:
        return sum(self.by_type.values())


def read_events(paths: Sequence[Path], decoder: Decoder, quarantine: Quarantine, spool: Spool, *,
                block_bytes: int = BLOCK_BYTES) -> None:
    """Add every valid event of the logs to ``spool``, in read order; rejected lines go to ``quarantine``
    (and are counted by ``decoder``)."""
    for path in paths:
        for block in read_file(path, decoder, source=str(path), block_bytes=block_bytes):
            for rejected in block.rejected:
                quarantine.add(rejected)
            spool.add(block.frame)


def _aggregate(spool: Spool, out: Path, interval_s: int) -> tuple[Reports, list[Path], ReadStats]:
    """Aggregate the spool's events window by window, writing each window's session file as it is built."""
    if spool.ts_min is None or spool.ts_max is None:
        reports = build_reports(events_frame([]), interval_s)
        return reports, [], ReadStats({}, 0)
    k_min, k_max = window_span(spool.ts_min, spool.ts_max, interval_s)
    builder = ReportBuilder(spool.session_rows(), k_min, k_max, interval_s)
    by_type: Counter[str] = Counter()
    summaries, errors, written = [], [], []
    duplicates = 0
    for k in range(k_min, k_max + 1):
        read = spool.take(k)
        events = distinct(read)
        duplicates += read.height - events.height
        by_type.update(dict(events.group_by("type").len().iter_rows()))
        window = builder.window(k, events)
        name, data = session_file(window)
        write_atomically(out / name, data)
        written.append(out / name)
        summaries.append(window.summary)
        errors.append(window.errors)
    reports = Reports(interval_s, pl.concat(summaries), builder.totals(), None, pl.concat(errors))
    return reports, written, ReadStats({t: by_type[t] for t in EVENT_TYPES if by_type[t]}, duplicates)


def replay(
    logs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    interval_s: int = DEFAULT_INTERVAL_S,
    quarantine_path: str | os.PathLike[str] | None = None,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    spool_dir: str | os.PathLike[str] | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> ReplayResult:
    """Write the reports of ``logs`` into ``out_dir`` and return what was read and written.

    The logs are read ``block_bytes`` at a time; events beyond ``memory_bytes``
    wait for the second pass in a temporary folder inside ``spool_dir``
    (default: ``out_dir``), removed at the end.
    Per-window session files left in ``out_dir`` by an earlier run that this
    one does not write are removed, so the folder holds one run's reports.
    """
    paths = tuple(expand_logs(logs))
    out = Path(out_dir)
    decoder = Decoder(dedupe=False)
    quarantine = Quarantine(quarantine_path if quarantine_path is not None else out / QUARANTINE_FILE)
    quarantine.reset()  # this replay's rejected lines only: the same logs give the same files
    with Spool(interval_s, spool_dir if spool_dir is not None else out, memory_bytes=memory_bytes) as spool:
        try:
            read_events(paths, decoder, quarantine, spool, block_bytes=block_bytes)
        finally:
            quarantine.close()
        out.mkdir(parents=True, exist_ok=True)
        reports, written, stats = _aggregate(spool, out, interval_s)
    for name, data in run_files(reports.summary, reports.totals, reports.errors).items():
        write_atomically(out / name, data)
        written.append(out / name)
    keep = {p.name for p in written}
    removed = tuple(sorted(p for p in out.glob(f"{SESSIONS_FILE_PREFIX}*.csv") if p.name not in keep))
    for path in removed:
        path.unlink()
    return ReplayResult(paths, reports, tuple(written), removed, stats, decoder.rejected, quarantine)
