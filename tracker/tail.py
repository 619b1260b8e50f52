"""``tracker tail``: follow live logs into the engine, write reports as windows close, checkpoint, restart.

The :class:`~tracker.follow.Follower` reads the files; every block goes into
the :class:`~tracker.live.LiveReporter`'s engine once. A checkpoint (written
atomically, after the events before it were folded in: when windows are
written, and every few seconds otherwise) holds the files' positions and the
engine's state: the sessions' facts and each window's compact rows (written
once, as files that later checkpoints name again), never a copy of the log. A
restart after ``kill -9`` resumes where the last checkpoint left off: nothing
lost, nothing counted twice (and a line read twice is one event). A checkpoint
that does not match its logs (another run, another interval, damaged) gives a
warning and a full re-read, never a crash.

With ``stream=``, the events come from a NATS JetStream stream instead of files
(:class:`~tracker.consume.StreamReader`): the checkpoint holds the stream's
position, and the messages read are acknowledged once a checkpoint holds them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import polars as pl
import watchfiles

from .checkpoint import (
    CHECKPOINT_FILE,
    CHECKPOINT_VERSION,
    WINDOWS_DIR,
    checkpoint_counters,
    is_checkpoint,
    load_checkpoint,
    set_aside,
)
from .decoder import DEFAULT_MAX_LINE_BYTES, QUARANTINE_FILE, Decoder, Quarantine, Rejected
from .engine import DEFAULT_INTERVAL_S
from .errors import ReportError, StoppedError
from .follow import Follower, FollowStats, check_positions
from .jetstream import StreamSpec
from .live import DEFAULT_GRACE_S, FlushResult, LiveReporter
from .logs import (
    folder_logs,
    lock_folder,
    lock_output_folder,
    refuse_non_folder,
    refuse_unsafe_outputs,
)
from .names import CHECKPOINT_DIR, MANIFEST_FILE, TAIL_LOCK_FILE
from .output import remove_temporaries, write_atomically
from .recent import RecentBatch, RecentReads
from .rotation import siblings_of
from .store import DEFAULT_MEMORY_BYTES, WindowStore
from .thresholds import Threshold, shown

if TYPE_CHECKING:
    from .consume import StreamReader

__all__ = ("CHECKPOINT_DIR", "Tail", "TailStats", "default_consumer")

def default_consumer(checkpoint_dir: Path) -> str:
    """The durable consumer of a tail reading a stream: one per machine and checkpoint folder (two tails sharing a
    consumer would each get part of the messages)."""
    where = f"{socket.gethostname()}:{checkpoint_dir.absolute()}"
    return f"tracker-tail-{hashlib.blake2b(where.encode(), digest_size=6).hexdigest()}"


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
    """Follows logs (files or folders of ``*.jsonl``), or a stream, into a :class:`LiveReporter` writing ``out_dir``."""

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
        late_flush_s: float = 1.0,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        session_timeout_s: float | None = None,
        goodput: dict[str, float] | None = None,
        thresholds: Sequence[Threshold] = (),
        stream: StreamSpec | None = None,
        consumer: str | None = None,
        stop: threading.Event | None = None,
        nats_timeout_s: float = 5.0,
    ) -> None:
        for name, value in (("checkpoint_dir", checkpoint_dir), ("quarantine_path", quarantine_path),
                            *(("targets", t) for t in targets)):
            if value is not None and not os.fspath(value):
                raise ValueError(f"{name}: an empty path (it would be the current folder): give a path")
        self.out_dir = Path(out_dir)
        self.stream = stream
        self.targets = [Path(t) for t in targets]
        self.interval_s, self.grace_s, self.memory_bytes = interval_s, grace_s, memory_bytes
        self.session_timeout_s, self.goodput, self.thresholds = session_timeout_s, goodput, tuple(thresholds)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else self.out_dir / CHECKPOINT_DIR
        refuse_non_folder(out_dir, "the reports need a folder")
        if checkpoint_dir is not None:  # (the default's parent, the reports' folder, is checked above)
            refuse_non_folder(self.checkpoint_dir.parent, "the checkpoint needs a folder")
        self.warnings: list[str] = []
        self.quarantine = Quarantine(quarantine_path if quarantine_path is not None
                                     else self.out_dir / QUARANTINE_FILE, warn=self._warn)
        # No output may be a log it follows: a hard link, or a file named both as a log and as the quarantine,
        # would be appended to or emptied. (Its own quarantine in a followed folder is skipped, not refused.)
        own = [self.quarantine.path, self.quarantine.reasons_path]
        logs = self._logs = [p for t in self.targets for p in (folder_logs(t, own) if t.is_dir() else [t])]
        refuse_unsafe_outputs(logs, self.quarantine, self.out_dir)
        self._lock = self._lock_folder()
        try:
            self._out_lock = lock_output_folder(self.out_dir, "a tracker replay or another tail writing its "
                                                "reports there", "both would write the same files: wait for it, or "
                                                "give this one another --out")
        except BaseException:
            self.release_lock()
            raise
        remove_temporaries(self.out_dir)  # of a tail killed while it wrote a report
        self.decoder = Decoder(max_line_bytes=max_line_bytes, dedupe=False)
        self.follower: Follower | StreamReader
        if stream is not None:
            from .consume import StreamReader

            if self.targets:
                raise ValueError("a tail reads either logs or a stream, not both")
            try:
                self.follower = StreamReader(stream, self.decoder, self._take, warn=self._warn,
                                             stop=stop if stop is not None else threading.Event(),
                                             consumer=consumer or default_consumer(self.checkpoint_dir),
                                             timeout_s=nats_timeout_s)
            except BaseException:
                self.release_lock()
                raise
        else:
            # Never follow our own outputs (a folder target may be the --out folder itself).
            self.follower = Follower(targets, self.decoder, self._take, warn=self._warn,
                                     exclude=[self.quarantine.path, self.quarantine.reasons_path])
        #: How long a step waits for a stream's next messages (the run loop sets it; files are watched instead).
        self.wait_s = 0.0
        self.stats = TailStats(rejected=self.decoder.rejected, follow=self.follower.stats)
        self.reporter = self._new_reporter()
        self._late_unflushed = 0
        self._unsaved = False
        self._saved_at = time.monotonic()
        self._checkpoint_failing = False
        self._flushed_at = 0.0
        self.checkpoint_every_s = checkpoint_every_s
        self.late_flush_s = late_flush_s
        #: What was read in the last minute, for the live view.
        self.reads = RecentReads()
        #: The clock of ``recent``'s read times (seconds; a test sets its own).
        self.clock: Callable[[], float] = time.monotonic
        self._keep_out = False  # True: checkpoint.json is another program's file, never to be written over
        self._restore()

    def _lock_folder(self) -> int:
        """One tail a checkpoint folder: a second one would mix its events into the first one's state."""
        return lock_folder(self.checkpoint_dir, TAIL_LOCK_FILE, "another tracker tail",
                           "give this one another --out or --checkpoint-dir")

    def _new_reporter(self) -> LiveReporter:
        store = WindowStore(memory_bytes=self.memory_bytes, folder=self.checkpoint_dir / WINDOWS_DIR, warn=self._warn)
        return LiveReporter(self.out_dir, interval_s=self.interval_s, grace_s=self.grace_s, store=store,
                            warn=self._warn, session_timeout_s=self.session_timeout_s, goodput=self.goodput,
                            thresholds=self.thresholds)

    # -- files --------------------------------------------------------------

    def paths(self) -> list[Path]:
        """The files followed now (see :meth:`Follower.paths`)."""
        return self.follower.paths()

    def poll(self) -> int:
        """Read every followed file to its end; return the number of new events."""
        before = self.stats.events
        if isinstance(self.follower, Follower):
            self.follower.poll()
        else:
            self.follower.poll(self.wait_s)
        return self.stats.events - before

    def _take(self, frame: pl.DataFrame | None, rejected: Iterable[Rejected]) -> None:
        for item in rejected:
            self.quarantine.keep(item, self._warn)  # a full disk: counted by its reason, and said
        if frame is not None and not frame.is_empty():
            before = self.reporter.engine.counts.total()
            self._late_unflushed += self.reporter.add_frame(frame)
            self._unsaved = True
            self.stats.events += self.reporter.engine.counts.total() - before  # a line read twice is one event
            self.reads.note(frame, self.clock())

    @property
    def recent(self) -> deque[RecentBatch]:
        """The batches read in the last minute before the newest, oldest first (:mod:`tracker.recent`)."""
        return self.reads.batches

    def active_sessions(self) -> int:
        """Sessions that started and have not ended (the session rules of :mod:`tracker.sessions`)."""
        engine = self.reporter.engine
        return sum(1 for session_id in engine.sessions if engine.closing(session_id) is None)

    def _say_breaches(self, result: FlushResult | None) -> None:
        """A threshold a window broke, said when that window closes."""
        for verdict in () if result is None else result.breaches:
            self._warn(f"threshold {verdict.threshold.text} failed in the window from {verdict.scope}: "
                       f"{shown(verdict)}")

    def _not_written(self, exc: ReportError) -> None:
        """Say once why the report files are not updated."""
        message = f"reports not written: {exc}"
        if message not in self.warnings:
            self._warn(message)

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        _log.warning(message)

    # -- reports and checkpoints ----------------------------------------------

    def step(self, *, now: float | None = None) -> bool:
        """Read, close windows, write what changed and checkpoint; True when files were written."""
        new = self.poll()
        now_us = int((time.time() if now is None else now) * 1_000_000)
        closed = self.reporter.advance(now_us=now_us, idle=new == 0)
        # Late events rewrite their windows at most every late_flush_s: a log whose times are all long past
        # (a backfill) would otherwise rewrite the newest window at every read.
        late_due = self._late_unflushed and time.monotonic() - self._flushed_at >= self.late_flush_s
        if closed or late_due or self.reporter.run_changed:
            try:
                self._say_breaches(self.reporter.flush())
            except ReportError as exc:  # keep following and checkpointing; say why the files are not updated
                self._not_written(exc)
            self._late_unflushed = 0
            self._flushed_at = time.monotonic()
            self.checkpoint()
            return True
        if self._unsaved and time.monotonic() - self._saved_at >= self.checkpoint_every_s:
            self.checkpoint()
        return False

    def _identity(self) -> list[str]:
        if not isinstance(self.follower, Follower):
            return self.follower.identity()
        return sorted(str(t.absolute()) for t in self.targets)

    def checkpoint(self) -> None:
        """Save the engine's new rows, then the state and the files' positions, atomically."""
        self.quarantine.flush()
        try:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            target = self.checkpoint_dir / CHECKPOINT_FILE
            if self._keep_out or target.is_symlink() or (target.exists() and not target.is_file()):  # kept
                raise OSError(errno.EINVAL, "it is not a regular file, and is left alone", str(target))
            windows, obsolete = self.reporter.engine.store.persist()
            state = {
                "version": CHECKPOINT_VERSION,
                "targets": self._identity(),
                "interval_s": self.reporter.interval_s,
                "session_timeout_s": self.session_timeout_s,
                "goodput": self.goodput,
                "engine": self.reporter.engine.state(),
                "windows": windows,
                "closed_until": self.reporter.closed_until,
                "written_end": self.reporter.written_end,
                "late": self.reporter.late,
                "breaches": sorted([text, start] for text, start in self.reporter.breaches_said),
                "events": self.stats.events,
                "rejected": dict(self.decoder.rejected),
                "files": self.follower.positions(),
                "quarantine": list(self.quarantine.position()),
                "quarantine_lost": self.quarantine.lost,
                "writer": self.reporter.writer.state(),
            }
            write_atomically(self.checkpoint_dir / CHECKPOINT_FILE, orjson.dumps(state))
        except (OSError, pl.exceptions.PolarsError) as exc:  # a full disk: keep following, try again later
            if not self._checkpoint_failing:
                self._warn(f"checkpoint not saved ({exc}); trying again every {self.checkpoint_every_s:g} s")
            self._checkpoint_failing = True
            self._saved_at = time.monotonic()
            return
        if self._checkpoint_failing:
            self._warn(f"checkpoint saved again in {self.checkpoint_dir}")
            self._checkpoint_failing = False
        self.reporter.engine.store.remove_files(obsolete)  # only once the checkpoint no longer names them
        if not isinstance(self.follower, Follower):
            self.follower.saved()  # the stream's messages read so far are held: acknowledged
        self._unsaved = False
        self._saved_at = time.monotonic()

    def _restore(self) -> None:
        path = self.checkpoint_dir / CHECKPOINT_FILE
        if not path.exists():
            self._clear_checkpoint()
            self.quarantine.reset()  # filled by this run's read: a replay's, or a tail's killed before it saved
            self._start_clean()
            return
        try:
            self.reporter.writer.check_writer()  # first: a replay since may have emptied the quarantine
            state = load_checkpoint(path, {"interval_s": self.interval_s, "session_timeout_s": self.session_timeout_s,
                                           "goodput": self.goodput}, self._identity())
            saved = checkpoint_counters(state)
            if isinstance(self.follower, Follower):
                resume = check_positions(state.get("files"))
            else:
                self.follower.resume(state.get("files"))
                resume = []
            self.quarantine.restore(state.get("quarantine"))  # what came after the checkpoint is read again
            self.quarantine.lost = saved.quarantine_lost
            self.reporter.engine.store.restore(state.get("windows"))
            self.reporter.engine.restore(state.get("engine"))
            self.reporter.writer.restore(state.get("writer"))
            if saved.events != self.reporter.engine.counts.total():
                raise ValueError(f"its events counter ({saved.events}) is not the events its windows hold")
            quarantined = self.quarantine.reasons()
            if any(n > saved.rejected.get(reason, 0) for reason, n in quarantined.items()):
                raise ValueError(f"its rejected lines by reason ({saved.rejected}) are fewer than its quarantine holds "
                                 f"({dict(quarantined)})")
        except (OSError, ValueError, ReportError, pl.exceptions.PolarsError) as exc:
            rotated = [p.name for log in self._logs for _, p in sorted(siblings_of(log).items())]
            self._warn(f"checkpoint {path} is unusable ({exc}); reading every log from the start" + (
                f"; not the rotated files beside them ({', '.join(rotated)}): replay them with the logs to count "
                "them" if rotated else ""))
            self._clear_checkpoint()
            self.reporter = self._new_reporter()
            self.quarantine.reset()  # it is filled again by the re-read
            if not isinstance(self.follower, Follower):
                self.follower.start_over()  # the stream too, from its first message
            self._start_clean()
            return
        self.reporter.closed_until = saved.closed_until
        self.reporter.breaches_said = saved.breaches  # said before the restart
        self.reporter.written_end = saved.written_end
        self.reporter.late = saved.late
        self.stats.events = saved.events
        self.decoder.rejected.update(saved.rejected)
        if isinstance(self.follower, Follower):
            self.follower.resume(resume)

    def _start_clean(self) -> None:
        """A new run: remove the report files an earlier run wrote into the folder, saying so (and refuse a folder
        holding report files tracker did not list as its own)."""
        removed = self.reporter.writer.start_clean()
        if removed:
            self._warn(f"{self.out_dir} held the reports of an earlier run: removed its {len(removed)} report "
                       "files; this run starts clean")
        try:
            self.reporter.writer.claim()  # the folder is this live run's now (a replay's mark would refuse its
        except OSError as exc:            # checkpoints); when it cannot be said now, the first flush says it
            self._warn(f"cannot write {self.out_dir / MANIFEST_FILE} ({exc.strerror or exc}); it is written with the "
                       "first reports")

    def _clear_checkpoint(self) -> None:
        """Remove this tail's own checkpoint files (only those: the folder may hold anything else)."""
        stale = self.checkpoint_dir / CHECKPOINT_FILE
        if stale.is_symlink() or (stale.exists() and not stale.is_file()):
            self._warn(f"{stale} is not a file: left alone (checkpoints cannot be saved there)")
        elif stale.exists() and not is_checkpoint(stale):  # another program's file of that name
            if not set_aside(stale, self._warn):
                self._keep_out = True
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        self.reporter.engine.store.clear()

    # -- running --------------------------------------------------------------

    def run(self, stop: threading.Event, *, on_tick: Callable[[Tail], None] | None = None,
            tick_ms: int = 250, debounce_ms: int = 10, step_ms: int = 5) -> None:
        """Follow until ``stop`` is set: wake on every change in the watched folders and every ``tick_ms``.

        ``debounce_ms`` and ``step_ms`` are watchfiles' batching settings; the short defaults keep the
        delay from a write to its fold near 10 ms (watchfiles' own defaults, 1600 and 50, give ~100 ms).
        """
        self.step()
        # A checkpoint at once, even with nothing read: a tail killed before its first one would otherwise start
        # afresh, and what was rotated away meanwhile (found from the saved positions) would never be read.
        self.checkpoint()
        if on_tick is not None:
            on_tick(self)
        if not isinstance(self.follower, Follower):  # a stream: each step waits a tick for messages
            self.wait_s = tick_ms / 1000
            with contextlib.suppress(StoppedError):  # stopped while waiting for the server: closed as usual
                while not stop.is_set():
                    self.step()
                    if on_tick is not None:
                        on_tick(self)
            return
        for _changes in watchfiles.watch(
            *self.follower.watch_dirs(), watch_filter=None, debounce=debounce_ms, step=step_ms, stop_event=stop,
            rust_timeout=tick_ms, yield_on_timeout=True, raise_interrupt=False, recursive=False,
        ):
            self.step()
            if on_tick is not None:
                on_tick(self)
            while self.follower.backlog and not stop.is_set():  # a backlog is read in steps, without waiting
                self.step()
                if on_tick is not None:
                    on_tick(self)
            if stop.is_set():
                break

    def close(self) -> FlushResult | None:
        """Read what is left, write every window (open ones too), checkpoint, and close the files.

        Returns what the last flush wrote and could not write (None when no report could be made: see the
        warnings); the checkpoint is saved either way.
        """
        try:
            self.follower.finish()
            try:
                result: FlushResult | None = self.reporter.flush(final=True)
                self._say_breaches(result)
            except ReportError as exc:
                self._not_written(exc)
                result = None
            self.checkpoint()
        finally:
            self.release()
        return result

    def release(self) -> None:
        """Close the open files and the quarantine without writing anything (as a crash would leave it)."""
        self.quarantine.close()
        self.follower.release()
        self.release_lock()

    def release_lock(self) -> None:
        for fd in (self._lock, getattr(self, "_out_lock", -1)):
            if fd >= 0:
                os.close(fd)  # and with it the lock
        self._lock = self._out_lock = -1
