"""What the report options cost: ``tracker replay`` of one log plain, with ``--session-timeout``, and with
``--goodput`` and three ``--threshold`` gates, interleaved (``--repeat`` rounds; the best of each), as ratios to
the plain replay.

    .venv/bin/python bench/bench_options.py bench/data/events-1m.jsonl --repeat 3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

VARIANTS: dict[str, list[str]] = {
    "plain": [],
    "--session-timeout 300": ["--session-timeout", "300"],
    "--goodput + 3 thresholds": ["--goodput", "response_time_ms=3000,ttft_ms=500,tpot_ms=50",
                                 "--threshold", "ttft_ms_p95<500", "--threshold", "run:goodput_ratio>=0.9",
                                 "--threshold", "error_rate<0.05"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeat):
        for name, extra in VARIANTS.items():
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "tracker", "replay", args.log, "--out", out, *extra],
                               check=False, stdout=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - start)
    base = min(times["plain"])
    for name, taken in times.items():
        print(f"{name:26s} best {min(taken):6.2f} s   {min(taken) / base:.2f}x plain")


if __name__ == "__main__":
    main()
