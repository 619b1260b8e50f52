"""Fault tests of NATS JetStream shipping, with real processes and a real nats-server.

Writer processes append events to local logs while ``tracker ship`` processes follow them and one central
``tracker tail --nats`` consumes the stream; shippers, the tail and the server are killed, restarted and paused on
the way. Each test ends the same way, nothing lost and nothing doubled: the central tail's report files equal, byte
for byte, what ``tracker replay`` writes from the local files; the totals count every event written, once; the
stream holds each event once. Every wait is on a condition (the shippers' saved positions, the tail's checkpoint,
the stream's consumer), with a timeout; the only sleep is the length of a fault.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import nats
import orjson
import pytest
from nats.js.api import ConsumerInfo
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from tests.helpers import T0
from tracker.checkpoint import CHECKPOINT_FILE
from tracker.cli import main
from tracker.names import MANIFEST_FILE
from tracker.tail import CHECKPOINT_DIR, default_consumer

if TYPE_CHECKING:
    from tests.conftest import NatsServer

_T = TypeVar("_T")
STREAM: Final = "faults"
INTERVAL: Final = "60"
#: How long one request to the server may take in every tracker process here (the pause test outlasts it).
NATS_TIMEOUT: Final = ("--nats-timeout", "1s")
#: How long a test waits for a condition before it fails (the consumer's redelivery, 60 s, is not waited for).
WAIT_S: Final = 20.0
#: How long a stopped process may take to exit.
EXIT_S: Final = 30.0
S: Final = 1_000_000
#: Event times: one every STEP_US per writer, so 1,000 events span five windows of 60 s.
STEP_US: Final = 300_000
#: The length of the pause test's fault: longer than NATS_TIMEOUT.
PAUSE_S: Final = 2.5

#: A writer process: appends events ``first`` to ``last - 1`` of writer ``k`` to a log with tracker's emitter, at a
#: pace the shippers follow, with explicit times (every 50th one late by 90 s; writer 0's events land on window
#: boundaries too), every event type. With a gate, it writes half of them, then waits until the gate file exists.
WRITER: Final = r"""
import os, sys, time
from tracker.emitter import EventLog

path, k, first, last, gate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
T0, STEP, SESSIONS = int(sys.argv[6]), int(sys.argv[7]), 8
log = EventLog(path)
half = first + (last - first) // 2
for i in range(first, last):
    if gate and i == half:
        while not os.path.exists(gate):
            time.sleep(0.005)
    session = f"w{k}-s{i % SESSIONS}"
    ts = T0 + i * STEP + k * 1_000
    if i % 50 == 25 and ts - 90_000_000 >= T0:
        ts -= 90_000_000
    if i < SESSIONS:
        log.emit("session_registered", session, ts=ts, username=f"user-{k}-{i}", course_numbers=[101, k, i])
    elif i % 6 == 0:
        log.emit("question_asked", session, ts=ts, question_id=f"q{k}-{i}")
    elif i % 6 in (1, 2):
        log.emit("question_answered", session, ts=ts, question_id=f"q{k}-{i}", response_time_ms=float(i * 37 % 1500),
                 time_to_first_token_ms=float(i % 90), input_tokens=i % 300, output_tokens=i % 500)
    elif i % 6 == 3:
        log.emit("cycle_completed", session, ts=ts)
    elif i % 6 == 4:
        log.emit("error", session, ts=ts, error=f"HTTP {500 + i % 4}", kind="http", response_time_ms=float(i % 700))
    else:
        log.emit("session_unregistered", session, ts=ts, reason="cycle done")
    if i % 25 == 24:
        time.sleep(0.01)
