"""The event frame: the columns every reader (blocks of a log, a live file, the original API) hands the engine.

One row per valid event, duplicates allowed (the engine drops a line read twice).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import polars as pl

from .events import EVENT_TYPES, ErrorReported, Event, QuestionAnswered, SessionRegistered

__all__ = ("EVENT_SCHEMA", "events_frame")

#: The columns the engine reads: one row per valid event (duplicates allowed: the engine drops them).
EVENT_SCHEMA: Final = pl.Schema([
    ("ts", pl.Int64),
    ("event_id", pl.String),
    ("writer", pl.String),
    ("seq", pl.Int64),
    ("session_id", pl.String),
    ("type", pl.Enum(list(EVENT_TYPES))),
    ("username", pl.String),
    ("course_numbers", pl.List(pl.Int64)),
    ("response_time_ms", pl.Float64),
    ("time_to_first_token_ms", pl.Float64),
    ("input_tokens", pl.Int64),
    ("output_tokens", pl.Int64),
    ("error", pl.String),
    ("kind", pl.String),
])


def events_frame(events: Iterable[Event]) -> pl.DataFrame:
    """The engine's input frame from decoded events."""
    names = EVENT_SCHEMA.names()
    columns: dict[str, list[object]] = {name: [] for name in names}
    ts, event_id, writer, seq, session_id, kind_of, username, courses, rt, ttft, tokens_in, tokens_out, error, kind = (
        columns[n] for n in names)
    for event in events:
        ts.append(event.ts)
        event_id.append(event.event_id)
        writer.append(event.writer)
        seq.append(event.seq)
        session_id.append(event.session_id)
        kind_of.append(event.TYPE)
        username.append(event.username if isinstance(event, SessionRegistered) else None)
        courses.append(list(event.course_numbers) if isinstance(event, SessionRegistered) else None)
        answer = event if isinstance(event, QuestionAnswered) else None
        failed = event if isinstance(event, ErrorReported) else None
        rt.append(answer.response_time_ms if answer is not None else failed.response_time_ms if failed else None)
        ttft.append(answer.time_to_first_token_ms if answer is not None else None)
        tokens_in.append(answer.input_tokens if answer is not None else None)
        tokens_out.append(answer.output_tokens if answer is not None else None)
        error.append(event.error if isinstance(event, ErrorReported) else None)
        kind.append(event.kind if isinstance(event, ErrorReported) else None)
    return pl.DataFrame(columns, schema=EVENT_SCHEMA)
