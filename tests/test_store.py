"""Tests for tracker.store: window rows in memory up to a budget, in files beyond it, and back."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.store import _RECENT_MAX, _SET_KEY_BYTES, ROW_SCHEMA, SMALL_BATCH, SPOOL_PREFIX, Keys, WindowStore


def rows(n: int, start: int = 0, session: str = "s") -> pl.DataFrame:
    return pl.DataFrame({"key": list(range(start, start + n)), "session_id": [session] * n,
                         "type": ["question_answered"] * n, "response_time_ms": [float(i) for i in range(n)],
                         "time_to_first_token_ms": [None] * n, "input_tokens": [None] * n, "output_tokens": [None] * n,
                         "error": [None] * n, "kind": [None] * n}, schema=ROW_SCHEMA)


def add(store: WindowStore, k: int, frame: pl.DataFrame) -> None:
    store.append(k, frame)


class TestWindowStore:
    def test_rows_come_back_in_the_order_added_from_disk_and_memory(self, tmp_path: Path) -> None:
        """With no memory budget every window goes to disk; its rows and keys come back whole, in order."""
        store = WindowStore(memory_bytes=0, spool_dir=tmp_path)
        add(store, 5, rows(3))
        store.trim()
        add(store, 5, rows(2, start=10))
        add(store, 6, rows(1, start=20))
        assert store.folder is not None
        assert store.rows(5)["key"].to_list() == [0, 1, 2, 10, 11]
        probe = pl.Series([0, 1, 2, 10, 11, 3, 12], dtype=pl.Int128)
        assert store.keys(5).seen(probe).to_list() == [True] * 5 + [False] * 2
        assert (store.has(5), store.has(6), store.has(7)) == (True, True, False)
        store.close()
        assert not list(tmp_path.glob(f"{SPOOL_PREFIX}*"))

    def test_budget_keeps_recent_windows_in_memory(self, tmp_path: Path) -> None:
        """Past the budget the least recently used windows are written out, the newest stay in memory."""
        store = WindowStore(memory_bytes=200_000, spool_dir=tmp_path)
        for k in range(10):
            add(store, k, rows(500, start=k * 1000))
            store.trim()
        assert store.spills
        folder = store.folder
        assert folder is not None
        on_disk = {int(p.name.split("-")[0][1:]) for p in folder.glob("*.parquet")}
        assert 0 in on_disk
        assert 9 not in on_disk
        assert all(store.rows(k).height == 500 for k in range(10))
        store.close()

    def test_persist_and_restore(self, tmp_path: Path) -> None:
        """persist names every window's files; a new store restores them; files it does not name are removed."""
        store = WindowStore(folder=tmp_path / "w")
        add(store, 1, rows(3))
        named, obsolete = store.persist()
        assert obsolete == []
        add(store, 1, rows(2, start=3))
        store.trim()
        store.persist()  # a newer file, named by no checkpoint we keep
        again = WindowStore(folder=tmp_path / "w")
        again.restore(named)
        assert again.rows(1)["key"].to_list() == [0, 1, 2]
        assert len(list((tmp_path / "w").glob("*.parquet"))) == 1

    @pytest.mark.parametrize("bad", [[], {"x": {"files": [], "rows": 0}}, {"1": {"files": ["../x"], "rows": 1}},
                                     {"1": {"files": ["w1-1.parquet"], "rows": 1}},
                                     {"1": {"files": [], "rows": -1}}])
    def test_restore_refuses_damaged_entries(self, tmp_path: Path, bad: object) -> None:
        """A damaged or foreign entry, or a missing file, is a ValueError, not a crash."""
        with pytest.raises(ValueError, match="window"):
            WindowStore(folder=tmp_path).restore(bad)

    def test_clear_removes_only_its_own_files(self, tmp_path: Path) -> None:
        """clear removes window files and their temporaries, nothing else in the folder."""
        (tmp_path / "mine.parquet").write_bytes(b"x")
        store = WindowStore(folder=tmp_path)
        add(store, 1, rows(1))
        store.persist()
        store.clear()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.parquet"]

    def test_bad_budget(self) -> None:
        """A negative or fractional budget is refused, quoting it."""
        with pytest.raises(ValueError, match="got -1"):
            WindowStore(memory_bytes=-1)

    def test_full_disk_keeps_rows_in_memory_and_says_so(self, small_disk: Path) -> None:
        """Rows that cannot be written out (a full disk) stay in memory with one warning; later they go out."""
        warnings: list[str] = []
        store = WindowStore(memory_bytes=0, folder=small_disk / "w", warn=warnings.append)
        ballast = small_disk / "ballast"
        with open(ballast, "wb") as stream, pytest.raises(OSError, match="No space"):
            stream.write(b"x" * (8 << 20))
        add(store, 1, rows(2000))
        store.trim()
        add(store, 2, rows(2000, start=5000))
        store.trim()
        assert len(warnings) == 1
        assert "keeping them in memory" in warnings[0]
        assert not [p for p in (small_disk / "w").iterdir() if p.name.endswith(".tmp")]
        ballast.unlink()
        store.trim()
        assert list((small_disk / "w").glob("*.parquet"))
        assert store.rows(1)["key"].to_list() == list(range(2000))
        assert store.rows(2).height == 2000


    def test_a_spool_folder_that_cannot_be_made_is_named(self, tmp_path: Path) -> None:
        """A spool_dir that is a file: the warning names it (no folder was made), and the rows stay in memory."""
        (tmp_path / "notadir").write_bytes(b"x")
        warnings: list[str] = []
        store = WindowStore(memory_bytes=0, spool_dir=tmp_path / "notadir", warn=warnings.append)
        add(store, 1, rows(100))
        store.trim()
        assert warnings == [f"cannot write window rows to a new folder in {tmp_path / 'notadir'} (File exists); "
                            "keeping them in memory for now"]
        assert store.rows(1)["key"].to_list() == list(range(100))


