"""Read log lines back into events; every line that is not one is rejected with its reason.

Nothing is skipped in silence: each line of a log is either an event, a
duplicate of an event already read (same ``event_id``, ``ts`` and report
fields: one line read twice, counted once), or a
:class:`Rejected` with its line number, byte offset, reason and the raw bytes,
which a :class:`Quarantine` keeps verbatim.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import orjson

from .errors import EventValidationError, ForeignFileError
from .events import Event, event_from_record
from .limits import DEFAULT_MAX_LINE_BYTES

#: The quarantine file a command writes in its --out folder unless told otherwise.
QUARANTINE_FILE: Final = "quarantine.jsonl"

__all__ = (
    "DEFAULT_MAX_LINE_BYTES",
    "FILE_KINDS",
    "file_kind",
    "open_log",
    "QUARANTINE_FILE",
    "REASONS",
    "Decoder",
    "Quarantine",
    "Rejected",
    "decode_file",
    "repeated_key",
)


#: Every reason a line can be rejected for.
REASONS: Final = (
    "invalid_json",
    "invalid_utf8",
    "not_object",
    "schema",
    "unknown_type",
    "unsupported_version",
    "implausible_time",
    "duplicate_key",
    "too_long",
    "unterminated",
)

_loads = orjson.loads
_dumps = orjson.dumps
_APPEND_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE
#: How every line the Python emitter writes starts; used to find an event glued to a fragment.
_EVENT_START: Final = b'{"v":'
#: A JSON string (group 1), with a colon after it when it is a key (group 2); or a bracket.
_TOKEN: Final = re.compile(rb'("[^"\\]*(?:\\.[^"\\]*)*")([ \t\r]*:)?|[{}\[\]]')


def repeated_key(raw: bytes, record: dict[str, object]) -> str | None:
    """The first key written more than once at the top level of ``raw`` (whose parse is ``record``), or None.

    orjson keeps a repeated key's last value and polars its first, so such a line is refused. Cheap when
    it can be: each key ends with ``":`` unless whitespace precedes its colon (a tab or CR can only be
    whitespace, JSON text holds neither), and a line holds at least as many ``":`` as keys (strings may
    hold more), so as many as ``record`` has keys, and no whitespace before a colon, means no key repeats.
    Otherwise the line's top-level keys are read one by one.
    """
    if raw.count(b'":') == len(record) and b" :" not in raw and b"\t" not in raw and b"\r" not in raw:
        return None
    seen: set[str] = set()
    depth = 0
    for token in _TOKEN.finditer(raw):  # raw is valid JSON: outside strings, no quote can appear
        string, colon = token.group(1, 2)
        if string is None:
            depth += 1 if token.group() in b"{[" else -1
        elif colon is not None and depth == 1:
            key: str = _loads(string)
            if key in seen:
                return key
            seen.add(key)
    return None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line that is not a valid event, and why."""

    source: str
    line_no: int
    offset: int
    reason: str
    detail: str
    raw: bytes

    def describe(self) -> str:
        """``events.jsonl:17 (byte 2048): invalid_json: unexpected character``"""
        return f"{self.source}:{self.line_no} (byte {self.offset}): {self.reason}: {self.detail}"


def _report_key(event: Event) -> tuple[object, ...]:
    """What makes two events one: every field (a line read twice), as the engine's content key has it."""
    names = _FIELD_NAMES.get(type(event))
    if names is None:
        names = _FIELD_NAMES[type(event)] = tuple(f.name for f in dataclasses.fields(event))
    return (event.TYPE, *(getattr(event, name) for name in names))


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


