"""Regenerate the reports from finished logs: decode, quarantine, fold into the engine, write.

Several logs (files, glob patterns, folders of ``*.jsonl`` as ``tracker tail``
follows them: see :func:`expand_logs`) are read as one; an event present in
more than one is counted once. Only regular files are read (a FIFO would
block), and no output may be one of the logs. Rejected lines go to a
quarantine file and are counted; none stops the replay. Replay is the live
path run to the end: every block goes into the same
:class:`~tracker.engine.Engine` as ``tracker tail``'s, then every window is
derived and written by the same :class:`~tracker.output.ReportWriter`.
Windows past the memory budget wait on disk, so memory stays bounded however
big the logs are.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .batch import BLOCK_BYTES, Block, Span, decode_span
from .decoder import QUARANTINE_FILE, Decoder, Quarantine, Rejected
from .engine import Engine, Tables
from .events import EVENT_TYPES
from .jetstream import StreamSpec
from .limits import DEFAULT_INTERVAL_S, DEFAULT_MAX_LINE_BYTES, DEFAULT_MEMORY_BYTES
from .logs import (
    expand_logs,
    lock_output_folder,
    measured_spans,
    open_log,
    refuse_non_folder,
    refuse_unsafe_outputs,
)
from .output import ReportWriter, remove_temporaries
from .store import WindowStore
from .thresholds import Threshold, Verdict

__all__ = ("QUARANTINE_FILE", "ReadStats", "ReplayResult", "read_events", "replay")

_log = logging.getLogger("tracker.replay")



@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay read and wrote."""

    logs: tuple[Path, ...]
    engine: Engine
    tables: Tables
    written: tuple[Path, ...]
    removed: tuple[Path, ...]
    read: ReadStats
    rejected: Counter[str]
    quarantine: Quarantine
    verdicts: tuple[Verdict, ...] = ()  # the thresholds' (none given: none)


@dataclass(slots=True)
class ReadStats:
    """Counts of a read: distinct events by type, duplicates removed."""

    by_type: dict[str, int]
    duplicates: int

    @property
    def events(self) -> int:
        return sum(self.by_type.values())


def _close(store: WindowStore) -> None:
    """Close ``store`` (removing its spool folder) even when Ctrl-C comes meanwhile: closing goes on where it was
    (it may be done again), and the interrupt is raised once the store is closed."""
    interrupted: KeyboardInterrupt | None = None
    while True:
        try:
            store.close()
            break
        except KeyboardInterrupt as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted


def _decode(span: Span, path: Path, max_line_bytes: int, engine: Engine) -> Block:
    """One span decoded, its events keyed for ``engine`` (run in a worker thread: each has its own decoder)."""
    block = decode_span(span, Decoder(max_line_bytes=max_line_bytes, dedupe=False), source=str(path))
    return Block(engine.prepared(block.frame), block.rejected)


def _decoded(paths: Sequence[Path], block_bytes: int, max_line_bytes: int, workers: int,
             engine: Engine) -> Iterator[tuple[Block, int]]:
    """The logs' blocks, decoded and keyed in order by ``workers`` threads, a few blocks ahead of the caller, each
    with the bytes of the log it stands for (:func:`~tracker.logs.measured_spans`: they sum to the logs' sizes).

    polars and file reads release the GIL, so parsing blocks and the caller's
    work overlap on several cores. The caller counts rejections from the blocks.
    """
    with ThreadPoolExecutor(workers, thread_name_prefix="tracker-decode") as pool:
        pending: deque[tuple[Future[Block], int]] = deque()
        try:
            for path in paths:
                with open_log(path) as stream:
                    for span, nbytes in measured_spans(stream, block_bytes, max_line_bytes):
                        pending.append((pool.submit(_decode, span, path, max_line_bytes, engine), nbytes))
                        while len(pending) > workers:
                            future, size = pending.popleft()
                            yield future.result(), size
            while pending:
                future, size = pending.popleft()
                yield future.result(), size
        finally:
            for future, _ in pending:
                future.cancel()


def read_events(paths: Sequence[Path], quarantine: Quarantine, engine: Engine, *, block_bytes: int = BLOCK_BYTES,
                max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, workers: int = 2,
                on_block: Callable[[int, int, int], None] | None = None,
                warn: Callable[[str], None] = _log.warning) -> Counter[str]:
    """Fold every valid event of the logs into ``engine``, in read order; rejected lines go to ``quarantine``
    (those it cannot write are counted in its ``lost``, and said with ``warn``).

    Returns the rejected lines' count by reason. ``on_block``, when given (a progress display), is called after
    each block is folded in, with the bytes of the log it stands for (over a run they sum to the logs' sizes, an
    over-long line's skipped rest included), its events (duplicates included: the engine drops those) and its
    rejected lines.
    """
    rejected: Counter[str] = Counter()
    for block, nbytes in _decoded(paths, block_bytes, max_line_bytes, workers, engine):
        for line in block.rejected:
            quarantine.keep(line, warn)
            rejected[line.reason] += 1
        engine.add(block.frame)
        if on_block is not None:
            on_block(nbytes, block.frame.height, len(block.rejected))
    return rejected


