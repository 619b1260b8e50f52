"""Generate a realistic stress-test log for the replay benchmark.

``python bench/make_log.py bench/data/events.jsonl --events 10000000``: 5,000
chatbot sessions interleaved over 6 hours, written by 8 writers as the
emitter would write them (same keys, same order): each session registers,
asks, is answered (log-normal response times with a slow tail), completes
cycles, hits an error now and then, and unregisters. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
from pathlib import Path

import orjson

T0 = 1_795_557_600_000_000  # 2026-11-24T22:00:00Z
HOUR = 3_600_000_000


def generate(path: Path, events: int, sessions: int, hours: float, writers: int, seed: int) -> int:
    """Write about ``events`` events and return how many were written."""
    rnd = random.Random(seed)
    span = int(hours * HOUR)
    per_session = max(4, events // sessions)
    cycles = max(1, (per_session - 2) // 3)
    tokens = [f"{rnd.getrandbits(64):016x}" for _ in range(writers)]
    names = [f"bench-host:{1000 + w}:{tokens[w]}" for w in range(writers)]
    seqs = [0] * writers
    # Each session: (next ts, session index, step); a heap interleaves all sessions by time.
    heap: list[tuple[int, int, int]] = []
    for s in range(sessions):
        start = T0 + rnd.randrange(span // 20)
        heapq.heappush(heap, (start, s, 0))
    gap = (span * 0.9) / (cycles * 3)
    written = 0
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with open(path, "wb", buffering=1 << 20) as out:
        while heap:
            ts, s, step = heapq.heappop(heap)
            w = s % writers
            seqs[w] += 1
            seq = seqs[w]
            sid = f"session-{s:05d}"
            record: dict[str, object] = {"v": 1, "ts": ts, "event_id": f"{tokens[w]}-{seq}", "writer": names[w],
                                         "seq": seq, "session_id": sid}
            last = 2 + cycles * 3 - 1
            if step == 0:
                record.update(type="session_registered", username=f"student{s:05d}",
                              course_numbers=[100 + s % 300, 400 + s % 7])
            elif step == last:
                record.update(type="session_unregistered", reason="test finished")
            else:
                phase = (step - 1) % 3
                if phase == 0:
                    record.update(type="question_asked", question_id=f"{sid}-q{step}")
                elif phase == 1:
                    if rnd.random() < 0.01:
                        record.update(type="error", error="upstream timed out after 30 s", kind="timeout")
                    else:
                        rt = rnd.uniform(3_000, 9_000) if rnd.random() < 0.02 else math.exp(rnd.gauss(6.7, 0.45))
                        record.update(type="question_answered", question_id=f"{sid}-q{step - 1}",
                                      response_time_ms=round(rt, 3))
                else:
                    record.update(type="cycle_completed")
            out.write(dumps(record, option=option))
            written += 1
            if step < last:
                heapq.heappush(heap, (ts + max(1, int(rnd.expovariate(1 / gap))), s, step + 1))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--sessions", type=int, default=5_000)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    args.path.parent.mkdir(parents=True, exist_ok=True)
    n = generate(args.path, args.events, args.sessions, args.hours, args.writers, args.seed)
    print(f"wrote {n:,} events to {args.path} ({args.path.stat().st_size / 1e6:,.0f} MB)")


if __name__ == "__main__":
    main()