class Decoder:
    """Decodes lines into events, with counts of what it saw.

    One decoder can read several files: duplicates (one line read twice: the
    same content, every field) are detected across all of them
    (unless ``dedupe`` is false, for callers that remove duplicates
    themselves). ``max_line_bytes`` bounds a line's length.
    """

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, dedupe: bool = True) -> None:
        self.max_line_bytes = max_line_bytes
        self.dedupe = dedupe
        self.by_type: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.duplicates = 0
        self._seen: set[tuple[object, ...]] = set()
        self._writers: dict[str, list[int]] = {}  # writer -> [events, highest seq]

    @property
    def events(self) -> int:
        return self.by_type.total()

    def decode_line(
        self, raw: bytes, *, source: str = "", line_no: int = 0, offset: int = 0
    ) -> Event | Rejected | None:
        """One complete line (its newline included or not) as an event, a rejection, or ``None`` for a duplicate."""
        if len(raw) > self.max_line_bytes:
            return self.too_long(raw[:self.max_line_bytes], source=source, line_no=line_no, offset=offset)
        try:
            record = _loads(raw)
        except orjson.JSONDecodeError as exc:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                return self._reject(source, line_no, offset, "invalid_utf8", str(bad), raw)
            detail = "empty line" if not raw.strip() else str(exc)
            return self._reject(source, line_no, offset, "invalid_json", detail, raw)
        if type(record) is dict:
            # A line that is exactly the record written again (as the emitter writes, with orjson) holds
            # each key once: the cheapest proof, for most lines. Any other line is searched for a repeat.
            try:
                canonical = _dumps(record, option=_APPEND_NEWLINE) == raw
            except orjson.JSONEncodeError:  # nested deeper than orjson writes
                canonical = False
            if not canonical and (repeated := repeated_key(raw, record)) is not None:
                return self._reject(source, line_no, offset, "duplicate_key",
                                    f"the key {repeated!r} appears more than once (readers could take either "
                                    "value)", raw)
        try:
            event = event_from_record(record)
        except EventValidationError as exc:
            return self._reject(source, line_no, offset, exc.reason, str(exc), raw)
        if self.dedupe:
            key = _report_key(event)
            if key in self._seen:
                self.duplicates += 1
                return None
            self._seen.add(key)
        self.by_type[event.TYPE] += 1
        seen = self._writers.get(event.writer)
        if seen is None:
            self._writers[event.writer] = [1, event.seq]
        else:
            seen[0] += 1
            if event.seq > seen[1]:
                seen[1] = event.seq
        return event

    def decode(self, raw: bytes, *, source: str = "", line_no: int = 0, offset: int = 0) -> list[Event | Rejected]:
        """One complete line as a list of events and rejections (empty for a duplicate).

        A line holding a fragment left by a writer that died mid-line, glued to
        the complete line that the next writer appended, gives the fragment as
        rejected and the glued event as read, so the event is not lost.
        """
        item = self.decode_line(raw, source=source, line_no=line_no, offset=offset)
        if item is None:
            return []
        if type(item) is not Rejected or item.reason != "invalid_json":
            return [item]
        cut = raw.rfind(_EVENT_START, 1)
        if cut < 0:
            return [item]
        glued = self.decode_line(raw[cut:], source=source, line_no=line_no, offset=offset + cut)
        if type(glued) is Rejected:  # not an event either: the line stays one rejection
            self.rejected[glued.reason] -= 1
            if not self.rejected[glued.reason]:
                del self.rejected[glued.reason]
            return [item]
        fragment = Rejected(source, line_no, offset, "invalid_json",
                            f"fragment of an unfinished line, followed on the same line by an event at byte "
                            f"{offset + cut}", raw[:cut])
        return [fragment] if glued is None else [fragment, glued]

    def _reject(self, source: str, line_no: int, offset: int, reason: str, detail: str, raw: bytes) -> Rejected:
        self.rejected[reason] += 1
        return Rejected(source, line_no, offset, reason, detail, raw)

    def decode_stream(self, stream: BinaryIO | Iterable[bytes], *, source: str = "") -> Iterator[Event | Rejected]:
        """Every line of a finished log, in order; an unterminated last line is rejected."""
        offset = 0
        for line_no, raw in enumerate(stream, 1):
            if raw.endswith(b"\n"):
                yield from self.decode(raw, source=source, line_no=line_no, offset=offset)
            else:
                yield self.unterminated(raw, source=source, line_no=line_no, offset=offset)
            offset += len(raw)

    def too_long(self, raw: bytes, *, source: str = "", line_no: int = 0, offset: int = 0) -> Rejected:
        """Reject a line longer than the limit; ``raw`` is its first ``max_line_bytes`` bytes, all that is kept
        (however much of the line was read before its length was known)."""
        return self._reject(source, line_no, offset, "too_long",
                            f"line is longer than the limit of {self.max_line_bytes} bytes", raw)

    def unterminated(self, raw: bytes, *, source: str = "", line_no: int = 0, offset: int = 0) -> Rejected:
        """Reject the last line of a finished log, which has no newline."""
        return self._reject(source, line_no, offset, "unterminated",
                            "the last line has no newline (a writer stopped mid-line?)", raw)

    def gaps(self) -> dict[str, int]:
        """Sequence numbers missing per writer (1 up to its highest seq read), for writers with any missing."""
        return {writer: top - count for writer, (count, top) in sorted(self._writers.items()) if top > count}


