"""Wall time and peak memory of ``tracker replay`` against DuckDB and the I/O floor, on one log.

Measures, side by side in one run, on the same JSON-lines log (``bench/make_log.py``):

* ``tracker replay``: this project's command, ``python -m tracker replay LOG --out DIR
  --interval 300``: polars reads the log in 16 MiB blocks (two threads), every row is validated
  against the event schema (doubtful rows go to the per-line decoder), the events wait by window
  in memory (128 MiB) or a spool folder, then each run of windows is de-duplicated by
  ``(event_id, ts)`` and aggregated, and the summary, totals, errors and one per-window session report are written
  as CSV;
* ``DuckDB SQL``: the same aggregation in DuckDB (in memory, default threads):
  ``read_ndjson`` with explicit ``columns={...}`` types (all keys of the schema), duplicates
  removed with ``QUALIFY row_number() OVER (PARTITION BY event_id, ts) = 1`` into a
  temporary table, then two ``COPY ... TO`` CSV files: the per-window summary (window ``k =
  ts // interval``, every window from the first to the last, counts of each event type,
  mean, ``quantile_cont`` 0.5/0.9/0.95/0.99 and max of ``response_time_ms`` over
  ``question_answered`` events, answers per second of the window that the run (first to last event) covers) and the per-(session, window) table
  (questions asked and answered, cycles, errors; mean, p95 and max response time), with the
  window bounds formatted as ISO-8601 UTC like tracker's. It does NOT validate rows (a
  malformed line fails the whole query instead of being quarantined), count active sessions,
  list a session's idle windows, compute running totals, usernames, course numbers or
  status, write the totals or errors tables, split the session table into one file per
  window, or guard text cells against spreadsheet formulas; so it is a lower bound for a
  SQL engine doing tracker's job, not an equal;
* ``polars parse only``: ``pl.read_ndjson`` of each 16 MiB block with every schema key typed,
  one block at a time, nothing else: the parser tracker's reading is built on;
* ``cat LOG > /dev/null`` and ``Python binary line loop`` (``for line in f: n += 1`` on a
  file opened ``"rb"``): the I/O floor, reading the log from the page cache.

Every variant runs in a fresh process under ``/usr/bin/time -f "%e %M"`` (GNU time: peak RSS
in KiB; the wall seconds are taken with ``time.perf_counter`` around it, as ``%e`` only has
10 ms steps; when GNU time is missing, a wrapper process of this script times the child and
reads ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``), so the seconds include interpreter
start-up and imports and the memory is the variant's own. The page cache is
warmed with one untimed ``cat`` first; then every variant runs ``--repeat`` times,
round-robin (each round starts with a different variant). The table gives the median wall
seconds, events per second (log lines / median seconds), the highest peak RSS of the runs
(MB = 10**6 bytes) and the time relative to ``tracker replay``. Outputs go to a temporary
folder (``--work`` to choose its parent); after the runs, DuckDB's tables are checked
against tracker's (summary windows, and per-session rows with events) and the result is
printed.

Run from the repository root (``--make`` writes the 10M-event log, ~2 GB, if it is missing;
``bench/data/`` is git-ignored)::

    .venv/bin/python bench/bench_replay.py bench/data/events-10m.jsonl --make --repeat 3
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench_common import positive, version

GNU_TIME: Final = "/usr/bin/time"
SCRIPT: Final = Path(__file__).resolve()
MAKE_LOG: Final = SCRIPT.with_name("make_log.py")
SECOND_US: Final = 1_000_000

TRACKER: Final = "tracker replay"
DUCKDB: Final = "DuckDB SQL"
CAT: Final = "cat LOG > /dev/null"
LINES: Final = "Python binary line loop"
PARSE: Final = "polars parse only"
VARIANTS: Final = (TRACKER, DUCKDB, PARSE, CAT, LINES)

# Hidden first arguments: the child processes this script starts.
_CHILD: Final = "--_child"
_MEASURE: Final = "--_measure"

SUMMARY_CSV: Final = "duckdb_summary.csv"
SESSIONS_CSV: Final = "duckdb_sessions.csv"
TRACKER_SUMMARY_CSV: Final = "session_tracking_summary.csv"
TRACKER_SESSIONS_GLOB: Final = "session_tracking_report_*.csv"
COUNTS: Final = {
    "sessions_registered": "session_registered",
    "sessions_unregistered": "session_unregistered",
    "questions_asked": "question_asked",
    "questions_answered": "question_answered",
    "cycles_completed": "cycle_completed",
    "errors": "error",
}
SESSION_COUNTS: Final = ("questions_asked", "questions_answered", "cycles_completed", "errors")
QUANTILES: Final = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
#: Every key of the event schema, typed; keys of the log not listed here would be ignored.
JSON_COLUMNS: Final = {
    "v": "BIGINT", "ts": "BIGINT", "event_id": "VARCHAR", "writer": "VARCHAR", "seq": "BIGINT",
    "session_id": "VARCHAR", "type": "VARCHAR", "username": "VARCHAR", "course_numbers": "BIGINT[]",
    "question_text": "VARCHAR", "question_id": "VARCHAR", "response_time_ms": "DOUBLE",
    "time_to_first_token_ms": "DOUBLE", "input_tokens": "BIGINT", "output_tokens": "BIGINT",
    "error": "VARCHAR", "kind": "VARCHAR", "reason": "VARCHAR",
}


# ---------------------------------------------------------------- child processes


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _iso(expr: str) -> str:
    return f"strftime(make_timestamp({expr}), '%Y-%m-%dT%H:%M:%SZ')"


def duckdb_queries(log: Path, out: Path, interval_s: int) -> list[str]:
    """The SQL statements of the DuckDB variant, in order."""
    every = interval_s * SECOND_US
    columns = ", ".join(f"{name}: '{kind}'" for name, kind in JSON_COLUMNS.items())
    answered = "FILTER (WHERE type = 'question_answered')"
    rt = "response_time_ms"
    load = f"""
        CREATE TEMP TABLE ev AS
        SELECT ts, ts // {every} AS k, session_id, type, {rt}
        FROM read_ndjson({_sql_text(str(log))}, format = 'newline_delimited', columns = {{{columns}}})
        QUALIFY row_number() OVER (PARTITION BY event_id, ts) = 1
    """
    counts = ",\n".join(f"count(*) FILTER (WHERE type = '{t}') AS {name}" for name, t in COUNTS.items())
    quantiles = ", ".join(str(q) for q in QUANTILES.values())
    stats = ",\n".join(f"round(w.q[{i}], 3) AS {rt}_{name}" for i, name in enumerate(QUANTILES, 1))
    summary = f"""
        COPY (
            WITH w AS (
                SELECT k, {counts},
                       avg({rt}) {answered} AS mean,
                       quantile_cont({rt}, [{quantiles}]) {answered} AS q,
                       max({rt}) {answered} AS mx
                FROM ev GROUP BY k
            ), grid AS (
                SELECT range AS k FROM range((SELECT min(k) FROM ev), (SELECT max(k) FROM ev) + 1)
            )
            SELECT {_iso(f"grid.k * {every}")} AS window_start,
                   {_iso(f"(grid.k + 1) * {every}")} AS window_end,
                   {", ".join(f"coalesce(w.{name}, 0) AS {name}" for name in COUNTS)},
                   round(w.mean, 3) AS {rt}_mean,
                   {stats},
                   round(w.mx, 3) AS {rt}_max,
                   round(coalesce(w.questions_answered, 0) / nullif(greatest(0, least((grid.k + 1) * {every},
                       (SELECT max(ts) FROM ev)) - greatest(grid.k * {every}, (SELECT min(ts) FROM ev))), 0)
                       * {SECOND_US}, 3) AS answers_per_s
            FROM grid LEFT JOIN w USING (k)
            ORDER BY grid.k
        ) TO {_sql_text(str(out / SUMMARY_CSV))} (FORMAT csv, HEADER)
    """
    session_counts = ",\n".join(f"count(*) FILTER (WHERE type = '{COUNTS[name]}') AS {name}"
                                for name in SESSION_COUNTS)
    sessions = f"""
        COPY (
            SELECT {_iso(f"k * {every}")} AS window_start,
                   {_iso(f"(k + 1) * {every}")} AS window_end,
                   session_id, {session_counts},
                   round(avg({rt}) {answered}, 3) AS {rt}_mean,
                   round(quantile_cont({rt}, 0.95) {answered}, 3) AS {rt}_p95,
                   round(max({rt}) {answered}, 3) AS {rt}_max
            FROM ev GROUP BY k, session_id
            ORDER BY k, session_id
        ) TO {_sql_text(str(out / SESSIONS_CSV))} (FORMAT csv, HEADER)
    """
    return [load, summary, sessions]


def child_duckdb(log: Path, out: Path, interval_s: int) -> None:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        for query in duckdb_queries(log, out, interval_s):
            con.execute(query)
    finally:
        con.close()


def child_lines(log: Path) -> None:
    n = 0
    with open(log, "rb") as f:
        for _line in f:
            n += 1
    print(n)


def child_parse(log: Path) -> None:
    """polars' JSON parser alone over the log in 16 MiB blocks, every schema key typed: tracker's floor."""
    import io

    import polars as pl

    types = {"BIGINT": pl.Int64(), "VARCHAR": pl.String(), "DOUBLE": pl.Float64(), "BIGINT[]": pl.List(pl.Int64())}
    schema = pl.Schema({name: types[kind] for name, kind in JSON_COLUMNS.items()})
    rows, carry = 0, b""
    with open(log, "rb") as f:
        while chunk := f.read(16 << 20):
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            rows += pl.read_ndjson(io.BytesIO(data[:cut]), schema=schema).height
    print(rows)


def child_main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"{SCRIPT.name} {_CHILD}")
    parser.add_argument("variant", choices=("duckdb", "lines", "parse"))
    parser.add_argument("log", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--interval", type=int, default=300)
    args = parser.parse_args(argv)
    if args.variant == "duckdb":
        child_duckdb(args.log, args.out, args.interval)
    elif args.variant == "parse":
        child_parse(args.log)
    else:
        child_lines(args.log)


def measure_main(argv: Sequence[str]) -> None:
    """Fallback for GNU time: run ``argv[1:]``, write "seconds max_rss_kib" to the file ``argv[0]``."""
    report, command = argv[0], list(argv[1:])
    start = time.perf_counter()
    status = subprocess.call(command)
    elapsed = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if sys.platform == "darwin":  # bytes there, KiB on Linux
        rss //= 1024
    Path(report).write_text(f"{elapsed:.3f} {rss}\n")
    sys.exit(status)


# ---------------------------------------------------------------- the benchmark


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    rss_kib: int
    stdout: str


def variant_command(name: str, log: Path, out: Path, interval_s: int) -> list[str]:
    if name == TRACKER:
        return [sys.executable, "-m", "tracker", "replay", str(log), "--out", str(out), "--interval", str(interval_s)]
    if name == DUCKDB:
        return [sys.executable, str(SCRIPT), _CHILD, "duckdb", str(log), "--out", str(out),
                "--interval", str(interval_s)]
    if name == CAT:
        return ["cat", str(log)]
    if name == LINES:
        return [sys.executable, str(SCRIPT), _CHILD, "lines", str(log)]
    if name == PARSE:
        return [sys.executable, str(SCRIPT), _CHILD, "parse", str(log)]
    raise ValueError(name)


def run_measured(command: list[str], work: Path, label: str, *, discard_stdout: bool) -> Run | None:
    """Run ``command`` in a fresh process; its wall seconds and peak RSS, or None (reported) when it fails."""
    report = work / f"{label}.time"
    stdout_path = work / f"{label}.stdout"
    stderr_path = work / f"{label}.stderr"
    if Path(GNU_TIME).exists():
        wrapped = [GNU_TIME, "-f", "%e %M", "-o", str(report), *command]
    else:
        wrapped = [sys.executable, str(SCRIPT), _MEASURE, str(report), *command]
    with open(stderr_path, "wb") as err, open(os.devnull if discard_stdout else stdout_path, "wb") as out:
        start = time.perf_counter()
        status = subprocess.call(wrapped, stdout=out, stderr=err)
        elapsed = time.perf_counter() - start
    if status != 0:
        tail = stderr_path.read_text(errors="replace").strip().splitlines()[-5:]
        print(f"  {label}: exit status {status}: " + " / ".join(tail), file=sys.stderr)
        return None
    # GNU time writes "Command exited with non-zero status" first on failure; the numbers are last.
    seconds, rss = report.read_text().split()[-2:]
    stdout = "" if discard_stdout else stdout_path.read_text()
    # GNU time's %e has 10 ms steps: the wall time measured here around it is used instead.
    return Run(elapsed if wrapped[0] == GNU_TIME else float(seconds), int(rss), stdout)


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _same(a: str, b: str) -> bool:
    """Cells equal: the same text, or numbers equal up to the 3 decimals both sides write."""
    try:
        x, y = float(a), float(b)
    except ValueError:
        return a == b
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=0.0015)


def _compare(ours: list[dict[str, str]], theirs: dict[tuple[str, ...], dict[str, str]],
             key: Callable[[dict[str, str]], tuple[str, ...]]) -> tuple[int, int, list[str]]:
    """Rows compared, cells compared, and the first few differences of ``ours`` against ``theirs``."""
    rows = cells = 0
    diffs: list[str] = []
    for row in ours:
        k = key(row)
        other = theirs.get(k)
        if other is None:
            diffs.append(f"{k}: missing in tracker's output")
            continue
        rows += 1
        for column, value in row.items():
            if column in other:
                cells += 1
                if not _same(value, other[column]):
                    diffs.append(f"{k} {column}: DuckDB {value}, tracker {other[column]}")
    return rows, cells, diffs


def check_outputs(tracker_out: Path, duckdb_out: Path) -> list[str]:
    """Lines saying whether DuckDB's tables agree with tracker's (on the columns both have)."""
    lines = []
    theirs: dict[tuple[str, ...], dict[str, str]] = {(r["window_start"],): r for r in _read_csv(tracker_out / TRACKER_SUMMARY_CSV)}
    ours = _read_csv(duckdb_out / SUMMARY_CSV)
    rows, cells, diffs = _compare(ours, theirs, lambda r: (r["window_start"],))
    extra = len(theirs) - rows
    lines.append(f"summary: {rows} windows, {cells} cells compared, {len(diffs)} differ"
                 + (f", {extra} windows only in tracker's" if extra else ""))
    lines.extend(f"  {d}" for d in diffs[:5])
    theirs = {}
    for path in sorted(tracker_out.glob(TRACKER_SESSIONS_GLOB)):
        for r in _read_csv(path):
            theirs[(r["window_start"], r["session_id"])] = r
    ours = _read_csv(duckdb_out / SESSIONS_CSV)
    rows, cells, diffs = _compare(ours, theirs, lambda r: (r["window_start"], r["session_id"]))
    lines.append(f"per-session: {rows} (session, window) rows with events, {cells} cells compared, "
                 f"{len(diffs)} differ; tracker's files hold {len(theirs)} rows (idle alive windows too)")
    lines.extend(f"  {d}" for d in diffs[:5])
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [_CHILD]:
        child_main(argv[1:])
        return
    if argv[:1] == [_MEASURE]:
        measure_main(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("log", type=Path, help="the JSON-lines log to replay")
    parser.add_argument("--make", action="store_true", help="generate the log with bench/make_log.py when missing")
    parser.add_argument("--events", type=positive, default=10_000_000, metavar="N",
                        help="events of a generated log (10_000_000)")
    parser.add_argument("--repeat", type=positive, default=3, metavar="R", help="rounds of every variant (3)")
    parser.add_argument("--interval", type=positive, default=300, metavar="SECONDS", help="window length (300)")
    parser.add_argument("--work", type=Path, default=None,
                        help="parent of the temporary output folder (system default)")
    parser.add_argument("--keep", action="store_true", help="keep the output folder (its path is printed)")
    args = parser.parse_args(argv)
    log: Path = args.log
    rounds: int = args.repeat
    interval_s: int = args.interval

    if not log.exists():
        if not args.make:
            parser.error(f"{log} does not exist (add --make to generate it)")
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"generating {log} ({args.events:,} events) ...", file=sys.stderr)
        subprocess.run([sys.executable, str(MAKE_LOG), str(log), "--events", str(args.events)], check=True)
    size = log.stat().st_size

    work = Path(tempfile.mkdtemp(prefix="bench_replay-", dir=args.work))
    try:
        print(f"warming the page cache: cat {log} > /dev/null", file=sys.stderr)
        subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)
        names = list(VARIANTS)
        runs: dict[str, list[Run]] = {name: [] for name in names}
        failures: dict[str, int] = dict.fromkeys(names, 0)
        outs = {name: work / name.split()[0].lower() for name in names}
        for round_no in range(rounds):
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                out = outs[name]
                shutil.rmtree(out, ignore_errors=True)
                label = f"r{round_no + 1}-{out.name}"
                run = run_measured(variant_command(name, log, out, interval_s), work, label,
                                   discard_stdout=name == CAT)
                if run is None:
                    failures[name] += 1
                    continue
                runs[name].append(run)
                print(f"round {round_no + 1}/{rounds}: {name}: {run.seconds:.3f} s, "
                      f"{run.rss_kib * 1024 / 1e6:,.0f} MB", file=sys.stderr)

        counts = {int(r.stdout) for r in runs[LINES]}
        if len(counts) > 1:
            raise RuntimeError(f"the line loop counted different numbers of lines: {sorted(counts)}")
        events = counts.pop() if counts else _count_lines(log)

        medians = {name: statistics.median(r.seconds for r in rs) for name, rs in runs.items() if rs}
        base = medians.get(TRACKER)
        print(f"| variant | seconds (median of {rounds}) | events/s | peak RSS MB | vs tracker |")
        print("|---|---|---|---|---|")
        for name in names:
            failed = f" ({failures[name]} of {rounds} runs failed)" if failures[name] else ""
            if name not in medians:
                print(f"| {name} | failed{failed} | - | - | - |")
                continue
            seconds = medians[name]
            rss = max(r.rss_kib for r in runs[name]) * 1024 / 1e6
            ratio = "-" if not base else f"{seconds / base:.2f}x" if seconds >= 0.1 * base else f"{seconds / base:.3f}x"
            rate = f"{events / seconds:,.0f}" if seconds > 0 else "-"
            shown = f"{seconds:.2f}" if seconds >= 10 else f"{seconds:.3f}"
            print(f"| {name}{failed} | {shown} | {rate} | {rss:,.0f} | {ratio} |")
        print()
        cpus = os.cpu_count()
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
        print(
            f"Python {platform.python_version()}, polars {version('polars')}, duckdb {version('duckdb')}; "
            f"{events:,} events, {size / 1e6:,.0f} MB log, interval {interval_s} s, {rounds} rounds; "
            f"{cpus} CPUs ({affinity} usable), {platform.system()} {platform.machine()}"
        )
        if runs[TRACKER] and runs[DUCKDB]:
            print()
            for line in check_outputs(outs[TRACKER], outs[DUCKDB]):
                print(line)
    finally:
        if args.keep:
            print(f"outputs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
