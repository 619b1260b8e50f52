"""Tests for tracker.follow: the Follower on real files through rotations, restarts, odd files and damaged
positions; the zero-filled region rule it shares with batch.split_blocks; and the Quarantine's pairing
through kill -9."""

from __future__ import annotations

import gzip
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import T0, TIMEOUT, record, wait_for
from tracker import follow as follow_module
from tracker.batch import read_blocks
from tracker.decoder import DEFAULT_MAX_LINE_BYTES, Decoder, Quarantine, Rejected
from tracker.follow import FINGERPRINT_BYTES, Follower, check_positions

S = 1_000_000
MIB = 1 << 20


def line(seq: int, session: str = "s1", size: int = 0) -> bytes:
    """One valid error event line, its text padded to make the line about ``size`` bytes long."""
    rec = record(seq, session, "error", T0 + seq * S, error=f"boom {seq} ".ljust(max(1, size - 150), "x"))
    return orjson.dumps(rec) + b"\n"


def lines(seqs: Iterable[int], session: str = "s1", size: int = 0) -> bytes:
    return b"".join(line(seq, session, size) for seq in seqs)


def assert_says(warning: str, *parts: str) -> None:
    """The warning holds every one of ``parts``."""
    missing = [part for part in parts if part not in warning]
    assert not missing, f"{warning!r} does not say {missing}"


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as stream:
        stream.write(data)


class Seen:
    """What a follower handed over: the blocks' rows, the rejected lines, and the warnings."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        self.rejected: list[Rejected] = []
        self.warnings: list[str] = []

    def __call__(self, frame: pl.DataFrame | None, rejected: Iterable[Rejected]) -> None:
        if frame is not None and frame.height:
            self.frames.append(frame)
        self.rejected.extend(rejected)

    def rows(self) -> list[dict[str, Any]]:
        return [row for frame in self.frames for row in frame.to_dicts()]

    def seqs(self) -> list[int]:
        return [row["seq"] for row in self.rows()]


Make = Callable[..., tuple[Follower, Seen]]


@pytest.fixture
def make() -> Iterator[Make]:
    """Makes followers that hand everything to a :class:`Seen`; their files are closed at the end."""
    made: list[Follower] = []

    def factory(targets: list[Path], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, **kwargs: Any
                ) -> tuple[Follower, Seen]:
        seen = Seen()
        follower = Follower(targets, Decoder(max_line_bytes=max_line_bytes, dedupe=False), seen,
                            warn=seen.warnings.append, **kwargs)
        made.append(follower)
        return follower, seen

    yield factory
    for follower in made:
        follower.release()


def saved(follower: Follower) -> list[dict[str, Any]]:
    """The follower's positions as a checkpoint keeps them (through JSON), checked; then it stops."""
    positions = check_positions(orjson.loads(orjson.dumps(follower.positions())))
    follower.release()
    return positions


def rotate(log: Path) -> None:
    """logrotate's rename rotation: NAME.k -> NAME.k+1 (oldest first), NAME -> NAME.1."""
    numbered = sorted((int(p.name.rsplit(".", 1)[1]), p) for p in log.parent.glob(log.name + ".[0-9]*")
                      if p.name.rsplit(".", 1)[1].isdigit())
    for k, path in reversed(numbered):
        path.rename(log.with_name(f"{log.name}.{k + 1}"))
    log.rename(log.with_name(log.name + ".1"))


