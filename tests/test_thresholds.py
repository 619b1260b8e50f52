"""Tests for tracker.thresholds: parsing, checking on the windows and the run, and the three renderings."""

from __future__ import annotations

import operator
import xml.etree.ElementTree as ET
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import T0
from tracker.errors import ThresholdError, TrackerError
from tracker.render import csv_bytes
from tracker.tables import SUMMARY_SCHEMA, TOTALS_SCHEMA, summary_frame
from tracker.thresholds import (
    Threshold,
    Verdict,
    evaluate,
    failed,
    junit_xml,
    parse_threshold,
    report_lines,
    verdicts_frame,
)

MINUTE = 60_000_000
W0 = T0 + 20 * MINUTE  # 2026-11-24T22:20:00Z
FORM = "expected [run:|window:]COLUMN OP NUMBER"
GOODPUT: dict[str, pl.DataType] = {"goodput_per_s": pl.Float64(), "goodput_ratio": pl.Float64()}


def parse(text: str) -> Threshold:
    return parse_threshold(text, SUMMARY_SCHEMA, TOTALS_SCHEMA)


def window(i: int, **values: object) -> dict[str, object]:
    """Summary row of the i-th 5-minute window from 22:20, the given values and None elsewhere."""
    return {"window_start": W0 + i * 5 * MINUTE, "window_end": W0 + (i + 1) * 5 * MINUTE, **values}


def totals(**values: object) -> pl.DataFrame:
    return pl.DataFrame([values], schema=TOTALS_SCHEMA)


def rows(verdicts: list[Verdict]) -> list[tuple[str, str, object, bool]]:
    return [(v.threshold.text, v.scope, v.value, v.ok) for v in verdicts]


