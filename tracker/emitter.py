"""Append events to the log: one ``os.write`` of one complete line per event.

The log is opened with ``O_APPEND`` in binary, so any number of threads,
asyncio tasks and processes can share it: the kernel places each write at the
end of the file, whole. Every :class:`EventLog` has a writer identity and a
per-writer sequence number, renewed in a child process after ``fork()``, so
readers can detect gaps and duplicates. Every check runs before the sequence
number is taken, so a refused event leaves no gap. :meth:`EventLog.close`
waits for the writes in progress in other threads, so no event can reach a
file opened afterwards on the same descriptor number.
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import secrets
import socket
import stat
import threading
import time
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson

from .decoder import file_kind
from .errors import EmitError, EventValidationError
from .events import CURRENT_VERSION, END_TS, EVENT_TYPES, MIN_TS, check_field, describe_ts, implausible_time, to_ts

__all__ = ("DEFAULT_LOG_PATH", "LOG_ENV_VAR", "EventLog", "default_log", "emit")

#: Environment variable naming the log that :func:`emit` writes to.
LOG_ENV_VAR: Final = "TRACKER_LOG"
DEFAULT_LOG_PATH: Final = "events.jsonl"

_REQUIRED: Final = {
    event_type: frozenset(name for name, spec in specs.items() if spec.required)
    for event_type, specs in EVENT_TYPES.items()
}
_N_REQUIRED: Final = {event_type: len(names) for event_type, names in _REQUIRED.items()}
_FAST_SPECS: Final = {
    event_type: {name: (spec.kind, spec.max_len, spec.required) for name, spec in specs.items()}
    for event_type, specs in EVENT_TYPES.items()
}
_UNKNOWN: Final = ("", 0, False)
_INF: Final = math.inf
#: How far ahead of this machine's clock an explicit ts may be (clocks of writers differ a little).
_AHEAD_US: Final = 86_400 * 1_000_000
_MIN_TS: Final = MIN_TS
_END_TS: Final = END_TS
_time_ns = time.time_ns
_get_ident = threading.get_ident


def _encodable(text: str) -> bool:
    """False for text with a lone surrogate, which has no UTF-8 form."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _is_null_device(st: os.stat_result) -> bool:
    """True for /dev/null, and /dev/full (every write fails: EmitError), or another node of those devices."""
    if not stat.S_ISCHR(st.st_mode):
        return False
    for device in (os.devnull, "/dev/full"):
        try:
            if st.st_rdev == os.stat(device).st_rdev:
                return True
        except OSError:
            continue
    return False


_os_write = os.write
_OPEN_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
_APPEND_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE
_dumps = orjson.dumps
_logs: weakref.WeakSet[EventLog] = weakref.WeakSet()


