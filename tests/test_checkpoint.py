"""Tests for tracker.checkpoint: a checkpoint read back and checked, a foreign file of its name set aside."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from tracker.checkpoint import (
    CHECKPOINT_FILE,
    CHECKPOINT_VERSION,
    Counters,
    checkpoint_counters,
    is_checkpoint,
    load_checkpoint,
    read_regular,
    set_aside,
)

OPTIONS: dict[str, object] = {"interval_s": 60, "session_timeout_s": None, "goodput": None}
TARGETS = ["/run/events.jsonl"]
STATE: dict[str, Any] = {"version": CHECKPOINT_VERSION, **OPTIONS, "targets": TARGETS, "closed_until": 120,
                         "written_end": None, "late": 2, "events": 30, "rejected": {"schema": 1},
                         "breaches": [["rt_p95<1", 60]], "quarantine_lost": 0}


def _saved(folder: Path, state: object) -> Path:
    path = folder / CHECKPOINT_FILE
    path.write_bytes(orjson.dumps(state))
    return path


class TestLoadCheckpoint:
    def test_a_matching_checkpoint_is_loaded(self, tmp_path: Path) -> None:
        """A checkpoint of this version, options and logs is given back whole."""
        assert load_checkpoint(_saved(tmp_path, STATE), OPTIONS, TARGETS) == STATE

    @pytest.mark.parametrize(("change", "message"), [
        ({"version": 7}, f"version 7, expected {CHECKPOINT_VERSION}"),
        ({"interval_s": 300}, "it was made with --interval 300"),
        ({"session_timeout_s": 90.0}, "it was made with --session-timeout 90.0"),
        ({"goodput": {"ttft_ms": 500.0}}, "it was made with --goodput {'ttft_ms': 500.0}"),
        ({"targets": ["/other/events.jsonl"]}, "it was made for other logs: ['/other/events.jsonl']"),
    ])
    def test_a_checkpoint_of_another_run_is_refused(self, tmp_path: Path, change: dict[str, object],
                                                    message: str) -> None:
        """Another version, option or set of logs is a ValueError saying which."""
        with pytest.raises(ValueError, match=re.escape(message)):
            load_checkpoint(_saved(tmp_path, {**STATE, **change}), OPTIONS, TARGETS)

    def test_not_an_object(self, tmp_path: Path) -> None:
        """JSON that is not an object is refused, naming what it is."""
        with pytest.raises(ValueError, match="expected an object, got list"):
            load_checkpoint(_saved(tmp_path, [STATE]), OPTIONS, TARGETS)

    def test_truncated_json_is_a_value_error(self, tmp_path: Path) -> None:
        """A checkpoint cut short (a crash of another program) is a ValueError, not a crash."""
        path = tmp_path / CHECKPOINT_FILE
        path.write_bytes(orjson.dumps(STATE)[:40])
        with pytest.raises(ValueError, match="unexpected end of data"):
            load_checkpoint(path, OPTIONS, TARGETS)


class TestCheckpointCounters:
    def test_the_counters(self) -> None:
        """The counters come back typed, the breaches as a set of pairs."""
        assert checkpoint_counters(STATE) == Counters(120, None, 2, 30, {"schema": 1}, {("rt_p95<1", 60)}, 0)

    @pytest.mark.parametrize("change", [{"late": "2"}, {"events": None}, {"rejected": {"schema": 1.0}},
                                        {"breaches": [["rt_p95<1"]]}, {"closed_until": 1.5}, {"written_end": True},
                                        {"late": -3}, {"events": -1}, {"rejected": {"schema": -1}}])
    def test_damaged_counters_are_refused(self, change: dict[str, object]) -> None:
        """A counter of the wrong type or shape, or a count below 0, is one ValueError."""
        with pytest.raises(ValueError, match="its counters are damaged"):
            checkpoint_counters({**STATE, **change})

    @pytest.mark.parametrize("lost", [-1, "0", 0.0])
    def test_a_damaged_count_of_lines_not_quarantined(self, lost: object) -> None:
        """quarantine_lost must be a whole number >= 0; the bad value is quoted."""
        with pytest.raises(ValueError, match=re.escape(f"damaged: {lost!r}")):
            checkpoint_counters({**STATE, "quarantine_lost": lost})


class TestReadRegular:
    def test_a_fifo_is_refused_without_waiting(self, tmp_path: Path) -> None:
        """A FIFO in the checkpoint's place is a ValueError at once (opening it to read would wait for a writer)."""
        fifo = tmp_path / CHECKPOINT_FILE
        os.mkfifo(fifo)
        with pytest.raises(ValueError, match="not a regular file"):
            read_regular(fifo)
        assert not is_checkpoint(fifo)

    def test_is_checkpoint_of_any_version(self, tmp_path: Path) -> None:
        """A tracker checkpoint of another version is one; another program's JSON is not."""
        assert is_checkpoint(_saved(tmp_path, {**STATE, "version": 1}))
        assert not is_checkpoint(_saved(tmp_path, {"version": 1}))


class TestSetAside:
    def test_a_foreign_file_is_kept_under_another_name(self, tmp_path: Path) -> None:
        """The file moves to checkpoint.json.not-a-checkpoint-STAMP, its bytes intact, and it is said."""
        stale = tmp_path / CHECKPOINT_FILE
        stale.write_bytes(b"someone's notes")
        said: list[str] = []
        assert set_aside(stale, said.append)
        (aside,) = tmp_path.glob(f"{CHECKPOINT_FILE}.not-a-checkpoint-*")
        assert (stale.exists(), aside.read_bytes()) == (False, b"someone's notes")
        assert said == [f"{stale} is not a tracker checkpoint (or is damaged): kept as {aside.name}"]

    def test_never_over_one_set_aside_before(self, tmp_path: Path) -> None:
        """Two foreign files set aside in the same second are both kept."""
        stale = tmp_path / CHECKPOINT_FILE
        for text in (b"first", b"second"):
            stale.write_bytes(text)
            assert set_aside(stale, lambda _: None)
        kept = sorted(p.read_bytes() for p in tmp_path.glob(f"{CHECKPOINT_FILE}.not-a-checkpoint-*"))
        assert kept == [b"first", b"second"]
