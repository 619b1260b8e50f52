"""Tests for tracker.rotation: whether a rotated sibling goes on from what was read of a file, or holds no more."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tracker.rotation import FINGERPRINT_BYTES, extends, fingerprint_before, open_regular, within

DATA = b"".join(b'{"seq": %d, "pad": "%s"}\n' % (n, b"x" * 40) for n in range(100))


@contextmanager
def opened(path: Path, data: bytes) -> Iterator[tuple[int, int]]:
    path.write_bytes(data)
    found = open_regular(path)
    assert found is not None
    fd, st = found
    try:
        yield fd, st.st_size
    finally:
        os.close(fd)


class TestExtendsAndWithin:
    """A copy is told by the first bytes and the bytes before the offset read; a shorter one by its first bytes."""

    def test_a_longer_copy_extends_what_was_read(self, tmp_path: Path) -> None:
        """A file holding what was read (first bytes, bytes before the offset) and more goes on from the offset."""
        offset = 2000
        head, before = DATA[:FINGERPRINT_BYTES], DATA[offset - FINGERPRINT_BYTES:offset]
        with opened(tmp_path / "copy", DATA[:3000]) as (fd, size):
            assert extends(fd, size, head, offset, before)
            assert fingerprint_before(fd, offset) == before
            assert not within(fd, size, head, offset)

    def test_other_bytes_before_the_offset_are_no_copy(self, tmp_path: Path) -> None:
        """The same first bytes but others before the offset: neither extends nor within."""
        offset = 2000
        head, before = DATA[:FINGERPRINT_BYTES], DATA[offset - FINGERPRINT_BYTES:offset]
        other = DATA[:1500] + b"y" * 1500
        with opened(tmp_path / "other", other) as (fd, size):
            assert not extends(fd, size, head, offset, before)
            assert not within(fd, size, head, offset)

    def test_a_shorter_copy_is_within(self, tmp_path: Path) -> None:
        """A copy of the first bytes only (even shorter than the fingerprint) holds nothing past what was read."""
        head = DATA[:FINGERPRINT_BYTES]
        for cut in (10, FINGERPRINT_BYTES, 1500):
            with opened(tmp_path / f"short{cut}", DATA[:cut]) as (fd, size):
                assert within(fd, size, head, 2000)
                assert not extends(fd, size, head, 2000, DATA[2000 - FINGERPRINT_BYTES:2000])

    def test_nothing_read_is_nothing_to_go_on_from(self, tmp_path: Path) -> None:
        """With no first bytes (nothing read) nothing extends nor is within; an empty file is within nothing."""
        with opened(tmp_path / "any", DATA) as (fd, size):
            assert not extends(fd, size, b"", 0, b"")
            assert not within(fd, size, b"", 0)
        with opened(tmp_path / "empty", b"") as (fd, size):
            assert not within(fd, size, DATA[:FINGERPRINT_BYTES], 2000)

    def test_open_regular_refuses_a_folder(self, tmp_path: Path) -> None:
        """Only a regular file is opened."""
        assert open_regular(tmp_path) is None
        assert open_regular(tmp_path / "missing") is None