class EventLog:
    """An append-only JSON-lines event log that this process writes to.

    ``path`` defaults to ``$TRACKER_LOG``, else ``./events.jsonl``. The file
    and its parent folders are created when missing.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path if path is not None else os.environ.get(LOG_ENV_VAR) or DEFAULT_LOG_PATH)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Non-blocking, so that opening a FIFO (refused below) does not wait for a reader.
            self._fd = os.open(self.path, _OPEN_FLAGS | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # a FIFO that nothing reads, a socket
                exc.strerror = "it is a FIFO or a socket, not a regular file"
            raise EmitError(exc.errno, f"cannot open event log {str(self.path)!r}: {exc.strerror}") from exc
        st = os.fstat(self._fd)
        if not (stat.S_ISREG(st.st_mode) or _is_null_device(st)):
            os.close(self._fd)
            # Readers refuse such a log (and a pipe's buffer would cut long lines): only /dev/null, to discard.
            raise EmitError(errno.EINVAL, f"cannot open event log {str(self.path)!r}: it is {file_kind(st.st_mode)}, "
                                          "not a regular file (of devices, only /dev/null is taken, to discard the "
                                          "events)")
        os.set_blocking(self._fd, True)
        self._new_identity()
        _logs.add(self)

    def _new_identity(self) -> None:
        token = secrets.token_hex(8)
        self.writer = f"{socket.gethostname()[:200]}:{os.getpid()}:{token}"
        self._prefix = token
        self._seq = itertools.count(1)  # next() on a count is atomic under the GIL
        # The threads writing now, one entry per write (see close). New in a forked child, where the
        # parent's other threads do not exist, as is the lock that makes close() one at a time.
        self._writing: list[int] = []
        self._closing = threading.Lock()

    def emit(
        self, event_type: str, session_id: str, /, *, ts: datetime | int | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Validate one event, append it to the log as one line and return the record written.

        ``fields`` are the type's fields (see ``schemas/event.schema.json``);
        ``None`` means absent. ``ts`` is an aware datetime or epoch
        microseconds, the current UTC time by default. Raises
        :class:`EventValidationError` (a ``ValueError``) before anything is
        written, and :class:`EmitError` when the line could not be appended.
        """
        return self.append(event_type, session_id, ts=ts, **fields)[0]

    def append(
        self, event_type: str, session_id: str, /, *, ts: datetime | int | None = None, **fields: Any
    ) -> tuple[dict[str, Any], bytes]:
        """:meth:`emit`, returning the line appended (newline included) beside the record: for a reader that
        gets the events from the writer rather than from the file (the original API's report process)."""
        specs = _FAST_SPECS.get(event_type)
        if specs is None:
            raise EventValidationError(
                f"type: must be one of {', '.join(EVENT_TYPES)}, got {event_type!r}",
                field="type", value=event_type, reason="unknown_type",
            )
        if type(session_id) is not str or not 0 < len(session_id) <= 256 or not (
                session_id.isascii() or _encodable(session_id)):
            raise EventValidationError(
                f"session_id: must be non-empty UTF-8 text of at most 256 characters, got {session_id!r}",
                field="session_id", value=session_id,
            )
        if ts is None:
            ts = _time_ns() // 1000
            if not _MIN_TS <= ts < _END_TS:
                raise implausible_time(ts, "read from this machine's clock, outside the plausible range")
        else:
            ts = to_ts(ts)  # in [MIN_TS, END_TS), or EventValidationError naming the likely unit
            clock = _time_ns() // 1000
            if ts > clock + _AHEAD_US:
                raise implausible_time(ts, f"more than one day ahead of this machine's clock ({describe_ts(clock)})")
        record: dict[str, Any] = {
            "v": CURRENT_VERSION,
            "ts": ts,
            "event_id": None,  # set once the event is valid, with seq
            "writer": self.writer,
            "seq": None,
            "session_id": session_id,
            "type": event_type,
        }
        required = 0
        for name, value in fields.items():
            if value is None:
                continue
            # The common cases inline (a function call per field costs more than the checks);
            # anything else, including every error, goes through the field's own check.
            kind, max_len, is_required = specs.get(name, _UNKNOWN)
            required += is_required
            if kind == "str":
                if type(value) is str and 0 < len(value) <= max_len and value.isascii():
                    record[name] = value
                    continue
            elif kind == "number" and type(value) is float and 0.0 <= value < _INF:
                record[name] = value
                continue
            record[name] = check_field(event_type, name, value)
        if required != _N_REQUIRED[event_type]:
            missing = min(n for n in _REQUIRED[event_type] if n not in record)
            raise EventValidationError(f"{missing}: is required for {event_type!r} events", field=missing)
        seq = next(self._seq)
        record["event_id"] = f"{self._prefix}-{seq}"
        record["seq"] = seq
        line = _dumps(record, option=_APPEND_NEWLINE)
        # Registered as writing before the descriptor is read, until the write is done (list operations are
        # atomic under the GIL, and cheaper than a lock: a lock costs emit about 10 %).
        writing, me = self._writing, _get_ident()
        writing.append(me)
        try:
            fd = self._fd  # open until this write is done (close waits), or -1: closed
            written = _os_write(fd, line)
        except OSError as exc:
            raise self._cannot_append(exc) from exc
        else:
            if written != len(line):
                self._short_write(fd, written, len(line))
        finally:
            writing.remove(me)
        return record, line

    def _cannot_append(self, exc: OSError) -> EmitError:
        why = "the log is closed" if self._fd < 0 and exc.errno == errno.EBADF else exc.strerror
        return EmitError(exc.errno, f"cannot append event to {str(self.path)!r}: {why}")

    def _short_write(self, fd: int, written: int, size: int) -> None:
        # Terminate the fragment so the next writer's line is not glued to it;
        # readers quarantine the fragment as invalid JSON.
        try:
            os.write(fd, b"\n")
            ended = "the fragment was ended with a newline"
        except OSError as exc:
            ended = f"the fragment could not be ended with a newline ({exc.strerror})"
        raise EmitError(
            None, f"short write to {str(self.path)!r}: {written} of {size} bytes appended (disk full?); {ended}"
        )

    def close(self) -> None:
        """Close the file once the writes in progress in other threads are done; a later :meth:`emit` raises
        :class:`EmitError`.

        An emit reads the descriptor only after registering in ``_writing``: one that read it before it was
        set to -1 here is registered (in the list swapped out here) until its write is done, and one that
        reads it later reads -1. So the descriptor's number is freed, for any file opened next, only when
        no write can still use it. Writes of this thread (close in a signal handler, interrupting an emit)
        are not waited for: they could not finish first.
        """
        with self._closing:
            fd, self._fd = self._fd, -1
            if fd < 0:
                return
            writing, self._writing = self._writing, []
            me = _get_ident()
            while any(thread != me for thread in writing.copy()):  # copy(): one atomic snapshot
                time.sleep(0.0001)
            os.close(fd)

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventLog({str(self.path)!r}, writer={self.writer!r})"


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()  # another thread may have held it at the fork: it does not exist here
    for log in list(_logs):
        log._new_identity()


os.register_at_fork(after_in_child=_after_fork_in_child)

_default: EventLog | None = None
_default_lock = threading.Lock()


def default_log() -> EventLog:
    """The process-wide log behind :func:`emit`, opened on first use at ``$TRACKER_LOG`` or ``./events.jsonl``."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = EventLog()
    return _default


def emit(event_type: str, session_id: str, /, *, ts: datetime | int | None = None, **fields: Any) -> dict[str, Any]:
    """Append one event to the default log: ``emit("question_answered", "s1", response_time_ms=2000)``."""
    return default_log().emit(event_type, session_id, ts=ts, **fields)