class TestParse:
    @pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
    def test_every_operator(self, op: str) -> None:
        """Each of < <= > >= is read, with the column, the limit and the whole-run-and-windows scope."""
        assert parse(f"ttft_ms_p95{op}500") == Threshold("ttft_ms_p95", op, 500.0, "all", f"ttft_ms_p95{op}500")

    @pytest.mark.parametrize(("prefix", "scope"), [("", "all"), ("run:", "run"), ("window:", "window")])
    def test_prefixes(self, prefix: str, scope: str) -> None:
        """No prefix checks both, run: only the run, window: only the windows; the prefix stays in the text."""
        threshold = parse(f"{prefix}error_rate<0.05")
        assert (threshold.scope, threshold.text) == (scope, f"{prefix}error_rate<0.05")

    @pytest.mark.parametrize("text", ["ttft_ms_p95 < 500", "  ttft_ms_p95<500 ", "ttft_ms_p95\t<\t500"])
    def test_spaces_around_tokens(self, text: str) -> None:
        """Spaces around the tokens are allowed and left out of the canonical text."""
        assert parse(text).text == "ttft_ms_p95<500"

    def test_spaces_after_prefix(self) -> None:
        """A prefix may be followed by spaces too."""
        assert parse(" run: ttft_ms_p95 >= 1.5 ").text == "run:ttft_ms_p95>=1.5"

    @pytest.mark.parametrize(("number", "limit"), [("500.50", 500.5), ("1e3", 1000.0), ("+2", 2.0), ("-0.5", -0.5),
                                                   (".25", 0.25)])
    def test_number_kept_as_typed(self, number: str, limit: float) -> None:
        """The limit is the number's value; the canonical text keeps it as typed."""
        threshold = parse(f"answers_per_s>{number}")
        assert (threshold.limit, threshold.text) == (limit, f"answers_per_s>{number}")

    def test_totals_only_column(self) -> None:
        """A column only the whole-run row has (sessions) is accepted without a prefix and with run:."""
        assert parse("sessions>=2").scope == "all"
        assert parse("run:max_active_sessions>=100").scope == "run"

    def test_unknown_column_is_quoted_with_the_valid_ones(self) -> None:
        """A column in neither table: the message quotes it and lists the numeric columns."""
        with pytest.raises(ThresholdError, match="unknown column 'ttft_p95'") as info:
            parse("ttft_p95<500")
        assert "ttft_ms_p95" in str(info.value)
        assert "duration_s" in str(info.value)
        assert "window_start" not in str(info.value)

    @pytest.mark.parametrize("text", ["window_start>0", "run:run_end>0", "window_end<1"])
    def test_time_columns_are_not_thresholds(self, text: str) -> None:
        """The windows' and the run's bounds are not figures."""
        with pytest.raises(ThresholdError, match="unknown column"):
            parse(text)

    def test_goodput_without_goodput_says_so(self) -> None:
        """goodput_ratio when the reports lack it: the message says it needs --goodput."""
        with pytest.raises(ThresholdError, match=r"'goodput_ratio' is only reported with --goodput"):
            parse("goodput_ratio>=0.9")

    def test_goodput_with_goodput(self) -> None:
        """With the goodput columns in the schemas, they are thresholds like any other."""
        summary, run = pl.Schema({**SUMMARY_SCHEMA, **GOODPUT}), pl.Schema({**TOTALS_SCHEMA, **GOODPUT})
        assert parse_threshold("run:goodput_ratio>=0.9", summary, run).column == "goodput_ratio"

    @pytest.mark.parametrize("column", ["active_sessions", "active_at_end", "seconds"])
    def test_run_prefix_on_a_window_only_column(self, column: str) -> None:
        """run: on a column the whole-run row lacks: the message says so and lists the ones it has."""
        with pytest.raises(ThresholdError, match=f"whole-run row has no column '{column}'") as info:
            parse(f"run:{column}>1")
        assert "max_active_sessions" in str(info.value)

    def test_window_prefix_on_a_run_only_column(self) -> None:
        """window: on a column the windows lack is an error quoting it."""
        with pytest.raises(ThresholdError, match="windows have no column 'duration_s'"):
            parse("window:duration_s>1")

    @pytest.mark.parametrize("number", ["nan", "NaN", "inf", "-inf", "1e999", "abc", "", "1_000", "0x10", "5ms",
                                        "\u0664\u0660\u0660", "\uff14\uff10\uff10"])  # Arabic-Indic, full-width digits
    def test_bad_number(self, number: str) -> None:
        """Not a finite decimal number: the message quotes the whole expression and gives the expected form."""
        text = f"ttft_ms_p95<{number}"
        with pytest.raises(ThresholdError, match="NUMBER") as info:
            parse(text)
        assert f"'{text}'" in str(info.value)
        assert FORM in str(info.value)

    @pytest.mark.parametrize("op", ["==", "=<", "=>", "!=", "<>", "=", "<<", "!"])
    def test_bad_operator(self, op: str) -> None:
        """Any other operator: the message quotes the whole expression and gives the expected form."""
        text = f"ttft_ms_p95{op}500"
        with pytest.raises(ThresholdError) as info:
            parse(text)
        assert f"'{text}'" in str(info.value)
        assert FORM in str(info.value)

    @pytest.mark.parametrize("text", ["", "   ", "<500", "ttft_ms_p95", "ttft_ms_p95 500", "runs:ttft_ms_p95<500",
                                      "RUN:ttft_ms_p95<500", "run:window:ttft_ms_p95<5", ":ttft_ms_p95<5",
                                      "ttft_ms_p95 < 500 ms", "ttft_ms_p95 < = 500"])
    def test_malformed(self, text: str) -> None:
        """Missing parts, unknown prefixes and trailing words: the whole expression quoted, the form given."""
        with pytest.raises(ThresholdError) as info:
            parse(text)
        assert f"{text!r}" in str(info.value)
        assert FORM in str(info.value)

    def test_error_is_a_tracker_and_value_error(self) -> None:
        """ThresholdError is caught as a TrackerError and as a ValueError."""
        with pytest.raises(TrackerError):
            parse("x<1")
        with pytest.raises(ValueError, match="unknown column"):
            parse("x<1")


def _written(value: float, places: int) -> float:
    return float(Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN))