"""

#: The totals' columns that count events, one per event type.
COUNTED: Final = ("sessions_registered", "questions_asked", "questions_answered", "cycles_completed", "errors",
                  "sessions_unregistered")


# -- processes ---------------------------------------------------------------------------------------------------


@dataclass
class Proc:
    """A tracker process a test started, its stdout and stderr in files (never a pipe that could fill up)."""

    name: str
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        """Send ``sig`` and wait for the exit; its status."""
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=EXIT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"{self.name} did not exit within {EXIT_S} s of {sig.name}; its stderr:\n{self.stderr()}")

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=EXIT_S)


class Run:
    """The processes of one test (killed at its end when still running) and the commands they run."""

    def __init__(self, tmp: Path, server: NatsServer) -> None:
        self.tmp, self.server = tmp, server
        self.procs: list[Proc] = []
        self.writers: list[subprocess.Popen[bytes]] = []

    def _start(self, name: str, args: Sequence[str]) -> Proc:
        stem = self.tmp / f"{len(self.procs) + 1:02d}-{name}"
        out, err = stem.with_suffix(".out"), stem.with_suffix(".err")
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            popen = subprocess.Popen([sys.executable, "-m", "tracker", *args], stdout=stdout, stderr=stderr)
        proc = Proc(name, popen, out, err)
        self.procs.append(proc)
        return proc

    def ship(self, log: Path, state_dir: Path) -> Proc:
        """``tracker ship`` following ``log``; returns once it follows it (its state file is saved), the stream
        made."""
        state = state_dir / "ship.json"
        fresh = not state.exists()
        proc = self._start("ship", ["ship", str(log), "--nats", self.server.url, "--stream", STREAM,
                                    "--state-dir", str(state_dir), *NATS_TIMEOUT])
        if fresh:
            wait_until(state.exists, "the shipper saves its state", proc)
        return proc

    def tail(self, out: Path) -> Proc:
        """The central ``tracker tail --nats`` (its default consumer: the same one again on the same --out)."""
        return self._start("tail", ["tail", "--nats", self.server.url, "--stream", STREAM, "--out", str(out),
                                    "--interval", INTERVAL, *NATS_TIMEOUT, "--quiet"])

    def write(self, log: Path, k: int, first: int, last: int, gate: Path | None = None) -> subprocess.Popen[bytes]:
        """Start a writer process appending events ``first`` to ``last - 1`` of writer ``k`` to ``log``."""
        popen = subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(k), str(first), str(last),
                                  str(gate) if gate is not None else "", str(T0), str(STEP_US)])
        self.writers.append(popen)
        return popen

    def close(self) -> None:
        for popen in [p.popen for p in self.procs] + self.writers:
            if popen.poll() is None:
                popen.kill()
                popen.wait()


@pytest.fixture
def run(tmp_path: Path, nats_server: NatsServer) -> Iterator[Run]:
    runner = Run(tmp_path, nats_server)
    try:
        yield runner
    finally:
        runner.close()


def wait_until(condition: Callable[[], object], what: str, *procs: Proc, timeout: float = WAIT_S,
               state: Callable[[], str] | None = None) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds saying ``what`` was awaited (and ``state``),
    or at once when one of ``procs`` exits meanwhile, with their stderr."""
    deadline = time.monotonic() + timeout
    while not condition():
        exited = [p for p in procs if p.popen.poll() is not None]
        if exited or time.monotonic() > deadline:
            why = f"{exited[0].name} exited ({exited[0].popen.returncode})" if exited else f"not within {timeout} s"
            said = "".join(f"\n--- stderr of {p.name}:\n{p.stderr()}" for p in procs)
            pytest.fail(f"waiting until {what}: {why}{'; ' + state() if state else ''}{said}")
        time.sleep(0.005)


def finish(writer: subprocess.Popen[bytes]) -> None:
    assert writer.wait(timeout=WAIT_S) == 0


# -- what the processes saved ------------------------------------------------------------------------------------


