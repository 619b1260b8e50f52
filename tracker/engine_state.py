"""The engine's checkpoint form: its window figures and running totals as JSON values, and back, checked.

:meth:`tracker.engine.Engine.state` saves, and :meth:`~tracker.engine.Engine.restore` takes back, what these
functions make and read: a state damaged, edited by hand or mixed from two runs is a ValueError saying what is
wrong, never figures that are not the saved rows'.
"""

from __future__ import annotations

import math
from typing import Final

import polars as pl

from .sessions import SessionFacts
from .tables import COUNTED, ERROR_FIGURES, NO_CHAT, SERIES, STATS, TOKENS, TOTALS, WindowAgg

__all__ = ("carry_of", "check_consistent", "figures_entry", "figures_of", "same_times")


def figures_entry(agg: WindowAgg) -> list[object]:
    """A window's figures as JSON values (:func:`figures_of` reads them back)."""
    return [[agg.counts[c] for c in COUNTED], [_json_float(agg.stats[s]) for s in STATS], agg.errors.rows(),
            [_json_float(v) if isinstance(v, float) else _json_int(v) for v in agg.chat.values()], agg.good,
            list(agg.sizes)]


def check_consistent(sessions: dict[str, SessionFacts], last_ts: dict[str, int], ts_min: int | None,
                      ts_max: int | None, counts: dict[str, int], rows: dict[int, int], every: int) -> None:
    """ValueError unless the saved parts of a state agree: the events counted are the rows saved (duplicates are
    never saved), within the first and last event's windows, and every session's events within those times."""
    if (ts_min is None) != (ts_max is None) or (ts_min is not None and ts_max is not None and ts_min > ts_max):
        raise ValueError(f"engine state: first and last event times disagree: {ts_min!r}, {ts_max!r}")
    events = sum(counts.values())
    if events != sum(rows.values()):
        raise ValueError(f"engine state: {events} events counted, but the windows saved hold {sum(rows.values())}")
    if bool(sessions) != bool(events):
        raise ValueError(f"engine state: {len(sessions)} sessions for {events} events")
    if ts_min is not None and ts_max is not None:
        outside = [k for k in rows if not ts_min // every <= k <= ts_max // every]
        if outside:
            raise ValueError(f"engine state: windows saved outside the events' times: {sorted(outside)[:3]!r}")
        if any(not ts_min <= f.first_ts <= last_ts[s] <= ts_max for s, f in sessions.items()):
            raise ValueError("engine state: a session's events outside the run's first and last event times")


def same_times(times: list[pl.DataFrame], sessions: dict[str, SessionFacts], last_ts: dict[str, int],
                ts_min: int | None, ts_max: int | None) -> bool:
    """True when the windows' sessions and their first and last event times (``times``, a frame a window) are the
    saved sessions' and the run's."""
    if not times:
        return not sessions
    rows = pl.concat(times).group_by("session_id").agg(pl.col("first").min(), pl.col("last").max())
    saved = pl.DataFrame({"session_id": list(sessions), "first": [f.first_ts for f in sessions.values()],
                          "last": [last_ts[s] for s in sessions]}, schema=rows.schema)
    agree = rows.join(saved, on=["session_id", "first", "last"], how="inner").height
    return (agree == rows.height == saved.height
            and (ts_min, ts_max) == (rows["first"].min(), rows["last"].max()))


def figures_of(entries: object) -> dict[int, WindowAgg]:
    """Saved window figures back (see :meth:`tracker.engine.Engine.state`); ValueError when damaged."""
    if not isinstance(entries, dict):
        raise ValueError("engine state: window figures damaged")
    aggs = {}
    for key, entry in entries.items():
        try:
            counts, figures, errors, chat, good, sizes = entry
            if not (key.lstrip("-").isdigit() and type(good) is int and good >= 0
                    and len(sizes) == len(SERIES) and all(type(n) is int and n >= 0 for n in sizes)
                    and len(counts) == len(COUNTED) and len(figures) == len(STATS)
                    and len(chat) == len(NO_CHAT) and all(type(n) is int and n >= 0 for n in counts)
                    and all(v is None or type(v) is float or v in _NON_FINITE for v in figures)
                    and all(_is_count(v) if c in TOKENS else v is None or type(v) is float or v in _NON_FINITE
                            for c, v in zip(NO_CHAT, chat, strict=True))):
                raise ValueError(key)
            frame = pl.DataFrame(errors, schema=ERROR_FIGURES, orient="row")
        except (TypeError, ValueError, AttributeError, pl.exceptions.PolarsError) as exc:
            raise ValueError(f"engine state: the figures of window {key!r} are damaged") from exc
        values = {s: float(v) if isinstance(v, str) else v for s, v in zip(STATS, figures, strict=True)}
        chat_map = {c: (int(v) if c in TOKENS else float(v)) if isinstance(v, str) else v
                    for c, v in zip(NO_CHAT, chat, strict=True)}
        aggs[int(key)] = WindowAgg(dict(zip(COUNTED, counts, strict=True)), values, frame, chat_map, good,
                                   tuple(sizes))
    return aggs


def carry_of(entry: object) -> tuple[int, pl.DataFrame] | None:
    """Saved running totals back (see :meth:`tracker.engine.Engine.state`); ValueError when damaged."""
    if entry is None:
        return None
    if not (isinstance(entry, list) and len(entry) == 2 and type(entry[0]) is int):
        raise ValueError("engine state: running totals damaged")
    k: int = entry[0]
    try:
        frame = pl.DataFrame(entry[1], schema={"session_id": pl.String, **dict.fromkeys(TOTALS, pl.Int64)},
                             orient="row")
    except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
        raise ValueError("engine state: running totals damaged") from exc
    return k, frame


#: How a figure that JSON has no number for (a mean of huge values can overflow to infinity) is saved.
_NON_FINITE: Final = ("inf", "-inf", "nan")


def _json_int(value: object) -> object:
    """A token sum as JSON holds it: a number up to 64 bits, else its digits (a sum of 64-bit counts may be more)."""
    return str(value) if type(value) is int and not -(1 << 63) <= value < 1 << 63 else value


def _is_count(value: object) -> bool:
    """A saved token sum: a whole number >= 0, or the digits of one (see :func:`_json_int`)."""
    return (type(value) is int and value >= 0) or (isinstance(value, str) and value.isascii() and value.isdigit())


def _json_float(value: float | None) -> float | str | None:
    return value if value is None or math.isfinite(value) else str(value)
