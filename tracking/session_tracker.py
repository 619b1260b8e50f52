"""The original ``tracking.session_tracker``: re-exports :mod:`tracker.session_tracker` (the same objects)."""

from __future__ import annotations

from tracker.session_tracker import (
    ACTIVITY_TYPES,
    CONFIG_MODULE,
    CONSOLE_FORMAT,
    DEFAULT_OUT_DIR,
    DEFAULT_REPORT_INTERVAL,
    SessionTracker,
    TrackerConfig,
    config_module_settings,
    get_tracker,
    initialize_tracker,
    read_config,
)

__all__ = (
    "ACTIVITY_TYPES",
    "CONFIG_MODULE",
    "CONSOLE_FORMAT",
    "DEFAULT_OUT_DIR",
    "DEFAULT_REPORT_INTERVAL",
    "SessionTracker",
    "TrackerConfig",
    "config_module_settings",
    "get_tracker",
    "initialize_tracker",
    "read_config",
)
