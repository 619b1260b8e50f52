"""Follow live log files: read complete lines as they are appended, through rotation and truncation.

Each followed path is read to its end on every :meth:`Follower.poll`; an unterminated last line waits for its
newline, and lines are cut as :func:`tracker.batch.split_blocks` cuts them, so live and replay read the same.
A path whose inode changes was rotated: the old file is drained (and kept open while writers still append to
it), then the generations rotated after it and never read, oldest first, then the new file from its start. A
file that shrank, or whose first bytes or bytes before the read offset changed, was truncated or replaced: what
followed the offset read is read on in its copy when a rotated sibling is one (copytruncate), then the file
again from its start. What was read is one ledger of contents, not of files (:mod:`tracker.siblings`, also in
the positions saved): every read of any file goes on from the furthest point read of its generation, wherever that
was read, so a copy is never read again from its start nor a line twice, and a rotated sibling new or grown since
it was last looked at is read (:meth:`Follower._sweep`). Which files those are, :mod:`tracker.rotation` works out;
this module reads them.
Only regular files are read (anything else is said once and tried again on every poll), never an ``exclude``d
one. Every decoded block goes to ``on_block``, in file order; :meth:`Follower.positions` says how far each file
was read, so a checkpoint taken after the callback's work resumes exactly there, once checked against the file.
"""

from __future__ import annotations

import io
import logging
import os
import re
import reprlib
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import polars as pl

from . import rotation
from .batch import Span, decode_span, split_blocks
from .decoder import Decoder, Rejected, file_kind
from .rotation import FINGERPRINT_BYTES, OPEN_FLAGS, Identity
from .siblings import Followed, Ledger, furthest, holds, mark_of, same_generation

__all__ = ("FINGERPRINT_BYTES", "Decode", "FollowStats", "folder_entries", "Follower", "OnBlock",
           "check_positions")

#: The most one poll reads of one file: a big backlog is taken in steps, with reports and checkpoints between.
POLL_BYTES: Final = 64 << 20
_READ_BYTES: Final = 16 << 20
#: A rotated-away file is read until it has not grown for this long (writers holding it open may append).
_RETIRE_AFTER_S: Final = 60.0
_HEX: Final = re.compile(r"(?:[0-9a-f]{2})*")
_log = logging.getLogger("tracker.follow")

#: Receives each decoded block: its valid events (or None) and its rejected lines.
OnBlock = Callable[[pl.DataFrame | None, Iterable[Rejected]], None]
#: Decodes a span of a file (its source named): its valid events, in whatever form the receiver takes them
#: (by default a frame: :func:`~tracker.batch.decode_span`), and its rejected lines.
Decode = Callable[[Span, Decoder, str], tuple[Any, list[Rejected]]]


def _frame_of(span: Span, decoder: Decoder, source: str) -> tuple[pl.DataFrame, list[Rejected]]:
    return decode_span(span, decoder, source=source).frame_and_rejected()


@dataclass(slots=True)
class FollowStats:
    """Counts since the follower started (restored from the checkpoint on restart)."""

    rotations: int = 0
    truncations: int = 0
    last_read: float = 0.0  # wall time of the last read that found new lines


def check_positions(entries: object) -> list[dict[str, Any]]:
    """Saved positions (as :meth:`Follower.positions` gives them) checked for shape; ValueError if damaged.
    ``before``, ``skipping`` and ``rotated`` may be missing (positions saved by an older tracker; ``siblings``, which
    they may hold, is checked and not used). An entry with ``rotated`` is a closed mark of ``path`` (see
    :mod:`tracker.siblings`): how far a generation of it was read, in the file ``dev``, ``ino`` or a copy of it."""
    if not isinstance(entries, list):
        raise ValueError(f"files: expected a list, got {type(entries).__name__}")
    checked = [_checked(entry) for entry in entries]
    opened = [(e["path"], e["dev"], e["ino"]) for e in checked if not e["rotated"]]
    if len(set(opened)) < len(opened):
        raise ValueError("two file entries name the same file (path, device and inode)")
    return checked


