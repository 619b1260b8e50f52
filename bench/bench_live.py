"""``tracker tail`` following a growing log beside ``tracker replay`` of the same log: memory, CPU, stop time.

``python bench/bench_live.py bench/data/events-3m.jsonl --make --events 3000000`` writes a realistic
log with ``bench/make_log.py`` (5,000 sessions over 6 hours of event time), then:

1. starts ``python -m tracker tail LIVE --out OUT --interval 300 --quiet`` on an empty file and
   appends the log to it at an accelerated pace (``--chunk`` bytes every ``--pause`` seconds,
   cut at line ends), sampling the tail's RSS and CPU time (``/proc/PID``) as it goes;
2. once the tail's checkpoint counts every event, sends SIGINT and times the exit;
3. runs ``python -m tracker replay LOG --out OUT2 --interval 300`` and takes its CPU time and peak RSS
   (``wait4``'s resource usage of the child);
4. checks that the two folders hold the same CSV files, byte for byte.

It prints the tail's RSS and the CPU it spent in each quarter of the log (flat when a flush costs the
same late in the run as early), its peak RSS, its total CPU beside replay's, and the stop time.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import positive, version
from make_log import generate

_TICK = os.sysconf("SC_CLK_TCK")


def _proc(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds) of a running process."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICK
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1000
    return rss, cpu


def _events_in_checkpoint(path: Path) -> int:
    try:
        return int(orjson.loads(path.read_bytes()).get("events", 0))
    except (OSError, ValueError):
        return 0


def _csv(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--make", action="store_true", help="write the log first (bench/make_log.py)")
    parser.add_argument("--events", type=positive, default=3_000_000)
    parser.add_argument("--chunk", type=positive, default=2 << 20, help="bytes appended at a time")
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between appends")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if args.make or not args.log.exists():
        args.log.parent.mkdir(parents=True, exist_ok=True)
        generate(args.log, args.events, 5_000, 6.0, 8, 1)
    size = args.log.stat().st_size
    with open(args.log, "rb") as source:
        total = sum(chunk.count(b"\n") for chunk in iter(lambda: source.read(16 << 20), b""))
    work = Path(tempfile.mkdtemp(prefix="bench-live-", dir=args.work))
    live, out, out2 = work / "live.jsonl", work / "tail", work / "replay"
    live.write_bytes(b"")
    stderr = os.open(work / "tail.stderr", os.O_WRONLY | os.O_CREAT, 0o644)
    tail = subprocess.Popen([sys.executable, "-m", "tracker", "tail", str(live), "--out", str(out), "--interval",
                             "300", "--quiet"], stdout=subprocess.DEVNULL, stderr=stderr)
    os.close(stderr)
    checkpoint = out / ".tracker-checkpoint" / "checkpoint.json"
    samples: list[tuple[int, float, float]] = []  # (events the tail's checkpoint counts, rss, cpu)
    started = time.perf_counter()
    # The log is streamed from its file (never held here: a child forked from a big process would count
    # the parent's pages in its peak RSS until it execs).
    with open(args.log, "rb") as source, open(live, "ab") as stream:
        carry = b""
        while chunk := source.read(args.chunk):
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            stream.write(data[:cut])
            stream.flush()
            carry = data[cut:]
            samples.append((_events_in_checkpoint(checkpoint), *_proc(tail.pid)))
            time.sleep(args.pause)
        stream.write(carry)
    while (done := _events_in_checkpoint(checkpoint)) < total:
        samples.append((done, *_proc(tail.pid)))
        time.sleep(0.1)
    followed = time.perf_counter() - started
    rss_end, _ = _proc(tail.pid)
    stop = time.perf_counter()
    tail.send_signal(signal.SIGINT)
    _, status, usage = os.wait4(tail.pid, 0)
    stop_s = time.perf_counter() - stop
    tail_cpu, tail_peak = usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1000
    replay = subprocess.Popen([sys.executable, "-m", "tracker", "replay", str(args.log), "--out", str(out2),
                               "--interval", "300"], stdout=subprocess.DEVNULL)
    _, rstatus, rusage = os.wait4(replay.pid, 0)
    replay_cpu, replay_peak = rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss / 1000
    same = _csv(out) == _csv(out2)

    quarters = []
    for q in range(1, 5):
        upto = [s for s in samples if s[0] <= total * q / 4]
        quarters.append(upto[-1] if upto else samples[0])
    print(f"tracker tail following {total:,} events ({size / 1e6:,.0f} MB) appended in {followed:.1f} s")
    print("| quarter of the events (as the tail's checkpoint counts them) | tail RSS MB | tail CPU s in it |")
    print("|---|---|---|")
    previous = 0.0
    for q, (_, rss, cpu) in enumerate(quarters, 1):
        print(f"| {q} | {rss:,.0f} | {cpu - previous:.1f} |")
        previous = cpu
    print(f"RSS at the end {rss_end:,.0f} MB = {rss_end / quarters[0][1]:.2f}x the first quarter's; "
          f"peak {tail_peak:,.0f} MB")
    print(f"stop (SIGINT to exit, status {os.waitstatus_to_exitcode(status)}): {stop_s:.2f} s")
    print(f"CPU: tail {tail_cpu:.1f} s, replay {replay_cpu:.1f} s (peak RSS {replay_peak:,.0f} MB, status "
          f"{os.waitstatus_to_exitcode(rstatus)}): tail/replay {tail_cpu / replay_cpu:.2f}x")
    print(f"files identical to replay's: {same}")
    if (work / "tail.stderr").stat().st_size:
        print("the tail said:", (work / "tail.stderr").read_text()[-2000:])
    print(f"Python {sys.version.split()[0]}, polars {version('polars')}, watchfiles {version('watchfiles')}; "
          f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
