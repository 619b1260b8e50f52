"""Regenerate the reports from finished logs: decode, quarantine, aggregate, write.

Several logs (or globs) are read as one, merged by event time; an event
present in more than one is counted once. Rejected lines go to a quarantine
file and are counted; none stops the replay.
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

from .batch import read_file
from .decoder import Decoder, Quarantine
from .report import DEFAULT_INTERVAL_S, SESSIONS_FILE_PREFIX, Reports, build_reports, events_frame, write_reports

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


def read_events(paths: Sequence[Path], decoder: Decoder, quarantine: Quarantine) -> tuple[pl.DataFrame, ReadStats]:
    """Every valid event of the logs, in read order, the first of each ``event_id`` only.

    Rejected lines go to ``quarantine`` (and are counted by ``decoder``).
    """
    frames = []
    for path in paths:
        for block in read_file(path, decoder, source=str(path)):
            for rejected in block.rejected:
                quarantine.add(rejected)
            frames.append(block.frame)
    frame = pl.concat(frames, rechunk=len(frames) > 1) if frames else events_frame([])
    has_duplicates = frame["event_id"].n_unique() < frame.height
    distinct = frame.filter(pl.col("event_id").is_first_distinct()) if has_duplicates else frame
    by_type = dict(distinct.group_by("type").len().sort("type").iter_rows())
    return distinct, ReadStats(by_type, frame.height - distinct.height)


def replay(
    logs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    interval_s: int = DEFAULT_INTERVAL_S,
    quarantine_path: str | os.PathLike[str] | None = None,
) -> ReplayResult:
    """Write the reports of ``logs`` into ``out_dir`` and return what was read and written.

    Per-window session files left in ``out_dir`` by an earlier run that this
    one does not write are removed, so the folder holds one run's reports.
    """
    paths = tuple(expand_logs(logs))
    out = Path(out_dir)
    decoder = Decoder(dedupe=False)
    quarantine = Quarantine(quarantine_path if quarantine_path is not None else out / QUARANTINE_FILE)
    quarantine.reset()  # this replay's rejected lines only: the same logs give the same files
    try:
        frame, stats = read_events(paths, decoder, quarantine)
    finally:
        quarantine.close()
    reports = build_reports(frame, interval_s)
    written = write_reports(reports, out)
    keep = {p.name for p in written}
    removed = tuple(sorted(p for p in out.glob(f"{SESSIONS_FILE_PREFIX}*.csv") if p.name not in keep))
    for path in removed:
        path.unlink()
    return ReplayResult(paths, reports, tuple(written), removed, stats, decoder.rejected, quarantine)
