"""Follow live log files: read complete lines as they are appended, through rotation and truncation.

Each followed path is read to its end on every :meth:`Follower.poll`; an unterminated last line waits for its
newline, and lines are cut as :func:`tracker.batch.split_blocks` cuts them, so live and replay read the same.
A path whose inode changes was rotated: the old file is drained (and kept open while writers still append to
it), then the generations rotated after it and never read (``NAME.k-1`` .. ``NAME.1`` when it is now ``NAME.k``,
as logrotate names them), oldest first, then the new file from its start. A file that shrank, or whose first
bytes or bytes before the read offset changed, was truncated or replaced: it is read again from the start.
Only regular files are read (anything else is said once and tried again on every poll), never an ``exclude``d
one. Every decoded block goes to ``on_block``, in file order; :meth:`Follower.positions` says how far each file
was read, so a checkpoint taken after the callback's work resumes exactly there, once checked against the file.
"""

from __future__ import annotations

import glob
import gzip
import io
import logging
import os
import re
import reprlib
import stat
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import polars as pl

from .batch import Span, decode_span, split_blocks
from .decoder import Decoder, Rejected

__all__ = ("FILE_KINDS", "FINGERPRINT_BYTES", "Decode", "FollowStats", "folder_entries", "Follower", "OnBlock",
           "check_positions")

FINGERPRINT_BYTES: Final = 1024
#: The most one poll reads of one file: a big backlog is taken in steps, with reports and checkpoints between.
POLL_BYTES: Final = 64 << 20
_READ_BYTES: Final = 16 << 20
#: A rotated-away file is read until it has not grown for this long (writers holding it open may append).
_RETIRE_AFTER_S: Final = 60.0
_OPEN_FLAGS: Final[int] = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_HEX: Final = re.compile(r"(?:[0-9a-f]{2})*")
#: What a path that is not a regular file is, by the first letter of ``stat.filemode``.
FILE_KINDS: Final = {"d": "a folder", "p": "a FIFO", "s": "a socket", "c": "a character device", "b": "a block device"}
_log = logging.getLogger("tracker.follow")

#: Receives each decoded block: its valid events (or None) and its rejected lines.
OnBlock = Callable[[pl.DataFrame | None, Iterable[Rejected]], None]
#: Decodes a span of a file (its source named): its valid events, in whatever form the receiver takes them
#: (by default a frame: :func:`~tracker.batch.decode_span`), and its rejected lines.
Decode = Callable[[Span, Decoder, str], tuple[Any, list[Rejected]]]


def _frame_of(span: Span, decoder: Decoder, source: str) -> tuple[pl.DataFrame, list[Rejected]]:
    return decode_span(span, decoder, source=source).frame_and_rejected()


@dataclass(slots=True)
class _Followed:
    """One open file: its identity, how far its lines were read, and fingerprints telling it is still the same."""

    path: Path  # where it is followed: a rotated file keeps it (a restart finds the file again by its inode)
    fd: int
    dev: int
    ino: int
    offset: int = 0  # where the next line starts; while skipping, the next byte to skip
    line_no: int = 0  # the newlines before offset
    head: bytes = b""  # the first bytes of the file, up to FINGERPRINT_BYTES
    before: bytes = b""  # the bytes just before offset, up to FINGERPRINT_BYTES
    pending: int = 0  # bytes after offset held back: an incomplete line
    skipping: bool = False  # inside a line already rejected as too long
    retired_at: float = 0.0  # when it was rotated away, or last grew after that


@dataclass(slots=True)
class FollowStats:
    """Counts since the follower started (restored from the checkpoint on restart)."""

    rotations: int = 0
    truncations: int = 0
    last_read: float = 0.0  # wall time of the last read that found new lines


def check_positions(entries: object) -> list[dict[str, Any]]:
    """Saved positions (as :meth:`Follower.positions` gives them) checked for shape; ValueError if damaged.
    ``before`` and ``skipping`` may be missing (positions saved by an older tracker)."""
    if not isinstance(entries, list):
        raise ValueError(f"files: expected a list, got {type(entries).__name__}")
    checked = [_checked(entry) for entry in entries]
    if len({(e["path"], e["dev"], e["ino"]) for e in checked}) < len(checked):
        raise ValueError("two file entries name the same file (path, device and inode)")
    return checked


