"""What was read of a log's generations, wherever their bytes are: one ledger for every path that decides what to read.

A log's lines are written once, to the file at its path, but their bytes may be in several files: a rename moves a
file to ``NAME.1``, logrotate's ``copy`` and ``copytruncate`` copy it there (``NAME`` then goes on, or is truncated
and begins a new generation). So what was read is said of contents, not of files: a :class:`Followed` (a file open,
or a mark closed) says that the content beginning with its first bytes (``head``) was read up to ``offset``, whose
bytes before are ``before``. Every file that goes on from a mark (:func:`~tracker.rotation.extends`: that file, or a
copy of it) is read on from the furthest such mark, never from before it; one that holds no more than a mark (a
shorter copy, :func:`~tracker.rotation.within`) is not read; any other is a generation none of which was read.

The :class:`Ledger` keeps the closed marks (of files rotated away and closed, of files truncated in place, of the
siblings there when a log was first seen) and is saved with the positions, so restarts keep them: a mark is
forgotten only when another of the same generation goes further, or when no file beside the log holds its
generation any more (nothing can be copied from it then). :func:`furthest` says where a file goes on from;
:class:`~tracker.follow.Follower` reads, and asks it before every read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import rotation
from .rotation import FINGERPRINT_BYTES, Identity

__all__ = ("Followed", "Ledger", "furthest", "holds", "mark_of", "same_generation")


@dataclass(slots=True)
class Followed:
    """One file open (``fd``), or a closed mark (``fd`` -1): how far its lines were read, and its fingerprints."""

    path: Path  # the log it is a generation of: a rotated file keeps it (a restart finds the file by its inode)
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


def mark_of(f: Followed) -> Followed | None:
    """What was read of ``f``, closed: None when nothing was (nothing to tell a copy by, nothing to skip in one)."""
    if f.offset == 0 or not f.head or len(f.before) != min(f.offset, FINGERPRINT_BYTES):
        return None
    return Followed(f.path, -1, f.dev, f.ino, f.offset, f.line_no, f.head, f.before, skipping=f.skipping)


def same_generation(head: bytes, other: bytes) -> bool:
    """Two first bytes of one generation (one begins the other: a file read further has more of its first KiB)."""
    return bool(head) and bool(other) and (head.startswith(other) or other.startswith(head))


def furthest(fd: int, size: int, offset: int, marks: Iterable[Followed]) -> tuple[Followed | None, bool]:
    """Where the file open at ``fd`` (``size`` bytes, read up to ``offset``) goes on from: the furthest mark past
    ``offset`` it extends (holds what was read there, and maybe more), or None; and whether it holds no more than
    some mark past its offset (a shorter copy of what was read: nothing in it to read now)."""
    best, held = None, False
    for m in marks:
        if m.offset <= offset:
            continue
        if rotation.extends(fd, size, m.head, m.offset, m.before):
            best = m if best is None or m.offset > best.offset else best
        elif rotation.within(fd, size, m.head, m.offset):
            held = True
    return best, held


def holds(fd: int, copy: int, size: int) -> bool:
    """The file open at ``fd`` holds the ``size`` bytes of the one open at ``copy`` (their first and last bytes)."""
    return size > 0 and os.fstat(fd).st_size >= size and all(
        os.pread(fd, min(size, FINGERPRINT_BYTES), at) == os.pread(copy, min(size, FINGERPRINT_BYTES), at)
        for at in (0, max(0, size - FINGERPRINT_BYTES)))


class Ledger:
    """Each log's closed marks, and which of its siblings were looked at (identity and size: not again until they
    grow)."""

    def __init__(self) -> None:
        self._marks: dict[Path, list[Followed]] = {}
        self._settled: dict[Path, dict[Identity, int]] = {}
        self._present: dict[Path, set[Identity]] = {}

    def marks(self, path: Path) -> list[Followed]:
        return list(self._marks.get(path, ()))

    def remember(self, mark: Followed | None) -> None:
        """Keep ``mark`` (closed), unless a mark of its generation goes as far; forget those it goes beyond."""
        if mark is None:
            return
        kept = self._marks.setdefault(mark.path, [])
        if any(same_generation(m.head, mark.head) and m.offset >= mark.offset for m in kept):
            return
        kept[:] = [m for m in kept if not same_generation(m.head, mark.head)] + [mark]

    def settled(self, path: Path, identity: Identity, size: int) -> bool:
        """The sibling ``identity`` was looked at when it had ``size`` bytes (nothing new in it since)."""
        return self._settled.get(path, {}).get(identity) == size

    def settle(self, path: Path, identity: Identity, size: int) -> None:
        self._settled.setdefault(path, {})[identity] = size

    def moved(self, path: Path, present: set[Identity]) -> bool:
        """``present`` are not the siblings of ``path`` there when this was last asked (or it was never asked)."""
        before, self._present[path] = self._present.get(path), set(present)
        return before != present

    def prune(self, path: Path, present: set[Identity], heads: Iterable[bytes]) -> None:
        """Forget the siblings no longer there, and the marks of generations no file beside ``path`` holds."""
        self._settled[path] = {i: size for i, size in self._settled.get(path, {}).items() if i in present}
        heads = [h for h in heads if h]
        self._marks[path] = [m for m in self._marks.get(path, []) if any(same_generation(h, m.head) for h in heads)]

    def load(self, saved: dict[str, Any]) -> None:
        """A mark saved (an entry of the positions with ``rotated``)."""
        self.remember(Followed(Path(saved["path"]), -1, saved["dev"], saved["ino"], saved["offset"],
                               saved["line_no"], bytes.fromhex(saved["head"]), bytes.fromhex(saved["before"] or ""),
                               skipping=saved["skipping"]))

    def saved(self) -> list[Followed]:
        """Every closed mark, to save with the positions."""
        return [m for marks in self._marks.values() for m in marks]
