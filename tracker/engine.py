"""The window engine: every event folded once into per-window and per-session state; the report tables derived.

Windows are tumbling, aligned to the Unix epoch and left-closed: an event at
``ts`` is in window ``k = ts // interval``, spanning ``[k * interval,
(k + 1) * interval)``. :meth:`Engine.add` folds a frame of events in: a line
read twice (the same content, ``event_id`` and ``ts`` included) is dropped by
a content key (its time and a 64-bit hash of every field) kept per window (both copies share their window); each
new event goes into its window's rows and, when it decides one, into its
session's facts (:mod:`tracker.sessions`). Nothing is ever re-read: a window's
aggregation is cached until an event for it arrives, and a session's running
totals are carried from window to window. So the cost of adding events and of
deriving a window is independent of how many came before; windows past a
memory budget wait on disk (:class:`~tracker.store.WindowStore`).

Live (``tracker tail``, the original API) and replay feed the same engine:
replay is "add everything, then derive every window".
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterator
from typing import Final

import polars as pl

from .engine_state import carry_of, check_consistent, figures_entry, figures_of, same_times
from .errors import ReportError
from .events import EVENT_TYPES, FORMAT_END_TS, format_ts
from .frames import EVENT_SCHEMA
from .limits import DEFAULT_INTERVAL_S, MAX_INTERVAL_S
from .ranks import SortedValues
from .sessions import ORDER, TIMED_OUT, Closing, SessionFacts, closing, order_key, timeout_us
from .store import ROW_SCHEMA, SMALL_BATCH, WindowStore
from .tables import (
    COUNTED,
    ERROR_FIGURES,
    ERRORS_SCHEMA,
    GOODPUT_LIMITS,
    NO_CHAT,
    RATE_COLUMNS,
    SERIES,
    SESSION_COUNTED,
    STATS,
    TOTALS,
    Tables,
    WindowAgg,
    active_counts,
    aggregate,
    carried,
    chat_columns,
    chat_values,
    covered_seconds,
    good_answers,
    goodput_figures,
    rates,
    run_stats,
    schemas,
    summed_totals,
    window_rows,
)

__all__ = (
    "DEFAULT_INTERVAL_S",
    "MAX_WINDOWS",
    "Engine",
    "Tables",
)

#: The most windows one report may span (each gets a file).
MAX_WINDOWS: Final = 100_000
_SECOND: Final = 1_000_000
#: Windows whose per-session figures stay in memory (each is a row per session).
CELLS_KEPT: Final = 8
#: An event's time, from its content key (the high 64 bits).
_TS: Final = (pl.col("key") // (1 << 64)).cast(pl.Int64)


#: An event's content key: its time in the high 64 bits, a hash of every field in the low 64. Both copies of a
#: line have the same key; two different events share one only if they have the same microsecond and a
#: 64-bit hash collision (about one chance in 10**19 for each pair of events of the same microsecond).
_KEY: Final = (pl.col("ts").cast(pl.Int128) * (1 << 64)
               + pl.struct(EVENT_SCHEMA.names()).hash(seed=0).cast(pl.Int128)).alias("key")


class Engine:
    """Folds events into windows and sessions; derives the report tables of any window from that state."""

    def __init__(self, interval_s: int = DEFAULT_INTERVAL_S, *, store: WindowStore | None = None,
                 session_timeout_s: float | None = None, goodput: dict[str, float] | None = None) -> None:
        if type(interval_s) is not int or not 1 <= interval_s <= MAX_INTERVAL_S:
            raise ValueError(f"interval_s: must be a whole number of seconds from 1 to {MAX_INTERVAL_S:,} (366 "
                             f"days), got {interval_s!r}")
        if session_timeout_s is not None and not (type(session_timeout_s) in (int, float)
                                                  and 0 < session_timeout_s <= MAX_INTERVAL_S):
            raise ValueError(f"session_timeout_s: must be more than 0 and at most {MAX_INTERVAL_S:,} seconds (366 "
                             f"days), or None (off), got {session_timeout_s!r}")
        if goodput is not None and not (goodput and all(
                name in GOODPUT_LIMITS and type(limit) in (int, float) and 0 <= limit < math.inf
                for name, limit in goodput.items())):
            raise ValueError(f"goodput: must map some of {', '.join(GOODPUT_LIMITS)} to finite limits >= 0 (ms), "
                             f"got {goodput!r}")
        self.interval_s = interval_s
        self.every = interval_s * _SECOND
        #: The per-request limits of goodput (:func:`tracker.tables.good_answers`), or None: no goodput columns.
        self.goodput: dict[str, float] | None = None if goodput is None else {
            name: float(goodput[name]) for name in GOODPUT_LIMITS if name in goodput}
        self.summary_schema, self.totals_schema = schemas(self.goodput is not None)
        self.good = 0  # answers within every goodput limit
        #: The session timeout in microseconds (:mod:`tracker.sessions`), or None: off.
        self.timeout = timeout_us(session_timeout_s)
        self.store = store if store is not None else WindowStore()
        self.sessions: dict[str, SessionFacts] = {}
        self.last_ts: dict[str, int] = {}  # each session's last event time
        #: With a timeout: a deadline (last event + timeout) for every session that may still time out, earliest
        #: first (some stale: checked when due), and the sessions that timed out.
        self._deadlines: list[tuple[int, str]] = []
        self._timed_out: set[str] = set()
        self.counts: Counter[str] = Counter()  # distinct events by type
        self.duplicates = 0
        self.ts_min: int | None = None
        self.ts_max: int | None = None
        self._aggs: dict[int, WindowAgg] = {}  # every window's counts, statistics and error rows
        #: Derived from the figures above and kept while they hold (an entry is dropped or checked when they change),
        #: so that a flush costs what changed, not the run's length: each window's summary row with what it was made
        #: from, each window's saved figures, and the active sessions.
        self._rows: dict[int, tuple[tuple[object, ...], tuple[object, ...]]] = {}
        self._saved: dict[int, tuple[WindowAgg, list[object]]] = {}
        self._active_of: tuple[pl.DataFrame, int, int, tuple[list[int], list[int]]] | None = None
        self._cells: dict[int, pl.DataFrame] = {}  # the last few windows' per-session figures
        #: Every response time, TTFT, TPOT and failed request's time, for the whole run's exact percentiles (past a
        #: budget in unnamed files beside the store's), and the token sums.
        self._values = {name: SortedValues(self.store.spill_folder, warn=self.store.warn, label=_LABELS[name])
                        for name in SERIES}
        self.tokens = {"input": 0, "output": 0}
        #: Running totals after each of the last few windows derived (k -> frame), the newest last.
        self._carries: dict[int, pl.DataFrame] = {}
        self._facts_frame: pl.DataFrame | None = None
        #: Windows whose own rows changed since :meth:`take_changed`, and the first window whose session rows
        #: may have changed through a session's facts (start, end, name) or running totals.
        self._changed: set[int] = set()
        self._stale_from: int | None = None

    # -- folding events in ----------------------------------------------------------

    def add(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Fold in events (columns of :data:`EVENT_SCHEMA`, or :meth:`prepared` ones); return the ones that were
        new (not duplicates)."""
        if frame.is_empty():
            return frame.select(EVENT_SCHEMA.names())
        if "key" not in frame.columns:
            frame = self.prepared(frame)
        fresh = self._fresh(frame)
        new = fresh[0] if len(fresh) == 1 else pl.concat(fresh)
        self.duplicates += frame.height - new.height
        if not new.height:
            return new.drop("key", "k")
        for part in fresh:
            if not part.height:
                continue
            k = part["k"][0]
            assert isinstance(k, int)
            self.store.append(k, part.select(ROW_SCHEMA.names()))
            self._aggs.pop(k, None)
            self._cells.pop(k, None)
            self._changed.add(k)
        self.store.trim()
        low, high = new["ts"].min(), new["ts"].max()
        assert isinstance(low, int)
        assert isinstance(high, int)
        now = self.ts_max
        self.ts_min = low if self.ts_min is None else min(self.ts_min, low)
        self.ts_max = high if self.ts_max is None else max(self.ts_max, high)
        self.counts.update(dict(new.group_by("type").len().iter_rows()))
        answers = new.filter(pl.col("type") == "question_answered")["response_time_ms"]
        self._values["rt"].add(answers)
        if answers.len() or new["type"].eq("error").any():
            self._take_chat(new)
        self._fold_sessions(new, now)
        if self.timeout is not None and self._deadlines and self._deadlines[0][0] <= self.ts_max:
            self._expire()
        # A session's running totals after an event's window change: every later window's rows.
        self._stale(int(new["k"].min()))  # type: ignore[arg-type]
        return new.drop("key", "k")

    def _take_chat(self, rows: pl.DataFrame) -> None:
        """Keep the TTFT and TPOT values and the token counts of new answers, for the whole run's figures."""
        ttft, tpot, tokens_in, tokens_out, failed = chat_values(rows)
        for name, values in (("ttft", ttft), ("tpot", tpot), ("failed", failed)):
            self._values[name].add(values)
        self.tokens["input"] += tokens_in
        self.tokens["output"] += tokens_out
        self.good += good_answers(rows, self.goodput)

    def _fresh(self, frame: pl.DataFrame) -> list[pl.DataFrame]:
        """The rows of a prepared frame whose key is new: its first copy in the frame, not in its window already
        (the key holds the time, so two equal keys are in one window). One frame a window."""
        windows = frame["k"].unique().to_list()
        known = {k: self.store.keys(k) for k in windows}
        if frame.height <= SMALL_BATCH and not any(keys.column.len() for keys in known.values()):
            # A live tail's small batch, all known keys in sets: one pass in Python, no polars call a window.
            taken: set[int] = set()
            mask = []
            for key, k in zip(frame["key"].to_list(), frame["k"].to_list(), strict=True):
                new = key not in taken and key not in known[k].recent
                if new:
                    taken.add(key)
                mask.append(new)
            kept = frame if all(mask) else frame.filter(pl.Series(mask, dtype=pl.Boolean))
            return list(kept.partition_by("k")) if len(windows) > 1 and kept.height else [kept]
        parts = frame.partition_by("k", as_dict=True) if len(windows) > 1 else {(windows[0],): frame}
        fresh = []
        for (k,), part in parts.items():
            keys = part["key"]
            fresh_mask = keys.is_first_distinct() & ~known[k].seen(keys)
            fresh.append(part if fresh_mask.all() else part.filter(fresh_mask))
        return fresh

    def prepared(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Events (columns of :data:`EVENT_SCHEMA`) with their content key and window index added, as :meth:`add`
        takes them. Pure, so a reader may call it in its own threads, beside the one that adds."""
        return frame.select(EVENT_SCHEMA.names()).with_columns(_KEY, k=pl.col("ts") // self.every).with_columns(
            # A time of -0.0 counts as 0.0, so that statistics do not depend on the read order.
            *(pl.when(pl.col(c) == 0.0).then(pl.lit(0.0)).otherwise(pl.col(c)).alias(c)
              for c in ("response_time_ms", "time_to_first_token_ms")))

    def _fold_sessions(self, new: pl.DataFrame, now: int | None) -> None:
        """Update the facts of the sessions these events decide (first event, first registration, first end) and
        their last event times; ``now`` is the run's last event time before these events."""
        times = new.group_by("session_id").agg(first=pl.col("ts").min(), last=pl.col("ts").max())
        sessions, last_ts = self.sessions, self.last_ts
        # In registration_rank's order: event order, then username, then the courses' text (equal event orders).
        courses = pl.col("course_numbers").list.eval(pl.element().cast(pl.String)).list.join(";").fill_null("")
        deciding = (new.filter(pl.col("type").is_in(["session_registered", "session_unregistered"]))
                    .sort(*ORDER, pl.col("username").fill_null(""), courses)
                    .unique(["session_id", "type"], keep="first", maintain_order=True))
        changed: list[tuple[SessionFacts | None, SessionFacts]] = []
        #: With a timeout, how each session touched here had ended before these events (to compare after).
        before: dict[str, tuple[SessionFacts | None, Closing]] = {}
        timeout = self.timeout
        for session_id, first, last in zip(times["session_id"].to_list(), times["first"].to_list(),
                                            times["last"].to_list(), strict=True):
            old = sessions.get(session_id)
            if timeout is not None:
                before[session_id] = (old, None if old is None or now is None
                                      else closing(old, last_ts[session_id], timeout, now))
            if old is None or first < old.first_ts:
                facts = SessionFacts(session_id, first) if old is None else old.with_first(first)
                sessions[session_id] = facts
                changed.append((old, facts))
            if last > last_ts.get(session_id, last - 1):
                last_ts[session_id] = last
        for row in deciding.iter_rows(named=True):
            old = sessions[row["session_id"]]
            order = tuple(row[c] for c in ORDER)
            if row["type"] == "session_registered":
                facts = old.with_registration(order, row["username"], row["course_numbers"])
            else:
                facts = old.with_end(order)
            if facts is not old:
                sessions[row["session_id"]] = facts
                changed.append((old, facts))
        if changed:
            self._facts_frame = None
            for old, facts in changed:
                first = facts.first_change(old, self.every)
                if first is not None:
                    self._stale_rows(first)
        if timeout is not None:
            self._recheck(before)

    def _recheck(self, before: dict[str, tuple[SessionFacts | None, Closing]]) -> None:
        """Sessions that got events: how they end may have changed (a timed-out session is active again, or timed
        out later; an unregistration came): their rows from the earlier of the two ends on are stale."""
        assert self.timeout is not None
        assert self.ts_max is not None
        for session_id, (old, was) in before.items():
            facts = self.sessions[session_id]
            now = closing(facts, self.last_ts[session_id], self.timeout, self.ts_max)
            if now is None and facts.end is None and (old is None or was is not None):
                # It may time out again later (a new session, or one active again).
                heapq.heappush(self._deadlines, (self.last_ts[session_id] + self.timeout, session_id))
            if now is not None and now[1] == TIMED_OUT:
                self._timed_out.add(session_id)
            else:
                self._timed_out.discard(session_id)
            if now != was:
                self._facts_frame = None
                self._stale_rows(min(c[0] for c in (now, was) if c is not None) // self.every)

    def _expire(self) -> None:
        """Sessions whose deadline the run's last event has reached: each timed out (its rows from its end on are
        stale), or, with a later event since, waits for its new deadline."""
        assert self.timeout is not None
        assert self.ts_max is not None
        deadlines, now = self._deadlines, self.ts_max
        while deadlines and deadlines[0][0] <= now:
            _, session_id = heapq.heappop(deadlines)
            if self.sessions[session_id].end is not None or session_id in self._timed_out:
                continue
            due = self.last_ts[session_id] + self.timeout
            if due > now:
                heapq.heappush(deadlines, (due, session_id))
                continue
            self._timed_out.add(session_id)
            self._facts_frame = None
            self._stale_rows(due // self.every)

    def _stale_rows(self, k: int) -> None:
        """The session rows of window ``k`` and after may have changed (a session's facts did)."""
        self._stale_from = k if self._stale_from is None else min(self._stale_from, k)

    def _stale(self, k: int) -> None:
        """Window ``k`` got events: its rows and the running totals after it changed."""
        self._stale_rows(k)
        for j in [j for j in self._carries if j >= k]:
            del self._carries[j]

    # -- checkpoints --------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        """Everything but the windows' rows (the store persists those), as JSON-able values."""
        newest = max(self._carries, default=None)
        carry = None if newest is None else [newest, self._carries[newest].rows()]
        return {
            "interval_s": self.interval_s, "session_timeout": self.timeout, "goodput": self.goodput,
            "ts_min": self.ts_min,
            "ts_max": self.ts_max, "counts": dict(self.counts), "duplicates": self.duplicates,
            "sessions": [[f.session_id, f.first_ts, f.registration, f.username, list(f.course_numbers), f.end,
                          self.last_ts[f.session_id]] for f in self.sessions.values()],
            # Derived, but saved so that a restart need not derive every window again.
            "aggs": {str(k): self._saved_figures(k, agg) for k, agg in self._aggs.items()},
            "carry": carry,
        }

    def _saved_figures(self, k: int, agg: WindowAgg) -> list[object]:
        """Window ``k``'s figures as :meth:`state` saves them (made once for each figures)."""
        held = self._saved.get(k)
        if held is not None and held[0] is agg:
            return held[1]
        entry = figures_entry(agg)
        self._saved[k] = (agg, entry)
        return entry

    def restore(self, state: object) -> None:
        """Take back :meth:`state` (with the store already restored); ValueError when it is damaged."""
        if not isinstance(state, dict) or state.get("interval_s") != self.interval_s:
            raise ValueError(f"engine state: not for windows of {self.interval_s} s")
        if state.get("goodput") != self.goodput:
            raise ValueError(f"engine state: made with goodput limits {state.get('goodput')!r}, not "
                             f"{self.goodput!r}")
        if state.get("session_timeout") != self.timeout:
            raise ValueError(f"engine state: made with a session timeout of {state.get('session_timeout')!r} us, "
                             f"not {self.timeout!r}")
        ts_min, ts_max, counts, duplicates = (state.get(k) for k in ("ts_min", "ts_max", "counts", "duplicates"))
        if not (all(v is None or type(v) is int for v in (ts_min, ts_max)) and isinstance(counts, dict)
                and all(k in EVENT_TYPES and type(v) is int and v >= 0 for k, v in counts.items())
                and type(duplicates) is int and isinstance(state.get("sessions"), list)):
            raise ValueError("engine state: damaged")
        sessions, last_ts = {}, {}
        for entry in state["sessions"]:
            try:
                session_id, first_ts, registration, username, courses, end, last = entry
                facts = SessionFacts(session_id, first_ts, None if registration is None else order_key(registration),
                                     username, tuple(courses), None if end is None else order_key(end))
            except (TypeError, ValueError, AssertionError) as exc:
                raise ValueError(f"engine state: a session entry is damaged: {entry!r}") from exc
            if not isinstance(session_id, str) or type(first_ts) is not int or type(last) is not int \
                    or last < first_ts or not (username is None or isinstance(username, str)) \
                    or not all(type(c) is int for c in facts.course_numbers):
                raise ValueError(f"engine state: a session entry is damaged: {entry!r}")
            sessions[session_id], last_ts[session_id] = facts, last
        check_consistent(sessions, last_ts, ts_min, ts_max, counts, self.store.row_counts(), self.every)
        self.sessions, self.last_ts, self.ts_min, self.ts_max = sessions, last_ts, ts_min, ts_max
        self._timed_out = {s for s in sessions if (end := self.closing(s)) is not None and end[1] == TIMED_OUT}
        self._deadlines = [(last_ts[s] + self.timeout, s) for s, f in sessions.items()
                           if self.timeout is not None and f.end is None and s not in self._timed_out]
        heapq.heapify(self._deadlines)
        self.counts, self.duplicates = Counter(counts), duplicates
        self._aggs = figures_of(state.get("aggs"))
        self._rows.clear()
        self._saved.clear()
        self._active_of = None
        if any(not self.store.has(k) for k in self._aggs):
            raise ValueError("engine state: figures of windows whose rows the checkpoint does not name: "
                             f"{sorted(k for k in self._aggs if not self.store.has(k))[:3]!r}")
        carry = carry_of(state.get("carry"))
        if carry is not None and not (ts_min is not None and ts_max is not None
                                      and ts_min // self.every <= carry[0] <= ts_max // self.every):
            raise ValueError(f"engine state: running totals of window {carry[0]}, outside the events' windows")
        self._carries = {} if carry is None else {carry[0]: carry[1]}
        self._cells.clear()
        self._facts_frame = None
        for values in self._values.values():
            values.clear()
        self.tokens = {"input": 0, "output": 0}
        self.good = 0
        times: list[pl.DataFrame] = []  # each window's sessions' first and last event times, as the rows say
        by_type: Counter[str] = Counter()
        for k in self.windows():
            if self.store.has(k):
                rows = self.store.rows(k, columns=("key", "session_id", "type", "response_time_ms",
                                                   "time_to_first_token_ms", "input_tokens", "output_tokens"))
                self._values["rt"].add(rows.filter(pl.col("type") == "question_answered")["response_time_ms"])
                self._take_chat(rows)
                window = dict(rows.group_by(pl.col("type").cast(pl.String)).len().iter_rows())
                by_type.update(window)
                agg = self._aggs.get(k)
                if agg is not None and any(agg.counts[c] != window.get(t, 0) for c, t in COUNTED.items()):
                    raise ValueError(f"engine state: the figures saved for window {k} are not those of its rows")
                times.append(rows.group_by("session_id").agg(first=_TS.min(), last=_TS.max()))
        # The saved figures must be the saved rows': a state edited by hand, or mixed from two runs, is refused.
        if by_type != self.counts or not same_times(times, sessions, last_ts, ts_min, ts_max):
            raise ValueError("engine state: the sessions, times or counts saved are not those of the windows' rows")
        self._changed, self._stale_from = set(), None

    # -- what changed -----------------------------------------------------------------

    def take_changed(self) -> tuple[set[int], int | None]:
        """The windows whose rows changed, and the first window whose session rows may have changed, since the
        last call (for a writer that rewrites only what changed)."""
        changed, stale = self._changed, self._stale_from
        self._changed, self._stale_from = set(), None
        return changed, stale

    # -- deriving tables ------------------------------------------------------------

    def span(self) -> tuple[int, int] | None:
        """The first and last window of the events, or None before any; too many windows is an error."""
        if self.ts_min is None or self.ts_max is None:
            return None
        k_min, k_max = self.ts_min // self.every, self.ts_max // self.every
        if (k_max + 1) * self.every >= FORMAT_END_TS:
            raise ReportError(
                f"an event at {format_ts(self.ts_max)} is in a window of {self.interval_s} s that ends in the year "
                "10000, which report files cannot name: use a shorter --interval (or check that writer's ts)")
        if k_max - k_min + 1 > MAX_WINDOWS:
            raise ReportError(
                f"the events span {k_max - k_min + 1:,} windows of {self.interval_s} s (from "
                f"{format_ts(k_min * self.every)} to {format_ts((k_max + 1) * self.every)}), more than "
                f"{MAX_WINDOWS:,}: is some writer's clock far off? "
                "(tracker validate lists every event; use a longer --interval if the span is real)")
        return k_min, k_max

    def agg(self, k: int) -> WindowAgg:
        """Window ``k``'s own figures (cached until it gets a new event)."""
        agg = self._aggs.get(k)
        if agg is None:
            agg, cells = aggregate(self.store.rows(k), self.goodput)
            self._aggs[k] = agg
            self._keep_cells(k, cells)
        return agg

    def cells(self, k: int) -> pl.DataFrame:
        """Window ``k``'s per-session figures. Only the last :data:`CELLS_KEPT` windows' stay in memory; an
        older window's are derived again from its rows when needed (a late event, a restart)."""
        cells = self._cells.pop(k, None)
        if cells is None:
            agg, cells = aggregate(self.store.rows(k), self.goodput)
            # One there is current (a window's figures are dropped when it gets events), and kept: the same object
            # while the window is unchanged is what tells that the figures derived from it hold.
            self._aggs.setdefault(k, agg)
        self._keep_cells(k, cells)
        return cells

    def _keep_cells(self, k: int, cells: pl.DataFrame) -> None:
        self._cells[k] = cells  # the most recently used last
        while len(self._cells) > CELLS_KEPT:
            del self._cells[next(iter(self._cells))]

    def facts_frame(self) -> pl.DataFrame:
        """Every session's facts as a frame: ``session_id, username, course_numbers, ks, ke, end_ts, how`` (how it
        ended: ``ended``, ``timed_out``, or null while active)."""
        if self._facts_frame is None:
            every = self.every
            facts = sorted(self.sessions.values(), key=lambda f: f.session_id)
            ends = [self.closing(f.session_id) for f in facts]
            self._facts_frame = pl.DataFrame(
                {"session_id": [f.session_id for f in facts], "username": [f.username for f in facts],
                 "course_numbers": [f.courses_text for f in facts],
                 "ks": [f.start_ts // every for f in facts],
                 "ke": [None if end is None else end[0] // every for end in ends],
                 "end_ts": [None if end is None else end[0] for end in ends],
                 "how": [None if end is None else end[1] for end in ends]},
                schema={"session_id": pl.String, "username": pl.String, "course_numbers": pl.String,
                        "ks": pl.Int64, "ke": pl.Int64, "end_ts": pl.Int64, "how": pl.String})
        return self._facts_frame

    def timed_out(self) -> int:
        """How many sessions timed out (as of the run's last event)."""
        return len(self._timed_out)

    def closing(self, session_id: str) -> Closing:
        """When and how a session ended as of the run's last event (:func:`tracker.sessions.closing`)."""
        assert self.ts_max is not None
        return closing(self.sessions[session_id], self.last_ts[session_id], self.timeout, self.ts_max)

    def _totals_before(self, k: int) -> pl.DataFrame:
        """Each session's running totals over the windows before ``k``."""
        if k - 1 in self._carries:
            return self._carries[k - 1]
        # From the nearest earlier carry (a late event in the newest window keeps the one before it), else from
        # the first window: the only derivation whose cost grows with the run, and only after a late event.
        span = self.span()
        base = max((j for j in self._carries if j < k), default=None)
        start = base + 1 if base is not None else span[0] if span is not None else k
        parts = [self.cells(j).select("session_id", *SESSION_COUNTED) for j in range(start, k) if self.store.has(j)]
        before = summed_totals(parts)
        if base is not None:
            before = summed_totals([self._carries[base].rename(dict(zip(TOTALS, SESSION_COUNTED, strict=True))),
                                    *parts])
        return before

    def session_rows(self, k: int) -> pl.DataFrame:
        """Window ``k``'s per-session rows: every session alive in it, with its figures and running totals."""
        cells = self.cells(k) if self.store.has(k) else None
        after = carried(self._totals_before(k), cells)
        self._carries.pop(k, None)
        self._carries[k] = after
        while len(self._carries) > CELLS_KEPT:
            del self._carries[min(self._carries)]
        return window_rows(self.facts_frame(), cells, after, k, self.every)

    def _active(self, k_min: int, k_max: int) -> tuple[list[int], list[int]]:
        facts = self.facts_frame()
        held = self._active_of
        if held is not None and held[0] is facts and held[1:3] == (k_min, k_max):
            return held[3]
        active = active_counts(facts["ks"].to_list(), facts["ke"].to_list(), k_min, k_max)
        self._active_of = (facts, k_min, k_max, active)
        return active

    def summary_rows(self, k_last: int | None = None) -> list[tuple[int, tuple[object, ...]]]:
        """Each window from the first event's to ``k_last`` (default: the last event's) with its summary row (values
        in :attr:`summary_schema`'s order). A row is the very object of the last call while what it is made from
        (its window's figures, its active sessions, its covered seconds) did not change, so that a writer renders
        only the rows that changed (:class:`~tracker.render.PartedTable`)."""
        span = self.span()
        if span is None or (k_last is not None and k_last < span[0]):
            return []
        k_min, k_max = span
        k_last = k_max if k_last is None else min(k_last, k_max)
        active, ending = self._active(k_min, k_last)
        run_start, run_end = self._run()
        held, every, aggs, has = self._rows, self.every, self._aggs, self.store.has
        rows = []
        for i, k in enumerate(range(k_min, k_last + 1)):
            agg = aggs.get(k)
            if agg is None and has(k):
                agg = self.agg(k)
            made_of = (agg, active[i], ending[i], covered_seconds(k * every, (k + 1) * every, run_start, run_end))
            kept = held.get(k)
            if kept is None or kept[0][0] is not agg or kept[0][1:] != made_of[1:]:
                kept = held[k] = (made_of, self._summary_row(k, *made_of))
            rows.append((k, kept[1]))
        return rows

    def _summary_row(self, k: int, agg: WindowAgg | None, active: int, ending: int,
                     seconds: float) -> tuple[object, ...]:
        counts = agg.counts if agg is not None else dict.fromkeys(COUNTED, 0)
        stats = agg.stats if agg is not None else dict.fromkeys(STATS)
        chat = agg.chat if agg is not None else NO_CHAT
        good = goodput_figures(agg.good if agg is not None else 0, counts["questions_answered"], seconds) \
            if self.goodput is not None else {}
        row = {"window_start": k * self.every, "window_end": (k + 1) * self.every,
               "active_sessions": active, "active_at_end": ending, **counts,
               **{f"response_time_ms_{s}": v for s, v in stats.items()},
               "seconds": seconds, **rates(counts, seconds), **chat,
               "output_tokens_per_s": int(chat["output_tokens"] or 0) / seconds if seconds > 0 else None,
               **good}
        return tuple(row[name] for name in self.summary_schema)

    def summary(self, k_last: int | None = None) -> pl.DataFrame:
        """The summary rows of the windows from the first event's to ``k_last`` (default: the last event's)."""
        return self.summary_frame([row for _, row in self.summary_rows(k_last)])

    def summary_frame(self, rows: list[tuple[object, ...]]) -> pl.DataFrame:
        """Summary rows (of :meth:`summary_rows`) as a frame."""
        return pl.DataFrame(rows, schema=self.summary_schema, orient="row")

    def error_parts(self, k_last: int | None = None) -> list[tuple[int, WindowAgg]]:
        """Each window up to ``k_last`` (default: all) that has errors, with its figures (the same object while the
        window gets no event)."""
        return [(k, agg) for k, agg in self._figures(k_last) if agg.counts["errors"]]

    def _figures(self, k_last: int | None = None) -> Iterator[tuple[int, WindowAgg]]:
        """Each window with events up to ``k_last`` (default: all), with its figures, in window order."""
        span = self.span()
        if span is None:
            return
        aggs, has = self._aggs, self.store.has
        for k in range(span[0], (span[1] if k_last is None else min(k_last, span[1])) + 1):
            agg = aggs.get(k)
            if agg is not None:
                yield k, agg
            elif has(k):
                yield k, self.agg(k)

    def errors_frame(self, parts: list[tuple[int, WindowAgg]]) -> pl.DataFrame:
        """The error rows of windows (of :meth:`error_parts`), in their order."""
        frames = [agg.errors.select(pl.lit(k * self.every, pl.Int64).alias("window_start"),
                                    pl.lit((k + 1) * self.every, pl.Int64).alias("window_end"),
                                    *ERROR_FIGURES.names())
                  for k, agg in parts]
        return pl.concat(frames) if frames else pl.DataFrame(schema=ERRORS_SCHEMA)

    def errors(self, k_last: int | None = None) -> pl.DataFrame:
        """The error rows of the windows up to ``k_last`` (default: all)."""
        return self.errors_frame(self.error_parts(k_last))

    def _run_stats(self) -> dict[str, dict[str, float | None]]:
        """:func:`~tracker.tables.run_stats` of each of :data:`~tracker.tables.SERIES`: every value, and the mean,
        the windows' means each weighted by its share of the values, added in window order (the same to the bit
        however the events came; finite, as each term is at most its window's mean)."""
        sizes = [len(self._values[name]) for name in SERIES]
        means = [0.0] * len(SERIES)
        for _, agg in self._figures():
            for i, (n, mean) in enumerate(zip(agg.sizes, agg.means, strict=True)):
                if n and mean is not None:
                    means[i] += mean * (n / sizes[i])
        return {name: run_stats(self._values[name], mean if size else None)
                for name, size, mean in zip(SERIES, sizes, means, strict=True)}

    def _run(self) -> tuple[int, int]:
        """The first and the last event's time (once there are events)."""
        start, end = self.ts_min, self.ts_max
        assert start is not None
        assert end is not None
        return start, end

    def totals(self) -> pl.DataFrame:
        """The whole run's row."""
        span = self.span()
        if span is None:
            row: dict[str, object] = {"run_start": None, "run_end": None, "sessions": 0, "max_active_sessions": 0,
                                      **dict.fromkeys(COUNTED, 0),
                                      **{f"response_time_ms_{s}": None for s in STATS}, "duration_s": None,
                                      **dict.fromkeys(RATE_COLUMNS), **NO_CHAT, "output_tokens_per_s": None}
            if self.goodput is not None:
                row.update(goodput_figures(0, 0, 0.0))
            return pl.DataFrame([row], schema=self.totals_schema)
        k_min, k_max = span
        active, _ = self._active(k_min, k_max)
        counts = {name: self.counts[kind] for name, kind in COUNTED.items()}
        run_start, run_end = self._run()
        duration = (run_end - run_start) / _SECOND
        figures = self._run_stats()
        row = {"run_start": run_start, "run_end": run_end, "sessions": len(self.sessions),
               "max_active_sessions": max(active), **counts,
               **{f"response_time_ms_{s}": v for s, v in figures["rt"].items()},
               "duration_s": duration, **rates(counts, duration),
               **chat_columns(figures["ttft"], figures["tpot"], self.tokens["input"], self.tokens["output"],
                              figures["failed"]),
               "output_tokens_per_s": self.tokens["output"] / duration if duration > 0 else None}
        if self.goodput is not None:
            row.update(goodput_figures(self.good, counts["questions_answered"], duration))
        return pl.DataFrame([row], schema=self.totals_schema)

    def tables(self, k_last: int | None = None) -> Tables:
        """The summary and error rows up to ``k_last`` (default: every window), and the whole run's row."""
        return Tables(self.summary(k_last), self.totals(), self.errors(k_last))

    def windows(self) -> Iterator[int]:
        """Every window index from the first event's to the last event's."""
        span = self.span()
        if span is not None:
            yield from range(span[0], span[1] + 1)


#: What each of SERIES is, for a warning.
_LABELS: Final = {"rt": "response times", "ttft": "times to first token", "tpot": "times per output token",
                  "failed": "failed requests' times"}