def _checked(entry: object) -> dict[str, Any]:
    if isinstance(entry, dict):
        path, head, before, skipping = (entry.get(k) for k in ("path", "head", "before", "skipping"))
        numbers: list[Any] = [entry.get(k) for k in ("dev", "ino", "offset", "line_no")]
        if (isinstance(path, str) and path and "\0" not in path and isinstance(head, str)
                and len(head) <= 2 * FINGERPRINT_BYTES and _HEX.fullmatch(head)
                and all(type(n) is int and 0 <= n < 1 << 63 for n in numbers) and numbers[3] <= numbers[2]
                and (before is None or (isinstance(before, str)
                                        and len(before) == 2 * min(numbers[2], FINGERPRINT_BYTES)
                                        and _HEX.fullmatch(before)))
                and (skipping is None or type(skipping) is bool)):
            return {"path": Path(path), **dict(zip(("dev", "ino", "offset", "line_no"), numbers, strict=True)),
                    "head": head, "before": before, "skipping": bool(skipping)}
    raise ValueError(f"a file entry is damaged: {reprlib.repr(entry)}")


def folder_entries(folder: Path, excluded: set[str]) -> list[Path]:
    """A folder's ``*.jsonl`` entries (hidden ones too, of any kind), sorted, but those whose real path is in
    ``excluded``: the one rule for which files of a folder are logs (the follower, replay, validate)."""
    return [p for p in sorted(folder.glob("*.jsonl")) if not excluded or os.path.realpath(p) not in excluded]