class TestRotation:
    def test_two_rotations_while_stopped(self, tmp_path: Path, make: Make) -> None:
        """25 events in three generations, two rotations while the follower is down: all 25 are read, oldest first."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 6)))
        first, seen = make([log])
        first.poll()
        positions = saved(first)
        append(log, lines(range(6, 11)))
        rotate(log)
        log.write_bytes(lines(range(11, 18)))  # the middle generation: created and rotated away while down
        rotate(log)
        log.write_bytes(lines(range(18, 26)))
        second, again = make([log], resume=positions)
        second.poll()
        assert seen.seqs() + again.seqs() == list(range(1, 26))
        assert again.warnings == []
        assert second.stats.rotations == 2

    def test_two_rotations_between_polls(self, tmp_path: Path, make: Make) -> None:
        """A generation that lives less than one poll is read in full, between the older and the new file."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 6)))
        follower, seen = make([log])
        follower.poll()
        append(log, lines(range(6, 11)))
        rotate(log)
        log.write_bytes(lines(range(11, 18)))
        rotate(log)
        log.write_bytes(lines(range(18, 26)))
        follower.poll()
        assert seen.seqs() == list(range(1, 26))
        assert follower.stats.rotations == 2
        follower.finish()
        assert (seen.seqs(), seen.rejected, seen.warnings) == (list(range(1, 26)), [], [])

    def test_rotated_file_deleted_while_stopped_is_reported(self, tmp_path: Path, make: Make) -> None:
        """A saved file found nowhere gives a warning naming it and the offset after which lines were lost."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4)))
        first, _ = make([log])
        first.poll()
        offset = log.stat().st_size
        positions = saved(first)
        append(log, lines(range(4, 6)))
        rotate(log)
        (tmp_path / "events.jsonl.1").unlink()
        log.write_bytes(lines(range(6, 8)))
        second, seen = make([log], resume=positions)
        second.poll()
        assert seen.seqs() == [6, 7]
        (warning,) = seen.warnings
        assert_says(warning, str(log), f"byte {offset}", "could not be read")

    def test_a_file_saved_empty_is_not_found_under_a_foreign_name(self, tmp_path: Path, make: Make) -> None:
        """A file saved while empty has no first bytes to check: its inode under a name that is none of its
        rotations (an inode reused by another file, or the file renamed to unrelated.bin) is not read as it; it is
        said lost. Under a rotation's name (events.jsonl.1) it is read."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"")
        first, _ = make([log])
        first.poll()
        positions = saved(first)
        log.rename(tmp_path / "unrelated.bin")
        append(tmp_path / "unrelated.bin", lines(range(1, 3)))
        log.write_bytes(lines(range(3, 5)))
        second, seen = make([log], resume=positions)
        second.poll()
        assert seen.seqs() == [3, 4]
        (warning,) = seen.warnings
        assert_says(warning, str(log), "not found since the checkpoint")

    def test_a_file_saved_empty_is_found_under_a_rotation_name(self, tmp_path: Path, make: Make) -> None:
        """The same file renamed to events.jsonl.1 (a rename rotation), lines appended by a writer still holding
        it: they are read, then the new file."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"")
        first, _ = make([log])
        first.poll()
        positions = saved(first)
        rotate(log)
        append(tmp_path / "events.jsonl.1", lines(range(1, 3)))
        log.write_bytes(lines(range(3, 5)))
        second, seen = make([log], resume=positions)
        second.poll()
        assert sorted(seen.seqs()) == [1, 2, 3, 4]

    def test_rotated_file_compressed_while_stopped_says_how_much_is_lost(self, tmp_path: Path, make: Make) -> None:
        """A saved file compressed to .gz while down: the warning says how many bytes after the offset were not read."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4)))
        first, _ = make([log])
        first.poll()
        positions = saved(first)
        lost = lines(range(4, 6))
        append(log, lost)
        rotate(log)
        rotated = tmp_path / "events.jsonl.1"
        (tmp_path / "events.jsonl.1.gz").write_bytes(gzip.compress(rotated.read_bytes()))
        rotated.unlink()
        log.write_bytes(lines(range(6, 8)))
        second, seen = make([log], resume=positions)
        second.poll()
        assert seen.seqs() == [6, 7]
        (warning,) = seen.warnings
        assert_says(warning, str(log), "events.jsonl.1.gz", f"{len(lost)} bytes after byte")

    def test_rotation_into_a_folder_target(self, tmp_path: Path, make: Make) -> None:
        """In a followed folder, two rotations between polls (the new file not there yet) lose nothing either."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 3)))
        follower, seen = make([tmp_path])
        follower.poll()
        append(log, lines(range(3, 5)))
        rotate(log)
        log.write_bytes(lines(range(5, 7)))
        rotate(log)
        follower.poll()
        log.write_bytes(lines(range(7, 9)))
        follower.poll()
        assert seen.seqs() == list(range(1, 9))


def copytruncate(log: Path) -> None:
    """logrotate's copytruncate: NAME.k -> NAME.k+1 (oldest first), NAME copied to NAME.1 (a new inode), then NAME
    truncated to 0 bytes in place (the same inode)."""
    numbered = sorted((int(p.name.rsplit(".", 1)[1]), p) for p in log.parent.glob(log.name + ".[0-9]*")
                      if p.name.rsplit(".", 1)[1].isdigit())
    for k, path in reversed(numbered):
        path.rename(log.with_name(f"{log.name}.{k + 1}"))
    shutil.copy(log, log.with_name(log.name + ".1"))
    os.truncate(log, 0)


class TestCopyTruncate:
    @pytest.mark.parametrize("size", [0, 600])
    def test_a_copytruncate_while_a_block_is_handed_over(self, tmp_path: Path, size: int) -> None:
        """Under steady writing logrotate acts while the follower hands a block over, before it last looks at the
        file: its fingerprints are those of the bytes it read (not of the truncated file), so the copy is found,
        nothing is lost, and the position it saves loads (files under and over the fingerprint's length)."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4), size=size))
        seen, armed = Seen(), [False]

        def on_block(frame: pl.DataFrame | None, rejected: Iterable[Rejected]) -> None:
            seen(frame, rejected)
            if armed[0]:  # the writer appends, logrotate copies and truncates, the writer appends again
                armed[0] = False
                append(log, lines([7, 8], size=size))
                copytruncate(log)
                append(log, lines([9], size=size))

        follower = Follower([log], Decoder(dedupe=False), on_block, warn=seen.warnings.append)
        try:
            follower.poll()
            append(log, lines(range(4, 7), size=size))
            armed[0] = True
            follower.poll()
            check_positions(orjson.loads(orjson.dumps(follower.positions())))
            follower.poll()
            assert seen.seqs() == list(range(1, 10))
        finally:
            follower.release()

    def test_copy_then_copytruncate_while_stopped_on_a_file_saved_empty(self, tmp_path: Path, make: Make) -> None:
        """Saved while empty; while stopped logrotate's ``copy`` made NAME.2 (lines 1-3) and a copytruncate NAME.1
        (lines 1-6, the same start): NAME.2 is read, then NAME.1 on from where NAME.2 ended, each line once."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"")
        first, _ = make([log])
        first.poll()
        positions = saved(first)
        append(log, lines(range(1, 4)))
        shutil.copy(log, tmp_path / "events.jsonl.1")  # logrotate's copy: NAME goes on
        append(log, lines(range(4, 7)))
        copytruncate(log)  # NAME.1 -> NAME.2, NAME copied to NAME.1, truncated
        append(log, lines(range(7, 9)))
        second, seen = make([log], resume=positions)
        second.poll()
        assert seen.seqs() == list(range(1, 9))

    def test_a_copy_deleted_while_stopped_reads_the_newer_one(self, tmp_path: Path, make: Make) -> None:
        """logrotate with ``rotate 1``: while stopped the saved file was copied, truncated, copied again and the
        first copy deleted. The lines after the offset are gone (said); NAME.1, which appeared since the
        checkpoint, is read in full, then NAME."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4)))
        first, _ = make([log])
        first.poll()
        positions = saved(first)
        append(log, lines(range(4, 6)))
        copytruncate(log)
        append(log, lines(range(6, 9)))
        (tmp_path / "events.jsonl.1").unlink()  # rotate 1: the oldest generation goes
        copytruncate(log)
        append(log, lines([9]))
        second, seen = make([log], resume=positions)
        second.poll()
        assert seen.seqs() == [6, 7, 8, 9]
        lost, found = seen.warnings
        assert_says(lost, str(log), f"after byte {len(lines(range(1, 4)))} could not be read")
        assert_says(found, str(log), "events.jsonl.1 in full")

    def test_lines_after_the_offset_are_read_from_the_copy(self, tmp_path: Path, make: Make) -> None:
        """Lines written after the last poll and before a copytruncate are read from NAME.1, then NAME anew."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 6)))
        follower, seen = make([log])
        follower.poll()
        append(log, lines(range(6, 11)))  # only in the copy once NAME is truncated
        copytruncate(log)
        follower.poll()
        append(log, lines(range(11, 16)))
        follower.poll()
        assert seen.seqs() == list(range(1, 16))
        assert follower.stats.truncations == 1
        (warning,) = seen.warnings
        assert_says(warning, str(log), "events.jsonl.1", "truncated", f"byte {len(lines(range(1, 6)))}")
        assert "could not be read" not in warning
        follower.finish()
        assert (seen.seqs(), seen.rejected) == (list(range(1, 16)), [])

    def test_a_copy_ending_mid_line_is_read_to_its_last_newline_then_rejected(self, tmp_path: Path,
                                                                               make: Make) -> None:
        """A line cut by the copy (its start in NAME.1, its end written to NAME after the truncate) is read as a
        replay of both files reads it: the fragment in the copy is rejected as unterminated, once, at the end."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 3)) + line(3)[:30])
        follower, seen = make([log])
        follower.poll()
        copytruncate(log)
        append(log, line(3)[30:] + line(4))
        follower.poll()
        follower.finish()
        assert seen.seqs() == [1, 2, 4]
        assert sorted((r.reason, r.line_no) for r in seen.rejected) == [("invalid_json", 1), ("unterminated", 3)]

    def test_two_copytruncates_between_polls(self, tmp_path: Path, make: Make) -> None:
        """The copy of what was read is NAME.2 by now: read on from the offset, then NAME.1 in full, then NAME."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 6)))
        follower, seen = make([log])
        follower.poll()
        append(log, lines(range(6, 9)))
        copytruncate(log)
        log.write_bytes(lines(range(9, 14)))
        copytruncate(log)
        append(log, lines(range(14, 17)))
        follower.poll()
        assert seen.seqs() == list(range(1, 17))
        assert follower.stats.truncations == 2
        assert all("could not be read" not in w for w in seen.warnings)

    @pytest.mark.parametrize("seed", range(6))
    def test_copies_are_never_read_twice(self, tmp_path: Path, make: Make, seed: int) -> None:
        """Many copytruncates and some rename rotations, each generation seen by a poll and then written again
        before it is rotated, polled between and restarted from saved positions at random: every line is read
        exactly once, in order, although every older copy is still in the folder."""
        log = tmp_path / "events.jsonl"
        rnd = random.Random(seed)
        follower, seen = make([log])
        seens, seq = [seen], 0
        for step in range(30):
            for polled in (True, False):  # lines read before the rotation, then lines not read yet
                count = rnd.randint(1, 4)
                append(log, lines(range(seq + 1, seq + 1 + count)))
                seq += count
                if polled:
                    follower.poll()
            if rnd.random() < 0.2:  # stopped now, started again after the rotation
                positions = saved(follower)
                follower, seen = make([log], resume=positions)
                seens.append(seen)
            roll = rnd.random()
            if roll < 0.4:
                copytruncate(log)
            elif roll < 0.5 or step == 10:
                rotate(log)
                log.write_bytes(b"")
            if rnd.random() < 0.5:
                follower.poll()
        follower.finish()
        seqs = [s for seen in seens for s in seen.seqs()]
        assert sorted(seqs) == seqs == list(range(1, seq + 1))
        assert all("could not be read" not in w for seen in seens for w in seen.warnings)

    def test_plain_truncation_beside_an_older_copy(self, tmp_path: Path, make: Make) -> None:
        """A truncation without a copy, beside NAME.1 of an earlier generation: read again from the start, as
        before, and the old copy is not read again."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4)))
        follower, seen = make([log])
        follower.poll()
        copytruncate(log)
        append(log, lines(range(4, 7)))
        follower.poll()
        os.truncate(log, 0)
        append(log, lines(range(7, 9)))
        follower.poll()
        assert seen.seqs() == list(range(1, 9))
        assert follower.stats.truncations == 2
        assert_says(seen.warnings[-1], str(log), "truncated or replaced", "reading it again from the start",
                    "if anything, could not be read")

    def test_a_sibling_with_the_same_first_kib_but_other_lines_is_no_copy(self, tmp_path: Path, make: Make) -> None:
        """NAME.1 starts with the same 1 KiB but holds other bytes before the offset: it is not a copy of what was
        read, so it is not read on from the offset; NAME is read again from the start, as after a plain truncation,
        and NAME.1, a generation never seen, in full (lines read twice are one event: the engine drops them)."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 5), size=400))
        follower, seen = make([log])
        follower.poll()
        other = lines(range(1, 4), size=400) + lines(range(4, 9), session="s2", size=400)
        assert other[:FINGERPRINT_BYTES] == log.read_bytes()[:FINGERPRINT_BYTES]
        assert len(other) > log.stat().st_size
        (tmp_path / "events.jsonl.1").write_bytes(other)
        os.truncate(log, 0)
        append(log, lines(range(9, 11)))
        follower.poll()
        assert seen.seqs() == [1, 2, 3, 4, *range(1, 9), 9, 10]
        truncated, found = seen.warnings
        assert_says(truncated, str(log), "truncated or replaced", "reading it again from the start")
        assert_says(found, str(log), "events.jsonl.1 in full")

    def test_copytruncate_while_stopped(self, tmp_path: Path, make: Make) -> None:
        """Lines written after the checkpoint and before a copytruncate while down are read from NAME.1."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 6)))
        first, seen = make([log])
        first.poll()
        offset = log.stat().st_size
        positions = saved(first)
        append(log, lines(range(6, 11)))
        copytruncate(log)
        append(log, lines(range(11, 14)))
        second, again = make([log], resume=positions)
        second.poll()
        assert seen.seqs() + again.seqs() == list(range(1, 14))
        (warning,) = again.warnings
        assert_says(warning, str(log), "events.jsonl.1", f"byte {offset}")
        assert "could not be read" not in warning
        second.finish()
        assert seen.seqs() + again.seqs() == list(range(1, 14))

    def test_copytruncate_while_stopped_then_regrown_past_the_offset(self, tmp_path: Path, make: Make) -> None:
        """NAME grew back beyond the saved offset: its first bytes tell it is another generation; NAME.1 goes on."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 3)))
        first, seen = make([log])
        first.poll()
        positions = saved(first)
        append(log, lines(range(3, 5)))
        copytruncate(log)
        append(log, lines(range(5, 15)))
        second, again = make([log], resume=positions)
        second.poll()
        assert seen.seqs() + again.seqs() == list(range(1, 15))
        assert all("could not be read" not in w for w in again.warnings)

    def test_two_copytruncates_while_stopped(self, tmp_path: Path, make: Make) -> None:
        """The saved file's copy is NAME.2: read on from the offset, then NAME.1 (a generation never seen) in full,
        then NAME from its start; every line once, in order."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 6)))
        first, seen = make([log])
        first.poll()
        positions = saved(first)
        append(log, lines(range(6, 9)))
        copytruncate(log)
        append(log, lines(range(9, 14)))
        copytruncate(log)
        append(log, lines(range(14, 17)))
        second, again = make([log], resume=positions)
        second.poll()
        assert seen.seqs() + again.seqs() == list(range(1, 17))
        assert all("could not be read" not in w for w in again.warnings)
        second.finish()
        assert seen.seqs() + again.seqs() == list(range(1, 17))

    def test_rename_rotation_then_copytruncate_while_stopped(self, tmp_path: Path, make: Make) -> None:
        """A file rotated by rename (NAME.1, still drained) and then a copytruncate while down: the renamed file is
        NAME.2 and finished; NAME.1, a copy of the saved NAME, is read on from NAME's offset, not in full."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4)))
        first, seen = make([log])
        first.poll()
        rotate(log)
        log.write_bytes(lines(range(4, 6)))
        first.poll()
        append(tmp_path / "events.jsonl.1", lines(range(100, 102)))  # a writer still holding the renamed file
        positions = saved(first)
        assert len(positions) == 2
        append(log, lines(range(6, 9)))
        copytruncate(log)
        append(log, lines(range(9, 11)))
        second, again = make([log], resume=positions)
        second.poll()
        assert seen.seqs() + again.seqs() == [*range(1, 6), 100, 101, *range(6, 11)]
        assert all("could not be read" not in w for w in again.warnings)

    def test_copytruncate_then_rename_rotation_while_stopped(self, tmp_path: Path, make: Make) -> None:
        """While down NAME was copied and truncated (its copy NAME.2 by now), then written and rotated by rename
        (its inode, holding a newer generation, is NAME.1): the saved file goes on in its copy, NAME.1 is read in
        full, then the new NAME; nothing is said lost."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4)))
        first, seen = make([log])
        first.poll()
        positions = saved(first)
        append(log, lines(range(4, 7)))
        copytruncate(log)
        append(log, lines(range(7, 10)))
        rotate(log)
        log.write_bytes(lines(range(10, 12)))
        second, again = make([log], resume=positions)
        second.poll()
        assert seen.seqs() + again.seqs() == list(range(1, 12))
        assert all("could not be read" not in w for w in again.warnings)

    def test_rotations_while_stopped_beside_a_retired_copy(self, tmp_path: Path, make: Make) -> None:
        """A copy still drained at the checkpoint, then copytruncate, a rename rotation and copytruncate while
        down: every line once (the saved files are finished oldest first, as after rename rotations), nothing
        said lost."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4)))
        first, seen = make([log])
        first.poll()
        append(log, lines(range(4, 6)))
        copytruncate(log)
        append(log, lines(range(6, 8)))
        first.poll()
        positions = saved(first)
        assert len(positions) == 2  # NAME and its copy, NAME.1
        append(log, lines(range(8, 10)))
        copytruncate(log)
        append(log, lines(range(10, 12)))
        rotate(log)
        log.write_bytes(lines(range(12, 14)))
        copytruncate(log)
        append(log, lines(range(14, 16)))
        second, again = make([log], resume=positions)
        second.poll()
        assert seen.seqs() == list(range(1, 8))
        assert sorted(again.seqs()) == list(range(8, 16))
        assert all("could not be read" not in w for w in again.warnings)

    def test_copy_deleted_while_stopped_is_reported(self, tmp_path: Path, make: Make) -> None:
        """No sibling holds the continuation: the warning says what could not be read, as before."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4)))
        first, _ = make([log])
        first.poll()
        offset = log.stat().st_size
        positions = saved(first)
        append(log, lines(range(4, 6)))
        copytruncate(log)
        (tmp_path / "events.jsonl.1").unlink()
        append(log, lines(range(6, 8)))
        second, seen = make([log], resume=positions)
        second.poll()
        assert seen.seqs() == [6, 7]
        (warning,) = seen.warnings
        assert_says(warning, str(log), f"byte {offset}", "could not be read")

    def test_copy_compressed_before_it_was_seen(self, tmp_path: Path, make: Make) -> None:
        """The copy was compressed (NAME.1.gz) before the next poll: the warning says how many bytes after the offset
        could not be read, and NAME is read again from the start."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4)))
        follower, seen = make([log])
        follower.poll()
        lost = lines(range(4, 6))
        append(log, lost)
        copytruncate(log)
        copy = tmp_path / "events.jsonl.1"
        (tmp_path / "events.jsonl.1.gz").write_bytes(gzip.compress(copy.read_bytes()))
        copy.unlink()
        append(log, lines(range(6, 8)))
        follower.poll()
        assert seen.seqs() == [1, 2, 3, 6, 7]
        (warning,) = seen.warnings
        assert_says(warning, str(log), "truncated or replaced", f"{len(lost)} bytes after byte",
                    "events.jsonl.1.gz", "reading it again from the start")

    def test_older_copy_compressed_while_stopped(self, tmp_path: Path, make: Make) -> None:
        """Two copytruncates while down, the saved file's copy compressed into NAME.2.gz (delaycompress): what it
        held after the offset is said lost, and NAME.1, copied after it, is read in full before NAME."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4)))
        first, seen = make([log])
        first.poll()
        positions = saved(first)
        lost = lines(range(4, 6))
        append(log, lost)
        copytruncate(log)
        append(log, lines(range(6, 9)))
        copytruncate(log)
        older = tmp_path / "events.jsonl.2"
        (tmp_path / "events.jsonl.2.gz").write_bytes(gzip.compress(older.read_bytes()))
        older.unlink()
        append(log, lines(range(9, 11)))
        second, again = make([log], resume=positions)
        second.poll()
        assert seen.seqs() + again.seqs() == [1, 2, 3, *range(6, 11)]
        (warning,) = again.warnings
        assert_says(warning, str(log), f"{len(lost)} bytes after byte", "events.jsonl.2.gz", "events.jsonl.1 in full")

    def test_copied_before_any_of_it_was_read(self, tmp_path: Path, make: Make) -> None:
        """NAME was empty at the last poll, then written and copied and truncated before the next one: no bytes
        to know the copy by, but NAME.1 appeared since, so it is read in full, then NAME."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"")
        follower, seen = make([log])
        follower.poll()
        append(log, lines(range(1, 4)))
        copytruncate(log)
        append(log, lines(range(4, 6)))
        follower.poll()
        assert seen.seqs() == list(range(1, 6))
        (warning,) = seen.warnings
        assert_says(warning, str(log), "events.jsonl.1 in full")
        assert follower.stats.truncations == 1

    def test_checkpoint_while_empty_then_copytruncate_while_stopped(self, tmp_path: Path, make: Make,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        """Saved just after a copytruncate (NAME empty, its copy let go), then written and copytruncated while down:
        the new copy, NAME.1, is read in full; the old one, NAME.2, is not read again."""
        monkeypatch.setattr(follow_module, "_RETIRE_AFTER_S", 0.0)
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4)))
        first, seen = make([log])
        first.poll()
        append(log, lines(range(4, 6)))
        copytruncate(log)
        first.poll()
        first.poll()  # the copy is let go: only NAME, empty, is saved
        positions = saved(first)
        assert [entry["offset"] for entry in positions if not entry["rotated"]] == [0]
        append(log, lines(range(6, 9)))
        copytruncate(log)
        append(log, lines(range(9, 11)))
        second, again = make([log], resume=positions)
        second.poll()
        assert seen.seqs() + again.seqs() == list(range(1, 11))
        (warning,) = again.warnings
        assert_says(warning, str(log), "events.jsonl.1 in full")

    def test_siblings_of_an_empty_file_are_not_read(self, tmp_path: Path, make: Make) -> None:
        """Rotated siblings already there when an empty NAME is first seen, an empty copy (logrotate's ifempty), and
        a copy of what NAME holds now (logrotate's copy, no truncation) are never read."""
        log = tmp_path / "events.jsonl"
        (tmp_path / "events.jsonl.1").write_bytes(lines(range(1, 3)))
        (tmp_path / "events.jsonl.2").write_bytes(lines(range(3, 5)))
        log.write_bytes(b"")
        follower, seen = make([log])
        follower.poll()
        copytruncate(log)  # an empty NAME copied
        follower.poll()
        append(log, lines(range(5, 8)))
        numbered = sorted(tmp_path.glob("events.jsonl.[0-9]"), reverse=True)
        for path in numbered:
            path.rename(tmp_path / f"events.jsonl.{int(path.suffix[1:]) + 1}")
        shutil.copy(log, tmp_path / "events.jsonl.1")  # copied, not truncated
        follower.poll()
        positions = saved(follower)
        again, seen_again = make([log], resume=positions)
        again.poll()
        assert (seen.seqs(), seen.warnings, seen_again.seqs(), seen_again.warnings) == ([5, 6, 7], [], [], [])

    def test_copytruncate_then_rename_rotation_between_polls(self, tmp_path: Path, make: Make) -> None:
        """Copied and truncated, written again, then rotated by rename, all between two polls: the copy (NAME.2)
        is read on from the offset, the renamed file (NAME.1) from its start, then the new NAME; the positions
        saved after that are sound."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 3)))
        follower, seen = make([log])
        follower.poll()
        append(log, lines(range(3, 5)))
        copytruncate(log)
        append(log, line(5))  # shorter than what was read: read from the renamed file's offset, it has nothing
        rotate(log)
        log.write_bytes(lines(range(6, 8)))
        follower.poll()
        assert seen.seqs() == list(range(1, 8))
        assert seen.rejected == []
        check_positions(orjson.loads(orjson.dumps(follower.positions())))

    def test_empty_file_written_copied_and_rotated_between_polls(self, tmp_path: Path, make: Make) -> None:
        """NAME empty at the last poll, then written, copied and truncated, and rotated by rename: its copy (NAME.2)
        is read in full."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"")
        follower, seen = make([log])
        follower.poll()
        append(log, lines(range(1, 3)))
        copytruncate(log)
        rotate(log)
        log.write_bytes(lines(range(3, 5)))
        follower.poll()
        assert seen.seqs() == list(range(1, 5))

    def test_restart_while_the_copy_is_being_read(self, tmp_path: Path, make: Make,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        """Stopped with the copy read only in part (a backlog): the restart goes on in the copy from where it was,
        and reads no line twice."""
        monkeypatch.setattr(follow_module, "POLL_BYTES", 1)
        monkeypatch.setattr(follow_module, "_READ_BYTES", 1)
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 3)))
        first, seen = make([log], max_line_bytes=300)
        first.finish()
        append(log, lines(range(3, 13)))
        copytruncate(log)
        append(log, lines(range(13, 15)))
        first.poll()  # the copy in part, NAME in part
        assert first.backlog
        positions = saved(first)
        second, again = make([log], max_line_bytes=300, resume=positions)
        second.finish()
        assert sorted(seen.seqs() + again.seqs()) == list(range(1, 15))
        assert len(seen.seqs() + again.seqs()) == 14


def logrotate_copy(log: Path, cut: int | None = None) -> None:
    """logrotate's ``copy``: NAME.k -> NAME.k+1 (oldest first), NAME copied to NAME.1; NAME goes on untouched. With
    ``cut``, the copy holds only NAME's first ``cut`` bytes (seen while it is being made)."""
    for k, path in sorted(((int(p.suffix[1:]), p) for p in log.parent.glob(log.name + ".[0-9]*")), reverse=True):
        path.rename(log.with_name(f"{log.name}.{k + 1}"))
    log.with_name(log.name + ".1").write_bytes(log.read_bytes()[:cut])


class TestSiblingLedger:
    """Every rotated sibling is remembered (identity, first bytes, how far it was read), so each line is read once."""

    def test_a_copy_of_a_file_saved_empty_beside_a_renamed_one_is_read_once(self, tmp_path: Path,
                                                                             make: Make) -> None:
        """Renamed away, NAME made anew and written, saved before the follower read it, then copied (logrotate's
        copy): the copy holds what NAME holds, so each line is read once, not from both."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4)))
        first, seen = make([log])
        first.poll()
        rotate(log)
        log.write_bytes(b"")
        first.poll()
        append(log, lines(range(4, 7)))
        positions = saved(first)
        logrotate_copy(log)
        append(log, lines([7]))
        second, again = make([log], resume=positions)
        second.finish()
        assert seen.seqs() + again.seqs() == list(range(1, 8))

    @pytest.mark.parametrize("restart", [False, True])
    def test_a_generation_rotated_while_nothing_was_at_the_path(self, tmp_path: Path, make: Make,
                                                                restart: bool) -> None:
        """Renamed away with no new NAME made (nocreate); the writer makes NAME, writes and it is renamed away too
        before the next poll: that generation, never followed, is read in full (also across a restart)."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 3)))
        follower, seen = make([log])
        follower.poll()
        rotate(log)
        follower.poll()
        seens = [seen]
        if restart:
            positions = saved(follower)
            follower, seen = make([log], resume=positions)
            seens.append(seen)
        log.write_bytes(lines(range(3, 6)))
        rotate(log)
        log.write_bytes(lines([6]))
        follower.finish()
        assert [s for seen in seens for s in seen.seqs()] == list(range(1, 7))

    def test_siblings_there_at_the_first_start_are_not_read(self, tmp_path: Path, make: Make) -> None:
        """Rotated files already there when the follower first starts are history: not read, then or later."""
        log = tmp_path / "events.jsonl"
        (tmp_path / "events.jsonl.1").write_bytes(lines(range(1, 3)))
        log.write_bytes(lines(range(3, 5)))
        follower, seen = make([log])
        follower.poll()
        positions = saved(follower)
        again, seen_again = make([log], resume=positions)
        append(log, lines([5]))
        again.poll()
        assert (seen.seqs(), seen_again.seqs(), seen.warnings, seen_again.warnings) == ([3, 4], [5], [], [])

    def test_a_copy_made_after_a_copytruncate_beside_a_renamed_generation(self, tmp_path: Path, make: Make) -> None:
        """Renamed away, then copied and truncated, then written and copied (logrotate's copy) before a poll: the
        lines written after the truncation are read once, from the file or its copy, none skipped."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 3)))
        follower, seen = make([log])
        follower.poll()
        append(log, lines(range(3, 6)))
        rotate(log)
        log.write_bytes(lines([6]))
        follower.poll()
        append(log, lines(range(7, 10)))
        copytruncate(log)
        append(log, lines(range(10, 14)))
        logrotate_copy(log)
        follower.finish()
        assert sorted(seen.seqs()) == list(range(1, 14))
        assert all("could not be read" not in w for w in seen.warnings)

    @pytest.mark.parametrize("seed", [3, 6, 8, 9, 19, 29, 39, 64, 67, 113])
    def test_every_line_once_through_mixed_rotations_and_restarts(self, tmp_path: Path, make: Make,
                                                                  seed: int) -> None:
        """Appends; rename, copy and copytruncate rotations done step by step (a copy sometimes seen half made);
        polls and restarts from saved positions between any two steps: every line is read, and none twice."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"")
        rnd = random.Random(seed)
        follower, seen = make([log])
        follower.poll()  # as a tail does when it starts: siblings there before are history, not read
        seens, seq = [seen], 0

        def between() -> None:
            nonlocal follower, seen
            if rnd.random() < 0.3:
                follower.poll()
            if rnd.random() < 0.15:
                positions = saved(follower)
                follower, seen = make([log], resume=positions)
                seens.append(seen)

        for _ in range(8):
            for _ in range(2):
                count = rnd.randint(1, 4)
                append(log, lines(range(seq + 1, seq + 1 + count)))
                seq += count
                between()
            kind = rnd.choice("rct")
            for k, path in sorted(((int(p.suffix[1:]), p) for p in tmp_path.glob("events.jsonl.[0-9]*")),
                                  reverse=True):
                path.rename(tmp_path / f"events.jsonl.{k + 1}")
                between()
            if kind == "r":
                log.rename(tmp_path / "events.jsonl.1")
                between()
                log.write_bytes(b"")
            else:
                data = log.read_bytes()
                cut = rnd.randrange(len(data) + 1) if rnd.random() < 0.2 else len(data)
                (tmp_path / "events.jsonl.1").write_bytes(data[:cut])
                between()
                append(tmp_path / "events.jsonl.1", data[cut:])
                if kind == "t":
                    between()
                    os.truncate(log, 0)
            between()
        follower.finish()
        seqs = [s for seen in seens for s in seen.seqs()]
        assert sorted(seqs) == list(range(1, seq + 1))


class TestExclude:
    def test_own_outputs_in_a_followed_folder_are_not_read(self, tmp_path: Path, make: Make) -> None:
        """Excluded paths (the quarantine and its reasons) are never followed, even as a folder's *.jsonl."""
        (tmp_path / "logs").mkdir()
        log = tmp_path / "logs" / "events.jsonl"
        log.write_bytes(lines(range(1, 3)))
        quarantine = tmp_path / "logs" / "quarantine.jsonl"
        quarantine.write_bytes(b"garbage\n" + line(9))
        reasons = tmp_path / "logs" / "quarantine.jsonl.reasons.jsonl"
        reasons.write_bytes(b'{"source": "x", "line": 1, "reason": "invalid_json"}\n')
        (tmp_path / "also").symlink_to("logs")  # the same folder by another name
        follower, seen = make([tmp_path / "also"], exclude=[quarantine, reasons])
        follower.poll()
        assert (seen.seqs(), seen.rejected, seen.warnings) == ([1, 2], [], [])
        assert follower.paths() == [tmp_path / "also" / "events.jsonl"]


GOOD: dict[str, Any] = {"path": "/logs/events.jsonl", "dev": 1, "ino": 2, "offset": 10, "line_no": 1,
                        "head": "7b7d0a", "before": "00" * 10, "skipping": False}
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=12)


