"""Cost per event (ns/event) of appending one chatbot event to a JSON-lines log file.

Measures, side by side in one run, single-threaded:

* ``tracker EventLog.emit``: this project's emitter (validation, record, orjson, one ``os.write``);
* ``raw os.write + orjson``: the floor: the same record built inline, ``orjson.dumps`` and one
  ``os.write`` on an ``O_APPEND`` fd;
* ``logging + JsonFormatter``: stdlib ``logging`` with python-json-logger's ``JsonFormatter``
  (a small ``json.dumps`` formatter when that is not installed) on a ``logging.FileHandler``;
* ``structlog (orjson, BytesLogger)``: structlog with ``TimeStamper(fmt="iso", utc=True)`` and
  ``JSONRenderer(serializer=orjson.dumps)`` on a ``BytesLoggerFactory``.

Every writer issues one ``write(2)`` per event (the logging and structlog file objects are
flushed after every record), to its own fresh file in a temporary directory. Each variant writes
``--events`` events per run; runs are repeated ``--repeat`` times, round-robin (every round runs
every variant once, starting with a different variant each round) so that machine noise hits all
alike. Garbage collection is disabled during every timed loop; opening and closing the files is
not timed. After a warm-up run per variant, the median ns/event per variant is reported with its
ratio to the raw floor, as a Markdown table on stdout. Every file is checked to hold exactly
``--events`` lines.

Run from the repository root::

    .venv/bin/python bench/bench_emit.py                      # 200_000 events, 5 rounds
    .venv/bin/python bench/bench_emit.py --events 50000 --repeat 9 --dir /dev/shm
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import secrets
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import orjson
import structlog
from bench_common import positive, version

from tracker.emitter import EventLog

EVENT_TYPE: Final = "question_answered"
SESSION_ID: Final = "session-0001"
RESPONSE_TIME_MS: Final = 2150.5
QUESTION_ID: Final = "q-17"
OPEN_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)

#: A variant writes ``n`` events to ``path`` and returns the nanoseconds its timed loop took.
Variant = Callable[[Path, int], int]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Collect what earlier runs left, then keep the collector off for the timed loop."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _writer_identity() -> tuple[str, str]:
    """A ``(writer, event_id prefix)`` pair shaped like :class:`EventLog`'s."""
    token = secrets.token_hex(8)
    return f"{socket.gethostname()[:200]}:{os.getpid()}:{token}", token


def run_tracker(path: Path, n: int) -> int:
    log = EventLog(path)
    try:
        emit = log.emit
        with _gc_paused():
            start = time.perf_counter_ns()
            for _ in range(n):
                emit(EVENT_TYPE, SESSION_ID, response_time_ms=RESPONSE_TIME_MS, question_id=QUESTION_ID)
            return time.perf_counter_ns() - start
    finally:
        log.close()


def run_raw(path: Path, n: int) -> int:
    writer, prefix = _writer_identity()
    fd = os.open(path, OPEN_FLAGS, 0o644)
    try:
        write, dumps, now_ns, option = os.write, orjson.dumps, time.time_ns, orjson.OPT_APPEND_NEWLINE
        with _gc_paused():
            start = time.perf_counter_ns()
            for seq in range(1, n + 1):
                record = {
                    "v": 1,
                    "ts": now_ns() // 1000,
                    "event_id": f"{prefix}-{seq}",
                    "writer": writer,
                    "seq": seq,
                    "session_id": SESSION_ID,
                    "type": EVENT_TYPE,
                    "response_time_ms": RESPONSE_TIME_MS,
                    "question_id": QUESTION_ID,
                }
                write(fd, dumps(record, option=option))
            return time.perf_counter_ns() - start
    finally:
        os.close(fd)


class _JsonDumpsFormatter(logging.Formatter):
    """Fallback when python-json-logger is missing: the message plus the ``extra=`` fields, via ``json.dumps``."""

    FIELDS: Final = ("v", "event_id", "writer", "seq", "session_id", "response_time_ms", "question_id")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"timestamp": self.formatTime(record), "message": record.getMessage()}
        for name in self.FIELDS:
            out[name] = getattr(record, name, None)
        return json.dumps(out)


def _json_formatter() -> tuple[logging.Formatter, str]:
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError:
        return _JsonDumpsFormatter(), "json.dumps Formatter"
    # Default fields (just "message") plus every extra=, and an ISO-8601 UTC "timestamp" key.
    return JsonFormatter(timestamp=True), "JsonFormatter"