def decode_file(path: str | os.PathLike[str], decoder: Decoder | None = None) -> Iterator[Event | Rejected]:
    """Decode a finished log file line by line (see :meth:`Decoder.decode_stream`); OSError naming it when it is
    not a regular file (see :func:`open_log`)."""
    decoder = decoder or Decoder()
    with open_log(path) as stream:
        yield from decoder.decode_stream(stream, source=str(path))


def open_log(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a log for reading, refusing (OSError naming it) anything but a regular file without waiting: a FIFO
    is opened without blocking, then refused."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"it is {file_kind(st.st_mode)}, not a regular file", os.fspath(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


#: What a path that is not a regular file is, by the first letter of ``stat.filemode``.
FILE_KINDS: Final = {"d": "a folder", "p": "a FIFO", "s": "a socket", "c": "a character device", "b": "a block device"}


def file_kind(mode: int, other: str = "not a file") -> str:
    """What a file of this ``st_mode`` that is not a regular file is (``a FIFO``, ``a folder``, ...), else ``other``."""
    return FILE_KINDS.get(stat.filemode(mode)[0], other)


#: How an entry of a quarantine's reasons file begins, as Quarantine.add writes it (its detail, which may quote a
#: long value, comes last).
_REASON_START: Final = re.compile(rb'\{"source":"(?:[^"\\]|\\.)*","line":-?[0-9]+,"offset":[0-9]+,"reason":"[a-z_]+",'
                                  rb'"detail":"')


def _newlines(path: Path) -> int:
    """How many newlines the file at ``path`` holds (0 when it is missing)."""
    count = 0
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                count += chunk.count(b"\n")
    except FileNotFoundError:
        pass
    return count


def _refuse_unless_regular(path: Path, st: os.stat_result | None = None) -> None:
    """OSError (EINVAL, naming ``path``) unless it is missing or a regular file (or a symbolic link to one);
    ``st``, when given, is the open file's status."""
    if st is None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return  # created on first use (a dangling link: its target)
        except OSError as exc:  # a symbolic link loop, a folder that cannot be searched
            raise OSError(exc.errno, f"the quarantine cannot use it ({exc.strerror or exc})", str(path)) from exc
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, f"it is {file_kind(st.st_mode)}, not a regular file: the quarantine appends "
                                    "rejected lines to its file and empties it for a new read; give a file name",
                      str(path))


