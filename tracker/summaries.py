"""The figures a command prints for people at its end: counts, the sessions' table, the whole run's line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .events import format_ts

if TYPE_CHECKING:
    import polars as pl

    from .engine import Engine
    from .fold import SessionState

__all__ = ("counts_lines", "run_summary", "session_table")


def counts_lines(title: str, counts: dict[str, int]) -> list[str]:
    """``title`` and one aligned line a count; nothing when there are none."""
    if not counts:
        return []
    width = max(map(len, counts))
    return [title, *(f"  {name:<{width}}  {count:>9}" for name, count in counts.items())]


def session_table(sessions: dict[str, SessionState]) -> list[str]:
    """One line a session, by session id, after a header."""
    header = f"{'session':<14} {'user':<12} {'status':<7} {'asked':>6} {'answered':>8} {'cycles':>6} " \
             f"{'errors':>6} {'mean ms':>9} {'max ms':>9}"
    lines = [header]
    for state in sorted(sessions.values(), key=lambda s: s.session_id):
        mean = state.response_time_mean_ms
        lines.append(
            f"{state.session_id[:14]:<14} {(state.username or '-')[:12]:<12} {state.status:<7} "
            f"{state.questions_asked:>6} {state.questions_answered:>8} {state.cycles_completed:>6} "
            f"{state.errors:>6} {'-' if mean is None else f'{mean:.1f}':>9} "
            f"{'-' if state.response_time_max_ms is None else f'{state.response_time_max_ms:.1f}':>9}"
        )
    return lines


def _number(value: object) -> str:
    return "-" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)


def run_summary(engine: Engine, totals: pl.DataFrame) -> list[str]:
    """The whole-run figures of the totals table (``totals``: the engine's, taken while its store was open), for
    people."""
    t = totals.row(0, named=True)
    if t["run_start"] is None:
        return ["whole run: no events"]
    start = format_ts(t["run_start"])
    end = format_ts(t["run_end"])
    rt = ", ".join(f"{name} {_number(t[f'response_time_ms_{name}'])}" for name in ("mean", "p50", "p95", "p99", "max"))
    per_s = "-" if t["answers_per_s"] is None else f"{t['answers_per_s']:.3f}"
    error_rate = "-" if t["error_rate"] is None else f"{t['error_rate']:.2%}"
    silent = f", {engine.timed_out()} timed out" if engine.timeout is not None else ""
    return [
        f"whole run: {start} to {end} ({t['duration_s']:.1f} s), {len(list(engine.windows()))} windows of "
        f"{engine.interval_s} s",
        f"  sessions {t['sessions']} (at most {t['max_active_sessions']} active{silent}), "
        f"questions {t['questions_asked']}, answers {t['questions_answered']} ({per_s}/s), "
        f"cycles {t['cycles_completed']}, errors {t['errors']} (error rate {error_rate})",
        f"  response time ms: {rt}",
    ]
