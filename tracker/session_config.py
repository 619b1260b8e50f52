"""The original API's settings: ``STRESS_TEST_CONFIG`` of the program's ``config.py``, read and checked.

:func:`~tracker.session_tracker.get_tracker` and :func:`~tracker.session_tracker.initialize_tracker` read
them at first use, as the original did with ``from config import STRESS_TEST_CONFIG``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .limits import MAX_INTERVAL_S

__all__ = (
    "CONFIG_MODULE",
    "DEFAULT_REPORT_INTERVAL",
    "TrackerConfig",
    "check_interval",
    "check_timeout",
    "config_module_settings",
    "read_config",
    "read_config_module",
)

DEFAULT_REPORT_INTERVAL: Final = 300
#: The module whose ``STRESS_TEST_CONFIG`` :func:`get_tracker` reads, as the original's ``from config import ...``.
CONFIG_MODULE: Final = "config"


def check_interval(name: str, value: object) -> int:
    if type(value) is not int or not 1 <= value <= MAX_INTERVAL_S:
        raise ValueError(f"{name}: must be a whole number of seconds from 1 to {MAX_INTERVAL_S:,} (366 days), "
                         f"got {value!r}")
    return value


def check_timeout(name: str, value: object) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float) or not 0 < value <= MAX_INTERVAL_S:  # type: ignore[operator]
        raise ValueError(f"{name}: must be a number of seconds more than 0 and at most {MAX_INTERVAL_S:,} (366 "
                         f"days), or None (off), got {value!r}")
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """The tracker settings read from a ``STRESS_TEST_CONFIG``-like mapping."""

    enabled: bool = True
    report_interval: int = DEFAULT_REPORT_INTERVAL
    console_logging: bool = True
    session_timeout: float | None = None


def _check_flag(config: Mapping[str, object], name: str) -> bool:
    value = config.get(name, True)
    if type(value) is not bool:
        raise ValueError(f"{name}: must be True or False, got {value!r}")
    return value


def read_config(config: Mapping[str, object] | None) -> TrackerConfig:
    """``enable_session_tracking`` (default True), ``tracking_report_interval`` (default 300),
    ``console_logging`` (default True) and ``tracking_session_timeout`` (seconds, default None: off) of ``config``.

    Other keys are ignored. Raises ``ValueError`` quoting a value that is not
    a bool, not a whole number of seconds >= 1, or not a timeout, and ``TypeError`` when ``config`` is not a
    mapping.
    """
    if config is None:
        return TrackerConfig()
    if not isinstance(config, Mapping):
        raise TypeError(f"config: must be a mapping such as STRESS_TEST_CONFIG (a dict), got {config!r}")
    enabled = _check_flag(config, "enable_session_tracking")
    interval = check_interval("tracking_report_interval", config.get("tracking_report_interval",
                                                                      DEFAULT_REPORT_INTERVAL))
    return TrackerConfig(enabled, interval, _check_flag(config, "console_logging"),
                         check_timeout("tracking_session_timeout", config.get("tracking_session_timeout")))


def config_module_settings() -> Mapping[str, object] | None:
    """``STRESS_TEST_CONFIG`` of the module named ``config`` (``config.py`` beside the program), imported now.

    None when there is no such module, or it has no ``STRESS_TEST_CONFIG``.
    An exception raised while importing it propagates, with a note saying it
    came from ``config.py``; a ``STRESS_TEST_CONFIG`` that is not a mapping
    raises ``TypeError``.
    """
    try:
        module = importlib.import_module(CONFIG_MODULE)
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == CONFIG_MODULE:
            return None
        exc.add_note(f"tracker: raised while importing {CONFIG_MODULE}.py for its STRESS_TEST_CONFIG")
        raise
    settings = getattr(module, "STRESS_TEST_CONFIG", None)
    if settings is not None and not isinstance(settings, Mapping):
        raise TypeError(f"{CONFIG_MODULE}.STRESS_TEST_CONFIG: must be a mapping, got {type(settings).__name__}")
    return settings


def read_config_module() -> TrackerConfig:
    settings = config_module_settings()
    try:
        return read_config(settings)
    except ValueError as exc:
        exc.add_note(f"tracker: in {CONFIG_MODULE}.STRESS_TEST_CONFIG")
        raise