class TestPositions:
    @pytest.mark.parametrize("entries", [
        {}, "files", None, 3,
        [None], [[1]], ["entry"], [7],
        *[[{**GOOD, "path": bad}] for bad in (None, 1, b"/x", ["x"], "", "a\x00b")],
        *[[{**GOOD, "head": bad}] for bad in (None, 1, "zz", "0", "0a 0b", "0g", "0A", "00" * (FINGERPRINT_BYTES + 1))],
        *[[{**GOOD, key: bad}] for key in ("dev", "ino", "offset", "line_no")
          for bad in (None, -1, 1.0, True, "3", 1 << 64, [1])],
        [{k: v for k, v in GOOD.items() if k != "ino"}],
        [{**GOOD, "before": "00"}], [{**GOOD, "before": "zz" * 10}], [{**GOOD, "before": 5}],
        [{**GOOD, "skipping": 1}], [{**GOOD, "skipping": "no"}],
        *[[{**GOOD, "siblings": bad}] for bad in (1, "x", [1], [[1]], [[1, 2, 3]], [[1, -2]], [[1, "2"]], [[True, 2]],
                                                   [[1.0, 2]], {"a": 1})],
        [{**GOOD, "line_no": 11}],
        [GOOD, {**GOOD, "offset": 20, "before": "00" * 20}],
    ])
    def test_damaged_positions_are_refused(self, entries: object) -> None:
        """Every wrong type or impossible value in saved positions is a ValueError."""
        with pytest.raises(ValueError, match=r"damaged|expected a list|same file"):
            check_positions(entries)

    @settings(max_examples=300, deadline=None)
    @given(JSON, st.dictionaries(st.sampled_from(sorted(GOOD)), JSON, max_size=3))
    def test_anything_is_a_list_or_a_value_error(self, anything: object, changes: dict[str, Any]) -> None:
        """Whatever a damaged checkpoint holds, check_positions gives positions or a ValueError, nothing else."""
        for entries in (anything, [anything], [{**GOOD, **changes}]):
            try:
                checked = check_positions(entries)
            except ValueError:
                continue
            assert all(isinstance(entry["path"], Path) for entry in checked)

    def test_old_positions_without_the_new_keys_are_taken(self, tmp_path: Path, make: Make) -> None:
        """Positions saved before 'before' and 'skipping' existed are still resumed from."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4)))
        first, _ = make([log])
        first.poll()
        old = [{k: v for k, v in entry.items() if k not in ("before", "skipping")} for entry in first.positions()]
        first.release()
        append(log, line(4))
        second, seen = make([log], resume=check_positions(old))
        second.poll()
        assert (seen.seqs(), seen.warnings) == ([4], [])

    def test_offset_not_at_a_line_start_is_not_trusted(self, tmp_path: Path, make: Make) -> None:
        """A saved offset in the middle of a line: a warning, and the file is read from its start."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 4)))
        first, _ = make([log])
        first.poll()
        (entry,) = orjson.loads(orjson.dumps(first.positions()))
        first.release()
        entry.pop("before", None)
        entry["offset"] -= 7
        second, seen = make([log], resume=check_positions([entry]))
        second.poll()
        assert (seen.seqs(), seen.rejected) == ([1, 2, 3], [])
        (warning,) = seen.warnings
        assert_says(warning, str(log), "line start", "from the start")

    def test_offset_past_the_end_is_not_trusted(self, tmp_path: Path, make: Make) -> None:
        """A saved offset beyond the file's end: a warning, and the file is read from its start."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 3)))
        first, _ = make([log])
        first.poll()
        (entry,) = orjson.loads(orjson.dumps(first.positions()))
        first.release()
        entry.pop("before", None)
        entry["offset"] += 500
        second, seen = make([log], resume=check_positions([entry]))
        second.poll()
        assert seen.seqs() == [1, 2]
        (warning,) = seen.warnings
        assert_says(warning, str(log), "from the start")

    def test_offset_past_the_end_of_a_rotated_file_is_not_trusted(self, tmp_path: Path, make: Make) -> None:
        """The same checks hold for a saved file found rotated away: it is read from its start, with a warning."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 3)))
        first, _ = make([log])
        first.poll()
        (entry,) = orjson.loads(orjson.dumps(first.positions()))
        first.release()
        entry.pop("before", None)
        entry["offset"] += 500
        rotate(log)
        log.write_bytes(line(3))
        second, seen = make([log], resume=check_positions([entry]))
        second.poll()
        assert seen.seqs() == [1, 2, 3]
        (warning,) = seen.warnings
        assert_says(warning, str(log), "from the start")


