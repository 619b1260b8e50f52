"""The original API under load: 2,000 concurrent asyncio sessions calling ``update_session_activity``.

``python bench/bench_api.py --sessions 2000 --seconds 60 --interval 5`` runs 2,000 asyncio tasks on one
event loop, each asking, being answered and completing cycles as fast as the loop lets it (an
``await asyncio.sleep(0)`` between calls), with ``start_tracking()`` writing reports every
``--interval`` seconds (computed off the loop). It times every call on the loop
(``time.perf_counter_ns`` around it) and samples the process's RSS every second, then prints the
mean, p99 and longest call, the calls over 20 ms, and the mean and highest RSS in each quarter of the run.
The reports are made by the tracker's report process (``tracker/report_process.py``): the RSS is the program's.

With ``--floor``, the same sessions first run for as long calling ``EventLog.emit`` alone (no tracker):
the calls over 20 ms there are the machine's own (scheduling, the hypervisor), a floor to compare with.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import positive, version

from tracker.emitter import EventLog
from tracker.session_tracker import SessionTracker


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1000


#: Call times are counted in 1 us buckets up to this many us (longer calls in the last bucket, and listed): memory
#: stays constant, so the benchmark's own bookkeeping does not grow the RSS it measures (a list of every
#: duration was 250 MB after 7M calls).
_BUCKETS: Final = 100_000


class Durations:
    """Call times in a fixed histogram of 1 us buckets, with their count, sum and maximum."""

    def __init__(self) -> None:
        self.buckets = [0] * (_BUCKETS + 1)
        self.count = self.total_ns = self.max_ns = 0

    def append(self, ns: int) -> None:
        self.buckets[min(ns // 1000, _BUCKETS)] += 1
        self.count += 1
        self.total_ns += ns
        self.max_ns = max(self.max_ns, ns)

    def quantile_us(self, q: float) -> int:
        """The smallest bucket (us) at or below which a fraction ``q`` of the calls fall."""
        rank, seen = q * self.count, 0
        for us, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                return us
        return _BUCKETS

    def over(self, ns: int) -> int:
        """Calls longer than ``ns`` (a whole number of us)."""
        return sum(self.buckets[ns // 1000 + 1:])


async def _run(tracker: SessionTracker, sessions: int, seconds: float) -> tuple[Durations, list[tuple[float, float]]]:
    durations = Durations()
    slow: list[tuple[float, float, str]] = []  # (seconds since start, ms, call) of calls over 20 ms
    rss: list[tuple[float, float]] = []
    deadline = time.monotonic() + seconds
    clock = time.perf_counter_ns
    begin = clock()

    async def session(n: int) -> None:
        sid = f"session-{n:05d}"
        calls: list[tuple[str, dict[str, object]]] = [("question_asked", {"question_text": "What is a monad?"}),
                 ("question_answered", {"response_time_ms": 850.0}), ("cycle_completed", {})]
        t = clock()
        tracker.register_session(sid, f"user{n}", [1, 2])
        durations.append(clock() - t)
        while time.monotonic() < deadline:
            for kind, fields in calls:
                t = clock()
                tracker.update_session_activity(sid, kind, **fields)
                took = clock() - t
                durations.append(took)
                if took > 20_000_000:
                    slow.append(((t - begin) / 1e9, took / 1e6, kind))
                await asyncio.sleep(0)
        t = clock()
        tracker.unregister_session(sid, "done")
        durations.append(clock() - t)

    async def sample() -> None:
        start = time.monotonic()
        while time.monotonic() < deadline:
            rss.append((time.monotonic() - start, _rss_mb()))
            await asyncio.sleep(1)

    tracker.start_tracking()
    await asyncio.gather(sample(), *(session(n) for n in range(sessions)))
    await tracker.stop_tracking()
    for at, ms, kind in slow:
        print(f"  slow call: {kind} at {at:.2f} s took {ms:.1f} ms")
    return durations, rss


class Floor:
    """The calls with nothing of tracker's but the emit: what the machine itself stalls a call (``--floor``)."""

    def __init__(self, log: EventLog) -> None:
        self.log = log

    def register_session(self, session_id: str, username: str, course_numbers: list[int]) -> None:
        self.log.emit("session_registered", session_id, username=username, course_numbers=course_numbers)

    def update_session_activity(self, session_id: str, activity_type: str, **fields: Any) -> None:
        self.log.emit(activity_type, session_id, **fields)

    def unregister_session(self, session_id: str, reason: str) -> None:
        self.log.emit("session_unregistered", session_id, reason=reason)

    def start_tracking(self) -> None:
        pass

    async def stop_tracking(self) -> None:
        pass


def _print(label: str, durations: Durations, rss: list[tuple[float, float]], args: argparse.Namespace) -> None:
    n = durations.count
    mean_us = durations.total_ns / n / 1000
    p99_us = durations.quantile_us(0.99)
    slow = durations.over(20_000_000)
    quarters = [[mb for t, mb in rss if q * args.seconds / 4 <= t < (q + 1) * args.seconds / 4] for q in range(4)]
    print(f"{label}: {args.sessions} sessions, {n:,} calls in {args.seconds:g} s ({n / args.seconds:,.0f}/s), "
          f"reports every {args.interval} s")
    print(f"call on the loop: mean {mean_us:.1f} us, p99 {p99_us:.1f} us, max {durations.max_ns / 1e6:.1f} ms, "
          f"{slow} calls over 20 ms")
    if all(quarters):
        # The store's rows fill its budget, are written out, fill again: RSS is a saw-tooth, so each quarter's
        # mean and top say more than two samples.
        print("RSS by quarter (mean / most, MB): " + ", ".join(
            f"{sum(q) / len(q):,.0f} / {max(q):,.0f}" for q in quarters))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=positive, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=positive, default=5)
    parser.add_argument("--floor", action="store_true",
                        help="first run the same sessions calling EventLog.emit alone: the machine's own stalls")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    if args.floor:
        with EventLog(work / "floor.jsonl") as log:
            durations, rss = asyncio.run(_run(Floor(log), args.sessions, args.seconds))  # type: ignore[arg-type]
        _print("floor (EventLog.emit only)", durations, rss, args)
    with EventLog(work / "events.jsonl") as log:
        tracker = SessionTracker(args.interval, log=log, out_dir=work / "reports", console_logging=False)
        durations, rss = asyncio.run(_run(tracker, args.sessions, args.seconds))
        tracker.close()
    _print("SessionTracker", durations, rss, args)
    print(f"Python {sys.version.split()[0]}, polars {version('polars')}; {os.cpu_count()} CPUs; work in {work}")


if __name__ == "__main__":
    main()
