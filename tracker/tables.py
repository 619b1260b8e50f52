"""The report tables, derived: pure functions from a window's rows and the sessions' facts to report rows.

The :class:`~tracker.engine.Engine` holds the state and calls these; nothing
here keeps anything. Percentiles are exact, with linear interpolation between
order statistics (numpy's default); a window's values are taken in one order
fixed by their content, so float sums come out the same to the bit however the
events were read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import polars as pl

from .ranks import SortedValues

__all__ = (
    "CHAT_COLUMNS", "COUNTED", "ERROR_FIGURES", "ERRORS_SCHEMA", "RATE_COLUMNS", "SERIES", "SESSION_COUNTED", "STATS",
    "FOUR_DECIMALS", "GOODPUT_COLUMNS", "GOODPUT_LIMITS", "NO_CHAT", "SUMMARY_SCHEMA", "TOKENS", "TOTALS",
    "TOTALS_SCHEMA", "TPOT_STATS",
    "TTFT_STATS", "Tables", "WindowAgg", "active_counts", "aggregate", "carried", "chat_columns", "chat_figures",
    "chat_values", "mean_of",
    "covered_seconds", "good_answers", "goodput_figures", "rates", "run_stats", "schemas", "stats", "summary_frame",
    "summed_totals", "window_rows",
)

COUNTED: Final = {
    "sessions_registered": "session_registered",
    "sessions_unregistered": "session_unregistered",
    "questions_asked": "question_asked",
    "questions_answered": "question_answered",
    "cycles_completed": "cycle_completed",
    "errors": "error",
}
SESSION_COUNTED: Final = ("questions_asked", "questions_answered", "cycles_completed", "errors")
TOTALS: Final = tuple(f"{c}_total" for c in SESSION_COUNTED)
STATS: Final = ("mean", "p50", "p90", "p95", "p99", "max")
#: Time to first token and time per output token after the first (vLLM's TPOT): the statistics reported.
TTFT_STATS: Final = STATS
TPOT_STATS: Final = ("mean", "p50", "p95", "p99")
#: The chat figures of a window and of the run, in the order of the files' columns.
CHAT_COLUMNS: Final = {**{f"ttft_ms_{s}": pl.Float64 for s in TTFT_STATS},
                       **{f"tpot_ms_{s}": pl.Float64 for s in TPOT_STATS},
                       # Sums of counts each up to 2**63 - 1: 128 bits, so that no sum wraps around.
                       "input_tokens": pl.Int128, "output_tokens": pl.Int128, "output_tokens_per_s": pl.Float64,
                       # Failed requests' latency: over errors that carry response_time_ms (the time until failure).
                       **{f"failed_response_time_ms_{s}": pl.Float64 for s in ("mean", "p95", "max")}}
_QUANTILES: Final = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
#: The per-request limits ``--goodput`` may set, by name, and the columns it adds (after every other).
GOODPUT_LIMITS: Final = ("response_time_ms", "ttft_ms", "tpot_ms")
GOODPUT_COLUMNS: Final = ("goodput_per_s", "goodput_ratio")
GOODPUT_SCHEMA: Final = pl.Schema(dict.fromkeys(GOODPUT_COLUMNS, pl.Float64))
#: The columns written with 4 decimals (ratios between 0 and 1); every other float has 3.
FOUR_DECIMALS: Final = ("error_rate", "goodput_ratio")


#: The token sums among the chat columns (whole numbers; every other chat figure is a float or None).
TOKENS: Final = ("input_tokens", "output_tokens")
#: A window without rows: no TTFT, TPOT or failed request, no tokens (the chat columns but the per-second one).
NO_CHAT: Final[dict[str, float | int | None]] = {c: 0 if c in TOKENS else None for c in CHAT_COLUMNS
                                                 if c != "output_tokens_per_s"}

#: The values the whole run's statistics need every one of (besides counts): response times, TTFT, TPOT and the
#: failed requests' times (:func:`chat_values`).
SERIES: Final = ("rt", "ttft", "tpot", "failed")


#: A power of two to scale values by when their sum overflows (exact, but for values below about 1e-289).
_SCALE: Final = 2.0 ** -64


def mean_of(values: pl.Expr) -> pl.Expr:
    """The mean of ``values``; when their sum overflows (values near the largest double), the mean of the values
    scaled down by a power of two, scaled back: the mean of finite values is finite."""
    return pl.when(values.sum().is_infinite()).then((values * _SCALE).mean() / _SCALE).otherwise(values.mean())


def run_stats(values: SortedValues, mean: float | None) -> dict[str, float | None]:
    """:func:`stats` of the whole run's values, their mean given (the windows' means weighted by their share of
    the values, added in window order: the same to the bit however the events were read)."""
    if not len(values):
        return dict.fromkeys(STATS)
    figures: dict[str, float | None] = {"mean": mean}
    figures.update({name: values.quantile(q) for name, q in _QUANTILES.items()})
    figures["max"] = values.max()
    return figures


def stats(values: pl.Series) -> dict[str, float | None]:
    """Mean, exact linear-interpolation percentiles and max of sorted ``values`` (all None when empty)."""
    if not values.len():
        return dict.fromkeys(STATS)
    mean = values.mean()
    if isinstance(mean, float) and math.isinf(mean):  # the sum overflowed (see mean_of)
        mean = (values * _SCALE).mean() / _SCALE  # type: ignore[operator]
    stats: dict[str, float | None] = {"mean": float(mean) if mean is not None else None}  # type: ignore[arg-type]
    for name, q in _QUANTILES.items():
        value = values.quantile(q, interpolation="linear")
        stats[name] = float(value) if value is not None else None
    top = values.max()
    stats["max"] = float(top) if top is not None else None  # type: ignore[arg-type]
    return stats


@dataclass(frozen=True, slots=True)
class WindowAgg:
    """One window's own figures, from its rows alone (cached until the window gets a new event)."""

    counts: dict[str, int]
    stats: dict[str, float | None]
    errors: pl.DataFrame  # kind, message, count, sessions, first_seen, last_seen
    chat: dict[str, float | int | None]  # the CHAT_COLUMNS but output_tokens_per_s
    good: int = 0  # answers within every --goodput limit (0 without limits)
    #: How many of each of :data:`SERIES`'s values this window has (for the whole run's means).
    sizes: tuple[int, ...] = (0,) * len(SERIES)
    #: The mean of each of :data:`SERIES`'s values in this window (the figures' own), made once: the whole run's
    #: mean is made of every window's at every flush.
    means: tuple[float | None, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        means = (self.stats["mean"], self.chat["ttft_ms_mean"], self.chat["tpot_ms_mean"],
                 self.chat["failed_response_time_ms_mean"])
        object.__setattr__(self, "means", tuple(float(m) if m is not None else None for m in means))


def good_answers(rows: pl.DataFrame, limits: dict[str, float] | None) -> int:
    """How many answers meet every per-request limit (none without ``limits``): a response time, TTFT or TPOT at
    most its limit. An answer without the value a limit needs does not meet it; one with a TTFT and no time per
    output token (:func:`chat_values`: fewer than 2 output tokens, or a first token after the response) meets
    any TPOT limit."""
    if not limits:
        return 0
    ttft, tokens, rt = pl.col("time_to_first_token_ms"), pl.col("output_tokens"), pl.col("response_time_ms")
    meets = {
        "response_time_ms": lambda limit: rt <= limit,
        "ttft_ms": lambda limit: ttft.is_not_null() & (ttft <= limit),
        "tpot_ms": lambda limit: ttft.is_not_null() & tokens.is_not_null() & (
            (tokens < 2) | (ttft > rt) | ((rt - ttft) / (tokens - 1) <= limit)),
    }
    condition = pl.col("type") == "question_answered"
    for name, limit in limits.items():
        condition = condition & meets[name](limit).fill_null(False)
    return int(rows.select(condition.sum()).item())


def goodput_figures(good: int, answers: int, seconds: float) -> dict[str, float | None]:
    """goodput_per_s (good answers over ``seconds``, None when 0) and goodput_ratio (over all answers, None
    without any)."""
    return {"goodput_per_s": good / seconds if seconds > 0 else None,
            "goodput_ratio": good / answers if answers else None}


def chat_values(rows: pl.DataFrame) -> tuple[pl.Series, pl.Series, int, int, pl.Series]:
    """The answers' TTFT values and TPOT values (each sorted), their input and output token sums, and the failed
    requests' times (errors with a response time, sorted).

    TPOT of an answer with a TTFT and at least 2 output tokens is (response time - TTFT) / (output tokens - 1);
    an answer whose first token came after its response (TTFT over the response time) has none, as it cannot be
    measured so.
    """
    answers = rows.filter(pl.col("type") == "question_answered")
    ttft = answers["time_to_first_token_ms"].drop_nulls().sort()
    tpot = answers.filter(pl.col("time_to_first_token_ms").is_not_null() & (pl.col("output_tokens") >= 2)
                          & (pl.col("time_to_first_token_ms") <= pl.col("response_time_ms"))).select(
        (pl.col("response_time_ms") - pl.col("time_to_first_token_ms")) / (pl.col("output_tokens") - 1))
    tokens_in, tokens_out = (answers[name].cast(pl.Int128).sum() for name in ("input_tokens", "output_tokens"))
    failed = rows.filter(pl.col("type") == "error")["response_time_ms"].drop_nulls().sort()
    return ttft, tpot.to_series().sort(), int(tokens_in), int(tokens_out), failed


def chat_figures(ttft: pl.Series, tpot: pl.Series, tokens_in: int, tokens_out: int,
                 failed: pl.Series) -> dict[str, float | int | None]:
    """The chat columns (but output_tokens_per_s) from sorted TTFT, TPOT and failed-request values and token sums."""
    return chat_columns(stats(ttft), stats(tpot), tokens_in, tokens_out, stats(failed))


def chat_columns(ttft_stats: dict[str, float | None], tpot_stats: dict[str, float | None], tokens_in: int,
                 tokens_out: int, failed_stats: dict[str, float | None]) -> dict[str, float | int | None]:
    """The chat columns (but output_tokens_per_s) from the statistics of TTFT, TPOT and failed requests' times."""
    return {**{f"ttft_ms_{s}": ttft_stats[s] for s in TTFT_STATS},
            **{f"tpot_ms_{s}": tpot_stats[s] for s in TPOT_STATS},
            "input_tokens": tokens_in, "output_tokens": tokens_out,
            **{f"failed_response_time_ms_{s}": failed_stats[s] for s in ("mean", "p95", "max")}}


def aggregate(rows: pl.DataFrame, goodput: dict[str, float] | None = None) -> tuple[WindowAgg, pl.DataFrame]:
    """A window's figures, and its per-session figures (counts, response-time mean/p95/max), from its rows."""
    # One canonical order, by content (the key is the event's time and a hash of all its fields): every
    # statistic sees its values in the same order however the events were read, so float sums come out the
    # same to the bit.
    rows = rows.sort("key")
    by_type = dict(rows.group_by("type").len().iter_rows())
    counts = {name: int(by_type.get(kind, 0)) for name, kind in COUNTED.items()}
    is_answer = pl.col("type") == "question_answered"
    rt = rows.filter(is_answer)["response_time_ms"].sort()
    answers = pl.col("response_time_ms").filter(is_answer)
    cells = rows.group_by("session_id", maintain_order=True).agg(
        *((pl.col("type") == COUNTED[c]).sum().cast(pl.Int64).alias(c) for c in SESSION_COUNTED),
        mean_of(answers).alias("response_time_ms_mean"),
        answers.quantile(0.95, interpolation="linear").alias("response_time_ms_p95"),
        answers.max().alias("response_time_ms_max"),
        pl.col("time_to_first_token_ms").filter(is_answer).quantile(0.95, interpolation="linear")
        .alias("ttft_ms_p95"),
        pl.col("output_tokens").filter(is_answer).cast(pl.Int128).sum().alias("output_tokens"),
    )
    ts = (pl.col("key") // (1 << 64)).cast(pl.Int64)  # the key holds the event's time in its high 64 bits
    errors = (
        rows.filter(pl.col("type") == "error")
        .group_by("kind", message="error").agg(
            count=pl.len().cast(pl.Int64), sessions=pl.col("session_id").n_unique().cast(pl.Int64),
            first_seen=ts.min(), last_seen=ts.max())
        .sort(pl.col("kind").fill_null(""), "message", "kind", nulls_last=False)
    )
    ttft, tpot, tokens_in, tokens_out, failed = chat_values(rows)
    chat = chat_figures(ttft, tpot, tokens_in, tokens_out, failed)
    rt_stats = stats(rt)
    sizes = tuple(values.len() for values in (rt, ttft, tpot, failed))
    return WindowAgg(counts, rt_stats, errors, chat, good_answers(rows, goodput), sizes), cells


@dataclass(frozen=True, slots=True)
class Tables:
    """Report tables derived from the engine: windows' summary rows, a whole-run row, error rows."""

    summary: pl.DataFrame
    totals: pl.DataFrame
    errors: pl.DataFrame



STAT_COLUMNS: Final = {f"response_time_ms_{s}": pl.Float64 for s in STATS}
#: The rates of a window (over its covered seconds) and of the run (over its duration), and the error rate.
RATE_COLUMNS: Final = dict.fromkeys(("questions_per_s", "answers_per_s", "errors_per_s", "error_rate"), pl.Float64)
SUMMARY_SCHEMA: Final = pl.Schema({
    "window_start": pl.Int64, "window_end": pl.Int64, "active_sessions": pl.Int64, "active_at_end": pl.Int64,
    **dict.fromkeys(COUNTED, pl.Int64), **STAT_COLUMNS, "seconds": pl.Float64, **RATE_COLUMNS, **CHAT_COLUMNS})
TOTALS_SCHEMA: Final = pl.Schema({
    "run_start": pl.Int64, "run_end": pl.Int64, "sessions": pl.Int64, "max_active_sessions": pl.Int64,
    **dict.fromkeys(COUNTED, pl.Int64), **STAT_COLUMNS, "duration_s": pl.Float64, **RATE_COLUMNS, **CHAT_COLUMNS})
#: An error row's figures beside its window: how many, in how many sessions, the first and last time (events').
ERROR_FIGURES: Final = pl.Schema({"kind": pl.String, "message": pl.String, "count": pl.Int64, "sessions": pl.Int64,
                                  "first_seen": pl.Int64, "last_seen": pl.Int64})
ERRORS_SCHEMA: Final = pl.Schema([("window_start", pl.Int64), ("window_end", pl.Int64), *ERROR_FIGURES.items()])


def rates(counts: dict[str, int], seconds: float) -> dict[str, float | None]:
    """Questions, answers and errors per second over ``seconds`` (None when it is 0), and the error rate: errors
    over answers and errors (None when both are 0)."""
    answered, errors = counts["questions_answered"], counts["errors"]
    per_s = {"questions_per_s": counts["questions_asked"], "answers_per_s": answered, "errors_per_s": errors}
    return {**{name: n / seconds if seconds > 0 else None for name, n in per_s.items()},
            "error_rate": errors / (answered + errors) if answered + errors else None}


def covered_seconds(window_start: int, window_end: int, run_start: int, run_end: int) -> float:
    """The seconds of ``[window_start, window_end)`` inside ``[run_start, run_end]`` (times in microseconds)."""
    return max(0, min(window_end, run_end) - max(window_start, run_start)) / 1_000_000


def schemas(goodput: bool) -> tuple[pl.Schema, pl.Schema]:
    """The summary's and the totals' columns (with the goodput ones when there are goodput limits)."""
    if not goodput:
        return SUMMARY_SCHEMA, TOTALS_SCHEMA
    return SUMMARY_SCHEMA | GOODPUT_SCHEMA, TOTALS_SCHEMA | GOODPUT_SCHEMA


def summary_frame(rows: list[dict[str, object]], schema: pl.Schema = SUMMARY_SCHEMA) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema)


def summed_totals(cells: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Each session's totals over windows' per-session counts."""
    if not cells:
        return pl.DataFrame(schema={"session_id": pl.String, **dict.fromkeys(TOTALS, pl.Int64)})
    return (pl.concat(cells).group_by("session_id")
            .agg(pl.col(c).sum().alias(t) for c, t in zip(SESSION_COUNTED, TOTALS, strict=True)))


def carried(before: pl.DataFrame, cells: pl.DataFrame | None) -> pl.DataFrame:
    """The running totals after a window: those before it plus its per-session counts."""
    if cells is None or not cells.height:
        return before
    return (before.join(cells.select("session_id", *SESSION_COUNTED), on="session_id", how="full", coalesce=True)
            .select("session_id", *((pl.col(t).fill_null(0) + pl.col(c).fill_null(0)).alias(t)
                                    for c, t in zip(SESSION_COUNTED, TOTALS, strict=True))))


def window_rows(facts: pl.DataFrame, cells: pl.DataFrame | None, totals: pl.DataFrame, k: int,
                every: int) -> pl.DataFrame:
    """Window ``k``'s per-session rows: the sessions alive in it (:mod:`tracker.sessions`), their figures in it
    and their running totals up to its end."""
    alive = facts.filter((pl.col("ks") <= k) & (pl.col("ke").is_null() | (pl.col("ke") >= k)))
    rows = alive.join(totals, on="session_id", how="left")
    if cells is not None:
        rows = rows.join(cells, on="session_id", how="left")
    else:
        rows = rows.with_columns(
            *(pl.lit(None, pl.Int64).alias(c) for c in SESSION_COUNTED), pl.lit(None, pl.Int128).alias("output_tokens"),
            *(pl.lit(None, pl.Float64).alias(c) for c in (*(f"response_time_ms_{s}" for s in ("mean", "p95", "max")),
                                                           "ttft_ms_p95")))
    answered, errors = pl.col("questions_answered").fill_null(0), pl.col("errors").fill_null(0)
    return rows.sort("session_id").select(
        pl.lit(k * every, pl.Int64).alias("window_start"), pl.lit((k + 1) * every, pl.Int64).alias("window_end"),
        "session_id", "username", "course_numbers",
        pl.when(pl.col("end_ts").is_not_null() & (pl.col("end_ts") < (k + 1) * every))
        .then(pl.col("how")).otherwise(pl.lit("active")).alias("status"),
        *(pl.col(c).fill_null(0).cast(pl.Int64) for c in SESSION_COUNTED),
        *(pl.col(f"response_time_ms_{s}").cast(pl.Float64) for s in ("mean", "p95", "max")),
        pl.col("ttft_ms_p95").cast(pl.Float64), pl.col("output_tokens").fill_null(0).cast(pl.Int128),
        pl.when(answered + errors > 0).then(errors / (answered + errors)).otherwise(None).cast(pl.Float64)
        .alias("error_rate"),
        *(pl.col(t).fill_null(0).cast(pl.Int64) for t in TOTALS),
    )


def active_counts(ks: Sequence[int], ke: Sequence[int | None], k_min: int,
                  k_max: int) -> tuple[list[int], list[int]]:
    """Sessions active in, and active at the end of, each window from ``k_min`` to ``k_max``, from each session's
    start and end windows (:mod:`tracker.sessions`): active in ``[ks, ke]``, at the end in ``[ks, ke - 1]``."""
    n = k_max - k_min + 1
    alive, at_end = [0] * (n + 1), [0] * (n + 1)
    for start, end in zip(ks, ke, strict=True):
        for steps, last in ((alive, end), (at_end, None if end is None else end - 1)):
            if last is not None and last < start:
                continue
            lo = max(start, k_min) - k_min
            hi = n if last is None else min(last, k_max) - k_min + 1
            if lo < hi:
                steps[lo] += 1
                steps[hi] -= 1
    running_a = running_e = 0
    active, ending = [], []
    for i in range(n):
        running_a += alive[i]
        running_e += at_end[i]
        active.append(running_a)
        ending.append(running_e)
    return active, ending