class Quarantine:
    """Keeps rejected lines: verbatim in ``path``, and why in ``path`` + ``.reasons.jsonl``.

    Each line of the reasons file is a JSON object with ``source``, ``line``,
    ``offset``, ``reason`` and ``detail``, in the order of the quarantined lines:
    line N of one file goes with line N of the other (a rejected line is one
    line: the decoder never rejects bytes with a newline before their end). An
    entry is written unbuffered, the reason first and then its line, one write
    each, so a crash (even ``kill -9``) leaves at most one unpaired entry, at the
    end, perhaps cut short. Files found when opening, without a saved
    :meth:`position`, are repaired: both are cut back to the entries they pair
    up on, with a warning. :meth:`restore` cuts them back to a saved position.

    Files are emptied or cut back only when they are a quarantine's: the reasons
    file begins with an entry of ours, and the lines file holds nothing without
    one (its reason is written first). Anything else at either path, a log named
    as the quarantine say, is a :class:`~tracker.errors.ForeignFileError`,
    the file untouched.
    """

    def __init__(self, path: str | os.PathLike[str], *, warn: Callable[[str], None] | None = None) -> None:
        """Raises OSError (EINVAL, naming the file) when ``path`` or its reasons file is something other than a
        regular file (a folder, a FIFO, a device: the quarantine appends to its files and empties them)."""
        self.path = Path(path)
        self.reasons_path = self.path.with_name(self.path.name + ".reasons.jsonl")
        for file in (self.path, self.reasons_path):
            _refuse_unless_regular(file)
        self._warn = warn if warn is not None else logging.getLogger("tracker.quarantine").warning
        self._fds: tuple[int, int] | None = None
        self._paired = False  # the files are known to pair up: restored, repaired, or written here only
        self.count = 0
        #: Rejected lines that could not be written (a full disk), in all and since the last that was (see keep).
        self.lost = self._failing = 0

    def add(self, rejected: Rejected) -> None:
        """Append the line (a newline added when it had none) and its reason; the files are created on first use.

        Raises OSError when either cannot be written whole (a full disk): both files are then cut back to where
        they were, so they still pair up line by line.
        """
        lines, reasons = self._open()
        sizes = os.fstat(lines).st_size, os.fstat(reasons).st_size
        try:
            # The reason first: a lines file never holds a line whose reason is not written (see refuse_foreign).
            self._write(reasons, orjson.dumps({
                # A file name that is not UTF-8 (its bytes kept as surrogates) is written with U+FFFD for them.
                "source": rejected.source.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                "line": rejected.line_no, "offset": rejected.offset,
                "reason": rejected.reason, "detail": rejected.detail,
            }, option=orjson.OPT_APPEND_NEWLINE))
            self._write(lines, rejected.raw if rejected.raw.endswith(b"\n") else rejected.raw + b"\n")
        except OSError:
            for fd, size in zip((lines, reasons), sizes, strict=True):
                with contextlib.suppress(OSError):  # cutting back needs no space
                    os.ftruncate(fd, size)
            raise
        self.count += 1

    def keep(self, rejected: Rejected, warn: Callable[[str], None]) -> bool:
        """:meth:`add` the line, True; or, when it cannot be written (a full disk, or another file put at the path
        since it was checked), count it in :attr:`lost` and return False, saying so with ``warn`` once for a run of
        such lines, and once when writing works again."""
        try:
            self.add(rejected)
        except (OSError, ForeignFileError) as exc:
            if not self._failing:
                why = exc.strerror or exc if isinstance(exc, OSError) else exc
                warn(f"{rejected.source}:{rejected.line_no}: rejected ({rejected.reason}) but not quarantined: cannot "
                     f"write {self.path} ({why}); the line is at byte {rejected.offset}, and later "
                     "rejected lines are counted until it can be written (they are still in their logs)")
            self._failing += 1
            self.lost += 1
            return False
        if self._failing:
            warn(f"{self.path} written again; {self._failing} rejected lines could not be quarantined meanwhile "
                 "(they are still in their logs)")
            self._failing = 0
        return True

    def position(self) -> tuple[int, int]:
        """The sizes of the two files, for a checkpoint: all their entries are whole and paired. OSError when they
        cannot be opened, or another file was put at the path since it was checked (the checkpoint waits)."""
        if self._fds is None and not (self.path.exists() or self.reasons_path.exists()):
            return 0, 0
        try:
            lines, reasons = self._open()
        except ForeignFileError as exc:
            raise OSError(errno.EEXIST, str(exc)) from exc
        return os.fstat(lines).st_size, os.fstat(reasons).st_size

    def reasons(self) -> Counter[str]:
        """How many entries of each reason the quarantine holds (its reasons file read; a line not an entry of
        ours is not counted)."""
        counts: Counter[str] = Counter()
        try:
            with open(self.reasons_path, "rb") as stream:
                for line in stream:
                    try:
                        entry = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(entry, dict) and isinstance(entry.get("reason"), str):
                        counts[entry["reason"]] += 1
        except FileNotFoundError:
            pass
        return counts

    def restore(self, position: object) -> None:
        """Cut both files back to a saved :meth:`position` (ValueError if it is not one), as a restart from a
        checkpoint reads again what came after it. Files shorter than that are repaired instead, with a warning."""
        if not (isinstance(position, list | tuple) and len(position) == 2
                and all(type(size) is int and size >= 0 for size in position)):
            raise ValueError(f"quarantine position: expected two byte counts, got {position!r}")
        self.close()
        self.refuse_foreign()
        paths = (self.path, self.reasons_path)
        sizes = [path.stat().st_size if path.exists() else 0 for path in paths]
        self._paired = all(have >= want for have, want in zip(sizes, position, strict=True))
        if not self._paired:
            self._warn(f"{self.path}: shorter than at the checkpoint ({sizes[0]} bytes and {sizes[1]} in its "
                       f"reasons, not {position[0]} and {position[1]}); keeping the entries that pair up")
            return
        for path, size in zip(paths, position, strict=True):
            if path.exists():
                os.truncate(path, size)

    def refuse_foreign(self) -> None:
        """Raise ForeignFileError unless both files are missing, empty, or a quarantine's (see the class): checked
        again before anything is emptied or cut back, and by commands before they read anything.

        A quarantine's reasons file begins with an entry as :meth:`add` writes it (or, alone and cut short by a
        crash, the start of one), and its lines file never has more lines than the reasons file has entries (each
        reason is written before its line)."""
        try:
            with open(self.reasons_path, "rb") as stream:
                first = stream.readline(1 << 16)
        except FileNotFoundError:
            first = b""
        ended = first.endswith(b"\n") or len(first) == 1 << 16
        if first and not (_REASON_START.match(first) if ended else first.startswith(b'{"source":"')):
            raise ForeignFileError(f"the quarantine's reasons file '{self.reasons_path}' holds something else "
                                   "than rejected lines (a log?): it would be emptied; choose another path")
        if self.path.exists() and self.path.stat().st_size and _newlines(self.path) > _newlines(self.reasons_path):
            raise ForeignFileError(f"the quarantine file '{self.path}' holds something else than rejected lines (a "
                                   "log?): it would be emptied; choose another path")

    def _open(self) -> tuple[int, int]:
        if self._fds is None:
            if not self._paired:
                self.refuse_foreign()  # before a repair cuts anything back
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Non-blocking: a FIFO put at the path since (refused below) must not hang the open.
            flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
            lines = os.open(self.path, flags, 0o644)
            try:
                _refuse_unless_regular(self.path, os.fstat(lines))
                reasons = os.open(self.reasons_path, flags, 0o644)
                try:
                    _refuse_unless_regular(self.reasons_path, os.fstat(reasons))
                except OSError:
                    os.close(reasons)
                    raise
            except OSError:
                os.close(lines)
                raise
            self._fds = lines, reasons
            if not self._paired:
                self._repair(*self._fds)
            self._paired = True
        return self._fds

    def _repair(self, *fds: int) -> None:
        """Cut both files back to the entries they pair up on (a crash leaves at most one unpaired, at the end)."""
        scans = [self._scan(fd, 1 << 62) for fd in fds]
        pairs = min(count for count, _ in scans)
        for fd, path, (count, end) in zip(fds, (self.path, self.reasons_path), scans, strict=True):
            cut = end if count == pairs else self._scan(fd, pairs)[1]
            size = os.fstat(fd).st_size
            if size > cut:
                os.ftruncate(fd, cut)
                self._warn(f"{path}: its last {size - cut} bytes (an entry without its pair, left by a crash) were "
                           f"removed, so that {self.path.name} and {self.reasons_path.name} pair up line by line")

    @staticmethod
    def _scan(fd: int, most: int) -> tuple[int, int]:
        """How many lines the file has (up to ``most``), and the byte just after the last of them."""
        lines = end = offset = 0
        while lines < most and (chunk := os.pread(fd, 1 << 20, offset)):
            found = chunk.count(b"\n")
            if lines + found >= most:
                cut = -1
                for _ in range(most - lines):
                    cut = chunk.index(b"\n", cut + 1)
                return most, offset + cut + 1
            if found:
                end = offset + chunk.rfind(b"\n") + 1
            lines, offset = lines + found, offset + len(chunk)
        return lines, end

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    def reset(self) -> None:
        """Empty the quarantine, for a read that starts again from the beginning: its files are removed, but a
        symbolic link is kept and the file it names emptied (only a regular file is ever removed or emptied)."""
        self.close()
        for path in (self.path, self.reasons_path):
            _refuse_unless_regular(path)
        self.refuse_foreign()
        self.count = self.lost = self._failing = 0
        for path in (self.path, self.reasons_path):
            if path.is_symlink():
                with contextlib.suppress(FileNotFoundError):  # a dangling link: nothing to empty
                    os.truncate(path, 0)
            else:
                path.unlink(missing_ok=True)
        self._paired = True

    def flush(self) -> None:
        """Nothing to do: every entry is written when it is added (kept for callers)."""

    def close(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None

    def __enter__(self) -> Quarantine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
