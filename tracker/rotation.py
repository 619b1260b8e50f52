"""Work out rotation: where a followed log went, which sibling is a copy of what was read, what is left to read.

logrotate rotates a log by rename (``NAME`` becomes ``NAME.1``, ``NAME.1`` becomes ``NAME.2``..., and a new
``NAME`` is made) or by copy (copytruncate: ``NAME`` is copied to ``NAME.1``, then truncated in place), and may
compress the older generations (``NAME.k.gz``). So a name says little: a file is known by its device and inode
and by its fingerprints, its first bytes (up to :data:`FINGERPRINT_BYTES`) and the bytes just before the offset
read. From those, these functions decide among a log's siblings:

- where a file went: the sibling with its inode and first bytes (:func:`moved_to`, :func:`generation_of`);
- whether a sibling goes on from what was read of a file (:func:`extends`: read it on from there) or is a shorter
  copy of it (:func:`within`: nothing in it to read), so that no line is read twice nor left unread;
- which sibling is a copy of what was read of a file truncated in place (:func:`find_copy`): it is read on from
  the offset, never from its start, so the lines written after the last read are not lost nor any read twice;
- how much could not be read when the copy was compressed (gzip's trailer holds the size), said for people
  (:func:`lost`, :func:`compressed_copy`).

They look at files (names, identities, first bytes) and read no lines: the :class:`~tracker.follow.Follower`
reads what they find, and passes what it follows (identities, first bytes) as arguments.
"""

from __future__ import annotations

import glob
import gzip
import os
import re
import stat
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import Final, NamedTuple

__all__ = ("FINGERPRINT_BYTES", "OPEN_FLAGS", "Copy", "Identity", "compressed_copy", "extends", "find_copy",
           "fingerprint_before", "generation_of", "head_of", "identity_of", "lost", "moved_to", "open_regular",
           "siblings_of", "within")

FINGERPRINT_BYTES: Final = 1024
#: Opens a log without blocking (on a FIFO put in its place), and not inherited by programs started.
OPEN_FLAGS: Final[int] = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)

#: A file's (device, inode).
Identity = tuple[int, int]


class Copy(NamedTuple):
    """A rotated sibling ``NAME.k`` found to be a copy of what was read of a file (see :func:`find_copy`)."""

    k: int
    path: Path
    fd: int  # open, for the caller to read it on from the offset
    dev: int
    ino: int


def fingerprint_before(fd: int, offset: int) -> bytes:
    """The bytes just before ``offset``, up to :data:`FINGERPRINT_BYTES`."""
    size = min(offset, FINGERPRINT_BYTES)
    return os.pread(fd, size, offset - size)


def identity_of(path: Path, head: bytes = b"") -> Identity | None:
    """(device, inode) of the regular file at ``path`` if it starts with ``head``, else None."""
    try:
        fd = os.open(path, OPEN_FLAGS)
        try:
            st = os.fstat(fd)
            same = stat.S_ISREG(st.st_mode) and os.pread(fd, len(head), 0) == head
        finally:
            os.close(fd)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if same else None


def _entries(folder: Path) -> list[Path]:
    """Everything in ``folder``, sorted by name (nothing when it cannot be listed)."""
    try:
        return [folder / name for name in sorted(os.listdir(folder))]
    except OSError:
        return []


def siblings_of(path: Path) -> dict[int, Path]:
    """``path`` rotated, as logrotate names it: ``{k: NAME.k}`` for those in its folder."""
    pattern = re.compile(re.escape(path.name) + r"\.([1-9][0-9]{0,8})")
    return {int(m[1]): p for p in _entries(path.parent) if (m := pattern.fullmatch(p.name))}


def generation_of(siblings: dict[int, Path], identity: Identity) -> int:
    """The ``k`` of the sibling ``NAME.k`` that is the file ``identity``; 0 when none is."""
    return next((k for k, p in siblings.items() if identity_of(p) == identity), 0)


#: The suffixes of compressed files: never a log moved away (its bytes are no log's lines).
_COMPRESSED_SUFFIXES: Final = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4")


def moved_to(path: Path, identity: Identity, head: bytes) -> tuple[int, Path] | None:
    """Where the file ``identity`` that was at ``path`` is now: the entry of its folder with that inode and those
    first bytes (an inode that now holds another file is not it), and its ``k`` when it is ``NAME.k`` (else 0);
    None when it is nowhere there. A file saved empty has no first bytes to tell it from another file that got
    its inode since, so only a name of its rotations (beginning with its own name, or its stem: ``events.jsonl.1``,
    ``events-20261127.jsonl``) and not compressed can be it."""
    entries = _entries(path.parent)
    if not head:
        stems = (path.name, path.name.split(".", 1)[0])
        entries = [p for p in entries if p.name.startswith(stems) and not p.name.endswith(_COMPRESSED_SUFFIXES)]
    found = next((p for p in entries if identity_of(p, head) == identity), None)
    return None if found is None else (next((k for k, p in siblings_of(path).items() if p == found), 0), found)