def int128(values: list[int]) -> pl.Series:
    return pl.Series("key", values, pl.Int128)


class TestKeys:
    """A window's keys: a sorted column and a set of the newest, found the same way whichever holds them."""

    @pytest.mark.parametrize("batch", [1, SMALL_BATCH, SMALL_BATCH + 1])
    def test_found_in_the_column_and_in_the_recent_set(self, batch: int) -> None:
        """Keys added in small and big batches (by binary search, by hash, in the set) are all found, others not."""
        keys = Keys(int128([5, 1 << 100, -7]))
        added = [(i * 7919) % 1_000_003 + (1 << 70) for i in range(batch)]
        keys.add(int128(added))
        assert len(keys) == 3 + batch
        probe = int128([-7, 5, 1 << 100, *added, 6, (1 << 100) + 1, -(1 << 120)])
        assert keys.seen(probe).to_list() == [True] * (3 + batch) + [False] * 3

    def test_recent_set_is_merged_into_the_column_past_its_limit(self) -> None:
        """Small batches stay in the set up to its limit; the next one moves them all into the sorted column."""
        keys = Keys()
        step = SMALL_BATCH
        for start in range(0, _RECENT_MAX, step):
            keys.add(int128(list(range(start, start + step))))
        assert (keys.column.len(), len(keys.recent)) == (0, _RECENT_MAX)
        keys.add(int128([-1]))
        assert (keys.column.len(), len(keys.recent)) == (_RECENT_MAX + 1, 0)
        assert keys.column.is_sorted()
        assert keys.seen(int128([-1, 0, _RECENT_MAX - 1, _RECENT_MAX])).to_list() == [True, True, True, False]

    def test_a_key_just_past_the_largest_is_not_found(self) -> None:
        """Binary search past the end of the column (the clipped index) finds nothing."""
        keys = Keys(int128([1, 2, 3]))
        assert keys.seen(int128([4, 0, 3])).to_list() == [False, False, True]


    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 3), st.integers(-50, 50), st.sampled_from([1, 300, SMALL_BATCH + 7])),
                    min_size=1, max_size=6))
    def test_behaves_as_a_set_for_batches_above_among_and_below(self, batches: list[tuple[int, int, int]]) -> None:
        """Batches of any size, above the largest key (a log in time order), among or below the keys, with repeats:
        seen() answers as a Python set does, and the column stays sorted."""
        keys, model = Keys(), set[int]()
        for shift, offset, size in batches:
            batch = [(shift << 70) + offset * 97 + (i * 31) % size for i in range(size)]
            probe = int128(batch)
            assert keys.seen(probe).to_list() == [k in model for k in batch]
            fresh = sorted(set(batch) - model)
            keys.add(int128(fresh))
            model.update(fresh)
            assert keys.column.is_sorted()
            assert len(keys) == len(model)


class TestPersistKeepsFewKeys:
    def test_only_the_recent_windows_keep_their_keys_in_memory(self, tmp_path: Path) -> None:
        """After a checkpoint only the most recently used windows hold their keys; an older window's come back from
        its files when asked (a live tail's memory does not grow with the windows it has closed)."""
        store = WindowStore(folder=tmp_path / "w")
        for k in range(6):
            add(store, k, rows(3, start=10 * k))
        store.persist()
        loaded = [k for k in range(6) if store._slots[k].keys is not None]
        assert loaded == [2, 3, 4, 5]
        assert store._held == 4 * 3 * _SET_KEY_BYTES  # only the four windows' keys, in their recent sets
        assert store.keys(0).seen(pl.Series([0, 1, 2, 3], dtype=pl.Int128)).to_list() == [True, True, True, False]