def replay(
    logs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    interval_s: int = DEFAULT_INTERVAL_S,
    quarantine_path: str | os.PathLike[str] | None = None,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    spool_dir: str | os.PathLike[str] | None = None,
    block_bytes: int = BLOCK_BYTES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    session_timeout_s: float | None = None,
    goodput: dict[str, float] | None = None,
    thresholds: Sequence[Threshold] = (),
    on_block: Callable[[int, int, int], None] | None = None,
    stream: StreamSpec | None = None,
    stop: threading.Event | None = None,
    warn: Callable[[str], None] | None = None,
    nats_timeout_s: float = 5.0,
) -> ReplayResult:
    """Write the reports of ``logs`` into ``out_dir`` and return what was read and written.

    The logs are read ``block_bytes`` at a time; windows beyond ``memory_bytes``
    wait in a temporary folder inside ``spool_dir`` (default: ``out_dir``),
    removed at the end. Report files an earlier run wrote into ``out_dir``
    (its manifest names them) that this one does not write are removed, so
    the folder holds one run's reports; no other file is ever removed.

    ``logs`` are files, glob patterns and folders (see :func:`expand_logs`; the quarantine files are never
    read from a pattern or folder). Lines longer than ``max_line_bytes`` are rejected as ``too_long``. With
    ``session_timeout_s``, a session silent that long before the run's last event timed out (:mod:`tracker.sessions`).
    ``goodput`` limits add the goodput columns; ``thresholds`` are checked into ``session_tracking_thresholds.csv``
    (their verdicts are in the result). ``on_block`` is called after each block read (see :func:`read_events`).
    With ``stream`` (and no ``logs``), the events are a NATS JetStream stream's, from its first message to the last
    one present when the replay starts (:func:`~tracker.consume.read_stream`; ``stop`` ends a wait for the server,
    ``warn`` hears of outages). ``warn`` (default: the ``tracker.replay`` logger) also hears of rejected lines that
    cannot be quarantined (a full disk): they are counted in ``quarantine.lost`` and the replay goes on.
    Raises :class:`OutputIsInputError`, before anything is removed or written, when the quarantine (or its
    reasons file) or a report file in ``out_dir`` is one of the logs, or the quarantine a report file;
    :class:`ForeignFileError` when a file at the quarantine's path is not a quarantine; :class:`CheckpointError` when a
    ``tracker tail`` or another replay is writing into ``out_dir`` (it holds the folder's lock).
    """
    if type(block_bytes) is not int or block_bytes < 1:
        raise ValueError(f"block_bytes: must be a whole number >= 1, got {block_bytes!r}")
    out = Path(out_dir)
    refuse_non_folder(out_dir, "the reports need a folder")
    if spool_dir is not None:
        refuse_non_folder(spool_dir, "the spool needs a folder")
    quarantine = Quarantine(quarantine_path if quarantine_path is not None else out / QUARANTINE_FILE)
    paths = tuple(expand_logs(logs, exclude=[quarantine.path, quarantine.reasons_path]))
    if stream is not None and paths:
        raise ValueError("a replay reads either logs or a stream, not both")
    refuse_unsafe_outputs(paths, quarantine, out)
    say = warn if warn is not None else _log.warning
    with contextlib.ExitStack() as held:
        lock = lock_output_folder(out, "a tracker tail or another replay writing its reports there",
                                  "both would write the same files: stop it, or give this replay another --out")
        if lock >= 0:
            held.callback(os.close, lock)  # at the very end: the folder is this replay's until then
        store = WindowStore(memory_bytes=memory_bytes, spool_dir=spool_dir if spool_dir is not None else out)
        try:
            engine = Engine(interval_s, store=store, session_timeout_s=session_timeout_s, goodput=goodput)
            writer = ReportWriter(engine, out, thresholds=thresholds, once=True)
            earlier = writer.own_earlier_files()  # before anything is read or written
            if out.is_dir():
                writer.claim()  # first: a tail's checkpoint of this folder is unusable from now on, whatever happens
            remove_temporaries(out)  # of a tail or replay killed while it wrote a report
            quarantine.reset()  # this replay's rejected lines only: the same logs give the same files
            try:
                if stream is None:
                    rejected = read_events(paths, quarantine, engine, block_bytes=block_bytes,
                                           max_line_bytes=max_line_bytes, on_block=on_block, warn=say)
                else:
                    from .consume import read_stream

                    rejected = Counter()

                    def reject(line: Rejected) -> None:
                        quarantine.keep(line, say)
                        rejected[line.reason] += 1

                    read_stream(stream, engine, stop=stop if stop is not None else threading.Event(),
                                on_rejected=reject, max_line_bytes=max_line_bytes, warn=warn, on_block=on_block,
                                timeout_s=nats_timeout_s)
            finally:
                quarantine.close()
            flushed = writer.flush()
            if flushed.failed:
                raise OSError(f"{len(flushed.failed)} report files could not be written, the first {flushed.failed[0]}")
            tables = engine.tables()
        finally:
            _close(store)
        keep = {p.name for p in flushed.written}
        removed = tuple(sorted(out / name for name in earlier - keep))
        for path in removed:
            path.unlink(missing_ok=True)
        writer.forget(earlier - keep)
        stats = ReadStats({t: engine.counts[t] for t in EVENT_TYPES if engine.counts[t]}, engine.duplicates)
        return ReplayResult(paths, engine, tables, flushed.written, removed, stats, rejected, quarantine,
                            tuple(writer.verdicts))