@contextmanager
def unblocking(fifo: Path) -> Iterator[None]:
    """If the code under test blocks opening ``fifo`` to read, open it to write after a while: the test then
    fails instead of hanging."""
    done = threading.Event()

    def rescue() -> None:
        if not done.wait(TIMEOUT / 4):
            with suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    rescuer = threading.Thread(target=rescue)
    rescuer.start()
    try:
        yield
    finally:
        done.set()
        rescuer.join()


class TestNotARegularFile:
    def test_fifo_and_symlink_loop_beside_a_good_log(self, tmp_path: Path, make: Make) -> None:
        """A FIFO and a symlink loop named as logs: said once each, skipped, and the good log is read."""
        fifo, loop, good = tmp_path / "pipe.jsonl", tmp_path / "loop.jsonl", tmp_path / "good.jsonl"
        os.mkfifo(fifo)
        loop.symlink_to(loop.name)
        good.write_bytes(lines(range(1, 4)))
        follower, seen = make([fifo, loop, good])
        with unblocking(fifo):
            started = time.monotonic()
            follower.poll()
            assert time.monotonic() - started < TIMEOUT / 8
        assert seen.seqs() == [1, 2, 3]
        assert len(seen.warnings) == 2
        assert_says(seen.warnings[0], str(fifo), "a FIFO, not a regular file", "skipped")
        assert_says(seen.warnings[1], str(loop), "Too many levels of symbolic links", "skipped")
        append(good, line(4))
        with unblocking(fifo):
            follower.poll()
        assert (seen.seqs(), len(seen.warnings)) == ([1, 2, 3, 4], 2)  # said once
        fifo.unlink()
        fifo.write_bytes(line(5, session="s2"))  # now a regular file: it is read
        follower.poll()
        assert seen.seqs() == [1, 2, 3, 4, 5]

    def test_fifo_in_a_followed_folder(self, tmp_path: Path, make: Make) -> None:
        """A FIFO among a folder's *.jsonl is said once and skipped; the folder's log is read."""
        os.mkfifo(tmp_path / "pipe.jsonl")
        (tmp_path / "good.jsonl").write_bytes(lines(range(1, 3)))
        follower, seen = make([tmp_path])
        with unblocking(tmp_path / "pipe.jsonl"):
            follower.poll()
            follower.poll()
        assert seen.seqs() == [1, 2]
        (warning,) = seen.warnings
        assert_says(warning, str(tmp_path / "pipe.jsonl"), "a FIFO, not a regular file")


