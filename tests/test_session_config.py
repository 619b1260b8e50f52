"""Tests for tracker.session_config: STRESS_TEST_CONFIG read and checked."""

from __future__ import annotations

import re

import pytest

from tracker.session_config import TrackerConfig, read_config


class TestReadConfig:
    def test_none_gives_the_defaults(self) -> None:
        """No config: tracking on, reports every 300 s, console logging on, no session timeout."""
        assert read_config(None) == TrackerConfig(True, 300, True, None)

    def test_the_four_keys_are_read_and_others_ignored(self) -> None:
        """The four settings are taken as given; a key tracker does not know is ignored."""
        config = {"enable_session_tracking": False, "tracking_report_interval": 60, "console_logging": False,
                  "tracking_session_timeout": 90, "max_concurrent_sessions": 2000}
        assert read_config(config) == TrackerConfig(False, 60, False, 90.0)

    def test_not_a_mapping_is_a_type_error(self) -> None:
        """A config that is not a mapping is a TypeError quoting it."""
        with pytest.raises(TypeError, match=re.escape("got [('enable_session_tracking', True)]")):
            read_config([("enable_session_tracking", True)])  # type: ignore[arg-type]

    @pytest.mark.parametrize("enabled", ["false", 0, None])
    def test_bad_enable_flag_raises(self, enabled: object) -> None:
        """An enable_session_tracking that is not a bool is a ValueError quoting it."""
        with pytest.raises(ValueError, match=re.escape(f"enable_session_tracking: must be True or False, "
                                                       f"got {enabled!r}")):
            read_config({"enable_session_tracking": enabled})

    @pytest.mark.parametrize("value", [10**30, 366 * 86_400 + 1])
    def test_an_interval_past_366_days_names_the_setting(self, value: int) -> None:
        """A huge tracking_report_interval is refused with the setting's name, not the engine's parameter."""
        with pytest.raises(ValueError, match=f"tracking_report_interval: .* got {value!r}"):
            read_config({"tracking_report_interval": value})

    @pytest.mark.parametrize("value", [0, -1, "60", True, float("nan"), 366 * 86_400 + 0.5])
    def test_a_bad_session_timeout_names_the_setting(self, value: object) -> None:
        """A session timeout that is not a number of seconds in (0, 366 days] is refused, quoted."""
        with pytest.raises(ValueError, match=re.escape(f"tracking_session_timeout: must be a number of seconds "
                                                       f"more than 0 and at most 31,622,400 (366 days), or None "
                                                       f"(off), got {value!r}")):
            read_config({"tracking_session_timeout": value})
