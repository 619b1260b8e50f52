"""The command line's option values: durations with units and bounded numbers, each checked with a message that
quotes the bad value (argparse turns it into a usage error, exit status 2). Imports nothing heavy."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from .limits import MAX_INTERVAL_S

__all__ = (
    "MAX_DEMO_DURATION_S", "MAX_DEMO_SESSIONS", "MAX_GRACE_S", "MAX_LINE_BYTES", "MAX_MEMORY_MIB", "MAX_SEED",
    "demo_duration", "duration", "grace", "interval", "max_line_bytes", "memory_mib", "seconds", "seed",
    "goodput", "session_timeout", "sessions",
    "whole", "nats_url", "nats_name", "nats_subject", "nats_timeout", "path",
)

# The command line's own bounds: anything beyond is a typo, refused with a usage error.
MAX_GRACE_S: Final = 86_400
MAX_DEMO_DURATION_S: Final = 86_400
MAX_MEMORY_MIB: Final = 1 << 20  # 1 TiB
MAX_LINE_BYTES: Final = 1 << 30  # 1 GiB
MAX_DEMO_SESSIONS: Final = 10_000
MAX_SEED: Final = 2**63 - 1


def _bad(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


#: More digits than this is beyond every bound (and int() refuses thousands of digits).
_MAX_DIGITS: Final = 30
_WHOLE: Final = re.compile(r"[+-]?[0-9]+")
_DURATION: Final = re.compile(r"([0-9]+(?:\.[0-9]{1,30})?|\.[0-9]{1,30})([smhd]?)")
_UNIT_S: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION_FORMS: Final = "90, 90s, 5m, 1.5h or 2d"


def whole(text: str, minimum: int, maximum: int, shown_max: str = "") -> int:
    """A whole number from ``minimum`` to ``maximum`` (``shown_max`` says the maximum in the message)."""
    if not _WHOLE.fullmatch(text):
        raise _bad(f"expected a whole number, got {text!r}")
    digits = text.lstrip("+-").lstrip("0")
    value = int(text) if len(digits) <= _MAX_DIGITS else (-1 if text.startswith("-") else 1) * 10**_MAX_DIGITS
    if value < minimum:
        raise _bad(f"must be >= {minimum}, got {text!r}")
    if value > maximum:
        raise _bad(f"must be at most {shown_max or maximum}, got {text!r}")
    return value


def seconds(text: str) -> tuple[int, int]:
    """A duration (``90``, ``90s``, ``5m``, ``1.5h``, ``2d``) as an exact fraction of seconds: (numerator,
    denominator)."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise _bad(f"expected a duration such as {_DURATION_FORMS}, got {text!r}")
    number, unit = match.groups()
    whole, _, fraction = number.partition(".")
    if len(whole.lstrip("0")) > _MAX_DIGITS:
        return 10**_MAX_DIGITS, 1
    scale = 10 ** len(fraction)
    return (int(whole or "0") * scale + int(fraction or "0")) * _UNIT_S[unit], scale


def interval(text: str) -> int:
    """A window length: whole seconds, 1 s to 366 days (the engine's bounds)."""
    numerator, denominator = seconds(text)
    if numerator % denominator:
        raise _bad(f"must be whole seconds, got {text!r}")
    value = numerator // denominator
    if value < 1:
        raise _bad(f"must be >= 1 s, got {text!r}")
    if value > MAX_INTERVAL_S:
        raise _bad(f"must be at most 366d ({MAX_INTERVAL_S} s), got {text!r}")
    return value


def duration(text: str, *, positive: bool, maximum_s: int) -> float:
    numerator, denominator = seconds(text)
    if positive and not numerator:
        raise _bad(f"must be > 0 s, got {text!r}")
    if numerator > maximum_s * denominator:
        raise _bad(f"must be at most {maximum_s // 86_400}d ({maximum_s} s), got {text!r}")
    return numerator / denominator


def grace(text: str) -> float:
    return duration(text, positive=False, maximum_s=MAX_GRACE_S)


def session_timeout(text: str) -> float:
    """A session timeout: more than 0 s, at most 366 days."""
    return duration(text, positive=True, maximum_s=MAX_INTERVAL_S)


def demo_duration(text: str) -> float:
    return duration(text, positive=True, maximum_s=MAX_DEMO_DURATION_S)