def find_copy(path: Path, head: bytes, offset: int, before: bytes | None, known: Collection[Identity]) -> Copy | None:
    """The rotated sibling ``NAME.k`` of ``path``, not ``known``, that is a copy of what was read of the file at
    ``path`` (copytruncate): it starts with ``head``, is at least ``offset`` bytes long and, when ``before`` is
    known, has those bytes before that offset. None when there is none, or when nothing was read (no ``head``:
    nothing to know a copy by, and nothing to go on from); the lowest ``k`` when there are several."""
    if not head:
        return None
    for k, sibling in sorted(siblings_of(path).items()):
        try:
            fd = os.open(sibling, OPEN_FLAGS)
        except OSError:
            continue
        st = os.fstat(fd)
        if (stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in known and st.st_size >= offset
                and os.pread(fd, len(head), 0) == head
                and (before is None or fingerprint_before(fd, offset) == before)):
            return Copy(k, sibling, fd, st.st_dev, st.st_ino)
        os.close(fd)
    return None


def head_of(path: Path) -> bytes:
    """The first bytes (up to :data:`FINGERPRINT_BYTES`) of the regular file at ``path``; none when there is none."""
    if (found := open_regular(path)) is None:
        return b""
    try:
        return os.pread(found[0], FINGERPRINT_BYTES, 0)
    finally:
        os.close(found[0])


def open_regular(path: Path) -> tuple[int, os.stat_result] | None:
    """``path`` opened (see :data:`OPEN_FLAGS`) with its status when it is a regular file; else None."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError:
        return None
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return fd, st
    os.close(fd)
    return None


def extends(fd: int, size: int, head: bytes, offset: int, before: bytes) -> bool:
    """The file open at ``fd`` (``size`` bytes) holds what was read of a file up to ``offset`` (its first bytes
    ``head``, the bytes ``before`` that offset), and so goes on from there: that file itself, or a copy of it."""
    return (bool(head) and size >= offset and os.pread(fd, len(head), 0) == head
            and fingerprint_before(fd, offset) == before)


def within(fd: int, size: int, head: bytes, offset: int) -> bool:
    """The file open at ``fd`` (``size`` bytes, some) is a shorter copy of what was read of a file up to ``offset``
    (its first bytes ``head``): it starts as that file, and holds nothing past what was read."""
    first = os.pread(fd, len(head), 0)
    return 0 < size <= offset and bool(head) and (first == head or (size < len(head) and head.startswith(first)))


def lost(path: Path, offset: int, head: bytes) -> str:
    """What of a file read up to ``offset`` could not be read, said: the bytes after its offset, counted when one
    rotated ``.gz`` beside it starts with its first bytes (see :func:`compressed_copy`)."""
    compressed = compressed_copy(path, offset, head)
    return compressed[1] if compressed is not None else (
        f"what it had after byte {offset} could not be read (how many bytes is unknown)")


def compressed_copy(path: Path, offset: int, head: bytes) -> tuple[int, str] | None:
    """The one rotated ``.gz`` beside ``path`` that starts with ``head`` and holds at least ``offset`` bytes: its
    ``k`` when it is ``NAME.k.gz`` (else 0), and how many bytes after ``offset`` it holds, said (gzip's trailer
    holds the size, exact below 4 GiB); else None."""
    found = [(gz, size) for gz in sorted(path.parent.glob(glob.escape(path.name) + ".*.gz"))
             if identity_of(gz) and (size := _gzip_size(gz, head)) is not None]
    if len(found) == 1 and found[0][1] >= offset:
        gz, size = found[0]
        k = int(m[1]) if (m := re.fullmatch(re.escape(path.name) + r"\.([1-9][0-9]{0,8})\.gz", gz.name)) else 0
        return k, f"{size - offset} bytes after byte {offset} could not be read (compressed into {gz.name})"
    return None


def _gzip_size(gz: Path, head: bytes) -> int | None:
    """The size of the file compressed in ``gz`` (from its trailer) when it starts with ``head``, else None."""
    try:
        with gzip.open(gz) as stream, open(gz, "rb") as raw:
            raw.seek(-4, os.SEEK_END)
            return int.from_bytes(raw.read(4), "little") if stream.read(len(head)) == head else None
    except (OSError, EOFError, zlib.error):
        return None