class TestPasses:
    def test_float_rounded_to_three_decimals(self) -> None:
        """500.0004 is written 500.000, so it satisfies <=500; 500.0006 is written 500.001 and does not."""
        assert parse("ttft_ms_p95<=500").passes(500.0004)
        assert not parse("ttft_ms_p95<=500").passes(500.0006)
        assert not parse("ttft_ms_p95<500").passes(499.9996)

    def test_error_rate_rounded_to_four_decimals(self) -> None:
        """error_rate 0.05004 is written 0.0500, so it satisfies <=0.05; 0.05006 (0.0501) does not."""
        assert parse("error_rate<=0.05").passes(0.05004)
        assert not parse("error_rate<=0.05").passes(0.05006)

    def test_integers_exact(self) -> None:
        """An integer is compared as it is."""
        assert parse("errors<=3").passes(3)
        assert not parse("errors<=3").passes(4)
        assert not parse("errors<3").passes(3)

    def test_no_value_never_passes(self) -> None:
        """None satisfies no threshold."""
        assert not parse("ttft_ms_p95<500").passes(None)
        assert not parse("ttft_ms_p95>500").passes(None)

    @given(value=st.floats(-1e9, 1e9), limit=st.floats(-1e9, 1e9) | st.sampled_from([0.05, 500.0, 0.0]),
           op=st.sampled_from(["<", "<=", ">", ">="]), column=st.sampled_from(["ttft_ms_p95", "error_rate"]))
    def test_agrees_with_operator_on_the_written_value(self, value: float, limit: float, op: str,
                                                       column: str) -> None:
        """passes(value) is the operator module's verdict on the value rounded half-even like the CSV."""
        compare: dict[str, Callable[[float, float], bool]] = {
            "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
        threshold = Threshold(column, op, limit, "all", f"{column}{op}{limit}")
        places = 4 if column == "error_rate" else 3
        assert threshold.passes(value) == compare[op](_written(value, places), limit)


class TestEvaluate:
    def test_order_windows_in_time_then_run(self) -> None:
        """Thresholds in the order given; each one's windows in time order (whatever the rows' order), run last."""
        summary = summary_frame([window(1, ttft_ms_p95=701.2, error_rate=0.1),
                                 window(0, ttft_ms_p95=400.0, error_rate=0.0)])
        verdicts = evaluate([parse("error_rate<=0.05"), parse("ttft_ms_p95<500")], summary,
                            totals(ttft_ms_p95=612.4, error_rate=0.023))
        assert rows(verdicts) == [
            ("error_rate<=0.05", "2026-11-24T22:20:00Z", 0.0, True),
            ("error_rate<=0.05", "2026-11-24T22:25:00Z", 0.1, False),
            ("error_rate<=0.05", "run", 0.023, True),
            ("ttft_ms_p95<500", "2026-11-24T22:20:00Z", 400.0, True),
            ("ttft_ms_p95<500", "2026-11-24T22:25:00Z", 701.2, False),
            ("ttft_ms_p95<500", "run", 612.4, False),
        ]
        assert [v.window_start for v in verdicts[:3]] == [W0, W0 + 5 * MINUTE, None]

    def test_value_is_the_written_value(self) -> None:
        """A verdict's value is the value rounded as the files write it."""
        verdicts = evaluate([parse("run:ttft_ms_p95<=500")], summary_frame([]), totals(ttft_ms_p95=500.0004))
        assert rows(verdicts) == [("run:ttft_ms_p95<=500", "run", 500.0, True)]

    def test_null_window_skipped(self) -> None:
        """A window without a value gives no verdict."""
        summary = summary_frame([window(0, ttft_ms_p95=None), window(1, ttft_ms_p95=300.0)])
        verdicts = evaluate([parse("window:ttft_ms_p95<500")], summary, totals())
        assert rows(verdicts) == [("window:ttft_ms_p95<500", "2026-11-24T22:25:00Z", 300.0, True)]

    def test_null_run_value_fails(self) -> None:
        """A run without a value fails, with no value: a gate that cannot be evaluated does not pass."""
        verdicts = evaluate([parse("ttft_ms_p95<500")], summary_frame([window(0)]), totals(ttft_ms_p95=None))
        assert rows(verdicts) == [("ttft_ms_p95<500", "run", None, False)]
        assert failed(verdicts)

    def test_window_only_column_checked_on_windows(self) -> None:
        """A column the run's row lacks (active_sessions), without a prefix: only the windows."""
        summary = summary_frame([window(0, active_sessions=2), window(1, active_sessions=5)])
        verdicts = evaluate([parse("active_sessions>=3")], summary, totals(max_active_sessions=5))
        assert rows(verdicts) == [("active_sessions>=3", "2026-11-24T22:20:00Z", 2, False),
                                  ("active_sessions>=3", "2026-11-24T22:25:00Z", 5, True)]

    def test_run_only_column_checked_on_run(self) -> None:
        """A column only the run's row has (duration_s), without a prefix: only the run."""
        verdicts = evaluate([parse("duration_s>=600")], summary_frame([window(0)]), totals(duration_s=599.9996))
        assert rows(verdicts) == [("duration_s>=600", "run", 600.0, True)]

    def test_prefixes_restrict(self) -> None:
        """run: gives only the run's verdict, window: only the windows'."""
        summary = summary_frame([window(0, errors=1)])
        verdicts = evaluate([parse("run:errors<1"), parse("window:errors<1")], summary, totals(errors=0))
        assert rows(verdicts) == [("run:errors<1", "run", 0, True),
                                  ("window:errors<1", "2026-11-24T22:20:00Z", 1, False)]

    def test_duplicates_collapsed(self) -> None:
        """The same threshold given twice (even spaced differently) is checked once; another spelling is not."""
        given = [parse("run:errors<1"), parse("run:errors < 1"), parse("run:errors<1.0"), parse("run:errors<1")]
        verdicts = evaluate(given, summary_frame([]), totals(errors=0))
        assert [v.threshold.text for v in verdicts] == ["run:errors<1", "run:errors<1.0"]

    def test_column_the_frames_lack(self) -> None:
        """A threshold parsed with --goodput schemas, checked on frames without goodput: ThresholdError."""
        summary, run = pl.Schema({**SUMMARY_SCHEMA, **GOODPUT}), pl.Schema({**TOTALS_SCHEMA, **GOODPUT})
        threshold = parse_threshold("goodput_ratio>0.9", summary, run)
        with pytest.raises(ThresholdError, match="goodput_ratio"):
            evaluate([threshold], summary_frame([]), totals())

    def test_extra_columns_of_the_frames(self) -> None:
        """Columns the frames have beyond the standard schemas (goodput) are checked like the others."""
        summary = summary_frame([window(0)]).with_columns(goodput_ratio=pl.lit(0.85))
        run = totals().with_columns(goodput_ratio=pl.lit(0.95))
        threshold = parse_threshold("goodput_ratio>=0.9", summary.schema, run.schema)
        assert rows(evaluate([threshold], summary, run)) == [
            ("goodput_ratio>=0.9", "2026-11-24T22:20:00Z", 0.85, False), ("goodput_ratio>=0.9", "run", 0.95, True)]

    def test_failed(self) -> None:
        """failed is true when any verdict failed, false for none or all passing."""
        ok = evaluate([parse("run:errors<1")], summary_frame([]), totals(errors=0))
        bad = evaluate([parse("run:errors<1")], summary_frame([]), totals(errors=1))
        assert (failed([]), failed(ok), failed(ok + bad)) == (False, False, True)


class TestVerdictsFrame:
    def test_csv_bytes(self) -> None:
        """Through the reports' CSV writer: the header, values rounded like the reports, true/false, empty for none."""
        summary = summary_frame([window(0, ttft_ms_p95=701.2, errors=12)])
        verdicts = evaluate([parse("ttft_ms_p95<500"), parse("error_rate<=0.05"), parse("window:errors<=12")],
                            summary, totals(ttft_ms_p95=612.4, error_rate=0.023))
        assert csv_bytes(verdicts_frame(verdicts)) == (
            b"scope,threshold,value,ok\n"
            b"2026-11-24T22:20:00Z,ttft_ms_p95<500,701.200,false\n"
            b"run,ttft_ms_p95<500,612.400,false\n"
            b"run,error_rate<=0.05,0.0230,true\n"
            b"2026-11-24T22:20:00Z,window:errors<=12,12,true\n")

    def test_empty(self) -> None:
        """No verdicts: the header alone."""
        assert csv_bytes(verdicts_frame([])) == b"scope,threshold,value,ok\n"

    @pytest.mark.parametrize("value", [500.0004, 0.05004, 0.0625, 0.00015, 1 / 3, 2.675, 123456.78951])
    def test_values_match_the_summary_file(self, value: float) -> None:
        """Every float column's value text is the summary file's cell for it (goodput's included)."""
        summary = summary_frame([window(0)]).with_columns(goodput_per_s=pl.lit(None, pl.Float64),
                                                          goodput_ratio=pl.lit(None, pl.Float64))
        floats = [c for c, dtype in summary.schema.items() if dtype == pl.Float64]
        summary = summary.with_columns(pl.lit(value, pl.Float64).alias(c) for c in floats)
        header, cells = csv_bytes(summary).decode().splitlines()
        written = dict(zip(header.split(","), cells.split(","), strict=True))
        thresholds = [parse_threshold(f"window:{c}>-1", summary.schema, summary.schema) for c in floats]
        frame = verdicts_frame(evaluate(thresholds, summary, totals()))
        assert dict(zip(frame["threshold"].str.slice(7).str.strip_suffix(">-1"), frame["value"], strict=True)) == {
            c: written[c] for c in floats}


class TestJunitXml:
    def test_parsed_back(self) -> None:
        """A testcase per verdict, failures counted and explained; a threshold on windows none of which had a value
        fails (it could not be checked)."""
        thresholds = [parse("ttft_ms_p95<500"), parse("window:tpot_ms_p95<50"), parse("run:errors<1")]
        verdicts = evaluate(thresholds, summary_frame([window(0, ttft_ms_p95=400.0), window(1, ttft_ms_p95=612.4)]),
                            totals(ttft_ms_p95=450.0, errors=None))
        data = junit_xml(verdicts, thresholds)
        assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
        suites = ET.fromstring(data)
        assert suites.tag == "testsuites"
        (suite,) = suites.findall("testsuite")
        assert (suite.get("name"), suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (
            "tracker thresholds", "5", "3", "0")
        cases = suite.findall("testcase")
        assert [(c.get("classname"), c.get("name")) for c in cases] == [
            ("tracker.thresholds", "ttft_ms_p95<500 [2026-11-24T22:20:00Z]"),
            ("tracker.thresholds", "ttft_ms_p95<500 [2026-11-24T22:25:00Z]"),
            ("tracker.thresholds", "ttft_ms_p95<500 [run]"),
            ("tracker.thresholds", "window:tpot_ms_p95<50 [windows]"),
            ("tracker.thresholds", "run:errors<1 [run]")]
        failure = cases[1].find("failure")
        assert failure is not None
        assert (failure.get("message"), failure.get("type")) == (
            "value 612.400 does not satisfy ttft_ms_p95<500", "threshold")
        unchecked = cases[3].find("failure")
        assert unchecked is not None
        assert unchecked.get("message") == (
            "no window has a value for tpot_ms_p95: window:tpot_ms_p95<50 cannot be checked, so it fails")
        no_value = cases[4].find("failure")
        assert no_value is not None
        assert "no value" in (no_value.get("message") or "")
        assert [c.find("failure") is None for c in (cases[0], cases[2])] == [True, True]

    def test_deterministic(self) -> None:
        """The same verdicts give the same bytes."""
        thresholds = [parse("run:errors<1")]
        verdicts = evaluate(thresholds, summary_frame([]), totals(errors=0))
        assert junit_xml(verdicts, thresholds) == junit_xml(list(verdicts), list(thresholds))


class TestReportLines:
    def test_small_case(self) -> None:
        """A header counting failed thresholds, then one aligned line per threshold."""
        thresholds = [parse("ttft_ms_p95<500"), parse("error_rate <= 0.05"), parse("window:tpot_ms_p95<50"),
                      parse("run:ttft_ms_mean<1"), parse("ttft_ms_p95<500")]
        summary = summary_frame([window(0, ttft_ms_p95=400.0, error_rate=0.01),
                                 window(1, ttft_ms_p95=701.2, error_rate=0.02),
                                 window(2, ttft_ms_p95=800.0, error_rate=0.03)])
        verdicts = evaluate(thresholds, summary, totals(ttft_ms_p95=612.4, error_rate=0.023))
        assert report_lines(verdicts, thresholds) == [
            "thresholds: 3 of 4 failed",
            "  FAIL  ttft_ms_p95<500        run 612.400; 2 of 3 windows failed (first at 2026-11-24T22:25:00Z: "
            "701.200)",
            "  ok    error_rate<=0.05       run 0.0230; 3 windows passed",
            "  FAIL  window:tpot_ms_p95<50  no window had a value",
            "  FAIL  run:ttft_ms_mean<1     run: no value",
        ]

    def test_all_passed(self) -> None:
        """Every threshold passing: 'all N passed'; one window is said in the singular."""
        thresholds = [parse("errors<1"), parse("run:sessions>=1")]
        verdicts = evaluate(thresholds, summary_frame([window(0, errors=0)]), totals(errors=0, sessions=3))
        assert report_lines(verdicts, thresholds) == [
            "thresholds: all 2 passed",
            "  ok    errors<1         run 0; 1 window passed",
            "  ok    run:sessions>=1  run 3",
        ]

    def test_unchecked_fails(self) -> None:
        """A window-only threshold that no window had a value for fails, like a run without a value."""
        thresholds = [parse("run:errors<1"), parse("window:ttft_ms_p95<1")]
        verdicts = evaluate(thresholds, summary_frame([window(0)]), totals(errors=0))
        assert report_lines(verdicts, thresholds)[0] == "thresholds: 1 of 2 failed"
        assert [(v.scope, v.value, v.ok) for v in verdicts] == [("run", 0, True), ("windows", None, False)]