def _checked(entry: object) -> dict[str, Any]:
    if isinstance(entry, dict):
        path, head, before, skipping, siblings, rotated = (
            entry.get(k) for k in ("path", "head", "before", "skipping", "siblings", "rotated"))
        numbers: list[Any] = [entry.get(k) for k in ("dev", "ino", "offset", "line_no")]
        if (isinstance(path, str) and path and "\0" not in path and isinstance(head, str)
                and len(head) <= 2 * FINGERPRINT_BYTES and _HEX.fullmatch(head)
                and all(type(n) is int and 0 <= n < 1 << 63 for n in numbers) and numbers[3] <= numbers[2]
                and (before is None or (isinstance(before, str)
                                        and len(before) == 2 * min(numbers[2], FINGERPRINT_BYTES)
                                        and _HEX.fullmatch(before)))
                and (skipping is None or type(skipping) is bool) and (rotated is None or type(rotated) is bool)
                and (siblings is None or (isinstance(siblings, list) and all(
                    isinstance(pair, list) and len(pair) == 2 and all(type(n) is int and 0 <= n < 1 << 63
                                                                      for n in pair) for pair in siblings)))):
            return {"path": Path(path), **dict(zip(("dev", "ino", "offset", "line_no"), numbers, strict=True)),
                    "head": head, "before": before, "skipping": bool(skipping), "rotated": bool(rotated)}
    raise ValueError(f"a file entry is damaged: {reprlib.repr(entry)}")


def folder_entries(folder: Path, excluded: set[str]) -> list[Path]:
    """A folder's ``*.jsonl`` entries (hidden ones too, of any kind), sorted, but those whose real path is in
    ``excluded``: the one rule for which files of a folder are logs (the follower, replay, validate)."""
    return [p for p in sorted(folder.glob("*.jsonl")) if not excluded or os.path.realpath(p) not in excluded]


