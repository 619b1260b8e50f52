"""A simulated chatbot stress test: concurrent asyncio sessions that emit events.

Sessions join over time, ask questions, get answers with a realistic
response-time distribution (log-normal body, occasional slow tail), hit
errors now and then, and leave. Used by ``tracker demo`` (:func:`run_demo`:
the sessions under a live tail) and the benchmarks.
"""

from __future__ import annotations

import asyncio
import math
import random
import shlex
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .emitter import EventLog

__all__ = ("DEMO_GOODPUT", "DEMO_THRESHOLDS", "DemoConfig", "run_demo", "run_sessions", "simulate_session")

#: The demo's per-request limits (goodput: answers within 5 s with a first token within 1 s) and the thresholds
#: it is gated by, on the whole run: what a CI job of a chatbot test would check.
DEMO_GOODPUT: Final = {"response_time_ms": 5000.0, "ttft_ms": 1000.0}
DEMO_THRESHOLDS: Final = ("run:error_rate<=0.1", "run:response_time_ms_p95<5000", "run:ttft_ms_p95<1000",
                          "run:goodput_ratio>=0.9")


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """How the simulated test behaves; times in seconds of wall clock."""

    sessions: int = 20
    duration: float = 20.0
    think_time: float = 0.3
    error_rate: float = 0.03
    seed: int = 7


def _response_time_ms(rng: random.Random) -> float:
    """Log-normal around 800 ms, with one answer in 50 from a slow tail of several seconds."""
    if rng.random() < 0.02:
        return round(rng.uniform(3_000.0, 9_000.0), 3)
    return round(math.exp(rng.gauss(math.log(800.0), 0.45)), 3)


async def simulate_session(log: EventLog, index: int, config: DemoConfig, deadline: float) -> None:
    """One chatbot session: register, ask and get answers until the deadline or it leaves, unregister."""
    rng = random.Random(config.seed * 100_003 + index)
    loop = asyncio.get_running_loop()
    session_id = f"session-{index:04d}"
    await asyncio.sleep(rng.uniform(0.0, config.duration / 4))
    log.emit("session_registered", session_id, username=f"student{index:04d}",
             course_numbers=sorted(rng.sample(range(100, 400), rng.randint(1, 3))))
    leave_at = deadline if rng.random() < 0.7 else loop.time() + rng.uniform(0.3, 0.9) * (deadline - loop.time())
    question = 0
    while loop.time() < leave_at:
        question += 1
        question_id = f"{session_id}-q{question}"
        log.emit("question_asked", session_id, question_id=question_id,
                 question_text=f"Question {question} about course material")
        rt = _response_time_ms(rng)
        await asyncio.sleep(min(rt / 1000.0 / 8, 1.0))  # simulated answers come 8x faster than they claim
        if rng.random() < config.error_rate:
            kind = rng.choice(["timeout", "http_502", "empty_answer"])
            # A timeout fails at the client's limit; the other failures come back after part of the answer's time.
            failed_after = 5000.0 if kind == "timeout" else round(rt * rng.uniform(0.1, 0.5), 3)
            log.emit("error", session_id, kind=kind, error=f"{kind} while waiting for the answer",
                     response_time_ms=failed_after)
        else:
            log.emit("question_answered", session_id, question_id=question_id, response_time_ms=rt,
                     time_to_first_token_ms=round(rt * rng.uniform(0.1, 0.3), 3),
                     input_tokens=rng.randint(20, 200), output_tokens=rng.randint(50, 600))
            log.emit("cycle_completed", session_id)
        await asyncio.sleep(rng.expovariate(1.0 / config.think_time))
    reason = "user left" if leave_at < deadline else "test finished"
    log.emit("session_unregistered", session_id, reason=reason)


async def run_sessions(log: EventLog, config: DemoConfig) -> None:
    """Run ``config.sessions`` sessions concurrently for ``config.duration`` seconds."""
    deadline = asyncio.get_running_loop().time() + config.duration
    async with asyncio.TaskGroup() as group:
        for index in range(config.sessions):
            group.create_task(simulate_session(log, index, config, deadline))


def run_demo(out: Path, config: DemoConfig, *, interval_s: int, command: str) -> tuple[bool, bool]:
    """Run the simulated test writing ``out/events.jsonl`` while a live tail follows it into ``out/reports``, then
    print the sessions, the whole run, the verdicts of :data:`DEMO_THRESHOLDS` and how to check and replay the log
    (``command`` is how tracker was started). Returns whether no line was rejected, and whether every threshold
    passed."""
    from .console import LiveView, warnings_to_stderr
    from .decoder import Rejected, decode_file
    from .fold import anomalies, fold_all
    from .logs import refuse_non_folder
    from .summaries import counts_lines, run_summary, session_table
    from .tables import schemas
    from .tail import CHECKPOINT_DIR, Tail
    from .thresholds import failed, parse_threshold, report_lines

    refuse_non_folder(out, "the demo needs a folder")
    log_path, reports = out / "events.jsonl", out / "reports"
    log_path.unlink(missing_ok=True)
    # A fresh run: the last demo's state goes (its report files go too: the tail removes the ones its list names).
    shutil.rmtree(reports / CHECKPOINT_DIR, ignore_errors=True)
    print(f"simulating {config.sessions} chatbot sessions for {config.duration:g} s, writing {log_path}; "
          f"tracker tail follows it into {reports} ({interval_s} s windows)")
    warnings_to_stderr()
    thresholds = [parse_threshold(text, *schemas(goodput=True)) for text in DEMO_THRESHOLDS]
    tail = Tail([log_path], reports, interval_s=interval_s, grace_s=min(1.0, interval_s / 2),
                goodput=dict(DEMO_GOODPUT), thresholds=thresholds)
    view = LiveView(f"tracker demo: {config.sessions} sessions -> {reports}")
    stop = threading.Event()
    follower = threading.Thread(target=tail.run, args=(stop,), kwargs={"on_tick": view.update}, daemon=True)
    follower.start()
    try:
        with EventLog(log_path) as log:
            asyncio.run(run_sessions(log, config))
    finally:
        stop.set()
        follower.join()
        tail.close()
        view.close(tail)
    sessions = fold_all(event for event in decode_file(log_path) if not isinstance(event, Rejected))
    found = {name: count for name, count in anomalies(sessions).items() if count}
    lines = [*session_table(sessions), *counts_lines("anomalies:", found),
             f"{tail.stats.events} events, {tail.decoder.rejected.total()} rejected lines, {tail.reporter.late} late; "
             f"reports ({tail.reporter.windows_written} windows) in {reports}",
             *run_summary(tail.reporter.engine, tail.reporter.engine.totals()),
             *report_lines(tail.reporter.writer.verdicts, thresholds)]
    log_arg = shlex.quote(str(log_path))
    limits = ",".join(f"{name}={limit:g}" for name, limit in DEMO_GOODPUT.items())
    gates = " ".join(f"--threshold {shlex.quote(text)}" for text in DEMO_THRESHOLDS)
    lines += [f"check the log with:  {command} validate {log_arg}",
              f"replay it with:      {command} replay {log_arg} --out OTHER_DIR --interval {interval_s} "
              f"--goodput {limits} {gates}",
              "                     (gives the same files as the live tail wrote)",
              f"the HTML report:     {reports / 'session_tracking_report.html'}"]
    print("\n".join(lines))
    return not tail.decoder.rejected.total(), not failed(tail.reporter.writer.verdicts)
