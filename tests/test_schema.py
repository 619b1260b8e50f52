"""The JSON Schema in schemas/ is the contract: the emitter, the fixtures and the decoder agree with it."""

from __future__ import annotations

import json
import math
from glob import glob
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import EVENTS, record
from tracker import events
from tracker.decoder import Decoder, Rejected
from tracker.emitter import EventLog
from tracker.errors import EventValidationError
from tracker.events import event_from_record

ROOT = Path(__file__).parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
FIXTURE_LOGS = sorted(p for p in glob(str(ROOT / "fixtures" / "**" / "*.jsonl"), recursive=True)
                      if "expected" not in Path(p).parts)


def _schema_ok(value: Any) -> bool:
    return bool(VALIDATOR.is_valid(value))


def _decoder_ok(value: Any) -> bool:
    try:
        event_from_record(value)
    except EventValidationError:
        return False
    return True


class TestSchema:
    def test_is_a_valid_2020_12_schema(self) -> None:
        """The schema file itself is valid JSON Schema 2020-12."""
        jsonschema.Draft202012Validator.check_schema(SCHEMA)

    def test_bounds_are_the_codes(self) -> None:
        """ts, seq and every integer field have the bounds tracker.events checks: the ts range and signed 64 bits."""
        props, defs = SCHEMA["properties"], SCHEMA["$defs"]
        assert (props["ts"]["minimum"], props["ts"]["exclusiveMaximum"]) == (events.MIN_TS, events.END_TS)
        assert (props["seq"]["minimum"], props["seq"]["maximum"]) == (1, events.INT64_MAX)
        assert (defs["count"]["minimum"], defs["count"]["maximum"]) == (0, events.INT64_MAX)
        registered = next(part["then"] for part in SCHEMA["allOf"]
                          if part["if"]["properties"]["type"]["const"] == "session_registered")
        items = registered["properties"]["course_numbers"]["items"]
        assert (items["minimum"], items["maximum"]) == (events.INT64_MIN, events.INT64_MAX)
        assert defs["duration"]["maximum"] == 1.7976931348623157e308  # finite: no JSON text means infinity
        assert "duplicate" in SCHEMA["description"]

    @settings(max_examples=200, deadline=None)
    @given(EVENTS, st.text(min_size=1, max_size=20))
    def test_emitted_events_validate(self, tmp_path_factory: pytest.TempPathFactory,
                                     typed: tuple[str, dict[str, Any]], session_id: str) -> None:
        """Every line the emitter writes is valid under the schema."""
        path = tmp_path_factory.mktemp("s") / "log.jsonl"
        with EventLog(path) as log:
            log.emit(typed[0], session_id, **typed[1])
        VALIDATOR.validate(orjson.loads(path.read_bytes()))

    @pytest.mark.parametrize("path", FIXTURE_LOGS, ids=lambda p: str(Path(p).relative_to(ROOT)))
    def test_fixture_lines_agree_with_the_schema(self, path: str) -> None:
        """In every fixture log, the lines the decoder accepts validate, and the JSON objects it rejects do not."""
        decoder = Decoder(max_line_bytes=4096)
        checked = 0
        with open(path, "rb") as stream:
            for item in decoder.decode_stream(stream):
                if isinstance(item, Rejected):
                    if item.reason in ("not_object", "schema", "unknown_type", "unsupported_version",
                                       "implausible_time"):
                        assert not _schema_ok(orjson.loads(item.raw)), item.describe()
                        checked += 1
                else:
                    VALIDATOR.validate(item.to_record())
                    checked += 1
        assert checked > 0


MUTATIONS = st.sampled_from([
    ("v", 2), ("v", 0), ("v", "1"), ("ts", -1), ("ts", 253402300800000000), ("ts", "now"), ("seq", 0),
    ("seq", 1), ("event_id", ""), ("event_id", "e" * 129), ("writer", 3), ("session_id", ""),
    ("session_id", "s" * 257), ("type", "other"), ("type", None), ("username", ""), ("username", 5),
    ("course_numbers", [1, "2"]), ("course_numbers", "1"), ("course_numbers", list(range(1001))),
    ("response_time_ms", -0.5), ("response_time_ms", 0), ("response_time_ms", "1"), ("response_time_ms", None),
    ("input_tokens", -1), ("input_tokens", 3), ("question_text", "q" * 1001), ("question_text", "q"),
    ("error", ""), ("kind", "timeout"), ("reason", None), ("extra", {"any": "thing"}), ("question_id", None),
    # the edges of the contract: signed 64-bit integers, ts in [2000-01-01, 2100-01-01), finite durations
    ("ts", 946684800000000), ("ts", 946684799999999), ("ts", 4102444799999999), ("ts", 4102444800000000),
    ("ts", 1795557600), ("ts", 0), ("ts", 2**63), ("seq", 2**63 - 1), ("seq", 2**63), ("v", 2**63),
    ("input_tokens", 2**63 - 1), ("input_tokens", 2**63), ("output_tokens", 0), ("output_tokens", 2**64),
    ("course_numbers", [-(2**63), 2**63 - 1]), ("course_numbers", [2**63]), ("course_numbers", [-(2**63) - 1]),
    ("response_time_ms", 1.7976931348623157e308), ("response_time_ms", math.inf), ("response_time_ms", -0.0),
    ("response_time_ms", 2**63), ("time_to_first_token_ms", math.inf), ("time_to_first_token_ms", 0),
])
TYPES = st.sampled_from([
    record(1, "s", "session_registered", username="u", course_numbers=[1]),
    record(1, "s", "question_asked"),
    record(1, "s", "question_answered", response_time_ms=1.0),
    record(1, "s", "cycle_completed"),
    record(1, "s", "error", error="e"),
    record(1, "s", "session_unregistered", reason="r"),
])


class TestDecoderAgreesWithSchema:
    @settings(max_examples=400, deadline=None)
    @given(TYPES, st.lists(MUTATIONS, max_size=3), st.lists(st.sampled_from(
        ["v", "ts", "event_id", "writer", "seq", "session_id", "type", "username", "response_time_ms",
         "error", "reason"]), max_size=2))
    def test_accepts_exactly_what_the_schema_accepts(
        self, base: dict[str, Any], changes: list[tuple[str, Any]], removed: list[str]
    ) -> None:
        """For mutated records, the decoder accepts a record if and only if the schema does."""
        rec = dict(base)
        for key, value in changes:
            rec[key] = value
        for key in removed:
            rec.pop(key, None)
        assert _decoder_ok(rec) == _schema_ok(rec), rec