class TestReplacedInPlace:
    @staticmethod
    def rewrite(log: Path) -> None:
        """Truncate and rewrite in place (same inode): the same first 1 KiB, other lines after it."""
        data = lines(range(1, 4), size=400) + lines(range(4, 9), session="s2", size=400)
        assert data[:FINGERPRINT_BYTES] == log.read_bytes()[:FINGERPRINT_BYTES]
        with open(log, "r+b") as stream:
            stream.truncate(0)
            stream.write(data)

    def test_same_first_kib_other_lines_while_followed(self, tmp_path: Path, make: Make) -> None:
        """A file rewritten with the same first 1 KiB but other later lines is read again from the start."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 5), size=400))
        assert log.stat().st_size > FINGERPRINT_BYTES + 400
        follower, seen = make([log])
        follower.poll()
        self.rewrite(log)
        follower.poll()
        rows = [(row["session_id"], row["seq"]) for row in seen.rows()]
        assert rows[4:] == [("s1", 1), ("s1", 2), ("s1", 3)] + [("s2", i) for i in range(4, 9)]
        (warning,) = seen.warnings
        assert_says(warning, str(log), "truncated or replaced", "bytes before byte", "from the start")
        assert follower.stats.truncations == 1

    def test_same_first_kib_other_lines_while_stopped(self, tmp_path: Path, make: Make) -> None:
        """The bytes before the saved offset are part of the saved position: a rewrite while down is seen too."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(lines(range(1, 5), size=400))
        first, _ = make([log])
        first.poll()
        positions = saved(first)
        self.rewrite(log)
        second, seen = make([log], resume=positions)
        second.poll()
        assert [(row["session_id"], row["seq"]) for row in seen.rows()][3:] == [("s2", i) for i in range(4, 9)]
        (warning,) = seen.warnings
        # Counted as the truncation it is, and saying what becomes of the events read before (a new test run
        # written at the same path cannot be told from a file rewritten in place).
        assert_says(warning, str(log), "changed since the checkpoint", "from the start",
                    "the events read from it before are kept", "a new test run belongs in a new output folder")
        assert second.stats.truncations == 1


