"""Where the engine keeps each window's rows: in memory up to a budget, in parquet files beyond it.

A window's rows are its distinct events, compact: the 128-bit content key
that finds a line read twice, the session, the type and the fields the
reports aggregate. Recently used windows stay in memory with their keys
(:class:`Keys`: a sorted column, 16 bytes a key, and a small set of the
newest); past the memory budget
the least recently used windows are written to their own files and dropped
from memory, and read back only when an event for them arrives (a late event)
or they are derived again. Files are only ever added, so a checkpoint can name
them (:meth:`WindowStore.persist`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import polars as pl

from .events import EVENT_TYPES
from .limits import DEFAULT_MEMORY_BYTES

__all__ = ("DEFAULT_MEMORY_BYTES", "ROW_SCHEMA", "SMALL_BATCH", "SPOOL_PREFIX", "Keys", "WindowStore")

#: The name prefix of the temporary folder a store creates (and removes) when it has no folder of its own.
SPOOL_PREFIX: Final = ".tracker-spool-"
_FILE_NAME: Final = re.compile(r"w(-?\d+)-(\d+)\.parquet")
_TEMPORARY: Final = re.compile(r"\.w-?\d+-\d+\.parquet\.tmp")
#: What one key costs in memory (an Int128 value), for the budget.
_KEY_BYTES: Final = 16
#: What one key in a Python set costs (the int and the set's slot).
_SET_KEY_BYTES: Final = 100
#: A batch of at most this many keys is looked up by binary search and kept in the set of recent keys; a bigger
#: one is looked up with a hash join and merged into the sorted column at once.
SMALL_BATCH: Final = 4096
#: The recent keys are merged into the sorted column past this many (a Python int in a set costs ~100 bytes).
_RECENT_MAX: Final = 65_536


class Keys:
    """A window's content keys: most in one sorted Int128 column (16 bytes a key, found by binary search), the ones
    added since in a set, so that the small batches of a live tail are checked and added in microseconds without
    rebuilding anything; merged into the column when the set grows past :data:`_RECENT_MAX`."""

    __slots__ = ("column", "recent")

    def __init__(self, column: pl.Series | None = None) -> None:
        self.column = (column if column is not None else pl.Series("key", [], pl.Int128)).sort()
        self.recent: set[int] = set()

    def __len__(self) -> int:
        return self.column.len() + len(self.recent)

    @property
    def nbytes(self) -> int:
        """Memory held, estimated: 16 bytes a key in the column, about 100 (a Python int and its slot) in the set."""
        return _KEY_BYTES * self.column.len() + _SET_KEY_BYTES * len(self.recent)

    def seen(self, keys: pl.Series) -> pl.Series:
        """For each of ``keys``, whether it is here already (a Boolean column)."""
        n = self.column.len()
        if not n:
            hit = pl.Series("seen", [False] * keys.len(), pl.Boolean)
        elif keys.len() <= SMALL_BATCH:
            at = self.column.search_sorted(keys, side="left").clip(upper_bound=n - 1)
            hit = (self.column.gather(at) == keys).alias("seen")
        else:
            hit = keys.is_in(self.column.implode()).alias("seen")
        if self.recent:
            recent = self.recent
            hit = hit | pl.Series("seen", [k in recent for k in keys.to_list()], pl.Boolean)
        return hit

    def add(self, keys: pl.Series) -> None:
        """Take keys that are not here yet."""
        if keys.len() <= SMALL_BATCH and len(self.recent) + keys.len() <= _RECENT_MAX:
            self.recent.update(keys.to_list())
            return
        parts = [self.column, keys.rename("key").cast(pl.Int128)]
        if self.recent:
            parts.append(pl.Series("key", list(self.recent), pl.Int128))
            self.recent = set()
        self.column = pl.concat(parts, rechunk=True).sort()

ROW_SCHEMA: Final = pl.Schema([
    ("key", pl.Int128),
    ("session_id", pl.String),
    ("type", pl.Enum(list(EVENT_TYPES))),
    ("response_time_ms", pl.Float64),
    ("time_to_first_token_ms", pl.Float64),
    ("input_tokens", pl.Int64),
    ("output_tokens", pl.Int64),
    ("error", pl.String),
    ("kind", pl.String),
])


@dataclass(slots=True)
class _Slot:
    keys: Keys | None = None  # None: not loaded (the window's files hold them)
    parts: list[pl.DataFrame] = field(default_factory=list)  # rows not yet in a file
    files: list[str] = field(default_factory=list)  # names in the store's folder, oldest first
    rows: int = 0
    nbytes: int = 0  # memory held: parts and keys
    used: int = 0  # when last used (a counter), for choosing what to write out


class WindowStore:
    """Rows by window, in memory up to ``memory_bytes``, else in files under ``folder`` (a temporary folder inside
    ``spool_dir`` when no folder is given; removed by :meth:`close`)."""

    def __init__(self, *, memory_bytes: int = DEFAULT_MEMORY_BYTES, folder: str | os.PathLike[str] | None = None,
                 spool_dir: str | os.PathLike[str] | None = None, warn: Callable[[str], None] | None = None) -> None:
        if type(memory_bytes) is not int or memory_bytes < 0:
            raise ValueError(f"memory_bytes: must be a whole number >= 0, got {memory_bytes!r}")
        self.memory_bytes = memory_bytes
        self._folder = Path(folder) if folder is not None else None
        self._own_folder = folder is None
        self._spool_dir = Path(spool_dir) if spool_dir is not None else Path(tempfile.gettempdir())
        self._warn = warn if warn is not None else logging.getLogger("tracker.store").warning
        self._failing = False
        self._slots: dict[int, _Slot] = {}
        self._held = 0
        self._clock = 0
        self._generation = 0
        self.spills = 0

    @property
    def warn(self) -> Callable[[str], None]:
        """Where this store's warnings go (others that keep files beside its own use it too)."""
        return self._warn

    @property
    def folder(self) -> Path | None:
        """The folder of the files, once there is one."""
        return self._folder

    def _slot(self, k: int) -> _Slot:
        slot = self._slots.get(k)
        if slot is None:
            slot = self._slots[k] = _Slot()
        self._clock += 1
        slot.used = self._clock
        return slot

    def row_counts(self) -> dict[int, int]:
        """How many rows each window with rows holds."""
        return {k: slot.rows for k, slot in self._slots.items() if slot.rows}

    def has(self, k: int) -> bool:
        """True when window ``k`` has rows."""
        slot = self._slots.get(k)
        return slot is not None and slot.rows > 0

    def _loaded(self, k: int) -> _Slot:
        """Window ``k``'s slot with its keys in memory."""
        slot = self._slot(k)
        if slot.keys is None:
            files = [pl.read_parquet(self._path(name), columns=["key"])["key"] for name in slot.files]
            slot.keys = Keys(pl.concat(files, rechunk=True) if files else None)
            self._grow(slot, slot.keys.nbytes)
        return slot

    def keys(self, k: int) -> Keys:
        """The content keys of window ``k``'s rows."""
        slot = self._loaded(k)
        assert slot.keys is not None
        return slot.keys

    def append(self, k: int, rows: pl.DataFrame) -> None:
        """Add window ``k``'s new rows (columns of :data:`ROW_SCHEMA`; keys not yet in :meth:`keys`)."""
        slot = self._loaded(k)
        assert slot.keys is not None
        before = slot.keys.nbytes
        slot.keys.add(rows["key"])
        slot.parts.append(rows)
        slot.rows += rows.height
        self._grow(slot, int(rows.estimated_size()) + slot.keys.nbytes - before)

    def rows(self, k: int, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """Every row of window ``k`` (only ``columns`` of it, when given)."""
        slot = self._slots.get(k)
        names = list(columns) if columns is not None else ROW_SCHEMA.names()
        if slot is None:
            return pl.DataFrame(schema=ROW_SCHEMA).select(names)
        frames = [pl.read_parquet(self._path(name), columns=names) for name in slot.files]
        frames += [part.select(names) for part in slot.parts]
        if not frames:
            return pl.DataFrame(schema=ROW_SCHEMA).select(names)
        if len(slot.parts) > 1:  # keep one part in memory: fewer, larger frames
            slot.parts = [pl.concat(slot.parts)]
        return pl.concat(frames) if len(frames) > 1 else frames[0]

    def _grow(self, slot: _Slot, nbytes: int) -> None:
        slot.nbytes += nbytes
        self._held += nbytes

    def trim(self) -> None:
        """Write out the least recently used windows until the memory held is within the budget."""
        if self._held <= self.memory_bytes:
            return
        for k in sorted(self._slots, key=lambda k: self._slots[k].used):
            if self._held <= self.memory_bytes // 2:
                break
            try:
                self._write(k, drop=True)
            except (OSError, pl.exceptions.PolarsError) as exc:  # a full disk: keep the rows, say so once
                if not self._failing:
                    where = self._folder if self._folder is not None else f"a new folder in {self._spool_dir}"
                    self._warn(f"cannot write window rows to {where} ({_why(exc)}); keeping them in memory "
                               "for now")
                self._failing = True
                return
        self._failing = False
        self.spills += 1

    def spill_folder(self) -> Path:
        """The folder this store writes into (made when missing), for other state kept beside its files."""
        return self._ensure_folder()

    def _path(self, name: str) -> Path:
        assert self._folder is not None
        return self._folder / name

    def _ensure_folder(self) -> Path:
        if self._folder is None:
            self._spool_dir.mkdir(parents=True, exist_ok=True)
            self._folder = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=self._spool_dir))
        else:
            self._folder.mkdir(parents=True, exist_ok=True)
        return self._folder

    def _write(self, k: int, *, drop: bool) -> None:
        """Write window ``k``'s rows held in memory to a new file; with ``drop``, free its memory (keys too)."""
        slot = self._slots[k]
        if slot.parts:
            folder = self._ensure_folder()
            self._generation += 1
            name = f"w{k}-{self._generation}.parquet"
            temporary = folder / f".{name}.tmp"
            try:
                (pl.concat(slot.parts) if len(slot.parts) > 1 else slot.parts[0]).write_parquet(
                    temporary, compression="lz4", statistics=False)
                os.replace(temporary, folder / name)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
            slot.files.append(name)
            slot.parts = []
        if drop:
            self._held -= slot.nbytes
            slot.nbytes = 0
            slot.keys = None
        elif slot.keys is not None:
            self._held -= slot.nbytes - slot.keys.nbytes
            slot.nbytes = slot.keys.nbytes

    # -- checkpoints ------------------------------------------------------------------

    #: A window written out in more files than this is rewritten as one file at the next persist.
    MAX_FILES: Final = 16

    #: Windows whose keys stay in memory after a persist: the most recently used (where a live tail's events go);
    #: an older window's keys are read back from its files if a late event comes for it.
    KEYS_KEPT: Final = 4

    def persist(self) -> tuple[dict[str, dict[str, object]], list[str]]:
        """Write every row held only in memory to files (the recent windows' keys stay loaded); return what a
        checkpoint must name (each window's files and row count) and the files it no longer needs (remove them
        once it is saved)."""
        obsolete: list[str] = []
        recent = set(sorted(self._slots, key=lambda k: self._slots[k].used)[-self.KEYS_KEPT:])
        for k, slot in self._slots.items():
            if len(slot.files) + (1 if slot.parts else 0) > self.MAX_FILES:  # compact into one file
                old, slot.files = slot.files, []
                slot.parts = [self.rows_of(old, slot.parts)]
                obsolete += old
            self._write(k, drop=k not in recent)
        windows = {str(k): {"files": list(slot.files), "rows": slot.rows} for k, slot in self._slots.items()
                   if slot.rows}
        return windows, obsolete

    def rows_of(self, files: list[str], parts: list[pl.DataFrame]) -> pl.DataFrame:
        frames = [pl.read_parquet(self._path(name)) for name in files] + parts
        return pl.concat(frames) if frames else pl.DataFrame(schema=ROW_SCHEMA)

    def remove_files(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                self._path(name).unlink()

    def restore(self, windows: object) -> None:
        """Take back the windows a checkpoint named (see :meth:`persist`); ValueError when the entry is damaged
        or a file is missing. Files of the folder that it does not name (written after it) are removed."""
        if not isinstance(windows, dict):
            raise ValueError(f"windows: expected a mapping, got {type(windows).__name__}")
        slots: dict[int, _Slot] = {}
        for key, entry in windows.items():
            if not (isinstance(key, str) and key.lstrip("-").isdigit() and isinstance(entry, dict)
                    and isinstance(entry.get("files"), list) and type(entry.get("rows")) is int
                    and entry["rows"] >= 0 and all(isinstance(n, str) and _FILE_NAME.fullmatch(n)
                                                   for n in entry["files"])):
                raise ValueError(f"a window entry is damaged: {key!r}: {entry!r}")
            held = 0
            for name in entry["files"]:
                if not self._path(name).is_file():
                    raise ValueError(f"window file {name} is missing")
                if pl.read_parquet_schema(self._path(name)) != dict(ROW_SCHEMA):
                    raise ValueError(f"window file {name} has other columns than this tracker writes")
                held += pl.scan_parquet(self._path(name)).select(pl.len()).collect().item()
            if held != entry["rows"]:
                raise ValueError(f"window {key} should hold {entry['rows']} rows, its files hold {held}")
            slots[int(key)] = _Slot(files=list(entry["files"]), rows=entry["rows"])
        self._slots = slots
        named = {name for slot in slots.values() for name in slot.files}
        self._generation = max((int(_FILE_NAME.fullmatch(n).group(2)) for n in named), default=0)  # type: ignore[union-attr]
        if self._folder is not None and self._folder.is_dir():
            for path in self._folder.iterdir():
                if (_FILE_NAME.fullmatch(path.name) and path.name not in named) or _TEMPORARY.fullmatch(path.name):
                    path.unlink()

    def clear(self) -> None:
        """Forget every window and remove this store's files from its folder (only those)."""
        self._slots.clear()
        self._held = 0
        if self._folder is not None and self._folder.is_dir():
            for path in self._folder.iterdir():
                if (_FILE_NAME.fullmatch(path.name) or _TEMPORARY.fullmatch(path.name)) and path.is_file():
                    path.unlink()

    def close(self) -> None:
        """Forget every row; remove the folder when the store made it."""
        self._slots.clear()
        self._held = 0
        if self._own_folder and self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def _why(exc: BaseException) -> str:
    """An I/O error's reason, whether it came from the OS or from polars' writer."""
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).rsplit(": ", 1)[-1]) or repr(exc)