def memory_mib(text: str) -> float:
    """MiB, 0 to 1 TiB."""
    try:
        value = float(text)
    except ValueError:
        raise _bad(f"expected a number, got {text!r}") from None
    if math.isnan(value):
        raise _bad(f"expected a number, got {text!r}")
    if value < 0:
        raise _bad(f"must be >= 0, got {text!r}")
    if value > MAX_MEMORY_MIB:
        raise _bad(f"must be at most {MAX_MEMORY_MIB} (1 TiB), got {text!r}")
    return value


#: The per-request limits ``--goodput`` takes (tracker.tables.GOODPUT_LIMITS: kept here so that the option
#: parser imports nothing heavy; a test holds the two equal).
GOODPUT_NAMES: Final = ("response_time_ms", "ttft_ms", "tpot_ms")
_LIMIT: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # as --threshold's NUMBER


def goodput(text: str) -> dict[str, float]:
    """Per-request limits in ms: ``response_time_ms=3000,ttft_ms=500,tpot_ms=50`` (any of them, each once)."""
    limits: dict[str, float] = {}
    for item in text.split(","):
        name, sep, number = (part.strip() for part in item.partition("="))
        if not sep or name not in GOODPUT_NAMES:
            raise _bad(f"expected NAME=MS items separated by commas, NAME one of {', '.join(GOODPUT_NAMES)} "
                       f"(e.g. ttft_ms=500,tpot_ms=50), got {item.strip()!r} in {text!r}")
        if name in limits:
            raise _bad(f"{name} is given twice in {text!r}")
        if not _LIMIT.fullmatch(number) or len(number) > _MAX_DIGITS or not math.isfinite(float(number)):
            raise _bad(f"{name}: expected a finite number of milliseconds >= 0, got {number!r}")
        limits[name] = float(number)
    return limits


def max_line_bytes(text: str) -> int:
    return whole(text, 1, MAX_LINE_BYTES, f"{MAX_LINE_BYTES} (1 GiB)")


def sessions(text: str) -> int:
    return whole(text, 1, MAX_DEMO_SESSIONS)


def seed(text: str) -> int:
    return whole(text, 0, MAX_SEED)


#: NATS stream and consumer names: no dots, wildcards, spaces or path separators (the server refuses those).
_NATS_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NATS_SUBJECT: Final = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+){0,15}")
_NATS_SCHEMES: Final = ("nats", "tls", "ws", "wss")


def nats_url(text: str) -> str:
    """One or more NATS server addresses, comma-separated: nats://host:port (tls://, ws://, wss:// too)."""
    for part in text.split(","):
        try:
            split = urlsplit(part.strip())
            valid = split.scheme in _NATS_SCHEMES and bool(split.hostname) and split.port != 0
        except ValueError:  # a port that is not a number, or out of range
            valid = False
        if not valid:
            shown = re.sub(r"//.*@", "//***@", part.strip())  # never a password on the screen (up to the last @)
            raise _bad(f"expected a NATS server address such as nats://127.0.0.1:4222 (several comma-separated), "
                       f"got {shown!r}")
    return text


def nats_name(text: str) -> str:
    """A stream or consumer name: letters, digits, - and _ (at most 64)."""
    if not _NATS_NAME.fullmatch(text):
        raise _bad(f"expected a name of letters, digits, - and _ (at most 64; no dots or spaces), got {text!r}")
    return text


def nats_subject(text: str) -> str:
    """A subject to publish on: tokens of letters, digits, - and _ joined by dots (no wildcards)."""
    if not _NATS_SUBJECT.fullmatch(text):
        raise _bad(f"expected a subject such as loadtest.events.host1 (letters, digits, - and _ between dots, no "
                   f"wildcards), got {text!r}")
    return text


def nats_timeout(text: str) -> float:
    """How long one call to the NATS server may take before it is tried again: 0.1 s to 1 d."""
    value = duration(text, positive=True, maximum_s=86_400)
    if value < 0.1:
        raise _bad(f"expected at least 0.1 s, got {text!r}")
    return value


def path(text: str) -> Path:
    """A file or folder path; an empty one (an unset shell variable, say) is refused, not taken as the current
    folder."""
    if not text:
        raise _bad("an empty path: give a path")
    return Path(text)