class Follower:
    """Follows files (or folders of ``*.jsonl``) and hands every decoded block to ``on_block``."""

    def __init__(self, targets: Sequence[str | os.PathLike[str]], decoder: Decoder,
                 on_block: Callable[[Any, Iterable[Rejected]], None], *,
                 resume: Iterable[dict[str, Any]] | None = None, warn: Callable[[str], None] | None = None,
                 exclude: Iterable[str | os.PathLike[str]] = (), decode: Decode | None = None) -> None:
        self.targets = [Path(t) for t in targets]
        self.exclude = [Path(p) for p in exclude]  # never followed: the tracker's own outputs
        self.decoder = decoder
        self.on_block = on_block
        self.decode: Decode = decode if decode is not None else _frame_of
        self.stats = FollowStats()
        self.backlog = False  # the last poll left unread bytes (it reads at most POLL_BYTES of a file)
        self._warn = warn if warn is not None else _log.warning
        self._files: dict[Path, Followed] = {}
        self._retired: list[Followed] = []  # rotated away: still drained, as writers may append for a while
        self._skipped: dict[Path, str] = {}  # paths not read now, and why (said once)
        self._resume: list[dict[str, Any]] = []  # saved positions, not yet reopened
        #: What was read of each path's generations not open now (see :mod:`tracker.siblings`).
        self._ledger = Ledger()
        self._fresh = True  # no saved positions: the rotated siblings a path has when first seen are not read
        self._swept: set[Path] = set()  # the paths whose siblings were looked at
        if resume is not None:
            self.resume(resume)

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
        self._fresh = False
        self._resume, self._ledger = [], Ledger()
        for saved in positions:
            if saved.get("rotated"):
                self._ledger.load(saved)
            else:
                self._resume.append(saved)

    def positions(self) -> list[dict[str, Any]]:
        """How far each open file was read (complete lines only), and each closed mark (``rotated``: see
        :mod:`tracker.siblings`), for a checkpoint."""
        opened = [*self._files.values(), *self._retired]
        closed = [m for m in self._ledger.saved()  # but those an open file of their generation went as far in
                  if not any(f.path == m.path and f.offset >= m.offset and same_generation(f.head, m.head)
                             for f in opened)]
        return [
            {"path": str(f.path), "dev": f.dev, "ino": f.ino, "offset": f.offset, "line_no": f.line_no,
             "head": f.head.hex(), "skipping": f.skipping, "rotated": f.fd < 0,
             # Never an entry check_positions would refuse (a whole checkpoint thrown away): a fingerprint not of
             # the length the offset gives is left out, and taken from the file again at a restart.
             "before": f.before.hex() if len(f.before) == min(f.offset, FINGERPRINT_BYTES) else None}
            for f in [*opened, *closed]
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
            self._skip(path, f"is {file_kind(st.st_mode, 'something else')}, not a regular file")
        return st if stat.S_ISREG(st.st_mode) else None

    def _open(self, path: Path, saved: dict[str, Any] | None = None) -> Followed | None:
        """Open a regular file without blocking (not a FIFO), going on from its saved position if it has one."""
        try:
            fd = os.open(path, OPEN_FLAGS)
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
        f = Followed(path, fd, st.st_dev, st.st_ino)
        saved = saved or next((e for e in self._resume if e["path"] == path and (e["dev"], e["ino"]) == (f.dev, f.ino)),
                              None)
        if saved is not None and (saved["dev"], saved["ino"]) == (f.dev, f.ino):
            self._resume.remove(saved)
            self._resume_at(f, saved, st.st_size)
        return f

    def _resume_at(self, f: Followed, saved: dict[str, Any], size: int) -> None:
        """Go on from a saved position if the file is still the one it describes, else read it from the start
        (after the rest of what it was, if a rotated sibling is a copy of it: see :meth:`_left`)."""
        f.offset, f.line_no, f.skipping = saved["offset"], saved["line_no"], saved["skipping"]
        f.head = bytes.fromhex(saved["head"])
        before = None if saved["before"] is None else bytes.fromhex(saved["before"])
        f.before = rotation.fingerprint_before(f.fd, f.offset) if before is None else before
        if (problem := self._changed(f, size)) is None:
            if not f.skipping and not _at_line_start(f.fd, f.offset):
                self._warn(f"{f.path}: changed since the checkpoint (byte {f.offset} is not at a line start); "
                           f"reading it from the start; {rotation.lost(f.path, f.offset, f.head)}")
                _restart(f)
            return
        offset, head = f.offset, f.head
        if (said := self._left(saved["path"], f, before)) is not None:
            self.stats.truncations += 1
            self._warn(f"{f.path}: changed since the checkpoint ({problem}): copied, then truncated in place "
                       f"(copytruncate); read {said}; reading it from the start")
        else:
            self.stats.truncations += 1
            self._warn(f"{f.path}: changed since the checkpoint ({problem}); reading it from the start; "
                       + (self._after_compressed_copy(f.path, offset, head) or rotation.lost(f.path, offset, head))
                       + "; the events read from it before are kept (a new test run belongs in a new output folder)")

    def _left(self, path: Path, f: Followed, before: bytes | None) -> str | None:
        """What was read of ``f`` (a generation of ``path``) is no longer in it (truncated or rewritten in place, or
        gone): remember it (see :mod:`tracker.siblings`: a copy of it is read on from there, never from its start),
        set ``f`` to be read again from its start, and read what ``path``'s siblings hold and nothing read holds.
        Return what was read, said for people; None when no sibling is a copy of what was read of ``f``."""
        copy = rotation.find_copy(path, f.head, f.offset, before, ())
        if copy is not None:
            before = rotation.fingerprint_before(copy.fd, f.offset) if before is None else before
            os.close(copy.fd)
        self._ledger.remember(mark_of(Followed(path, -1, f.dev, f.ino, f.offset, f.line_no, f.head,
                                               f.before if before is None else before, skipping=f.skipping)))
        offset = f.offset
        _restart(f)
        if copy is None:
            return None
        read = self._sweep(path)
        self.stats.truncations += max(0, len(read) - 1)
        return ", ".join(read) if read else f"its copy {copy.path.name} on from byte {offset} (already)"

    def _changed(self, f: Followed, size: int) -> str | None:
        """Why ``f`` is not the file read so far (truncated, or rewritten in place), or None."""
        if size < f.offset + f.pending:
            return f"it has {size} bytes, fewer than the {f.offset + f.pending} read"
        if os.pread(f.fd, len(f.head), 0) != f.head:
            return "its first bytes differ"
        before = rotation.fingerprint_before(f.fd, f.offset)
        return f"the bytes before byte {f.offset} differ" if before != f.before else None

    def _known(self) -> set[Identity]:
        """The files followed, or to be followed from a saved position."""
        followed = [*self._files.values(), *self._retired]
        return {(f.dev, f.ino) for f in followed} | {(e["dev"], e["ino"]) for e in self._resume}

    def _resume_moved(self) -> None:
        """After a restart, go on with each saved file that left its path (found by its inode and first bytes in
        its folder) from its saved offset, oldest rotation first; one found nowhere was copied (its copy is read on
        from there, see :meth:`_left`) or is gone: a warning then."""
        candidates = set(self._candidates())
        moved: list[tuple[int, Path, dict[str, Any]]] = []
        for saved in list(self._resume):
            path, identity = saved["path"], (saved["dev"], saved["ino"])
            if path in candidates and rotation.identity_of(path) == identity:
                continue  # still at its path: _open goes on from it
            head = bytes.fromhex(saved["head"])
            if (where := rotation.moved_to(path, identity, head)) is not None:
                moved.append((*where, saved))
                continue
            self._resume.remove(saved)
            before = None if saved["before"] is None else bytes.fromhex(saved["before"])
            gone = Followed(path, -1, *identity, saved["offset"], saved["line_no"], head, skipping=saved["skipping"])
            if (said := self._left(path, gone, before)) is None:
                self._warn(f"{path}: not found since the checkpoint (deleted or compressed); "
                           f"{rotation.lost(path, saved['offset'], head)}")
            else:  # copied, truncated in place, then gone from its path (rotated by rename, or deleted)
                self.stats.truncations += 1
                self._warn(f"{path}: copied, then truncated in place (copytruncate) and gone from its path "
                           f"since the checkpoint: read {said}")
        for _k, found, item in sorted(moved, key=lambda m: -m[0]):  # NAME.k, the highest k first
            f = self._open(found, item)
            if f is not None and item in self._resume:  # another file there by now: looked for again next poll
                os.close(f.fd)
            elif f is not None:
                f.path = item["path"]
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
            self._truncated(f, problem)
        if f is None and st is not None and (f := self._open(path)) is not None:
            self._files[path] = f
        if read := self._sweep(path):
            self.stats.truncations += len(read)
            self._warn(f"{path}: rotated files beside it held lines not read yet (copied or rotated away before they "
                       f"were read): read {', '.join(read)}")
        if f is not None:
            self._read(f)

    def _truncated(self, f: Followed, problem: str) -> None:
        """``f`` (followed, or rotated away and still drained) was truncated or rewritten in place: go on in its copy
        if a rotated sibling is one (see :meth:`_left`), then read it again from the start."""
        self.stats.truncations += 1
        offset, head = f.offset, f.head
        if (said := self._left(f.path, f, f.before)) is not None:
            self._warn(f"{f.path}: truncated in place ({problem}) after it was copied (copytruncate): read "
                       f"{said}; reading it again from the start")
        else:
            compressed = self._after_compressed_copy(f.path, offset, head)
            self._warn(f"{f.path}: truncated or replaced ({problem}); reading it again from the start; " + (
                f"what it held after byte {offset} when it was truncated, if anything, could not be read (no "
                "copy of it is beside it)" if compressed is None else compressed))

    def _rotated(self, f: Followed) -> None:
        """``f`` left its path (rotated or deleted): drain it and keep draining it a while; then, if it is now
        ``NAME.k``, read ``NAME.k-1`` .. ``NAME.1`` (newer, oldest first) in full, but those already followed."""
        self._retire(f)  # followed from now on: its inode is never read again as a newer generation
        if (problem := self._changed(f, os.fstat(f.fd).st_size)) is not None:  # truncated before it left
            self._truncated(f, problem)
        self._read(f)
        self.stats.rotations += 1
        k = rotation.generation_of(rotation.siblings_of(f.path), (f.dev, f.ino))
        self.stats.rotations += len(self._sweep(f.path, below=k))

    def _marks(self, path: Path) -> list[Followed]:
        """What was read of ``path``'s generations: its files open (followed, rotated away) or saved, and its closed
        marks (see :mod:`tracker.siblings`)."""
        saved = [Followed(path, -1, e["dev"], e["ino"], e["offset"], e["line_no"], bytes.fromhex(e["head"]),
                          bytes.fromhex(e["before"] or ""), skipping=e["skipping"])
                 for e in self._resume if e["path"] == path and e["before"] is not None]
        opened = [f for f in [*self._files.values(), *self._retired] if f.path == path]
        return [*opened, *saved, *self._ledger.marks(path)]

    def _sweep(self, path: Path, below: int | None = None) -> list[str]:
        """Read what ``path``'s rotated siblings (``NAME.k``, those below ``below``), oldest first, hold and nothing
        read holds: one not open that is new, or grew, since it was last looked at, is read on from the furthest
        point read of its generation (see :mod:`tracker.siblings`): not at all when it holds no more, in full when
        none of it was read. The siblings already there the first time ``path`` is looked at, without saved
        positions, are not read (marked read). Return the names of those read, said for people."""
        first = self._fresh and path not in self._swept
        self._swept.add(path)
        opened, read, present, followed = self._known(), [], set(), self._files.get(path)
        heads = [bytes.fromhex(e["head"]) for e in self._resume if e["path"] == path]  # saved, not reopened yet
        for k, sibling in sorted(rotation.siblings_of(path).items(), reverse=True):
            if below is not None and k >= below:
                continue
            try:
                st = os.stat(sibling)
            except OSError:
                continue
            identity = (st.st_dev, st.st_ino)
            present.add(identity)
            if identity in opened or not stat.S_ISREG(st.st_mode) or self._ledger.settled(path, identity, st.st_size):
                continue
            if (found := rotation.open_regular(sibling)) is None:
                continue
            fd, st = found
            g = Followed(path, fd, *identity)
            if followed is not None and holds(followed.fd, fd, st.st_size):
                self._read(followed)  # a copy of the file followed, which still holds it: read there, not twice
            if first:
                g.offset, g.head = st.st_size, os.pread(fd, FINGERPRINT_BYTES, 0)
                g.before = rotation.fingerprint_before(fd, g.offset)
                self._ledger.remember(mark_of(g))
            if first or not self._catch_up(g) or st.st_size <= g.offset + g.pending:
                os.close(fd)
                self._ledger.settle(path, identity, st.st_size)
                continue
            said = f"{sibling.name} in full" if not g.offset else f"{sibling.name} on from byte {g.offset} to its end"
            self._read(g)
            self._retire(g)
            read.append(said)
        if below is None and self._ledger.moved(path, present):  # a sibling came or went: forget what none holds
            heads += [rotation.head_of(p) for p in [path, *rotation.siblings_of(path).values()]]
            heads += [os.pread(f.fd, FINGERPRINT_BYTES, 0) for f in [*self._files.values(), *self._retired]
                      if f.path == path]
            self._ledger.prune(path, present, heads)
        return read

    def _catch_up(self, f: Followed) -> bool:
        """Go on in ``f`` from the furthest point read of its generation if it goes on from there (see
        :func:`~tracker.siblings.furthest`); False when it holds no more than was read (nothing to read now)."""
        size = os.fstat(f.fd).st_size
        if size <= f.offset + f.pending:
            return True
        best, held = furthest(f.fd, size, f.offset, (m for m in self._marks(f.path) if m is not f))
        if best is not None:
            f.offset, f.line_no, f.head, f.before, f.skipping, f.pending = (best.offset, best.line_no, best.head,
                                                                           best.before, best.skipping, 0)
        return not held

    def _after_compressed_copy(self, path: Path, offset: int, head: bytes) -> str | None:
        """A file read up to ``offset`` was truncated or rewritten in place and no sibling is a copy of it: if its
        copy was compressed (``NAME.k.gz``), say how much of it could not be read, and read the generations copied
        after it, ``NAME.k-1`` .. ``NAME.1`` (see :meth:`_sweep`); None when there is no such ``.gz``."""
        if not head or (compressed := rotation.compressed_copy(path, offset, head)) is None:
            return None
        k, said = compressed
        newer = self._sweep(path, below=k)
        self.stats.truncations += len(newer)
        return said + (f"; read {', '.join(newer)}" if newer else "")

    def finish(self) -> None:
        """Read what is left, including rotated-away files, and reject unterminated last lines of those."""
        self.poll()
        while self.backlog:
            self.poll()
        self._drain_retired(finish=True)

    def _retire(self, f: Followed) -> None:
        f.retired_at = time.monotonic()
        self._retired.append(f)

    def _drain_retired(self, *, finish: bool = False) -> None:
        """Read what writers still append to rotated-away files; let one go after it stayed quiet for a while."""
        for f in list(self._retired):
            if (problem := self._changed(f, os.fstat(f.fd).st_size)) is not None:
                self._truncated(f, problem)
            size = f.offset + f.pending
            self._read(f)
            if f.offset + f.pending != size:
                f.retired_at = time.monotonic()
            if finish or time.monotonic() - f.retired_at >= _RETIRE_AFTER_S:
                self._read(f, final=True)
                os.close(f.fd)
                self._retired.remove(f)
                f.fd = -1
                self._ledger.remember(mark_of(f))  # its copies are read on from there (see _sweep)

    def _read(self, f: Followed, *, final: bool = False) -> None:
        """Read ``f`` from its offset to its end; on ``final``, reject an unterminated last line.

        The fingerprints (the first bytes, the bytes before the offset) are taken from the bytes read, never
        from the file again afterwards: a writer may append, and logrotate copy and truncate the file, while a
        block is handed over, and a fingerprint of the truncated file would match neither it nor its copy."""
        if not self._catch_up(f):
            return
        size, budget = max(_READ_BYTES, 2 * self.decoder.max_line_bytes), POLL_BYTES
        head, behind = f.head, f.before  # the first bytes read, and the bytes read just before f.offset
        while len(data := os.pread(f.fd, size, at := f.offset)) > f.pending:
            self.stats.last_read = time.time()
            if len(head) < FINGERPRINT_BYTES and at <= len(head):
                head = (head[:at] + data)[:FINGERPRINT_BYTES]
            self._split(f, data)
            behind = _bytes_before(behind + data, at + len(data), f.offset)
            budget -= len(data)
            if budget <= 0 and not final:  # the rest at the next poll: reports and checkpoints go on meanwhile
                self.backlog = True
                break
        if final and f.pending:
            raw = os.pread(f.fd, f.pending, f.offset)
            self.on_block(None, [self.decoder.unterminated(raw, source=str(f.path), line_no=f.line_no + 1,
                                                           offset=f.offset)])
            f.offset, f.pending = f.offset + len(raw), 0
            behind = (behind + raw)[-FINGERPRINT_BYTES:]
        f.head, f.before = head, behind

    def _split(self, f: Followed, data: bytes) -> None:
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


def _bytes_before(data: bytes, end: int, offset: int) -> bytes:
    """The fingerprint's bytes just before ``offset`` out of ``data``, the bytes of a file ending at ``end``."""
    cut = len(data) - (end - offset)
    return data[max(0, cut - FINGERPRINT_BYTES):cut]


def _restart(f: Followed) -> None:
    f.offset = f.line_no = f.pending = 0
    f.head = f.before = b""
    f.skipping = False


def _at_line_start(fd: int, offset: int) -> bool:
    """True at 0, after a newline, or after NUL bytes where ``split_blocks`` begins a line (see there)."""
    pair = os.pread(fd, 2, offset - 1) if offset else b"\n"
    return pair[:1] == b"\n" or (pair[:1] == b"\0" and pair[1:2] not in (b"", b"\0", b"\n"))
