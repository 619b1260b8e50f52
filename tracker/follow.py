"""Follow live log files: read complete lines as they are appended, through rotation and truncation.

Each followed path is read to its end on every :meth:`Follower.poll`. An
unterminated last line is held back until its newline arrives. A path whose
inode changes was rotated: the old file is drained to its end first (and kept
open while writers still append to it), then the new one is read from the
start. A file that shrank, or whose first bytes changed, was truncated
(copytruncate) and is read again from the start. Every decoded block goes to
the ``on_block`` callback, in file order; :meth:`Follower.positions` says how
far each file was read, so a checkpoint taken after the callback's work can
resume exactly there.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import polars as pl

from .batch import decode_block
from .decoder import Decoder, Rejected

__all__ = ("FINGERPRINT_BYTES", "FollowStats", "Follower", "OnBlock", "check_positions")

FINGERPRINT_BYTES: Final = 1024
_READ_BYTES: Final = 16 << 20
#: A rotated-away file is read until it has not grown for this long (writers holding it open may append).
_RETIRE_AFTER_S: Final = 60.0
_log = logging.getLogger("tracker.follow")

#: Receives each decoded block: its valid events (or None) and its rejected lines.
OnBlock = Callable[[pl.DataFrame | None, Iterable[Rejected]], None]


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
class FollowStats:
    """Counts since the follower started (restored from the checkpoint on restart)."""

    rotations: int = 0
    truncations: int = 0
    last_read: float = 0.0  # wall time of the last read that found new lines


def check_positions(entries: object) -> list[dict[str, Any]]:
    """Saved positions (as :meth:`Follower.positions` gives them) checked for shape; ValueError if damaged."""
    if not isinstance(entries, list):
        raise ValueError(f"files: expected a list, got {entries!r}")
    checked = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) \
                or not isinstance(entry.get("head"), str):
            raise ValueError(f"a file entry is damaged: {entry!r}")
        bytes.fromhex(entry["head"])  # raises ValueError when damaged
        if not all(type(entry.get(k)) is int and entry[k] >= 0 for k in ("dev", "ino", "offset", "line_no")):
            raise ValueError(f"a file entry is damaged: {entry!r}")
        checked.append({"path": Path(entry["path"]), **{k: entry[k] for k in ("dev", "ino", "offset", "line_no",
                                                                             "head")}})
    return checked


class Follower:
    """Follows files (or folders of ``*.jsonl``) and hands every decoded block to ``on_block``."""

    def __init__(self, targets: Sequence[str | os.PathLike[str]], decoder: Decoder, on_block: OnBlock, *,
                 resume: Iterable[dict[str, Any]] = (), warn: Callable[[str], None] | None = None) -> None:
        self.targets = [Path(t) for t in targets]
        self.decoder = decoder
        self.on_block = on_block
        self.stats = FollowStats()
        self._warn = warn if warn is not None else _log.warning
        self._files: dict[Path, _Followed] = {}
        self._retired: list[_Followed] = []  # rotated away: still drained, as writers may append for a while
        self._unreadable: set[Path] = set()
        self._resume: list[dict[str, Any]] = list(resume)  # saved positions, not yet reopened

    # -- what is followed -------------------------------------------------------

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

    def resume(self, positions: Iterable[dict[str, Any]]) -> None:
        """Go on from saved positions (see :func:`check_positions`) when the files are next polled."""
        self._resume = list(positions)

    def positions(self) -> list[dict[str, Any]]:
        """How far each open file was read (complete lines only), for a checkpoint."""
        return [
            {"path": str(f.path), "dev": f.dev, "ino": f.ino, "offset": f.offset, "line_no": f.line_no,
             "head": f.head.hex()}
            for f in [*self._files.values(), *self._retired]
        ] + [{**saved, "path": str(saved["path"])} for saved in self._resume]

    # -- opening ------------------------------------------------------------------

    def _open(self, path: Path) -> _Followed | None:
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
        """After a restart, find files rotated away (while the follower was down, or before it died) by their
        inode beside their old path, and drain them from the saved offset."""
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

    # -- reading ------------------------------------------------------------------

    def poll(self) -> None:
        """Read every followed file to its end, handing each decoded block to ``on_block``."""
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
                f = self._open(path)
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

    def finish(self) -> None:
        """Read what is left, including rotated-away files, and reject unterminated last lines of those."""
        self.poll()
        self._drain_retired(finish=True)

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
            self.stats.last_read = time.time()
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
                self.on_block(*decode_block(block, self.decoder, source=str(f.path), first_line=f.line_no + 1,
                                            first_offset=f.offset).frame_and_rejected())
                f.offset += cut
                f.line_no += block.count(b"\n")
            if len(f.partial) > limit:  # a line longer than the limit: reject it, skip to its end
                self.on_block(None, [self.decoder.too_long(bytes(f.partial[:limit]), source=str(f.path),
                                                           line_no=f.line_no + 1, offset=f.offset)])
                f.offset += len(f.partial)
                f.partial.clear()
                f.skipping = True
        if final and f.partial:
            self.on_block(None, [self.decoder.unterminated(bytes(f.partial), source=str(f.path),
                                                           line_no=f.line_no + 1, offset=f.offset)])
            f.offset += len(f.partial)
            f.partial.clear()

    def release(self) -> None:
        """Close every open file."""
        for f in [*self._files.values(), *self._retired]:
            os.close(f.fd)
        self._files.clear()
        self._retired.clear()
