"""Latency from an event's write to its fold by the live tail, side by side in one run.

``python bench/bench_tail.py [--events 1000] [--gap-ms 10]``: a writer thread
emits events every ``gap-ms`` (each carrying its write time as ``ts``) while a
tail follows the log; the latency of an event is the time its frame reaches
the live reporter minus its write time. Variants, each on a fresh log:

* ``tracker tail``: watchfiles with ``debounce=10, step=5`` (the tail's defaults) plus the 250 ms timer;
* ``watchfiles defaults``: the same tail with watchfiles' own ``debounce=1600, step=50``;
* ``stat loop 10 ms``: no notifications, ``Tail.poll()`` every 10 ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import polars as pl

from tracker.decoder import Rejected
from tracker.emitter import EventLog
from tracker.tail import Tail


class _TimedTail(Tail):
    """A tail that notes when each event's frame arrives."""

    arrivals: list[tuple[int, int]]

    def _take(self, frame: pl.DataFrame | None, rejected: Iterable[Rejected]) -> None:
        now = time.time_ns() // 1000
        if frame is not None:
            self.arrivals.extend((ts, now) for ts in frame["ts"].to_list())
        super()._take(frame, rejected)


def _run(folder: Path, events: int, gap_s: float, follow: Callable[[Tail, threading.Event], None]) -> list[float]:
    log_path = folder / "events.jsonl"
    log_path.write_bytes(b"")
    tail = _TimedTail([log_path], folder / "out", interval_s=60)
    tail.arrivals = []
    stop = threading.Event()
    follower = threading.Thread(target=follow, args=(tail, stop))
    follower.start()
    time.sleep(0.5)  # let the watcher start before the first write
    with EventLog(log_path) as log:
        next_at = time.perf_counter()
        for i in range(events):
            log.emit("question_answered", f"s{i % 10}", response_time_ms=1.0)
            next_at += gap_s
            time.sleep(max(0.0, next_at - time.perf_counter()))
    deadline = time.monotonic() + 10
    while len(tail.arrivals) < events and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    follower.join()
    tail.release()
    if len(tail.arrivals) != events:
        raise RuntimeError(f"the tail read {len(tail.arrivals)} of {events} events")
    return [(arrived - ts) / 1000 for ts, arrived in tail.arrivals]


def _stat_loop(tail: Tail, stop: threading.Event) -> None:
    while not stop.is_set():
        tail.poll()
        stop.wait(0.010)


VARIANTS: dict[str, Callable[[Tail, threading.Event], None]] = {
    "tracker tail (watchfiles debounce 10, step 5)": lambda tail, stop: tail.run(stop),
    "watchfiles defaults (debounce 1600, step 50)": lambda tail, stop: tail.run(stop, debounce_ms=1600,
                                                                                 step_ms=50),
    "stat loop every 10 ms": _stat_loop,
}


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description="Latency from write to fold of the live tail.")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--gap-ms", type=float, default=10.0)
    args = parser.parse_args()
    print(f"| variant | p50 ms | p95 ms | p99 ms | max ms |  ({args.events} events, one every {args.gap_ms:g} ms)")
    print("|---|---|---|---|---|")
    for name, follow in VARIANTS.items():
        with tempfile.TemporaryDirectory() as folder:
            lat = _run(Path(folder), args.events, args.gap_ms / 1000, follow)
        print(f"| {name} | {statistics.median(lat):.1f} | {_pct(lat, 0.95):.1f} | {_pct(lat, 0.99):.1f} | "
              f"{max(lat):.1f} |")


if __name__ == "__main__":
    main()