class TestZeroFilledRegion:
    @pytest.mark.parametrize("polled_between", [False, True])
    def test_follower_reads_the_event_after_zeros(self, tmp_path: Path, make: Make, polled_between: bool) -> None:
        """2 MiB of NUL bytes then an event: the zeros are one rejected line, the event is read."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1) + b"\0" * (2 * MIB))
        follower, seen = make([log])
        if polled_between:
            follower.poll()
        append(log, line(2) + line(3))
        follower.poll()
        assert seen.seqs() == [1, 2, 3]
        (zeros,) = seen.rejected
        assert (zeros.reason, zeros.line_no, zeros.offset, zeros.raw) == (
            "too_long", 2, len(line(1)), b"\0" * DEFAULT_MAX_LINE_BYTES)
        assert follower.positions()[0]["offset"] == log.stat().st_size

    @pytest.mark.parametrize("block_bytes", [64 << 10, 16 << 20])
    def test_split_blocks_reads_the_event_after_zeros(self, block_bytes: int) -> None:
        """Replay cuts the same way: 2 MiB of NUL bytes then an event give one rejected line and the event."""
        data = line(1) + b"\0" * (2 * MIB) + line(2) + line(3)
        blocks = list(read_blocks(io.BytesIO(data), Decoder(dedupe=False), source="log", block_bytes=block_bytes))
        assert [s for block in blocks for s in block.frame["seq"].to_list()] == [1, 2, 3]
        (zeros,) = [r for block in blocks for r in block.rejected]
        assert (zeros.reason, zeros.line_no, zeros.offset, zeros.raw) == (
            "too_long", 2, len(line(1)), b"\0" * DEFAULT_MAX_LINE_BYTES)

    @pytest.mark.parametrize("zeros", [1, 500, 999, 1000, 1001, 1999, 2000, 2500])
    def test_an_event_glued_to_zeros_is_read(self, tmp_path: Path, make: Make, zeros: int) -> None:
        """NUL bytes with no newline, of any length around the limit (1000 here), then an event on the same line:
        live and replay read the event. (Zeros a little shorter than the limit once made the event part of an
        over-long line, skipped.)"""
        data = line(1) + b"\0" * zeros + line(2) + line(3)
        blocks = list(read_blocks(io.BytesIO(data), Decoder(max_line_bytes=1000, dedupe=False), source="log"))
        assert [s for block in blocks for s in block.frame["seq"].to_list()] == [1, 2, 3]
        log = tmp_path / "events.jsonl"
        log.write_bytes(line(1) + b"\0" * zeros)
        follower, seen = make([log], max_line_bytes=1000)
        follower.poll()
        append(log, line(2) + line(3))
        follower.poll()
        assert seen.seqs() == [1, 2, 3]
        replayed = [r for block in blocks for r in block.rejected]
        assert [(r.reason, r.line_no, r.offset, r.raw) for r in seen.rejected] == [
            (r.reason, r.line_no, r.offset, r.raw) for r in replayed]
        # The zeros are one rejected line: a fragment glued to an event, or the start of a line over the limit.
        assert [r.reason for r in replayed] == ["too_long" if zeros + len(line(2)) > 1000 else "invalid_json"]

    def test_zeros_ended_by_a_newline_stay_one_line(self, tmp_path: Path, make: Make) -> None:
        """NUL bytes up to a newline are one rejected line, as before; the next line is read."""
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"\0" * 5000 + b"\n" + line(1))
        follower, seen = make([log], max_line_bytes=1000)
        follower.poll()
        assert seen.seqs() == [1]
        assert [(r.reason, r.line_no) for r in seen.rejected] == [("too_long", 1)]

    @settings(max_examples=40, deadline=None)
    @given(st.integers(0, 2**32))
    def test_live_and_replay_read_the_same(self, tmp_path_factory: pytest.TempPathFactory, seed: int) -> None:
        """Events, zero regions, over-long lines and blank lines, appended in random pieces, polled between and
        restarted from saved positions at random: the follower hands over exactly the rows and rejections replay
        reads from the finished file."""
        rnd = random.Random(seed)
        limit = rnd.choice([300, 700])
        pieces = []
        for seq in range(1, rnd.randint(2, 40)):
            roll = rnd.random()
            if roll < 0.15:
                pieces.append(b"\0" * rnd.randint(1, 3 * limit))
            elif roll < 0.25:
                pieces.append(b"x" * rnd.randint(limit - 2, 2 * limit) + rnd.choice([b"\n", b"", b"\0\0"]))
            elif roll < 0.3:
                pieces.append(rnd.choice([b"\n", b"garbage\n", b"\0\n"]))
            else:
                pieces.append(line(seq))
        data = b"".join(pieces) + b"\n"
        log = tmp_path_factory.mktemp("live") / "events.jsonl"
        log.write_bytes(b"")
        seen = Seen()
        follower = Follower([log], Decoder(max_line_bytes=limit, dedupe=False), seen, warn=seen.warnings.append)
        cuts = [*sorted(rnd.sample(range(len(data)), min(len(data), rnd.randint(0, 12)))), len(data)]
        done = 0
        for cut in cuts:
            append(log, data[done:cut])
            done = cut
            follower.poll()
            if rnd.random() < 0.3:  # a restart, perhaps inside an over-long line or just after zeros
                follower = Follower([log], Decoder(max_line_bytes=limit, dedupe=False), seen,
                                    warn=seen.warnings.append, resume=saved(follower))
        follower.finish()
        follower.release()
        decoder = Decoder(max_line_bytes=limit, dedupe=False)
        blocks = list(read_blocks(io.BytesIO(data), decoder, source=str(log),
                                  block_bytes=rnd.choice([1, 13, 256, 4096, MIB])))
        assert seen.rows() == [row for block in blocks for row in block.frame.to_dicts()]
        assert seen.rejected == [r for block in blocks for r in block.rejected]
        assert seen.warnings == []


_QUARANTINE_WRITER = """
import random, sys
from tracker.decoder import Quarantine, Rejected
rnd = random.Random(int(sys.argv[2]))
quarantine = Quarantine(sys.argv[1])
for n in range(1, 1 << 40):
    raw = b"entry %d " % n + b"x" * rnd.randrange(1 << 18) + b"\\n"
    quarantine.add(Rejected("log", n, n, "invalid_json", "a test entry", raw))