def run_logging(path: Path, n: int) -> int:
    writer, prefix = _writer_identity()
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(_json_formatter()[0])
    logger = logging.getLogger("bench_emit")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        info = logger.info
        with _gc_paused():
            start = time.perf_counter_ns()
            # The event type is the message; the rest of the record goes through extra=.
            for seq in range(1, n + 1):
                info(
                    EVENT_TYPE,
                    extra={
                        "v": 1,
                        "event_id": f"{prefix}-{seq}",
                        "writer": writer,
                        "seq": seq,
                        "session_id": SESSION_ID,
                        "response_time_ms": RESPONSE_TIME_MS,
                        "question_id": QUESTION_ID,
                    },
                )
            return time.perf_counter_ns() - start
    finally:
        logger.removeHandler(handler)
        handler.close()


def run_structlog(path: Path, n: int) -> int:
    writer, prefix = _writer_identity()
    with path.open("ab") as file:
        # structlog's documented "Performance" setup (orjson serializer, BytesLoggerFactory,
        # filtering bound logger, cached loggers), without the contextvars / log-level / exc_info
        # processors that the other writers have no counterpart of.
        structlog.configure(
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(serializer=orjson.dumps),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.BytesLoggerFactory(file=file),
            cache_logger_on_first_use=True,
        )
        try:
            info = structlog.get_logger().info
            with _gc_paused():
                start = time.perf_counter_ns()
                # The event type is structlog's "event"; the rest of the record goes as key-value pairs.
                for seq in range(1, n + 1):
                    info(
                        EVENT_TYPE,
                        v=1,
                        event_id=f"{prefix}-{seq}",
                        writer=writer,
                        seq=seq,
                        session_id=SESSION_ID,
                        response_time_ms=RESPONSE_TIME_MS,
                        question_id=QUESTION_ID,
                    )
                return time.perf_counter_ns() - start
        finally:
            structlog.reset_defaults()


RAW: Final = "raw os.write + orjson"
VARIANTS: Final[dict[str, Variant]] = {
    "tracker EventLog.emit": run_tracker,
    RAW: run_raw,
    f"logging + {_json_formatter()[1]}": run_logging,
    "structlog (orjson, BytesLogger)": run_structlog,
}


def _check_lines(path: Path, n: int) -> None:
    data = path.read_bytes()
    lines = data.count(b"\n")
    if lines != n or not data.endswith(b"\n"):
        raise RuntimeError(f"{path} holds {lines} lines, expected {n}")


def _run_once(variant: Variant, directory: Path, label: str, n: int) -> int:
    path = directory / f"{label}.jsonl"
    elapsed = variant(path, n)
    _check_lines(path, n)
    path.unlink()
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=positive, default=200_000, metavar="N", help="events per run (200_000)")
    parser.add_argument("--repeat", type=positive, default=5, metavar="R", help="rounds of every variant (5)")
    parser.add_argument(
        "--warmup", type=int, default=10_000, metavar="N", help="untimed warm-up events per variant (10_000)"
    )
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary directory (system default)")
    args = parser.parse_args(argv)
    n: int = args.events
    rounds: int = args.repeat

    names = list(VARIANTS)
    timings: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bench_emit-", dir=args.dir) as tmp:
        directory = Path(tmp)
        if args.warmup > 0:
            for index, name in enumerate(names):
                _run_once(VARIANTS[name], directory, f"warmup-{index}", args.warmup)
        for round_no in range(rounds):
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                index = names.index(name)
                elapsed = _run_once(VARIANTS[name], directory, f"r{round_no}-v{index}", n)
                timings[name].append(elapsed / n)
                print(f"round {round_no + 1}/{rounds}: {name}: {elapsed / n:.0f} ns/event", file=sys.stderr)

    medians = {name: statistics.median(values) for name, values in timings.items()}
    raw = medians[RAW]
    print(f"| writer | ns/event (median of {rounds}) | vs raw |")
    print("|---|---|---|")
    for name in names:
        print(f"| {name} | {medians[name]:.0f} | {medians[name] / raw:.2f}x |")
    print()
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), orjson {orjson.__version__}, "
        f"structlog {version('structlog')}, python-json-logger {version('python-json-logger')}; "
        f"N = {n:,} events per run, {rounds} rounds, {platform.system()} {platform.machine()}"
    )


if __name__ == "__main__":
    main()
