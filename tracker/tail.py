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
from typing import Any, Final

import orjson
import polars as pl
import watchfiles

from .batch import decode_block
from .decoder import DEFAULT_MAX_LINE_BYTES, Decoder, Quarantine, Rejected
from .errors import ReportError
from .live import DEFAULT_GRACE_S, LiveReporter
from .report import DEFAULT_INTERVAL_S, EVENT_SCHEMA, write_atomically

__all__ = ("CHECKPOINT_DIR", "FINGERPRINT_BYTES", "Tail", "TailStats")

CHECKPOINT_DIR: Final = ".tracker-checkpoint"
CHECKPOINT_FILE: Final = "checkpoint.json"
CHECKPOINT_VERSION: Final = 1
FINGERPRINT_BYTES: Final = 1024
_READ_BYTES: Final = 16 << 20
_RECENT_FRAMES: Final = 512
_MAX_SEGMENTS: Final = 64
#: A rotated-away file is read until it has not grown for this long (writers holding it open may append).
_RETIRE_AFTER_S: Final = 60.0
_log = logging.getLogger("tracker.tail")


@dataclass(slots=True)
class _Followed:
    """One open file: its identity, how far its complete lines were read, and the partial line after that."""

    path: Path
    fd: int
    dev: int
    ino: int
    offset: int = 0
    line_no: int = 0
    head: bytes = b""  # the first bytes of the file, up to FINGERPRINT_BYTES: its fingerprint
    partial: bytearray = field(default_factory=bytearray)
    skipping: bool = False  # inside a line already rejected as too long
    retired_at: float = 0.0  # when it was rotated away, or last grew after that


