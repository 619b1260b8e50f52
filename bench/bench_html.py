"""Size and build time of the HTML report of a reports folder (``tracker report``'s work), best of ``--repeat``.

    .venv/bin/tracker replay bench/data/events-10m.jsonl --out /tmp/big     # 6 h, 5,000 sessions, 300 s windows
    .venv/bin/python bench/bench_html.py /tmp/big --repeat 3
"""

from __future__ import annotations

import argparse
import time

from tracker.html_report import HtmlReport


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cold, warm = [], []
    for _ in range(args.repeat):
        report = HtmlReport()
        start = time.perf_counter()
        page = report.render(args.folder)
        cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        report.render(args.folder)  # a live tail's case: the per-window files unchanged, read from the cache
        warm.append(time.perf_counter() - start)
    print(f"page {len(page):,} bytes; build {min(cold) * 1000:.0f} ms (every file read), "
          f"{min(warm) * 1000:.0f} ms (per-window files cached)")


if __name__ == "__main__":
    main()
