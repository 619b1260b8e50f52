"""Shared helpers: build records and events without an emitter."""

from __future__ import annotations

from typing import Any

from tracker.events import Event, event_from_record

T0 = 1_795_557_600_000_000  # 2026-11-24T22:00:00Z in epoch microseconds


def record(
    seq: int, session_id: str, event_type: str, ts: int = T0, writer: str = "w:1:t", **fields: Any
) -> dict[str, Any]:
    """A valid v1 record of ``event_type`` (fields as given)."""
    token = writer.rsplit(":", 1)[-1]
    return {"v": 1, "ts": ts, "event_id": f"{token}-{seq}", "writer": writer, "seq": seq,
            "session_id": session_id, "type": event_type, **fields}


def event(seq: int, session_id: str, event_type: str, ts: int = T0, writer: str = "w:1:t", **fields: Any) -> Event:
    return event_from_record(record(seq, session_id, event_type, ts, writer, **fields))

