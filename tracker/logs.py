"""Which files are logs: paths, folders and glob patterns to regular files, opened without waiting; and the
rule that no output of a command may be one of its logs."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Final

from .batch import BLOCK_BYTES, Span, split_blocks
from .decoder import Decoder, Quarantine, Rejected, file_kind, open_log
from .errors import CheckpointError, OutputIsInputError
from .events import Event
from .follow import folder_entries
from .limits import DEFAULT_MAX_LINE_BYTES
from .names import REPORT_NAME
from .output import (
    ERRORS_FILE,
    MANIFEST_FILE,
    REPORT_HTML,
    SESSIONS_FILE_PREFIX,
    SUMMARY_FILE,
    THRESHOLDS_FILE,
    TOTALS_FILE,
)

__all__ = (
    "lock_folder",
    "lock_output_folder",
    "refuse_non_folder",
    "decode_log",
    "expand_logs",
    "folder_logs",
    "measured_spans",
    "open_log",
    "refuse_outputs_that_are_logs",
    "refuse_unsafe_outputs",
    "report_outputs",
)

#: The per-window report files (``session_tracking_report_YYYYMMDD_HHMMSS.csv``) a writer may write or remove.
_SESSIONS_FILE: Final = re.compile(re.escape(SESSIONS_FILE_PREFIX) + r"[0-9]{8}_[0-9]{6}\.csv")


def _not_regular(path: str, mode: int) -> OSError:
    kind = file_kind(mode)
    return OSError(errno.EINVAL, f"it is {kind}, not a regular file", path)


def _is_regular(path: str) -> bool:
    """True for a regular file (or a symlink to one); never opens it."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def folder_logs(folder: str | os.PathLike[str], exclude: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """The logs of a folder as ``tracker tail`` follows them (:meth:`tracker.follow.Follower.paths`): its
    ``*.jsonl`` entries (hidden ones too) that are regular files or symlinks to one, sorted; never a path in
    ``exclude`` (the command's own outputs), compared by real path."""
    return [p for p in folder_entries(Path(folder), {os.path.realpath(p) for p in exclude}) if p.is_file()]


def expand_logs(patterns: Iterable[str | os.PathLike[str]], *,
                exclude: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """Paths, glob patterns and folders to a list of regular files, checked without opening any of them.

    A path names a log, which must be a regular file (or a symlink to one): anything else (a FIFO, whose
    opening would wait for a writer, a socket, a device) is an :class:`OSError` naming it, as is a missing one.
    A folder gives its ``*.jsonl`` regular files (see :func:`folder_logs`). A glob pattern gives its matches,
    sorted: folders among them are skipped, any other match that is not a regular file is an error. A pattern or
    folder that gives no log is a :class:`FileNotFoundError`. Matches of patterns and folders that are in
    ``exclude`` (the command's own outputs, compared by real path) are left out.
    """
    excluded = [os.fspath(p) for p in exclude]
    real_excluded = {os.path.realpath(p) for p in excluded}
    found: list[Path] = []
    for pattern in patterns:
        text = os.fspath(pattern)
        if glob.has_magic(text) and not os.path.lexists(text):  # an existing file named run[1].jsonl is that file
            matches = [m for m in sorted(glob.glob(text)) if not os.path.isdir(m)
                       and (not real_excluded or os.path.realpath(m) not in real_excluded)]
            if not matches:
                raise FileNotFoundError(errno.ENOENT, "no log matches this pattern", text)
            for match in matches:
                if not _is_regular(match):
                    raise _not_regular(match, os.stat(match).st_mode)
            found.extend(Path(m) for m in matches)
            continue
        mode = os.stat(text).st_mode  # FileNotFoundError naming it when missing
        if stat.S_ISDIR(mode):
            logs = folder_logs(text, excluded)
            if not logs:
                raise FileNotFoundError(errno.ENOENT, "no *.jsonl log in this folder", text)
            found.extend(logs)
        elif stat.S_ISREG(mode):
            found.append(Path(text))
        else:
            raise _not_regular(text, mode)
    return found


def refuse_outputs_that_are_logs(logs: Iterable[str | os.PathLike[str]],
                                 outputs: Iterable[tuple[str, str | os.PathLike[str]]]) -> None:
    """Raise :class:`OutputIsInputError` when an output path (given with what it is, e.g. "the quarantine
    file") is one of ``logs``: the same file, whatever its name (a hard link, a symlink), or the same path (a log
    named that does not exist yet: a tail waits for it)."""
    identities: dict[tuple[int, int], str] = {}
    names: dict[str, str] = {}
    for log in logs:
        names.setdefault(os.path.realpath(log), os.fspath(log))
        with contextlib.suppress(OSError):
            st = os.stat(log)
            identities.setdefault((st.st_dev, st.st_ino), os.fspath(log))
    for role, path in outputs:
        try:
            st = os.stat(path)
        except OSError:
            same = names.get(os.path.realpath(path))
        else:
            same = identities.get((st.st_dev, st.st_ino))
        if same is not None:
            raise OutputIsInputError(f"{role} {os.fspath(path)!r} is the log {same!r}: it would be overwritten; "
                                     "choose another path")


def _refuse_report_names(path: Path, out_dir: str | os.PathLike[str], role: str) -> None:
    """Raise :class:`OutputIsInputError` when ``path`` (a file the command writes, given with what it is) is one of
    the files a report writer writes in ``out_dir``, whether it exists yet or not: one would overwrite the other."""
    target, out = Path(os.path.realpath(path)), Path(os.path.realpath(out_dir))
    if target.parent == out and (REPORT_NAME.fullmatch(target.name) or target.name == MANIFEST_FILE):
        raise OutputIsInputError(f"{role} '{os.fspath(path)}' is one of the report files written in "
                                 f"'{os.fspath(out_dir)}': give it another name")


def refuse_unsafe_outputs(logs: Iterable[str | os.PathLike[str]], quarantine: Quarantine,
                          out_dir: str | os.PathLike[str] | None = None) -> None:
    """Every check a command makes before it reads anything, so that its outputs destroy nothing: no output is one
    of ``logs`` (:func:`refuse_outputs_that_are_logs`: the quarantine's two files, and the report files of
    ``out_dir`` when it writes reports), neither quarantine file is one of those report files, and a file at
    the quarantine's path is a quarantine (:meth:`~tracker.decoder.Quarantine.refuse_foreign`: a log of a folder
    named as the quarantine is left out of ``logs``)."""
    quarantine_files = [("the quarantine file", quarantine.path),
                        ("the quarantine's reasons file", quarantine.reasons_path)]
    refuse_outputs_that_are_logs(logs, quarantine_files + (report_outputs(out_dir) if out_dir is not None else []))
    if out_dir is not None:
        for role, path in quarantine_files:
            _refuse_report_names(path, out_dir, role)
    quarantine.refuse_foreign()


def new_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a file a command will write (atomically: a new file renamed over the path) cannot be ``path``, or None:
    a folder, something that is not a regular file (/dev/null, a FIFO: the rename would replace it), or a path
    whose folder does not exist."""
    target = Path(os.path.realpath(path))
    if target.is_dir():
        return "is a folder: give a file name"
    if target.exists() and not target.is_file():
        return "is not a regular file: it would be replaced; give a file name"
    if not target.parent.is_dir():
        return f"the folder {str(target.parent)!r} does not exist"
    return None


def report_outputs(out_dir: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """The files a report writer may write or remove in ``out_dir`` that exist now, for
    :func:`refuse_outputs_that_are_logs`."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    names = {SUMMARY_FILE, TOTALS_FILE, ERRORS_FILE, THRESHOLDS_FILE, REPORT_HTML, MANIFEST_FILE}
    names |= {p.name for p in out.glob(f"{SESSIONS_FILE_PREFIX}*.csv") if _SESSIONS_FILE.fullmatch(p.name)}
    return [("the report file", out / name) for name in sorted(names)]


def measured_spans(stream: BinaryIO, block_bytes: int = BLOCK_BYTES,
                   max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[tuple[Span, int]]:
    """The spans of :func:`tracker.batch.split_blocks`, each with the bytes of the log it stands for, so the
    counts sum to the bytes read (the file's size for a finished log): a span's ``len(data)``, but a ``too_long``
    span counts the rest of its line too, skipped unread (up to where the next span starts, or the end of the
    stream), so it comes only once that is known: after the next span is read."""
    held: Span | None = None
    for span in split_blocks(stream, block_bytes, max_line_bytes):
        if held is not None:
            yield held, span.offset - held.offset
            held = None
        if span.too_long:
            held = span
        else:
            yield span, len(span.data)
    if held is not None:
        yield held, stream.tell() - held.offset


def decode_log(path: str | os.PathLike[str], decoder: Decoder, *, block_bytes: int = BLOCK_BYTES,
               on_span: Callable[[int], None] | None = None) -> Iterator[Event | Rejected]:
    """Every line of a finished log as events and rejections, one by one with ``decoder`` (its counts and
    duplicates), cut into lines as replay cuts them (:func:`tracker.batch.split_blocks`): a line longer than
    ``decoder.max_line_bytes`` is ``too_long`` (its first bytes kept, the rest skipped unread into memory),
    whether it ends or not; an unterminated last line is ``unterminated``. Memory stays within a block.

    ``on_span``, when given, is called with each span's byte count after its lines were yielded (see
    :func:`measured_spans`: the counts sum to the log's size, an over-long line's skipped rest included)."""
    source = os.fspath(path)
    with open_log(path) as stream:
        for span, nbytes in measured_spans(stream, block_bytes, decoder.max_line_bytes):
            if span.too_long:
                yield decoder.too_long(span.data, source=source, line_no=span.first_line, offset=span.offset)
            elif not span.ended:
                yield decoder.unterminated(span.data, source=source, line_no=span.first_line, offset=span.offset)
            else:
                offset, line_no = span.offset, span.first_line
                for piece in span.data.split(b"\n")[:-1]:  # only a newline ends a line (a CR is JSON whitespace)
                    raw = piece + b"\n"
                    yield from decoder.decode(raw, source=source, line_no=line_no, offset=offset)
                    offset, line_no = offset + len(raw), line_no + 1
            if on_span is not None:
                on_span(nbytes)


def refuse_non_folder(folder: str | os.PathLike[str], needs: str) -> None:
    """OSError naming the path at fault when ``folder``, or the nearest existing path above it, is not a folder (a
    file, a FIFO, a link to nothing or in a loop): ``needs`` says what needs the folder (``"the reports need a
    folder"``). A missing folder is fine: it is made when it is first used. Said before anything is read or
    written, so that a file given for a folder is one clear usage error, never a crash half-way. An empty path
    is a ValueError: it would be the current folder."""
    if not os.fspath(folder):
        raise ValueError(f"an empty path: {needs}, give its path")
    path = Path(folder)
    for part in (path, *path.parents):
        try:
            st = part.stat()
        except (FileNotFoundError, NotADirectoryError):  # (missing, or below a file: said for that file)
            if part.is_symlink():
                raise FileExistsError(errno.EEXIST, f"it is a symbolic link to nothing; {needs} (made when missing)",
                                      str(part)) from None
            continue
        except OSError as exc:  # a symbolic link loop, a folder that cannot be searched
            raise OSError(exc.errno, f"{exc.strerror or exc}; {needs} (made when missing)", str(part)) from exc
        if stat.S_ISDIR(st.st_mode):
            return
        made = "" if part == path else f", so {str(path)!r} cannot be made in it"
        raise NotADirectoryError(errno.ENOTDIR, f"it is {file_kind(st.st_mode, 'a file')}, not a folder{made}; "
                                                f"{needs} (made when missing)", str(part))


def lock_output_folder(folder: Path, holder: str, hint: str) -> int:
    """Make ``folder`` and hold an exclusive lock on the folder itself (no file is left in it), released when the
    returned descriptor is closed or the process ends: one writer an output folder. CheckpointError naming the
    ``holder`` and what to do (``hint``) when another process holds it; -1 (nothing locked) when ``folder`` is
    something other than a folder, which the writer then says it cannot write into."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except (FileExistsError, NotADirectoryError):
        return -1
    return _hold(fd, f"{folder} is in use by {holder}; {hint}")


def lock_folder(folder: Path, lock_name: str, holder: str, hint: str) -> int:
    """Make ``folder`` and hold an exclusive lock on its file ``lock_name`` (released when the returned descriptor
    is closed, or the process ends); CheckpointError naming the ``holder`` and what to do (``hint``) when another
    process holds it: one tail a checkpoint folder, one shipper a state folder."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # (a folder is fine: exist_ok)
        raise CheckpointError(f"cannot use {str(folder)!r}: it is a file, not a folder; {hint}") from None
    try:
        fd = os.open(folder / lock_name, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        why = ("it is a symbolic link to a file that cannot be made" if (folder / lock_name).is_symlink()
               else exc.strerror or str(exc))
        raise CheckpointError(f"cannot use the lock file {str(folder / lock_name)!r}: {why}; remove it") from exc
    return _hold(fd, f"{folder} is in use by {holder} (it holds the lock {lock_name}); {hint}")


def _hold(fd: int, busy: str) -> int:
    """``fd`` with an exclusive lock on it; CheckpointError saying ``busy`` (``fd`` closed) when another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CheckpointError(busy) from None
    return fd