def saved_offsets(state_dir: Path) -> dict[str, int]:
    """The file positions a shipper saved (everything before them was acknowledged by JetStream)."""
    try:
        state = orjson.loads((state_dir / "ship.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return {entry["path"]: entry["offset"] for entry in state.get("files", [])}


def shipped(state_dir: Path, *logs: Path) -> bool:
    """The shipper saved each log's position at its end: every line in it acknowledged (or quarantined)."""
    offsets = saved_offsets(state_dir)
    return all(offsets.get(str(log.absolute())) == log.stat().st_size for log in logs)


def consumed(out: Path) -> int:
    """The events the central tail's checkpoint holds."""
    try:
        return int(orjson.loads((out / CHECKPOINT_DIR / CHECKPOINT_FILE).read_bytes()).get("events", 0))
    except (OSError, orjson.JSONDecodeError):
        return 0


def checkpointed_seq(out: Path) -> int:
    """The last stream message the central tail's checkpoint holds."""
    try:
        position = orjson.loads((out / CHECKPOINT_DIR / CHECKPOINT_FILE).read_bytes()).get("files")
    except (OSError, orjson.JSONDecodeError):
        return 0
    return int(position["seq"]) if isinstance(position, dict) else 0


def holds(out: Path, events: int) -> Callable[[], str]:
    return lambda: f"the tail's checkpoint holds {consumed(out)} of {events} events"


# -- the server, seen from the test (its own nats-py connection, never the code under test) -----------------------


def _ask(url: str, query: Callable[[JetStreamContext], Coroutine[Any, Any, _T]]) -> _T:
    async def ask() -> _T:
        nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
        try:
            return await asyncio.wait_for(query(nc.jetstream(timeout=5)), 10)
        finally:
            await nc.close()

    return asyncio.run(ask())


def last_seq(server: NatsServer) -> int:
    """The stream's last sequence number: one per message the server took (a repeat it dropped takes none)."""

    async def query(js: JetStreamContext) -> int:
        return int((await js.stream_info(STREAM)).state.last_seq)

    return _ask(server.url, query)


def _consumer(server: NatsServer, out: Path, field: Callable[[ConsumerInfo], int]) -> int:
    """``field`` of the consumer of the central tail writing ``out`` (0 before the tail made it)."""

    async def query(js: JetStreamContext) -> int:
        try:
            return field(await js.consumer_info(STREAM, default_consumer(out / CHECKPOINT_DIR)))
        except NotFoundError:
            return 0

    return _ask(server.url, query)


def delivered(server: NatsServer, out: Path) -> int:
    """The last stream message the central tail writing ``out`` was given."""
    return _consumer(server, out, lambda info: int(info.delivered.stream_seq or 0) if info.delivered else 0)


def ack_pending(server: NatsServer, out: Path) -> int:
    """Messages the central tail writing ``out`` was given and has not acknowledged."""
    return _consumer(server, out, lambda info: int(info.num_ack_pending or 0))


def crash(server: NatsServer) -> None:
    """Kill the server with SIGKILL (paused or not): what it had not taken is lost; ``start()`` starts it again."""
    assert server.process is not None
    server.process.kill()
    server.process.wait(timeout=EXIT_S)
    server.process = None


# -- the comparison ----------------------------------------------------------------------------------------------


def report_files(folder: Path) -> dict[str, bytes]:
    """Every report file (all but the quarantine, the checkpoint and the manifest, which says which writer wrote
    last), by its path in ``folder``."""
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_dir() or relative.parts[0] == CHECKPOINT_DIR or path.name.startswith("quarantine.jsonl") \
                or path.name == MANIFEST_FILE:
            continue
        files[str(relative)] = path.read_bytes()
    return files


def totals_events(folder: Path) -> int:
    """The events the totals file counts, of every type."""
    rows = list(csv.DictReader(io.StringIO((folder / "session_tracking_totals.csv").read_text())))
    assert len(rows) == 1
    return sum(int(rows[0][column]) for column in COUNTED)


def assert_same_as_replay(out: Path, logs: Sequence[Path], events: int, tmp: Path, *, rejected: bool = False) -> Path:
    """The central tail's reports equal ``tracker replay`` of the local logs, byte for byte, and count ``events``
    events; returns the replay's folder."""
    replayed = tmp / "replayed"
    assert main("replay", *map(str, logs), "--out", str(replayed), "--interval", INTERVAL, "--quiet") == int(rejected)
    central, local = report_files(out), report_files(replayed)
    assert "session_tracking_totals.csv" in local
    assert sorted(central) == sorted(local)
    for name in local:
        assert central[name] == local[name], f"{name} differs from replay's"
    assert totals_events(out) == totals_events(replayed) == events
    assert not (out / "quarantine.jsonl").exists() or (out / "quarantine.jsonl").read_bytes() == b""
    return replayed


def assert_tail_stopped(tail: Proc, events: int) -> None:
    """SIGINT: the tail writes every window, checkpoints and exits 0, having read ``events`` events."""
    assert tail.stop(signal.SIGINT) == 0, tail.stderr()
    assert tail.stdout().startswith(f"stopped: {events} events, 0 rejected lines"), tail.stdout() + tail.stderr()


def assert_shipper_stopped(ship: Proc, status: int = 0) -> None:
    """SIGINT once everything is shipped: the shipper exits with ``status``, nothing left to ship."""
    assert ship.stop(signal.SIGINT) == status, ship.stderr()
    assert "not shipped yet" not in ship.stdout(), ship.stdout()


# -- the scenarios ----------------------------------------------------------------------------------------------


def test_four_shippers_into_one_stream(run: Run, tmp_path: Path) -> None:
    """Four shippers follow four logs while four writer processes write them; one central tail reads the stream.
    SIGINT once everything is shipped and read: its reports are replay's of the four files."""
    per_writer, total = 1_000, 4_000
    logs = [tmp_path / f"host{k}" / "events.jsonl" for k in range(4)]
    for log in logs:
        log.parent.mkdir()
        log.touch()
    out = tmp_path / "central"
    shippers = [run.ship(log, log.parent / "state") for log in logs]  # the first one makes the stream
    tail = run.tail(out)
    for writer in [run.write(log, k, 0, per_writer) for k, log in enumerate(logs)]:
        finish(writer)
    wait_until(lambda: all(shipped(log.parent / "state", log) for log in logs), "the shippers shipped every line",
               *shippers)
    wait_until(lambda: consumed(out) == total, "the tail read every event", tail, state=holds(out, total))
    assert last_seq(run.server) == total
    for ship in shippers:
        assert_shipper_stopped(ship)
        assert ship.stdout().startswith(f"shipped {per_writer} events"), ship.stdout()
    assert_tail_stopped(tail, total)
    assert_same_as_replay(out, logs, total, tmp_path)


def test_shipper_killed_and_restarted(run: Run, tmp_path: Path) -> None:
    """A shipper killed with SIGKILL while its log is being written, then started again; then killed again while
    its publishes are in flight (sent, not acknowledged: the server hangs), and started again. Each restart publishes
    again what was not saved, the server drops the repeats, and the central reports are replay's."""
    log, state, out, gate = tmp_path / "events.jsonl", tmp_path / "state", tmp_path / "central", tmp_path / "gate"
    log.touch()
    first = run.ship(log, state)
    tail = run.tail(out)
    writer = run.write(log, 0, 0, 3_000, gate=gate)  # half, then it waits for the gate
    wait_until(lambda: sum(saved_offsets(state).values()) > 0, "the shipper saved a position", first)
    assert writer.poll() is None  # the log is still being written
    first.kill()
    gate.touch()  # the second half is written while the shipper is down, and after it is back
    second = run.ship(log, state)
    finish(writer)
    wait_until(lambda: shipped(state, log), "the shipper shipped every line", second)
    # The tail idle (it read and acknowledged everything) before the server hangs: this test is the shipper's.
    wait_until(lambda: consumed(out) == 3_000 and ack_pending(run.server, out) == 0, "the tail read every event",
               tail, state=holds(out, 3_000))
    run.server.pause()
    try:
        finish(run.write(log, 1, 0, 500))
        wait_until(lambda: "publishing failed" in second.stderr() or shipped(state, log),
                   "the shipper says its publishes are not acknowledged", second)
        assert not shipped(state, log), "the shipper saved positions the hung server cannot have acknowledged"
        second.kill()
    finally:
        run.server.resume()
    third = run.ship(log, state)
    wait_until(lambda: shipped(state, log), "the shipper shipped every line", third)
    wait_until(lambda: consumed(out) == 3_500, "the tail read every event", tail, state=holds(out, 3_500))
    assert last_seq(run.server) == 3_500
    assert_shipper_stopped(third)
    again = re.match(r"shipped (\d+) events to the stream '\w+' \((\d+) of them it had already\)", third.stdout())
    assert again is not None, third.stdout()
    assert int(again[1]) == 500  # every event since the last save, published again ...
    assert int(again[2]) > 0  # ... and those in flight at the kill were dropped by the server as repeats
    assert_tail_stopped(tail, 3_500)
    assert_same_as_replay(out, [log], 3_500, tmp_path)


def test_server_restarted(run: Run, tmp_path: Path) -> None:
    """The server hangs with publishes in flight and is killed (SIGKILL: what it had not taken is gone), then started
    again (same port and store): the shipper, never acknowledged, publishes them again. Then the server is stopped
    and started again while the shipper and the tail run and the log grows: both retry and say so on stderr. Nothing
    is lost or doubled."""
    log, state, out = tmp_path / "events.jsonl", tmp_path / "state", tmp_path / "central"
    log.touch()
    ship = run.ship(log, state)
    tail = run.tail(out)
    finish(run.write(log, 0, 0, 1_000))
    # The tail idle (it read and acknowledged everything) before the server hangs: this part is the shipper's.
    wait_until(lambda: consumed(out) == 1_000 and ack_pending(run.server, out) == 0, "the tail read every event",
               ship, tail, state=holds(out, 1_000))
    run.server.pause()
    try:
        finish(run.write(log, 1, 0, 500))
        wait_until(lambda: "publishing failed" in ship.stderr() or shipped(state, log),
                   "the shipper says its publishes are not acknowledged", ship, tail)
        assert not shipped(state, log), "the shipper saved positions the hung server cannot have acknowledged"
    finally:
        crash(run.server)
    run.server.start()
    wait_until(lambda: shipped(state, log), "the shipper shipped every line", ship, tail)
    wait_until(lambda: consumed(out) == 1_500, "the tail read every event", ship, tail, state=holds(out, 1_500))

    writer = run.write(log, 2, 0, 1_000)
    wait_until(lambda: consumed(out) > 1_500, "the tail checkpointed new events", tail, ship)
    said = ship.stderr().count("NATS")
    run.server.stop()
    finish(writer)
    finish(run.write(log, 3, 0, 1_000))  # written while the server is down
    wait_until(lambda: ship.stderr().count("NATS") > said, "the shipper says the server is gone", ship, tail)
    run.server.start()
    finish(run.write(log, 4, 0, 1_000))
    wait_until(lambda: shipped(state, log), "the shipper shipped every line", ship, tail)
    wait_until(lambda: consumed(out) == 4_500, "the tail read every event", ship, tail, state=holds(out, 4_500))
    assert last_seq(run.server) == 4_500
    assert_shipper_stopped(ship)
    assert_tail_stopped(tail, 4_500)
    stderr = ship.stderr() + tail.stderr()
    assert "NATS" in stderr
    assert "Traceback" not in stderr, stderr
    assert_same_as_replay(out, [log], 4_500, tmp_path)


def test_tail_killed_and_restarted(run: Run, tmp_path: Path) -> None:
    """The central tail killed with SIGKILL while it reads (given messages beyond its checkpoint), then started
    again on the same --out: it resumes from its checkpoint, what it had read and not checkpointed is given again,
    and its reports are replay's."""
    log, state, out, gate = tmp_path / "events.jsonl", tmp_path / "state", tmp_path / "central", tmp_path / "gate"
    log.touch()
    ship = run.ship(log, state)
    first = run.tail(out)
    writer = run.write(log, 0, 0, 1_500, gate=gate)  # half, then it waits for the gate
    wait_until(lambda: checkpointed_seq(out) > 0, "the tail checkpointed events", first, ship)
    gate.touch()  # the second half: messages beyond the checkpoint
    wait_until(lambda: 0 < checkpointed_seq(out) < delivered(run.server, out),
               "the tail was given messages beyond its checkpoint", first, ship)
    first.kill()
    finish(writer)
    finish(run.write(log, 1, 0, 1_000))  # shipped while the tail is down
    wait_until(lambda: shipped(state, log), "the shipper shipped every line", ship)
    second = run.tail(out)
    finish(run.write(log, 2, 0, 500))
    wait_until(lambda: shipped(state, log), "the shipper shipped every line", ship, second)
    wait_until(lambda: consumed(out) == 3_000, "the tail read every event", ship, second, state=holds(out, 3_000))
    assert last_seq(run.server) == 3_000
    assert_shipper_stopped(ship)
    assert_tail_stopped(second, 3_000)
    assert "unusable" not in second.stderr(), second.stderr()  # resumed from its checkpoint, not from scratch
    assert_same_as_replay(out, [log], 3_000, tmp_path)


def test_server_paused_longer_than_the_timeout(run: Run, tmp_path: Path) -> None:
    """The server hangs (SIGSTOP) for 2.5 s, longer than the clients' --nats-timeout of 1 s, while the log grows and
    the tail holds messages it has not acknowledged (it acknowledges them, or tries to, while the server hangs). Once
    the server goes on (SIGCONT), everything is shipped and read once, without waiting for the consumer to give
    anything again (after 60 s)."""
    log, state, out = tmp_path / "events.jsonl", tmp_path / "state", tmp_path / "central"
    log.touch()
    ship = run.ship(log, state)
    tail = run.tail(out)
    writer = run.write(log, 0, 0, 1_000)
    wait_until(lambda: ack_pending(run.server, out) > 0, "the tail holds messages not acknowledged", tail, ship)
    run.server.pause()
    paused_at = time.monotonic()
    try:
        finish(writer)
        finish(run.write(log, 1, 0, 1_000))  # published while the server hangs: no acknowledgement in time
        wait_until(lambda: "NATS" in ship.stderr(), "the shipper says its publishes are not acknowledged", ship, tail)
        time.sleep(max(0.0, paused_at + PAUSE_S - time.monotonic()))  # the fault's length, not a synchronisation
    finally:
        run.server.resume()
    finish(run.write(log, 2, 0, 1_000))
    wait_until(lambda: shipped(state, log), "the shipper shipped every line", ship, tail)
    wait_until(lambda: consumed(out) == 3_000, "the tail read every event", ship, tail, state=holds(out, 3_000))
    assert last_seq(run.server) == 3_000
    assert_shipper_stopped(ship)
    assert_tail_stopped(tail, 3_000)
    said = ship.stderr() + tail.stderr()
    assert "Traceback" not in said, said
    assert_same_as_replay(out, [log], 3_000, tmp_path)


def test_bad_line_is_quarantined_by_the_shipper(run: Run, tmp_path: Path) -> None:
    """A bad line in a local log (JSON, but an answer without its response time) goes to the shipper's quarantine
    and never to the stream: the central quarantine stays empty, and the central reports are replay's of the file,
    whose quarantine holds that line."""
    log, state, out = tmp_path / "events.jsonl", tmp_path / "state", tmp_path / "central"
    log.touch()
    ship = run.ship(log, state)
    tail = run.tail(out)
    finish(run.write(log, 0, 0, 1_000))
    bad = orjson.dumps({"v": 1, "ts": T0 + 61 * S, "event_id": "bad-1", "writer": "h:1:bad", "seq": 1,
                        "session_id": "w0-s1", "type": "question_answered"}) + b"\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, bad)
    finally:
        os.close(fd)
    finish(run.write(log, 1, 0, 1_000))
    wait_until(lambda: shipped(state, log), "the shipper shipped every line", ship, tail)
    wait_until(lambda: consumed(out) == 2_000, "the tail read every event", ship, tail, state=holds(out, 2_000))
    assert last_seq(run.server) == 2_000  # the bad line never reached the stream
    assert_shipper_stopped(ship, status=1)  # lines were rejected
    assert ship.stdout().startswith("shipped 2000 events to the stream 'faults' (0 of them it had already), "
                                    "1 rejected lines"), ship.stdout()
    assert (state / "quarantine.jsonl").read_bytes() == bad
    assert_tail_stopped(tail, 2_000)
    replayed = assert_same_as_replay(out, [log], 2_000, tmp_path, rejected=True)
    assert (replayed / "quarantine.jsonl").read_bytes() == bad
