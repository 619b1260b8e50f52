"""Follow live logs: read complete lines as they are appended, survive rotation, truncation and restarts.

Each followed path is read to its end on every change notification
(watchfiles, on the parent folder) and on a timer too, since notifications
can be merged or lost. An unterminated last line is held back until its
newline arrives. A path whose inode changes was rotated: the old file is
drained to its end first, then the new one is read from the start. A file
that shrank, or whose first bytes changed, was truncated (copytruncate) and
is read again from the start. Checkpoints (each file's identity and offset,
and the events read, as append-only parquet segments, compacted into one
when there are many) are written atomically after the events before them
are added (when windows are written, and every few seconds otherwise), so a restart after ``kill -9``
resumes where the last checkpoint left off: nothing lost, nothing counted
twice (and ``event_id`` makes any duplicate harmless).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson
import polars as pl
import watchfiles

from .decoder import DEFAULT_MAX_LINE_BYTES, Decoder, Quarantine, Rejected
from .errors import ReportError
from .follow import Follower, FollowStats, check_positions
from .live import DEFAULT_GRACE_S, LiveReporter
from .report import DEFAULT_INTERVAL_S, EVENT_SCHEMA, write_atomically

__all__ = ("CHECKPOINT_DIR", "Tail", "TailStats")

CHECKPOINT_DIR: Final = ".tracker-checkpoint"
CHECKPOINT_FILE: Final = "checkpoint.json"
CHECKPOINT_VERSION: Final = 1
_RECENT_FRAMES: Final = 512
_MAX_SEGMENTS: Final = 64
_log = logging.getLogger("tracker.tail")


@dataclass(slots=True)
class TailStats:
    """Counts since the tail started (restored from the checkpoint on restart)."""

    events: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    follow: FollowStats = field(default_factory=FollowStats)

    @property
    def rotations(self) -> int:
        return self.follow.rotations

    @property
    def truncations(self) -> int:
        return self.follow.truncations

    @property
    def last_read(self) -> float:
        return self.follow.last_read


class Tail:
    """Follows logs (files or folders of ``*.jsonl``) into a :class:`LiveReporter` writing ``out_dir``."""

    def __init__(
        self,
        targets: Sequence[str | os.PathLike[str]],
        out_dir: str | os.PathLike[str],
        *,
        interval_s: int = DEFAULT_INTERVAL_S,
        grace_s: float = DEFAULT_GRACE_S,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        quarantine_path: str | os.PathLike[str] | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        checkpoint_every_s: float = 5.0,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.reporter = LiveReporter(out_dir, interval_s=interval_s, grace_s=grace_s)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else self.out_dir / CHECKPOINT_DIR
        self.quarantine = Quarantine(quarantine_path if quarantine_path is not None
                                     else self.out_dir / "quarantine.jsonl")
        self.decoder = Decoder(max_line_bytes=max_line_bytes, dedupe=False)
        self.follower = Follower(targets, self.decoder, self._take, warn=self._warn)
        self.stats = TailStats(rejected=self.decoder.rejected, follow=self.follower.stats)
        self._segments: list[str] = []
        self._unsaved: list[pl.DataFrame] = []
        self._late_unflushed = 0
        self._generation = 0
        self._saved_at = time.monotonic()
        self.checkpoint_every_s = checkpoint_every_s
        self.warnings: list[str] = []
        self.recent: deque[pl.DataFrame] = deque(maxlen=_RECENT_FRAMES)  # for the live view
        self.started: set[str] = set()  # sessions registered, for the live view
        self.ended: set[str] = set()
        self._restore()

    # -- files --------------------------------------------------------------

    def paths(self) -> list[Path]:
        """The files followed now (see :meth:`Follower.paths`)."""
        return self.follower.paths()

    def poll(self) -> int:
        """Read every followed file to its end; return the number of new events."""
        before = self.stats.events
        self.follower.poll()
        return self.stats.events - before

    def _take(self, frame: pl.DataFrame | None, rejected: Iterable[Rejected]) -> None:
        for item in rejected:
            self.quarantine.add(item)
        if frame is not None and not frame.is_empty():
            self._late_unflushed += self.reporter.add_frame(frame)
            self._unsaved.append(frame)
            self.stats.events += frame.height
            self._note_sessions(frame)

    def _note_sessions(self, frame: pl.DataFrame) -> None:
        self.recent.append(frame)
        kinds = frame["type"]
        self.started.update(frame.filter(kinds == "session_registered")["session_id"].to_list())
        self.ended.update(frame.filter(kinds == "session_unregistered")["session_id"].to_list())

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        _log.warning(message)

    # -- reports and checkpoints ----------------------------------------------

    def step(self, *, now: float | None = None) -> bool:
        """Read, close windows, write what changed and checkpoint; True when files were written."""
        new = self.poll()
        now_us = int((time.time() if now is None else now) * 1_000_000)
        closed = self.reporter.advance(now_us=now_us, idle=new == 0)
        if closed or self._late_unflushed:
            try:
                self.reporter.flush()
            except ReportError as exc:  # keep following and checkpointing; say why the files are not updated
                if str(exc) not in self.warnings:
                    self._warn(f"reports not written: {exc}")
            self._late_unflushed = 0
            self.checkpoint()
            return True
        if self._unsaved and time.monotonic() - self._saved_at >= self.checkpoint_every_s:
            self.checkpoint()
        return False

    def checkpoint(self) -> None:
        """Save the new events as a segment, then the files' positions, each atomically."""
        self.quarantine.flush()
        old_segments: list[str] = []
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if self._unsaved:
            if len(self._segments) >= _MAX_SEGMENTS:  # compact: one segment of every event
                old_segments, self._segments, self._unsaved = self._segments, [], [self.reporter.events()]
            self._generation += 1
            name = f"segment-{self._generation:06d}.parquet"
            temporary = self.checkpoint_dir / f".{name}.tmp"
            pl.concat(self._unsaved).write_parquet(temporary)
            os.replace(temporary, self.checkpoint_dir / name)
            self._segments.append(name)
            self._unsaved = []
        state = {
            "version": CHECKPOINT_VERSION,
            "interval_s": self.reporter.interval_s,
            "segments": self._segments,
            "closed_until": self.reporter.closed_until,
            "late": self.reporter.late,
            "events": self.stats.events,
            "rejected": dict(self.decoder.rejected),
            "files": self.follower.positions(),
        }
        write_atomically(self.checkpoint_dir / CHECKPOINT_FILE, orjson.dumps(state, option=orjson.OPT_INDENT_2))
        for name in old_segments:  # only once the checkpoint no longer names them
            (self.checkpoint_dir / name).unlink(missing_ok=True)
        self._saved_at = time.monotonic()

    def _restore(self) -> None:
        path = self.checkpoint_dir / CHECKPOINT_FILE
        if not path.exists():
            return
        try:
            state = orjson.loads(path.read_bytes())
            if state.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"version {state.get('version')!r}, expected {CHECKPOINT_VERSION}")
            if state["interval_s"] != self.reporter.interval_s:
                raise ValueError(f"it was made with --interval {state['interval_s']}")
            frames = [pl.read_parquet(self.checkpoint_dir / name) for name in state["segments"]]
            for frame in frames:
                if frame.schema != EVENT_SCHEMA:
                    raise ValueError("a segment has other columns than this tracker writes")
            resume = check_positions(state["files"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError, pl.exceptions.PolarsError) as exc:
            self._warn(f"checkpoint {path} is unusable ({exc}); reading every log from the start")
            self._clear_checkpoint()
            self.quarantine.reset()  # it is filled again by the re-read
            return
        for frame in frames:
            self.reporter.add_frame(frame)
            self._note_sessions(frame)
        self.reporter.closed_until = state["closed_until"]
        self.reporter.late = state["late"]
        self.stats.events = state["events"]
        self.decoder.rejected.update(state["rejected"])
        self._segments = list(state["segments"])
        self._generation = max((int(n.split("-")[1].split(".")[0]) for n in self._segments), default=0)
        self.follower.resume(resume)

    def _clear_checkpoint(self) -> None:
        """Remove this tail's own checkpoint files (only those: the folder may hold anything else)."""
        for pattern in (CHECKPOINT_FILE, "segment-*.parquet", ".segment-*.parquet.tmp"):
            for stale in self.checkpoint_dir.glob(pattern):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()

    # -- running --------------------------------------------------------------

    def run(self, stop: threading.Event, *, on_tick: Callable[[Tail], None] | None = None,
            tick_ms: int = 250, debounce_ms: int = 10, step_ms: int = 5) -> None:
        """Follow until ``stop`` is set: wake on every change in the watched folders and every ``tick_ms``.

        ``debounce_ms`` and ``step_ms`` are watchfiles' batching settings; the short defaults keep the
        delay from a write to its fold near 10 ms (watchfiles' own defaults, 1600 and 50, give ~100 ms).
        """
        self.step()
        if on_tick is not None:
            on_tick(self)
        for _changes in watchfiles.watch(
            *self.follower.watch_dirs(), watch_filter=None, debounce=debounce_ms, step=step_ms, stop_event=stop,
            rust_timeout=tick_ms, yield_on_timeout=True, raise_interrupt=False, recursive=False,
        ):
            self.step()
            if on_tick is not None:
                on_tick(self)
            if stop.is_set():
                break

    def close(self) -> None:
        """Read what is left, write every window (open ones too), checkpoint, and close the files."""
        self.follower.finish()
        self.reporter.flush(final=True)
        self.checkpoint()
        self.release()

    def release(self) -> None:
        """Close the open files and the quarantine without writing anything (as a crash would leave it)."""
        self.quarantine.close()
        self.follower.release()
