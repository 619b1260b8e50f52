"""Read log lines back into events; every line that is not one is rejected with its reason.

Nothing is skipped in silence: each line of a log is either an event, a
duplicate of an event already read (same ``event_id``, ``ts`` and report
fields: one line read twice, counted once), or a
:class:`Rejected` with its line number, byte offset, reason and the raw bytes,
which a :class:`Quarantine` keeps verbatim.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import orjson

from .errors import EventValidationError
from .events import Event, event_from_record

__all__ = (
    "DEFAULT_MAX_LINE_BYTES",
    "REASONS",
    "Decoder",
    "Quarantine",
    "Rejected",
    "decode_file",
)

DEFAULT_MAX_LINE_BYTES: Final = 1 << 20

#: Every reason a line can be rejected for.
REASONS: Final = (
    "invalid_json",
    "invalid_utf8",
    "not_object",
    "schema",
    "unknown_type",
    "unsupported_version",
    "too_long",
    "unterminated",
)

_loads = orjson.loads
#: How every line the Python emitter writes starts; used to find an event glued to a fragment.
_EVENT_START: Final = b'{"v":'


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
    """What makes two events one (see :func:`tracker.report.distinct`): the report's columns."""
    return (event.event_id, event.ts, event.session_id, event.TYPE, getattr(event, "username", None),
            getattr(event, "course_numbers", None), getattr(event, "response_time_ms", None),
            getattr(event, "error", None), getattr(event, "kind", None))


class Decoder:
    """Decodes lines into events, with counts of what it saw.

    One decoder can read several files: duplicates (one line read twice: the
    same ``event_id``, ``ts`` and report fields) are detected across all of them
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
    """Decode a finished log file line by line (see :meth:`Decoder.decode_stream`)."""
    decoder = decoder or Decoder()
    with open(path, "rb") as stream:
        yield from decoder.decode_stream(stream, source=str(path))


class Quarantine:
    """Keeps rejected lines: verbatim in ``path``, and why in ``path`` + ``.reasons.jsonl``.

    Each line of the reasons file is a JSON object with ``source``, ``line``,
    ``offset``, ``reason`` and ``detail``, in the order of the quarantined lines.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.reasons_path = self.path.with_name(self.path.name + ".reasons.jsonl")
        self._lines: BinaryIO | None = None
        self._reasons: BinaryIO | None = None
        self.count = 0

    def add(self, rejected: Rejected) -> None:
        """Append the line (a newline added when it had none) and its reason; the files are created on first use."""
        if self._lines is None or self._reasons is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lines = open(self.path, "ab")  # noqa: SIM115 - closed by close()
            self._reasons = open(self.reasons_path, "ab")  # noqa: SIM115 - closed by close()
        raw = rejected.raw if rejected.raw.endswith(b"\n") else rejected.raw + b"\n"
        self._lines.write(raw)
        self._reasons.write(orjson.dumps({
            "source": rejected.source, "line": rejected.line_no, "offset": rejected.offset,
            "reason": rejected.reason, "detail": rejected.detail,
        }, option=orjson.OPT_APPEND_NEWLINE))
        self.count += 1

    def reset(self) -> None:
        """Empty the quarantine (remove its files), for a read that starts again from the beginning."""
        self.close()
        self._lines = self._reasons = None
        self.count = 0
        self.path.unlink(missing_ok=True)
        self.reasons_path.unlink(missing_ok=True)

    def flush(self) -> None:
        for stream in (self._lines, self._reasons):
            if stream is not None:
                stream.flush()

    def close(self) -> None:
        for stream in (self._lines, self._reasons):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Quarantine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