class Follower:
    """Follows files (or folders of ``*.jsonl``) and hands every decoded block to ``on_block``."""

    def __init__(self, targets: Sequence[str | os.PathLike[str]], decoder: Decoder,
                 on_block: Callable[[Any, Iterable[Rejected]], None], *,
                 resume: Iterable[dict[str, Any]] = (), warn: Callable[[str], None] | None = None,
                 exclude: Iterable[str | os.PathLike[str]] = (), decode: Decode | None = None) -> None:
        self.targets = [Path(t) for t in targets]
        self.exclude = [Path(p) for p in exclude]  # never followed: the tracker's own outputs
        self.decoder = decoder
        self.on_block = on_block
        self.decode: Decode = decode if decode is not None else _frame_of
        self.stats = FollowStats()
        self.backlog = False  # the last poll left unread bytes (it reads at most POLL_BYTES of a file)
        self._warn = warn if warn is not None else _log.warning
        self._files: dict[Path, _Followed] = {}
        self._retired: list[_Followed] = []  # rotated away: still drained, as writers may append for a while
        self._skipped: dict[Path, str] = {}  # paths not read now, and why (said once)
        self._resume: list[dict[str, Any]] = list(resume)  # saved positions, not yet reopened

    # -- what is followed -------------------------------------------------------

    def paths(self) -> list[Path]:
        """The files followed now: file targets, and the regular ``*.jsonl`` files of folder targets."""
        return [p for p in self._candidates() if p in self.targets or p.is_file()]

    def _candidates(self) -> list[Path]:
        """File targets and the ``*.jsonl`` of folder targets, whatever their kind, but never an excluded path."""
        excluded = {os.path.realpath(p) for p in self.exclude}
        return [p for t in self.targets
                for p in (folder_entries(t, excluded) if t.is_dir() else [t] if os.path.realpath(t) not in excluded
                          else [])]

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
             "head": f.head.hex(), "before": f.before.hex(), "skipping": f.skipping}
            for f in [*self._files.values(), *self._retired]
        ] + [{**saved, "path": str(saved["path"])} for saved in self._resume]

    # -- opening ------------------------------------------------------------------

    def _skip(self, path: Path, why: str) -> None:
        if self._skipped.get(path) != why:
            self._skipped[path] = why
            self._warn(f"{path}: {why}; skipped, and tried again on every poll")

    def _stat(self, path: Path) -> os.stat_result | None:
        """The regular file at ``path``; None when there is none, or something else (said once)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._skipped.pop(path, None)
            return None
        except OSError as exc:  # a symlink loop, a folder that cannot be searched...
            self._skip(path, f"cannot be read ({exc.strerror})")
            return None
        if not stat.S_ISREG(st.st_mode):
            self._skip(path, f"is {FILE_KINDS.get(stat.filemode(st.st_mode)[0], 'something else')}, not a regular file")
        return st if stat.S_ISREG(st.st_mode) else None

    def _open(self, path: Path, saved: dict[str, Any] | None = None) -> _Followed | None:
        """Open a regular file without blocking (not a FIFO), going on from its saved position if it has one."""
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._skip(path, f"cannot be read ({exc.strerror})")
            return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced since it was looked at: said on the next poll
            os.close(fd)
            return None
        self._skipped.pop(path, None)
        f = _Followed(path, fd, st.st_dev, st.st_ino)
        saved = saved or next((e for e in self._resume if e["path"] == path and (e["dev"], e["ino"]) == (f.dev, f.ino)),
                              None)
        if saved is not None and (saved["dev"], saved["ino"]) == (f.dev, f.ino):
            self._resume.remove(saved)
            self._resume_at(f, saved, st.st_size)
        return f

    def _resume_at(self, f: _Followed, saved: dict[str, Any], size: int) -> None:
        """Go on from a saved position if the file is still the one it describes, else read it from the start."""
        f.offset, f.line_no, f.skipping = saved["offset"], saved["line_no"], saved["skipping"]
        f.head = bytes.fromhex(saved["head"])
        f.before = _before(f.fd, f.offset) if saved["before"] is None else bytes.fromhex(saved["before"])
        problem = self._changed(f, size)
        if problem is None and not f.skipping and not _at_line_start(f.fd, f.offset):
            problem = f"byte {f.offset} is not at a line start"
        if problem is not None:
            self._warn(f"{f.path}: changed since the checkpoint ({problem}); reading it from the start; {_lost(saved)}")
            _restart(f)

    def _changed(self, f: _Followed, size: int) -> str | None:
        """Why ``f`` is not the file read so far (truncated, or rewritten in place), or None."""
        if size < f.offset + f.pending:
            return f"it has {size} bytes, fewer than the {f.offset + f.pending} read"
        if os.pread(f.fd, len(f.head), 0) != f.head:
            return "its first bytes differ"
        return f"the bytes before byte {f.offset} differ" if _before(f.fd, f.offset) != f.before else None

    def _known(self) -> set[tuple[int, int]]:
        """The files followed, or to be followed from a saved position."""
        followed = [*self._files.values(), *self._retired]
        return {(f.dev, f.ino) for f in followed} | {(e["dev"], e["ino"]) for e in self._resume}

    def _resume_moved(self) -> None:
        """After a restart, go on with each saved file that left its path (found by its inode and first bytes in
        its folder) from its saved offset, oldest rotation first; warn for one found nowhere."""
        candidates, moved = set(self._candidates()), []
        for saved in list(self._resume):
            path, identity = saved["path"], (saved["dev"], saved["ino"])
            if path in candidates and _identity(path) == identity:
                continue  # still at its path: _open goes on from it
            head = bytes.fromhex(saved["head"])  # an inode that now holds another file is not it
            found = next((p for p in _entries(path.parent) if _identity(p, head) == identity), None)
            if found is None:
                self._resume.remove(saved)
                self._warn(f"{path}: not found since the checkpoint (deleted or compressed); {_lost(saved)}")
            else:
                moved.append((next((k for k, p in _siblings(path).items() if p == found), 0), found, saved))
        for _, found, saved in sorted(moved, key=lambda m: -m[0]):  # NAME.k with the highest k first
            f = self._open(found, saved)
            if f is not None and saved in self._resume:  # another file there by now: looked for again next poll
                os.close(f.fd)
            elif f is not None:
                f.path = saved["path"]
                self._rotated(f)

    # -- reading ------------------------------------------------------------------

    def poll(self) -> None:
        """Read every followed file to its end (or :data:`POLL_BYTES` of it: then :attr:`backlog` is true),
        handing each decoded block to ``on_block``."""
        self.backlog = False
        if self._resume:
            self._resume_moved()
        current = self._candidates()
        for path in current:
            self._poll_path(path)
        for path in [p for p in self._files if p not in current]:  # left a folder target: rotated away
            self._rotated(self._files.pop(path))
        self._drain_retired()

    def _poll_path(self, path: Path) -> None:
        st = self._stat(path)
        f = self._files.get(path)
        if f is not None and (st is None or (st.st_dev, st.st_ino) != (f.dev, f.ino)):
            self._rotated(self._files.pop(path))
            f = None
        elif f is not None and st is not None and (problem := self._changed(f, st.st_size)) is not None:
            self._warn(f"{path}: truncated or replaced ({problem}); reading it again from the start")
            self.stats.truncations += 1
            _restart(f)
        if f is None:
            if st is None or (f := self._open(path)) is None:
                return
            self._files[path] = f
        self._read(f)

    def _rotated(self, f: _Followed) -> None:
        """``f`` left its path (rotated or deleted): drain it and keep draining it a while; then, if it is now
        ``NAME.k``, read ``NAME.k-1`` .. ``NAME.1`` (newer, oldest first) in full, but those already followed."""
        self._read(f)
        self._retire(f)
        self.stats.rotations += 1
        siblings = _siblings(f.path)
        k = next((k for k, p in siblings.items() if _identity(p) == (f.dev, f.ino)), 0)
        for newer in [siblings.get(j) for j in range(k - 1, 0, -1)]:
            if newer is not None and _identity(newer) not in {None, *self._known()} \
                    and (g := self._open(newer)) is not None:
                g.path = f.path
                self._read(g)
                self._retire(g)
                self.stats.rotations += 1

    def finish(self) -> None:
        """Read what is left, including rotated-away files, and reject unterminated last lines of those."""
        self.poll()
        while self.backlog:
            self.poll()
        self._drain_retired(finish=True)

    def _retire(self, f: _Followed) -> None:
        f.retired_at = time.monotonic()
        self._retired.append(f)

    def _drain_retired(self, *, finish: bool = False) -> None:
        """Read what writers still append to rotated-away files; let one go after it stayed quiet for a while."""
        for f in list(self._retired):
            size = f.offset + f.pending
            self._read(f)
            if f.offset + f.pending != size:
                f.retired_at = time.monotonic()
            if finish or time.monotonic() - f.retired_at >= _RETIRE_AFTER_S:
                self._read(f, final=True)
                os.close(f.fd)
                self._retired.remove(f)

    def _read(self, f: _Followed, *, final: bool = False) -> None:
        """Read ``f`` from its offset to its end; on ``final``, reject an unterminated last line."""
        size, start = max(_READ_BYTES, 2 * self.decoder.max_line_bytes), f.offset
        budget = POLL_BYTES
        while len(data := os.pread(f.fd, size, f.offset)) > f.pending:
            self.stats.last_read = time.time()
            self._split(f, data)
            budget -= len(data)
            if budget <= 0 and not final:  # the rest at the next poll: reports and checkpoints go on meanwhile
                self.backlog = True
                break
        if final and f.pending:
            raw = os.pread(f.fd, f.pending, f.offset)
            self.on_block(None, [self.decoder.unterminated(raw, source=str(f.path), line_no=f.line_no + 1,
                                                           offset=f.offset)])
            f.offset, f.pending = f.offset + len(raw), 0
        if f.offset != start or len(f.head) < FINGERPRINT_BYTES:
            f.head = f.head if len(f.head) >= FINGERPRINT_BYTES else os.pread(f.fd, FINGERPRINT_BYTES, 0)
            f.before = _before(f.fd, f.offset)

    def _split(self, f: _Followed, data: bytes) -> None:
        """Hand the lines of ``data`` (read at ``f.offset``) to ``on_block``, cut by :func:`split_blocks` itself,
        so that live and replay read the same lines; an incomplete last line is held back."""
        limit = self.decoder.max_line_bytes
        # Inside an over-long line already rejected: a stand-in for it, ending as the bytes skipped so far end
        # (a NUL or not), has split_blocks go on skipping exactly where it would have.
        stand_in = (os.pread(f.fd, 1, f.offset - 1) or b"x") * limit if f.skipping else b""
        start, line_no, span = f.offset - len(stand_in), f.line_no, None
        for cut in split_blocks(io.BytesIO(stand_in + data), len(stand_in) + len(data), limit):
            span = replace(cut, first_line=line_no + cut.first_line, offset=start + cut.offset)
            f.offset, f.line_no, f.skipping, f.pending = span.offset, span.first_line - 1, span.too_long, 0
            if not (span.ended or span.too_long):
                f.pending = len(span.data)  # an incomplete last line, held back
            elif cut.offset >= len(stand_in):
                decoded, rejected = self.decode(span, self.decoder, str(f.path))
                self.on_block(None if span.too_long else decoded, rejected)
                if span.ended:
                    f.offset, f.line_no = span.offset + len(span.data), f.line_no + span.lines
        if span is not None and span.too_long:  # skipped to the end of data: to a last newline, or not yet
            f.offset, f.skipping = start + len(stand_in) + len(data), not data.endswith(b"\n")
            f.line_no += not f.skipping

    def release(self) -> None:
        """Close every open file."""
        for f in [*self._files.values(), *self._retired]:
            os.close(f.fd)
        self._files.clear()
        self._retired.clear()


def _restart(f: _Followed) -> None:
    f.offset = f.line_no = f.pending = 0
    f.head = f.before = b""
    f.skipping = False


def _before(fd: int, offset: int) -> bytes:
    size = min(offset, FINGERPRINT_BYTES)
    return os.pread(fd, size, offset - size)


def _at_line_start(fd: int, offset: int) -> bool:
    """True at 0, after a newline, or after NUL bytes where ``split_blocks`` begins a line (see there)."""
    pair = os.pread(fd, 2, offset - 1) if offset else b"\n"
    return pair[:1] == b"\n" or (pair[:1] == b"\0" and pair[1:2] not in (b"", b"\0", b"\n"))


def _identity(path: Path, head: bytes = b"") -> tuple[int, int] | None:
    """(device, inode) of the regular file at ``path`` if it starts with ``head``, else None."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
        try:
            st = os.fstat(fd)
            same = stat.S_ISREG(st.st_mode) and os.pread(fd, len(head), 0) == head
        finally:
            os.close(fd)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if same else None