@dataclass(slots=True)
class TailStats:
    """Counts since the tail started (restored from the checkpoint on restart)."""

    events: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    rotations: int = 0
    truncations: int = 0
    last_read: float = 0.0  # wall time of the last read that found new lines


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
        self.targets = [Path(t) for t in targets]
        self.out_dir = Path(out_dir)
        self.reporter = LiveReporter(out_dir, interval_s=interval_s, grace_s=grace_s)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else self.out_dir / CHECKPOINT_DIR
        self.quarantine = Quarantine(quarantine_path if quarantine_path is not None
                                     else self.out_dir / "quarantine.jsonl")
        self.decoder = Decoder(max_line_bytes=max_line_bytes, dedupe=False)
        self.stats = TailStats(rejected=self.decoder.rejected)
        self._files: dict[Path, _Followed] = {}
        self._retired: list[_Followed] = []  # rotated away: still drained, as writers may append for a while
        self._unreadable: set[Path] = set()
        self._resume: list[dict[str, Any]] = []  # file entries of the checkpoint, not yet reopened
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
        """The files followed now: file targets, and the ``*.jsonl`` files of folder targets."""
        found: list[Path] = []
        for target in self.targets:
            if target.is_dir():
                found.extend(sorted(p for p in target.glob("*.jsonl") if p.is_file()))
            else:
                found.append(target)
        return found

    def watch_dirs(self) -> list[Path]:
        """The folders to watch: a folder target itself, a file target's parent (created if missing)."""
        dirs = []
        for target in self.targets:
            folder = target if target.is_dir() else target.parent
            folder.mkdir(parents=True, exist_ok=True)
            if folder not in dirs:
                dirs.append(folder)
        return dirs

    def _open(self, path: Path, st: os.stat_result) -> _Followed | None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            if path not in self._unreadable:
                self._unreadable.add(path)
                self._warn(f"{path}: cannot be read ({exc.strerror}); trying again on every change")
            return None
        self._unreadable.discard(path)
        opened = os.fstat(fd)
        followed = _Followed(path, fd, opened.st_dev, opened.st_ino)
        saved = next((e for e in self._resume if e["path"] == path
                      and (e["dev"], e["ino"]) == (opened.st_dev, opened.st_ino)), None)
        if saved is not None:
            self._resume.remove(saved)
            head = os.pread(fd, len(bytes.fromhex(saved["head"])), 0)
            if head.hex() == saved["head"] and opened.st_size >= saved["offset"]:
                followed.offset, followed.line_no, followed.head = saved["offset"], saved["line_no"], head
            else:
                self._warn(f"{path}: changed since the checkpoint (truncated or replaced); reading it from the start")
        return followed

    def _changed_in_place(self, f: _Followed, st: os.stat_result) -> bool:
        """True when the file was truncated: it is shorter than what was read, or its first bytes differ."""
        if st.st_size < f.offset + len(f.partial):
            return True
        return bool(f.head) and os.pread(f.fd, len(f.head), 0) != f.head

    def _drain_moved(self) -> None:
        """After a restart, find files rotated away (while the tail was down, or before it died) by their inode
        beside their old path, and drain them from the saved offset."""
        for saved in list(self._resume):
            path = saved["path"]
            try:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == (saved["dev"], saved["ino"]):
                    continue  # still at its path: _open resumes it
            except FileNotFoundError:
                pass
            self._resume.remove(saved)
            for candidate in sorted(path.parent.iterdir()) if path.parent.is_dir() else []:
                try:
                    cst = candidate.stat()
                except OSError:
                    continue
                if (cst.st_dev, cst.st_ino) == (saved["dev"], saved["ino"]) and candidate.is_file():
                    fd = os.open(candidate, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                    self._retire(_Followed(path, fd, cst.st_dev, cst.st_ino, saved["offset"], saved["line_no"],
                                           bytes.fromhex(saved["head"])))
                    self.stats.rotations += 1
                    break

    def poll(self) -> int:
        """Read every followed file to its end; return the number of new events."""
        before = self.stats.events
        if self._resume:
            self._drain_moved()
        for path in self.paths():
            try:
                st: os.stat_result | None = os.stat(path)
            except FileNotFoundError:
                st = None
            f = self._files.get(path)
            if f is not None and (st is None or (st.st_dev, st.st_ino) != (f.dev, f.ino)):
                self._read(f)  # rotated or deleted: drain the old file first, and keep draining it
                del self._files[path]
                self._retire(f)
                self.stats.rotations += 1
                f = None
            elif f is not None and st is not None and self._changed_in_place(f, st):
                self._warn(f"{path}: truncated (was read to byte {f.offset}, now {st.st_size} bytes); "
                           "reading it again from the start")
                self.stats.truncations += 1
                f.offset, f.line_no, f.head, f.skipping = 0, 0, b"", False
                f.partial.clear()
            if f is None and st is not None:
                f = self._open(path, st)
                if f is None:
                    continue
                self._files[path] = f
            if f is not None:
                self._read(f)
        # Files that left a folder target (rotated away) are retired too.
        current = set(self.paths())
        for path in [p for p in self._files if p not in current]:
            self._retire(self._files.pop(path))
        self._drain_retired()
        if self.stats.events > before:
            self.stats.last_read = time.time()
        return self.stats.events - before

    def _retire(self, f: _Followed) -> None:
        f.retired_at = time.monotonic()
        self._retired.append(f)

    def _drain_retired(self, *, finish: bool = False) -> None:
        """Read what writers still append to rotated-away files; let one go after it stayed quiet for a while."""
        for f in list(self._retired):
            size = f.offset + len(f.partial)
            self._read(f)
            if f.offset + len(f.partial) != size:
                f.retired_at = time.monotonic()
            if finish or time.monotonic() - f.retired_at >= _RETIRE_AFTER_S:
                self._read(f, final=True)
                os.close(f.fd)
                self._retired.remove(f)

    def _read(self, f: _Followed, *, final: bool = False) -> None:
        limit = self.decoder.max_line_bytes
        while True:
            data = os.pread(f.fd, _READ_BYTES, f.offset + len(f.partial))
            if not data:
                break
            if len(f.head) < FINGERPRINT_BYTES and f.offset + len(f.partial) < FINGERPRINT_BYTES:
                f.head = os.pread(f.fd, FINGERPRINT_BYTES, 0)
            if f.skipping:
                end = data.find(b"\n")
                if end < 0:
                    f.offset += len(data)
                    continue
                f.offset += end + 1
                f.line_no += 1
                f.skipping = False
                data = data[end + 1:]
            f.partial += data
            cut = f.partial.rfind(b"\n") + 1
            if cut:
                block = bytes(f.partial[:cut])
                del f.partial[:cut]
                self._take(decode_block(block, self.decoder, source=str(f.path), first_line=f.line_no + 1,
                                        first_offset=f.offset).frame_and_rejected())
                f.offset += cut
                f.line_no += block.count(b"\n")
            if len(f.partial) > limit:  # a line longer than the limit: reject it, skip to its end
                self._take((None, [self.decoder.too_long(bytes(f.partial[:limit]), source=str(f.path),
                                                         line_no=f.line_no + 1, offset=f.offset)]))
                f.offset += len(f.partial)
                f.partial.clear()
                f.skipping = True
        if final and f.partial:
            self._take((None, [self.decoder.unterminated(bytes(f.partial), source=str(f.path),
                                                         line_no=f.line_no + 1, offset=f.offset)]))
            f.offset += len(f.partial)
            f.partial.clear()

    def _take(self, result: tuple[pl.DataFrame | None, Iterable[Rejected]]) -> None:
        frame, rejected = result
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
            "files": [
                {"path": str(f.path), "dev": f.dev, "ino": f.ino, "offset": f.offset, "line_no": f.line_no,
                 "head": f.head.hex()}
                for f in [*self._files.values(), *self._retired]
            ],
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
            resume = [{"path": Path(f["path"]), **{k: f[k] for k in ("dev", "ino", "offset", "line_no", "head")}}
                      for f in state["files"]]
            for saved in resume:
                bytes.fromhex(saved["head"])  # raises ValueError when damaged
                if not all(type(saved[k]) is int and saved[k] >= 0 for k in ("dev", "ino", "offset", "line_no")):
                    raise ValueError(f"a file entry is damaged: {saved!r}")
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
        self._resume = resume

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
            *self.watch_dirs(), watch_filter=None, debounce=debounce_ms, step=step_ms, stop_event=stop,
            rust_timeout=tick_ms, yield_on_timeout=True, raise_interrupt=False, recursive=False,
        ):
            self.step()
            if on_tick is not None:
                on_tick(self)
            if stop.is_set():
                break

    def close(self) -> None:
        """Read what is left, write every window (open ones too), checkpoint, and close the files."""
        self.poll()
        self._drain_retired(finish=True)
        self.reporter.flush(final=True)
        self.checkpoint()
        self.release()

    def release(self) -> None:
        """Close the open files and the quarantine without writing anything (as a crash would leave it)."""
        self.quarantine.close()
        for f in [*self._files.values(), *self._retired]:
            os.close(f.fd)
        self._files.clear()
        self._retired.clear()
