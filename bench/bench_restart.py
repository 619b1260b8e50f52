"""What a tail's stop and restart cost after a long run: the state's size, not the log's length, decides.

``python bench/bench_restart.py LOG [--interval 300]``: a :class:`~tracker.tail.Tail` reads the whole log
(a finished one, as fast as it can: the state a 6-hour test leaves), then stops (``close``: every window
written, the checkpoint saved). Then, in a fresh process each time (so imports and page cache are as a
restarted ``tracker tail`` finds them), a tail is made again from that checkpoint, ``--repeat`` times:
the time to make it (restoring the checkpoint: the sessions' facts, the windows' figures, the whole run's
values for its exact percentiles, read from the windows' rows) and to take its first step (nothing new to
read), and the process's peak RSS. Also the checkpoint folder's size. Outputs go to a temporary folder
(``--work`` to choose its parent).

Run from the repository root::

    .venv/bin/python bench/bench_restart.py bench/data/events-10m.jsonl
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import positive, version

from tracker.names import CHECKPOINT_DIR
from tracker.tail import Tail

#: Run in a fresh process: make the tail from the checkpoint, take one step, print the timings as JSON.
_RESTART = """
import json, sys, time
t0 = time.perf_counter()
from tracker.tail import Tail
t1 = time.perf_counter()
tail = Tail([sys.argv[1]], sys.argv[2], interval_s=int(sys.argv[3]), grace_s=0.0)
t2 = time.perf_counter()
tail.step()
t3 = time.perf_counter()
events = tail.stats.events
tail.close()
# VmHWM: this process's own peak (ru_maxrss would start from the forking parent's).
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"import_s": t1 - t0, "restore_s": t2 - t1, "step_s": t3 - t2, "events": events,
                  "rss_mb": hwm * 1024 / 1e6}))
"""


def _read_all(log: Path, out: Path, interval_s: int) -> tuple[int, float, float]:
    """Read the whole log with a tail, then stop it: (events, seconds to read, seconds to close)."""
    tail = Tail([log], out, interval_s=interval_s, grace_s=0.0)
    start = time.perf_counter()
    while tail.poll():
        tail.step()
    tail.step()
    read = time.perf_counter() - start
    start = time.perf_counter()
    tail.close()
    return tail.stats.events, read, time.perf_counter() - start


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--interval", type=positive, default=300)
    parser.add_argument("--repeat", type=positive, default=3)
    parser.add_argument("--work", type=Path, default=None, help="parent of the temporary output folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        out = Path(work) / "out"
        events, read_s, close_s = _read_all(args.log, out, args.interval)
        print(f"read {events:,} events in {read_s:.1f} s; stop (close) {close_s:.2f} s; checkpoint folder "
              f"{_size(out / CHECKPOINT_DIR) / 1e6:.0f} MB; this process's peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6:.0f} MB")
        runs = []
        for _ in range(args.repeat):
            done = subprocess.run([sys.executable, "-c", _RESTART, str(args.log), str(out), str(args.interval)],
                                  check=True, capture_output=True, text=True)
            runs.append(json.loads(done.stdout.splitlines()[-1]))
            if runs[-1]["events"] != events:
                raise SystemExit(f"the restarted tail counts {runs[-1]['events']} events, not {events}")
    for key, label in (("import_s", "import"), ("restore_s", "restore (make the tail)"),
                       ("step_s", "first step"), ("rss_mb", "peak RSS, MB")):
        values = [run[key] for run in runs]
        print(f"restart {label}: median {statistics.median(values):.2f} (runs: "
              f"{', '.join(f'{v:.2f}' for v in values)})")
    print(f"Python {sys.version.split()[0]}, polars {version('polars')}")


if __name__ == "__main__":
    main()
