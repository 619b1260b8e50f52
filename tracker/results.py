"""What a command found, as one JSON object for scripts (``--json``): the numbers of its human summary.

Each object has ``command``, ``version`` (of this format; see the schemas in
``schemas/``) and ``exit_status``, then the command's own fields. The
whole-run figures (``run``) are the totals file's cells, typed: an integer, a
number as the file writes it (3 decimals, 4 for rates between 0 and 1), a
time as its ISO-8601 text, or null for an empty cell. A value JSON has no
number for (a mean of huge times overflowing) is the file's text: ``"inf"``,
``"-inf"`` or ``"NaN"``, never null.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import orjson
import polars as pl

from .render import csv_bytes
from .thresholds import Verdict

if TYPE_CHECKING:
    from .compare import GateVerdict, Run

__all__ = ("VERSION", "compare_result", "dumps", "run_figures", "verdicts_json")

#: The version of these objects' format (``version`` in each): raised when a field changes meaning or goes.
VERSION: Final = 1


def dumps(result: Mapping[str, object]) -> str:
    """The object as indented JSON text, keys in the order given. (A whole number beyond 64 bits, a token sum,
    is written by the standard library's encoder: orjson refuses it; the two write the same text otherwise.)"""
    try:
        return orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return json.dumps(result, indent=2, ensure_ascii=False)


#: The totals' columns written as times (ISO-8601 text), not numbers.
_TIMES: Final = ("run_start", "run_end")


def _typed(name: str, text: str, dtype: pl.DataType) -> object:
    if text == "":
        return None
    if name in _TIMES:
        return text
    if dtype.is_integer():
        return int(text)
    if dtype.is_float():
        return _number(float(text))
    return text


def _number(value: float) -> float | str:
    """A float, or the CSV's text for one JSON cannot hold (``inf``, ``-inf``, ``NaN``)."""
    return value if math.isfinite(value) else "NaN" if math.isnan(value) else "inf" if value > 0 else "-inf"


def run_figures(totals: pl.DataFrame) -> dict[str, object]:
    """The totals row as the file writes it, each cell typed (empty: null; times: their ISO text)."""
    (row,) = csv.DictReader(io.StringIO(csv_bytes(totals).decode()))
    return {name: _typed(name, row[name], dtype) for name, dtype in totals.schema.items()}


def verdicts_json(verdicts: Iterable[Verdict]) -> list[dict[str, object]]:
    """Each threshold verdict: its scope (a window's start, ``run`` or ``windows``), the threshold, the value as the
    files write it (null when none) and whether it held."""
    return [{"scope": v.scope, "threshold": v.threshold.text,
             "value": _number(v.value) if isinstance(v.value, float) else v.value, "ok": v.ok} for v in verdicts]


def compare_result(a: Run, b: Run, rows: Sequence[tuple[str, str, str, str]], verdicts: Sequence[GateVerdict],
                   html: Path | None, status: int) -> dict[str, object]:
    """``tracker compare``'s object: the two runs, the figures side by side, the gates."""

    def run(r: Run) -> dict[str, object]:
        return {"folder": r.folder, "run_start": r.totals.get("run_start") or None,
                "run_end": r.totals.get("run_end") or None, "windows": len(r.windows)}

    def cell(text: str) -> int | float | str | None:
        if text in ("", "-"):
            return None
        return int(text) if text.lstrip("-").isdigit() else _number(float(text))

    return {"command": "compare", "version": VERSION, "exit_status": status, "run_a": run(a), "run_b": run(b),
            "figures": [{"figure": name, "a": cell(va), "b": cell(vb), "change": change}
                        for name, va, vb, change in rows],
            "gates": [{"gate": v.gate.text, "ok": v.ok, "detail": v.detail} for v in verdicts],
            "html": None if html is None else str(html)}