"""


def assert_pairs(path: Path) -> int:
    """Line N of the quarantine goes with line N of its reasons; returns how many there are."""
    quarantined = path.read_bytes()
    reasons = path.with_name(path.name + ".reasons.jsonl").read_bytes()
    assert quarantined.endswith(b"\n")
    assert reasons.endswith(b"\n")
    pairs = list(zip(quarantined.splitlines(), [orjson.loads(r) for r in reasons.splitlines()], strict=True))
    for raw, reason in pairs:
        assert raw.split(b" ")[:2] == [b"entry", b"%d" % reason["line"]]
    return len(pairs)


class TestQuarantine:
    def test_kill_9_while_writing(self, tmp_path: Path) -> None:
        """A writer killed with SIGKILL at random points: reopened, the two files pair up line by line."""
        path = tmp_path / "quarantine.jsonl"
        rnd = random.Random(5)
        warnings: list[str] = []
        for round_no in range(4):
            writer = subprocess.Popen([sys.executable, "-c", _QUARANTINE_WRITER, str(path), str(round_no)])
            target = (path.stat().st_size if path.exists() else 0) + rnd.randrange(1, 4 * MIB)
            wait_for(lambda target=target: path.exists() and path.stat().st_size >= target)  # type: ignore[misc]
            writer.kill()
            assert writer.wait() == -signal.SIGKILL
            quarantine = Quarantine(path, warn=warnings.append)
            quarantine.add(Rejected("log", 0, 0, "invalid_json", "after the kill", b"entry 0 after the kill"))
            quarantine.close()
            assert_pairs(path)
        assert all(str(path) in w for w in warnings)

    def test_unpaired_end_is_repaired_with_a_warning(self, tmp_path: Path) -> None:
        """A reason without its line (written first), and a torn reason, are cut off when the files are opened
        again."""
        path = tmp_path / "q.jsonl"
        with Quarantine(path) as quarantine:
            for n in (1, 2):
                quarantine.add(Rejected("log", n, 0, "invalid_json", "x", b"entry %d\n" % n))
        append(path.with_name("q.jsonl.reasons.jsonl"),
               b'{"source":"log","line":3,"offset":0,"reason":"invalid_json","detail":"x"}\n{"source":"lo')
        warnings: list[str] = []
        with Quarantine(path, warn=warnings.append) as again:
            assert again.position() == (len(b"entry 1\nentry 2\n"),
                                        path.with_name("q.jsonl.reasons.jsonl").stat().st_size)
            again.add(Rejected("log", 5, 0, "invalid_json", "x", b"entry 5\n"))
        assert assert_pairs(path) == 3
        (warning,) = warnings
        assert_says(warning, str(path), "pair up line by line")

    def test_restore_cuts_back_to_a_position(self, tmp_path: Path) -> None:
        """restore() cuts both files back to a saved position: what came after it is written again by the re-read."""
        path = tmp_path / "q.jsonl"
        with Quarantine(path) as quarantine:
            assert quarantine.position() == (0, 0)
            for n in (1, 2):
                quarantine.add(Rejected("log", n, 0, "invalid_json", "x", b"entry %d\n" % n))
            position = quarantine.position()
            quarantine.add(Rejected("log", 3, 0, "invalid_json", "x", b"entry 3\n"))
        warnings: list[str] = []
        with Quarantine(path, warn=warnings.append) as again:
            again.restore(list(orjson.loads(orjson.dumps(position))))
            assert again.position() == position
            again.add(Rejected("log", 3, 0, "invalid_json", "x", b"entry 3\n"))
        assert (assert_pairs(path), warnings) == (3, [])

    @pytest.mark.parametrize("position", [None, "12", [1], [1, 2, 3], [-1, 0], [1.0, 2], [True, 0], {"a": 1}])
    def test_restore_refuses_a_damaged_position(self, tmp_path: Path, position: object) -> None:
        """A position that is not two byte counts is a ValueError."""
        with pytest.raises(ValueError, match="quarantine position"):
            Quarantine(tmp_path / "q.jsonl").restore(position)

    def test_restore_past_the_end_repairs_instead(self, tmp_path: Path) -> None:
        """Files shorter than the saved position are not extended: a warning, and they are paired up."""
        path = tmp_path / "q.jsonl"
        with Quarantine(path) as quarantine:
            quarantine.add(Rejected("log", 1, 0, "invalid_json", "x", b"entry 1\n"))
        append(path.with_name("q.jsonl.reasons.jsonl"),
               b'{"source":"log","line":2,"offset":0,"reason":"invalid_json","detail":"x"}\n')
        warnings: list[str] = []
        with Quarantine(path, warn=warnings.append) as again:
            again.restore((1000, 1000))
            again.add(Rejected("log", 2, 0, "invalid_json", "x", b"entry 2\n"))
        assert assert_pairs(path) == 2
        assert len(warnings) == 2
        assert_says(warnings[0], str(path), "shorter than at the checkpoint")
        assert_says(warnings[1], str(path), "pair up line by line")


class TestBacklog:
    def test_a_big_backlog_is_read_in_steps(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """One poll reads at most POLL_BYTES of a file and says a backlog is left; finish reads everything."""
        monkeypatch.setattr(follow_module, "POLL_BYTES", 1)
        monkeypatch.setattr(follow_module, "_READ_BYTES", 1)  # reads of 2 x the line limit
        log = tmp_path / "events.jsonl"
        log.write_bytes(b"".join(line(i) for i in range(1, 11)))
        seen: list[int] = []
        follower = Follower([log], Decoder(max_line_bytes=300, dedupe=False),
                            lambda frame, _: seen.append(0 if frame is None else frame.height))
        follower.poll()
        assert follower.backlog
        assert 0 < sum(seen) < 10
        follower.finish()
        assert (sum(seen), follower.backlog) == (10, False)
        follower.release()
