"""The report files: the engine's tables as deterministic CSV, written atomically, only when their bytes change.

The bytes are :mod:`tracker.render`'s (the summary and errors files by window).
:class:`ReportWriter` is the only code that writes report files: it derives
from the :class:`~tracker.engine.Engine` just the windows whose content may
have changed (new events in them, or a session whose facts or running totals
changed), keeps a hash of each file's bytes (not the bytes) and rewrites a
file only when its hash changed. A write that fails (a full disk) is a
warning, its temporary file is removed, and the file is written again at the
next flush: nothing is lost, because everything is derived from the engine.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import orjson
import polars as pl

from .engine import Engine
from .errors import ReportError
from .html_report import HtmlReport
from .names import (
    ERRORS_FILE,
    MANIFEST_FILE,
    REPORT_HTML,
    REPORT_NAME,
    SESSIONS_FILE_PREFIX,
    SUMMARY_FILE,
    THRESHOLDS_FILE,
    TOTALS_FILE,
    session_file_name,
)
from .render import PartedTable, csv_bytes
from .tables import ERRORS_SCHEMA, WindowAgg
from .thresholds import Threshold, Verdict, evaluate, verdicts_frame

__all__ = (
    "ERRORS_FILE",
    "MANIFEST_FILE",
    "REPORT_HTML",
    "SESSIONS_FILE_PREFIX",
    "SUMMARY_FILE",
    "THRESHOLDS_FILE",
    "add_to_manifest",
    "TOTALS_FILE",
    "FlushResult",
    "ReportWriter",
    "session_file_name",
    "write_atomically",
)

_SECOND: Final = 1_000_000
_log = logging.getLogger("tracker.output")


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary name and rename, so a reader sees the old file or the new one, never half.

    No fsync: the files are derived and can be regenerated from the log after a crash. When the write
    fails (a full disk), the temporary file is removed and the error raised.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def remove_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files :func:`write_atomically` left in ``folder`` for report files when a process was
    killed mid-write (``.NAME.PID.tmp`` of another process, NAME a report file or the manifest); nothing else."""
    removed = []
    for path in folder.glob(".*.tmp") if folder.is_dir() else ():
        name, _, rest = path.name[1:-len(".tmp")].rpartition(".")
        if rest.isdigit() and int(rest) != os.getpid() and (REPORT_NAME.fullmatch(name) or name == MANIFEST_FILE):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _read_manifest(out_dir: Path) -> dict[str, object]:
    """The folder's manifest (``{"files": [...], "writer": "live" or "replay"}``), or an empty one when there is
    none of ours."""
    try:
        manifest = orjson.loads((out_dir / MANIFEST_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def add_to_manifest(out_dir: Path, name: str) -> None:
    """Name one more file in the folder's manifest, when it has one of ours (``tracker report``'s page)."""
    manifest = _read_manifest(out_dir)
    listed = manifest.get("files")  # none (no manifest of ours): nothing is listed
    if isinstance(listed, list) and name not in listed:
        write_atomically(out_dir / MANIFEST_FILE, orjson.dumps({**manifest, "files": sorted({*listed, name})}))


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one flush wrote, and what it could not write (to be written again at the next flush)."""

    written: tuple[Path, ...]
    failed: tuple[Path, ...]
    windows: int  # per-window files the folder holds now


class ReportWriter:
    """Writes an engine's report files into ``out_dir``: the windows up to a given one, and the whole run."""

    def __init__(self, engine: Engine, out_dir: str | os.PathLike[str], *,
                 warn: Callable[[str], None] | None = None, thresholds: Iterable[Threshold] = (),
                 once: bool = False) -> None:
        """``once``: this writer flushes once (a replay), so a file it cannot write is not written again later."""
        self.engine = engine
        #: What becomes of a file that could not be written, said with the failure.
        self._again = ("this replay fails: run it again once they can be written" if once
                       else "they will be written again at the next flush")
        self.thresholds = tuple(thresholds)
        #: The thresholds' verdicts on the tables of the last flush (empty without thresholds).
        self.verdicts: list[Verdict] = []
        self.out_dir = Path(out_dir)
        self._warn = warn if warn is not None else _log.warning
        self._hashes: dict[str, bytes] = {}  # what each file on disk holds
        self._pending: set[int] = set()  # windows whose rows changed since they were last written
        self._stale_from: int | None = None  # the first window whose session rows may have changed
        self._last: int | None = None  # the last window written so far
        self._failing: str | None = None  # the last write error, said once until a write succeeds
        self._listed: set[str] = set()  # the files the manifest names
        self._html = HtmlReport()
        #: The summary's and the errors' lines by window (:class:`~tracker.render.PartedTable`).
        self._summary: PartedTable[tuple[object, ...]] = PartedTable(engine.summary_frame([]))
        self._errors: PartedTable[WindowAgg] = PartedTable(pl.DataFrame(schema=ERRORS_SCHEMA))
        #: How the last page written reloads itself (None: it does not); unknown (-1) until this writer writes one,
        #: so that a writer restored from a checkpoint writes the page again (a live one may be on disk).
        self._html_reload: int | None = -1
        self._html_due = 0.0  # while live, the page is not built again before this (time.monotonic())
        #: Who writes, in the folder's manifest: a tail restarted from its checkpoint finds out from it whether a
        #: replay wrote into the folder meanwhile.
        self._writer = "replay" if once else "live"
        self._manifest_written = False

    def earlier_files(self) -> tuple[set[str], set[str]]:
        """Report files in the folder: those an earlier writer listed in its manifest, and those it did not."""
        names = _read_manifest(self.out_dir).get("files", [])
        listed = {n for n in names if isinstance(n, str) and REPORT_NAME.fullmatch(n)} if isinstance(names, list) \
            else set()
        present = {p.name for p in self.out_dir.glob("session_tracking_*.csv") if REPORT_NAME.fullmatch(p.name)} \
            if self.out_dir.is_dir() else set()
        return present & listed, present - listed

    def own_earlier_files(self) -> set[str]:
        """The report files an earlier run listed as its own; ReportError when the folder holds report files no
        manifest names (another tool's, a user's, a run of an older tracker): they would be mixed with this run's,
        or overwritten."""
        ours, foreign = self.earlier_files()
        if foreign:
            names = ", ".join(sorted(foreign)[:3]) + (", ..." if len(foreign) > 3 else "")
            raise ReportError(f"{self.out_dir} holds {len(foreign)} report files that tracker did not list as its "
                              f"own ({names}); they would be mixed with this run's or overwritten: choose an empty "
                              "folder, or remove them")
        return ours

    def start_clean(self) -> list[Path]:
        """Remove the report files an earlier run wrote here (its manifest names them) before this run writes.

        Raises ReportError, removing nothing, when the folder holds report files no manifest names
        (another tool's, or a run of an older tracker): they would be mixed with this run's.
        """
        ours = self.own_earlier_files()
        removed = []
        for name in sorted(ours):
            (self.out_dir / name).unlink(missing_ok=True)
            removed.append(self.out_dir / name)
        if ours:
            try:
                self._write_manifest(set())
            except OSError as exc:  # a full disk: the list is written with the next files
                self._note_failure(f"cannot write {self.out_dir / MANIFEST_FILE} ({exc.strerror or exc}); "
                                   f"{self._again}")
        return removed

    def _absorb(self) -> None:
        """Take from the engine what changed since the last call: those windows are to be written again."""
        changed, stale = self.engine.take_changed()
        self._pending |= changed
        if stale is not None:
            self._stale_from = stale if self._stale_from is None else min(self._stale_from, stale)

    def state(self) -> dict[str, object]:
        """What was written (a hash per file) and what is still to write, for a checkpoint."""
        self._absorb()
        return {"last": self._last, "stale_from": self._stale_from, "pending": sorted(self._pending),
                "hashes": {name: digest.hex() for name, digest in sorted(self._hashes.items())}}

    def restore(self, state: object) -> None:
        """Go on from a checkpoint's :meth:`state`: the files on disk are this run's (rewritten when they change);
        ValueError when the state is damaged."""
        if not isinstance(state, dict):
            raise ValueError("writer state: damaged")
        self.check_writer()
        last, stale, pending, hashes = (state.get(k) for k in ("last", "stale_from", "pending", "hashes"))
        if not (all(v is None or type(v) is int for v in (last, stale)) and isinstance(pending, list)
                and all(type(k) is int for k in pending) and isinstance(hashes, dict)
                and all(isinstance(n, str) and REPORT_NAME.fullmatch(n) and isinstance(h, str) and len(h) == 32
                        for n, h in hashes.items())):
            raise ValueError("writer state: damaged")
        self._last, self._stale_from, self._pending = last, stale, set(pending)
        # Trust a saved hash only for a file that still holds those bytes: a file removed or replaced while the
        # tail was down is written again.
        self._hashes = {}
        for name, digest in hashes.items():
            try:
                on_disk = _digest((self.out_dir / name).read_bytes())
            except OSError:
                on_disk = b""
            if on_disk == bytes.fromhex(digest):
                self._hashes[name] = on_disk
            else:
                self._pending |= self._windows_of([self.out_dir / name])
        ours, _ = self.earlier_files()
        self._listed = ours

    def check_writer(self) -> None:
        """ValueError when the folder's manifest says another kind of writer (a replay) wrote there last: a live
        writer's checkpoint saved before that no longer describes the folder."""
        if _read_manifest(self.out_dir).get("writer", self._writer) != self._writer:
            raise ValueError(f"tracker replay wrote its reports into {self.out_dir} since")

    def claim(self) -> None:
        """Say in the folder's manifest that this writer writes there now, before anything in it changes: a tail
        stopped meanwhile then finds its checkpoint unusable, even when this writer stops before its end."""
        self._listed = set()
        self._write_manifest(self.earlier_files()[0])

    def forget(self, names: set[str]) -> None:
        """Files removed from the folder: the manifest stops naming them."""
        self._write_manifest(self._listed - names)

    def _write_manifest(self, names: set[str]) -> None:
        if names == self._listed and self._manifest_written and (self.out_dir / MANIFEST_FILE).exists():
            return  # (written by this writer at least once: it names this writer)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.out_dir / MANIFEST_FILE, orjson.dumps({"files": sorted(names), "writer": self._writer}))
        self._listed = set(names)
        self._manifest_written = True

    @property
    def written_until(self) -> int | None:
        """The last window whose files were written, or None."""
        return self._last

    def flush(self, k_last: int | None = None, *, reload_s: int | None = None) -> FlushResult:
        """Write the files that changed: the windows up to ``k_last`` (default: every window), and the run's files,
        then the HTML report from them (reloading itself every ``reload_s`` seconds while the run is live).

        The summary and errors files hold the rows of those windows; the totals cover every event.
        """
        engine = self.engine
        self._absorb()
        span = engine.span()
        written: list[Path] = []
        failed: list[Path] = []
        files: list[tuple[str, Callable[[], bytes | Literal[False] | None]]] = []
        if span is not None:
            k_min, k_max = span
            last = k_max if k_last is None else min(k_last, k_max)
            todo = set(range(max(k_min, (self._last if self._last is not None else k_min - 1) + 1), last + 1))
            todo |= {k for k in self._pending if k_min <= k <= last}
            if self._stale_from is not None:
                todo |= set(range(max(k_min, self._stale_from), last + 1))
            for k in sorted(todo):
                files.append((session_file_name((k + 1) * engine.every),
                              lambda k=k: csv_bytes(engine.session_rows(k))))  # type: ignore[misc]
        else:
            last = None
        # The run's files after the windows' files: deriving those windows cached their figures. The summary and
        # errors are rendered again only for the windows whose rows changed.
        k_until = last if span is not None else None

        @functools.cache
        def summary_rows() -> list[tuple[int, tuple[object, ...]]]:  # (once the windows' files are made)
            return engine.summary_rows(k_until)

        @functools.cache
        def run_row() -> pl.DataFrame:
            return engine.totals()

        def summary() -> bytes:
            return self._summary.render(summary_rows(), lambda changed: (
                engine.summary_frame([row for _, row in changed]), [1] * len(changed)))

        def errors() -> bytes:
            return self._errors.render(engine.error_parts(k_until), lambda parts: (
                engine.errors_frame(parts), [agg.errors.height for _, agg in parts]))

        def verdicts() -> bytes:
            self.verdicts = evaluate(self.thresholds, engine.summary_frame([row for _, row in summary_rows()]),
                                     run_row())
            return csv_bytes(verdicts_frame(self.verdicts), numbers=("value",))

        files += [(SUMMARY_FILE, summary), (TOTALS_FILE, lambda: csv_bytes(run_row())), (ERRORS_FILE, errors)]
        if self.thresholds:
            files.append((THRESHOLDS_FILE, verdicts))
        elif THRESHOLDS_FILE in self._listed:  # a tail restarted without the thresholds it had: their verdicts go
            self._remove_thresholds_file()

        def page() -> bytes | Literal[False] | None:
            if failed:  # made from the CSV files: once they are all written (the next flush)
                return None
            if REPORT_HTML in self._hashes and self._html_reload == reload_s and (not written or (
                    reload_s is not None and time.monotonic() < self._html_due)):
                # No file it is made from changed: the same page. Or live, and built less than a reload (or ten
                # builds' time: at most a tenth of the time goes to the page) ago: the next flush builds it.
                return False
            try:
                start = time.monotonic()
                data = self._html.render(self.out_dir, reload_s=reload_s)
                now = time.monotonic()
                self._html_reload, self._html_due = reload_s, now + max(reload_s or 0, 10 * (now - start))
                return data
            except ReportError as exc:  # a CSV file removed or damaged by hand: said; written at the next flush
                self._note_failure(f"cannot write {self.out_dir / REPORT_HTML} ({exc}); it will be written again at "
                                   "the next flush")
                return None

        files.append((REPORT_HTML, page))  # last: it is made from the files written before it
        self._write(files, written, failed)
        # Only now that the files are written: a flush stopped half-way (an exception, Ctrl-C) is done again whole.
        if span is not None and last is not None:
            self._pending = {k for k in self._pending if k > last} | self._windows_of(failed)
            if self._stale_from is not None and self._stale_from <= last:
                self._stale_from = None if last >= span[1] else last + 1
            self._last = last if self._last is None else max(self._last, last)
        windows = sum(1 for name in self._hashes if name.startswith(SESSIONS_FILE_PREFIX))
        return FlushResult(tuple(written), tuple(failed), windows)

    def _remove_thresholds_file(self) -> None:
        """Remove the verdicts file an earlier writer of this run left (tried again at the next flush on failure)."""
        self._hashes.pop(THRESHOLDS_FILE, None)
        try:
            (self.out_dir / THRESHOLDS_FILE).unlink(missing_ok=True)
            self._write_manifest(self._listed - {THRESHOLDS_FILE})
        except OSError as exc:
            self._note_failure(f"cannot remove {self.out_dir / THRESHOLDS_FILE} ({exc.strerror or exc}); tried again "
                               "at the next flush")

    def _write(self, files: list[tuple[str, Callable[[], bytes | Literal[False] | None]]], written: list[Path],
               failed: list[Path]) -> None:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            # The manifest names a file before it exists: a crash never leaves a file of ours unlisted.
            self._write_manifest(self._listed | {name for name, _ in files})
        except OSError as exc:
            why = "it is a file, not a folder" if isinstance(exc, FileExistsError | NotADirectoryError) and \
                self.out_dir.exists() and not self.out_dir.is_dir() else exc.strerror or str(exc)
            self._note_failure(f"cannot write the reports into {self.out_dir} ({why}); {self._again}")
            failed.extend(self.out_dir / name for name, _ in files)
            return
        for name, render in files:
            data = render()
            if data is None:
                failed.append(self.out_dir / name)
                continue
            if data is False:  # unchanged, known without rendering it
                continue
            digest = _digest(data)
            if self._hashes.get(name) == digest:
                continue
            path = self.out_dir / name
            try:
                write_atomically(path, data)
            except OSError as exc:
                # Said once for the folder, not once a file: a full disk fails every file alike.
                self._note_failure(f"cannot write report files in {self.out_dir} ({exc.strerror or exc}); "
                                   f"{self._again}")
                failed.append(path)
                self._hashes.pop(name, None)
                continue
            self._hashes[name] = digest
            written.append(path)
        if not failed and self._failing is not None:
            self._warn(f"report files written again in {self.out_dir}")
            self._failing = None

    def _windows_of(self, paths: Iterable[Path]) -> set[int]:
        """The windows whose files these are (written again at the next flush when they failed)."""
        every, windows = self.engine.every, set()
        for path in paths:
            if path.name.startswith(SESSIONS_FILE_PREFIX):
                stamp = path.name[len(SESSIONS_FILE_PREFIX):-len(".csv")]
                end = int(datetime.strptime(stamp, "%Y%m%d_%H%M%S").replace(tzinfo=UTC).timestamp()) * _SECOND
                windows.add(end // every - 1)
        return windows

    def _note_failure(self, message: str) -> None:
        if message != self._failing:
            self._failing = message
            self._warn(message)
