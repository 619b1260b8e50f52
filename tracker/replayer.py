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
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from .batch import BLOCK_BYTES, Block, decode_span, split_blocks
from .decoder import DEFAULT_MAX_LINE_BYTES, Decoder, Quarantine
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
    session_files,
    window_span,
    write_atomically,
)
from .spool import DEFAULT_MEMORY_BYTES, Spool

__all__ = (
    "GROUP_ROWS", "GROUP_WINDOWS", "QUARANTINE_FILE", "ReadStats", "ReplayResult", "expand_logs", "read_events",
    "replay",
)

QUARANTINE_FILE: Final = "quarantine.jsonl"
#: The second pass aggregates consecutive windows together up to this many rows (events, and the
#: per-session rows of their windows) or windows.
GROUP_ROWS: Final = 250_000
GROUP_WINDOWS: Final = 512


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


def _decoded(paths: Sequence[Path], block_bytes: int, max_line_bytes: int, workers: int) -> Iterator[Block]:
    """The logs' blocks, decoded in order by ``workers`` threads, a few blocks ahead of the caller.

    polars and file reads release the GIL, so parsing blocks and the caller's
    work overlap on several cores. Each block has its own decoder (they are
    not shared between threads); the caller counts rejections from the blocks.
    """
    with ThreadPoolExecutor(workers, thread_name_prefix="tracker-decode") as pool:
        pending: deque[Future[Block]] = deque()
        try:
            for path in paths:
                with open(path, "rb") as stream:
                    for span in split_blocks(stream, block_bytes, max_line_bytes):
                        decoder = Decoder(max_line_bytes=max_line_bytes, dedupe=False)
                        pending.append(pool.submit(decode_span, span, decoder, source=str(path)))
                        while len(pending) > workers:
                            yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def read_events(paths: Sequence[Path], quarantine: Quarantine, spool: Spool, *, block_bytes: int = BLOCK_BYTES,
                max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, workers: int = 2) -> Counter[str]:
    """Add every valid event of the logs to ``spool``, in read order; rejected lines go to ``quarantine``.

    Returns the rejected lines' count by reason.
    """
    rejected: Counter[str] = Counter()
    for block in _decoded(paths, block_bytes, max_line_bytes, workers):
        for line in block.rejected:
            quarantine.add(line)
            rejected[line.reason] += 1
        spool.add(block.frame)
    return rejected


def _aggregate(spool: Spool, out: Path, interval_s: int) -> tuple[Reports, list[Path], ReadStats]:
    """Aggregate the spool's events a run of windows at a time (up to :data:`GROUP_ROWS` events and
    session rows, or :data:`GROUP_WINDOWS` windows), writing the windows' session files as they are built."""
    if spool.ts_min is None or spool.ts_max is None:
        reports = build_reports(events_frame([]), interval_s)
        return reports, [], ReadStats({}, 0)
    k_min, k_max = window_span(spool.ts_min, spool.ts_max, interval_s)
    builder = ReportBuilder(spool.session_rows(), k_min, k_max, interval_s)
    by_type: Counter[str] = Counter()
    summaries, errors, written = [], [], []
    duplicates = 0
    held: list[pl.DataFrame] = []
    rows, k_first = 0, k_min
    for k in range(k_min, k_max + 1):
        read = spool.take(k)
        if read.height:
            held.append(read)
        rows += read.height + builder.rows_in(k)  # events, and the session rows they are aggregated into
        if rows < GROUP_ROWS and k - k_first + 1 < GROUP_WINDOWS and k < k_max:
            continue
        # Both copies of a line share their window, so duplicates are all within one run.
        raw = pl.concat(held) if len(held) > 1 else held[0] if held else events_frame([])
        events = distinct(raw)
        duplicates += raw.height - events.height
        by_type.update(dict(events.group_by("type").len().iter_rows()))
        report = builder.windows(k, events)
        for name, data in session_files(report).items():
            write_atomically(out / name, data)
            written.append(out / name)
        summaries.append(report.summary)
        errors.append(report.errors)
        held, rows, k_first = [], 0, k + 1
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
    if type(block_bytes) is not int or block_bytes < 1:
        raise ValueError(f"block_bytes: must be a whole number >= 1, got {block_bytes!r}")
    paths = tuple(expand_logs(logs))
    out = Path(out_dir)
    quarantine = Quarantine(quarantine_path if quarantine_path is not None else out / QUARANTINE_FILE)
    quarantine.reset()  # this replay's rejected lines only: the same logs give the same files
    with Spool(interval_s, spool_dir if spool_dir is not None else out, memory_bytes=memory_bytes) as spool:
        try:
            rejected = read_events(paths, quarantine, spool, block_bytes=block_bytes)
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
    return ReplayResult(paths, reports, tuple(written), removed, stats, rejected, quarantine)