def _entries(folder: Path) -> list[Path]:
    try:
        return [folder / name for name in sorted(os.listdir(folder))]
    except OSError:
        return []


def _siblings(path: Path) -> dict[int, Path]:
    """``path`` rotated, as logrotate names it: ``{k: NAME.k}`` for those in its folder."""
    pattern = re.compile(re.escape(path.name) + r"\.([1-9][0-9]{0,8})")
    return {int(m[1]): p for p in _entries(path.parent) if (m := pattern.fullmatch(p.name))}


def _lost(saved: dict[str, Any]) -> str:
    """What of a saved file could not be read: the bytes after its offset, counted when one rotated ``.gz``
    beside it starts with its first bytes (gzip's trailer holds the size, exact below 4 GiB)."""
    path, offset, head = saved["path"], saved["offset"], bytes.fromhex(saved["head"])
    found = [(gz.name, size) for gz in sorted(path.parent.glob(glob.escape(path.name) + ".*.gz"))
             if _identity(gz) and (size := _gzip_size(gz, head)) is not None]
    if len(found) == 1 and found[0][1] >= offset:
        return f"{found[0][1] - offset} bytes after byte {offset} could not be read (compressed into {found[0][0]})"
    return f"what it had after byte {offset} could not be read (how many bytes is unknown)"


def _gzip_size(gz: Path, head: bytes) -> int | None:
    """The size of the file compressed in ``gz`` (from its trailer) when it starts with ``head``, else None."""
    try:
        with gzip.open(gz) as stream, open(gz, "rb") as raw:
            raw.seek(-4, os.SEEK_END)
            return int.from_bytes(raw.read(4), "little") if stream.read(len(head)) == head else None
    except (OSError, EOFError, zlib.error):
        return None
