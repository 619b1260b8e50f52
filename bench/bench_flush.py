"""What one live flush costs as the number of windows grows: the cost that still grows with the run.

A live reporter (``tracker tail``'s, without the follower, its windows' rows kept in a folder as the tail keeps
them) with windows of 1 s is fed ``N`` windows of four events of three sessions, flushing as it goes; then one
more window is added and flushed, ``--steps`` times, and the mean wall time of such a step is printed for each
``N``, with the mean time of the checkpoint's state after it (what ``tracker tail`` saves after a flush: the new
rows persisted, the engine's, the store's and the writer's state as JSON bytes; not written to disk). With
``--profile``, a profile of the largest one's last step, by cumulative time. The per-window files cost the same
at any ``N``; the summary and errors files are rendered again only for the windows that changed, but their bytes,
the whole run's mean and the checkpoint's state are made of every window, so a step still grows with ``N``.

    .venv/bin/python bench/bench_flush.py --windows 2000 20000
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

import orjson
import polars as pl
from bench_common import positive, version

from tracker.frames import EVENT_SCHEMA
from tracker.live import LiveReporter
from tracker.store import WindowStore

T0 = 1_795_557_600_000_000
SECOND = 1_000_000


def frame(first: int, last: int) -> pl.DataFrame:
    """Windows ``first`` to ``last - 1`` of 1 s: each a question and an answer from three sessions, twice."""
    rows: dict[str, list[object]] = {name: [] for name in EVENT_SCHEMA.names()}
    for k in range(first, last):
        for j in range(4):
            answer = j % 2 == 1
            values = {"v": 1, "ts": T0 + k * SECOND + j * 200_000, "event_id": f"e{k}-{j}", "writer": "w",
                      "seq": k * 10 + j + 1, "session_id": f"s{j % 3}",
                      "type": "question_answered" if answer else "question_asked",
                      "response_time_ms": 100.0 + j if answer else None}
            for name, column in rows.items():
                column.append(values.get(name))
    return pl.DataFrame(rows, schema=EVENT_SCHEMA)


def checkpoint_state(live: LiveReporter) -> bytes:
    """What ``tracker tail`` saves after a flush (its ``checkpoint``), as bytes."""
    windows, _ = live.engine.store.persist()
    return orjson.dumps({"engine": live.engine.state(), "windows": windows, "writer": live.writer.state()})


def step_seconds(windows: int, steps: int, profile: bool) -> tuple[float, float]:
    folder = Path(tempfile.mkdtemp(prefix="bench-flush-"))
    live = LiveReporter(folder / "out", interval_s=1, grace_s=0, store=WindowStore(folder=folder / "windows"))
    for start in range(0, windows, 2000):
        live.add_frame(frame(start, min(windows, start + 2000)))
        live.advance()
        live.flush()
        checkpoint_state(live)
    took = saving = 0.0
    for i in range(steps):
        began = time.perf_counter()
        live.add_frame(frame(windows + i, windows + i + 1))
        live.advance()
        live.flush()
        flushed = time.perf_counter()
        checkpoint_state(live)
        took += flushed - began
        saving += time.perf_counter() - flushed
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        live.add_frame(frame(windows + steps, windows + steps + 1))
        live.advance()
        live.flush()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return took / steps, saving / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=positive, nargs="+", default=[2000, 20000])
    parser.add_argument("--steps", type=positive, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    for n in args.windows:
        seconds, saving = step_seconds(n, args.steps, args.profile and n == max(args.windows))
        print(f"{n:>7,} windows of 1 s: one more window added and flushed in {seconds * 1000:,.0f} ms, "
              f"the checkpoint's state made in {saving * 1000:,.0f} ms")
    print(f"Python {sys.version.split()[0]}, polars {version('polars')}")


if __name__ == "__main__":
    main()
