"""Tests for the ``tracking`` drop-in: the original module's imports, its config.py and its console log."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import subprocess
import sys
import textwrap
import tomllib
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

import tracking
import tracking.integration_helper
import tracking.session_tracker
from tests.test_session_tracker import logged, runner_threads, shut_down
from tracker import integration_helper, session_tracker
from tracker.output import ERRORS_FILE, SESSIONS_FILE_PREFIX, SUMMARY_FILE, TOTALS_FILE
from tracker.session_tracker import get_tracker, initialize_tracker

ROOT = Path(__file__).parent.parent
LOGGER = "tracker.session_tracker"
#: A console line: the time, the level, the message.
CONSOLE_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - INFO - ")
#: How long one example script may run before the test fails.
SCRIPT_TIMEOUT = 60.0

EXAMPLE_GET_TRACKER = """\
from tracking.session_tracker import get_tracker
from config import STRESS_TEST_CONFIG
tracker = get_tracker(STRESS_TEST_CONFIG)
tracker.start_tracking()
tracker.register_session("session_1", "user@example.com", [1, 2])
tracker.update_session_activity("session_1", "question_asked")
tracker.update_session_activity("session_1", "question_answered", response_time_ms=2000)
tracker.update_session_activity("session_1", "cycle_completed")
report = tracker.generate_periodic_report()
tracker.log_periodic_report(report)
await tracker.stop_tracking()
"""

EXAMPLE_INTEGRATION_HELPER = """\
from tracking.integration_helper import (start_tracking, register_session, track_question_asked,
    track_question_answered, track_cycle_completed, stop_tracking)
start_tracking()
register_session(session_id, username, [1, 2])
track_question_asked(session_id, question_text)
track_question_answered(session_id, response_time_ms=2000)
track_cycle_completed(session_id)
await stop_tracking()
"""

VARIABLES = 'session_id, username, question_text = "session_1", "user@example.com", "What is a monad?"\n'


# -- helpers -------------------------------------------------------------------------


def run_script(folder: Path, body: str, config: str | None, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``body`` as ``async def main()`` under ``asyncio.run`` in a fresh interpreter, in ``folder``.

    ``config`` is the text of a ``config.py`` beside the script (None: no config.py). The log is
    ``folder/events.jsonl`` ($TRACKER_LOG); ``tracking`` is imported as installed (``pip install -e .``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (folder / "config.py").write_text(config)
    script = folder / "example.py"
    script.write_text(f"import asyncio\n\n{prelude}\n\nasync def main() -> None:\n{textwrap.indent(body, '    ')}"
                      f"\n\nasyncio.run(main())\n")
    env = {**os.environ, "TRACKER_LOG": str(folder / "events.jsonl"), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-W", "error", str(script)], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=SCRIPT_TIMEOUT, check=False)


def config_text(**settings: object) -> str:
    """A config.py as the original's users have it: tracking keys among the test's other settings."""
    return f"STRESS_TEST_CONFIG = {{'max_concurrent_sessions': 20, **{settings!r}}}\n"


def use_config(monkeypatch: pytest.MonkeyPatch, settings: Mapping[str, object] | None) -> types.ModuleType:
    """Make ``import config`` give a module with ``STRESS_TEST_CONFIG = settings`` (None: without that name)."""
    module = types.ModuleType("config")
    if settings is not None:
        module.STRESS_TEST_CONFIG = dict(settings)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "config", module)
    return module


@contextmanager
def no_logging_config() -> Iterator[None]:
    """No handler on the root logger nor on the tracker's loggers (as in a script that configures no logging)."""
    loggers = [logging.getLogger(), logging.getLogger("tracker"), logging.getLogger(LOGGER)]
    saved = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    for logger in loggers[1:]:
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    for logger, handlers, _, _ in saved:
        for handler in handlers:
            logger.removeHandler(handler)
    try:
        yield
    finally:
        for logger, handlers, level, propagate in saved:
            for handler in handlers:
                logger.addHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def track_one_session() -> None:
    """Register a session with courses 1 and 2, answer once, log a report."""
    tracker = get_tracker()
    tracker.register_session("s1", "ann", [1, 2])
    tracker.update_session_activity("s1", "question_answered", response_time_ms=20)
    tracker.log_periodic_report(tracker.generate_periodic_report())


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def env_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Work in tmp_path with $TRACKER_LOG there, no process-wide tracker, no config module, config not yet read."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TRACKER_LOG", str(work / "events.jsonl"))
    monkeypatch.setattr(session_tracker, "_tracker", None)
    monkeypatch.setitem(sys.modules, "config", None)  # import config: ModuleNotFoundError, as without config.py
    monkeypatch.delitem(vars(integration_helper), "STRESS_TEST_CONFIG", raising=False)
    yield work / "events.jsonl"
    shut_down(session_tracker._tracker)


# -- tests ----------------------------------------------------------------------------


class TestExamples:
    """The original's two documented examples, run verbatim as scripts beside a config.py."""

    @pytest.mark.parametrize(("body", "prelude"), [(EXAMPLE_GET_TRACKER, ""),
                                                   (EXAMPLE_INTEGRATION_HELPER, VARIABLES)],
                             ids=["get_tracker", "integration_helper"])
    def test_enabled(self, tmp_path: Path, body: str, prelude: str) -> None:
        """With tracking enabled the example logs its events, writes the CSV reports and prints the reports."""
        folder = tmp_path / "app"
        result = run_script(folder, body, config_text(enable_session_tracking=True, tracking_report_interval=300),
                            prelude)
        assert result.returncode == 0, result.stderr
        assert [e["type"] for e in logged(folder / "events.jsonl")] == [
            "session_registered", "question_asked", "question_answered", "cycle_completed"]
        written = {p.name for p in (folder / "session_tracking_reports").iterdir()}
        assert {SUMMARY_FILE, TOTALS_FILE, ERRORS_FILE} <= written
        assert any(name.startswith(SESSIONS_FILE_PREFIX) for name in written)
        console = result.stderr
        assert result.stdout == ""
        assert re.search(CONSOLE_LINE.pattern + re.escape("[TRACKER] Registered session: session_1 "
                                                          "(User: user@example.com)"), console), console
        reports = 2 if body is EXAMPLE_GET_TRACKER else 1  # the example's own report, then the final one
        assert console.count("PERIODIC SESSION TRACKING REPORT") == reports
        assert console.count("    Duration: ") == reports
        assert re.search(r"Duration: \d+\.\d\ds, Courses: 1, 2\n", console), console
        assert "  Total Questions Answered: 1\n" in console
        assert console.rstrip().endswith("[TRACKER] Session tracking stopped")

    @pytest.mark.parametrize(("body", "prelude"), [(EXAMPLE_GET_TRACKER, ""),
                                                   (EXAMPLE_INTEGRATION_HELPER, VARIABLES)],
                             ids=["get_tracker", "integration_helper"])
    def test_disabled(self, tmp_path: Path, body: str, prelude: str) -> None:
        """With enable_session_tracking False in config.py the example writes nothing and prints nothing."""
        folder = tmp_path / "app"
        result = run_script(folder, body, config_text(enable_session_tracking=False), prelude)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        assert not (folder / "events.jsonl").exists()
        assert not (folder / "session_tracking_reports").exists()

    def test_config_py_is_read_at_first_use_and_its_error_is_not_swallowed(self, tmp_path: Path) -> None:
        """Importing the modules does not import config.py; a config.py that raises fails get_tracker() loudly."""
        folder = tmp_path / "app"
        prelude = ("import sys\nimport tracker, tracking.session_tracker, tracking.integration_helper\n"
                   "print('config imported:', 'config' in sys.modules, flush=True)")
        result = run_script(folder, "tracking.session_tracker.get_tracker()\n",
                            "raise RuntimeError('no API key in the environment')\n", prelude)
        assert result.stdout == "config imported: False\n"
        assert result.returncode == 1
        assert "RuntimeError: no API key in the environment" in result.stderr
        assert "config.py" in result.stderr.rsplit("RuntimeError", 1)[1]  # the note says where it came from
        assert not (folder / "events.jsonl").exists()


class TestPackage:
    """``tracking`` re-exports the original API: the same objects as in ``tracker``."""

    def test_same_objects(self) -> None:
        """Every name of the two modules' __all__ is the very object of tracker's module."""
        for drop_in, module in ((tracking.session_tracker, session_tracker),
                                (tracking.integration_helper, integration_helper)):
            assert tuple(drop_in.__all__) == tuple(module.__all__)
            for name in module.__all__:
                assert getattr(drop_in, name) is getattr(module, name), name
        assert tracking.session_tracker.get_tracker is session_tracker.get_tracker
        assert tracking.session_tracker.initialize_tracker is session_tracker.initialize_tracker
        assert tracking.get_tracker is session_tracker.get_tracker

    def test_config_dict_is_shared(self) -> None:
        """STRESS_TEST_CONFIG of tracking.integration_helper is tracker's dict, also after configure()."""
        tracking.integration_helper.configure({"tracking_report_interval": 42})
        assert tracking.integration_helper.STRESS_TEST_CONFIG is integration_helper.STRESS_TEST_CONFIG
        assert integration_helper.STRESS_TEST_CONFIG["tracking_report_interval"] == 42

    def test_packaged_and_type_checked(self) -> None:
        """pyproject.toml installs tracking with its py.typed and mypy checks it; nothing else lives in it."""
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())
        assert "tracking" in project["tool"]["setuptools"]["packages"]
        assert project["tool"]["setuptools"]["package-data"]["tracking"] == ["py.typed"]
        assert "tracking" in project["tool"]["mypy"]["files"]
        assert {p.name for p in (ROOT / "tracking").iterdir() if p.name != "__pycache__"} == {
            "__init__.py", "session_tracker.py", "integration_helper.py", "py.typed"}


class TestConfigModule:
    """A ``config`` module with STRESS_TEST_CONFIG is read as the original did (``from config import ...``)."""

    def test_get_tracker_reads_config_py(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """get_tracker() without argument makes the tracker from config.STRESS_TEST_CONFIG."""
        use_config(monkeypatch, {"tracking_report_interval": 60, "console_logging": False, "max_sessions": 5})
        tracker = get_tracker()
        assert (tracker.report_interval, tracker.enabled, tracker.console_logging) == (60, True, False)
        assert get_tracker() is tracker

    def test_explicit_argument_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """get_tracker(config) uses its argument, and a later get_tracker() keeps that tracker."""
        use_config(monkeypatch, {"tracking_report_interval": 60, "enable_session_tracking": False})
        tracker = get_tracker({"tracking_report_interval": 120})
        assert (tracker.report_interval, tracker.enabled) == (120, True)
        assert get_tracker() is tracker

    def test_disabled_by_config_py(self, monkeypatch: pytest.MonkeyPatch, env_log: Path) -> None:
        """enable_session_tracking False in config.py: get_tracker(), initialize_tracker(), the helpers do nothing."""
        use_config(monkeypatch, {"enable_session_tracking": False})
        tracker = get_tracker()
        tracker.start_tracking()
        tracker.register_session("s1", "ann", [1])
        assert not initialize_tracker(5).enabled
        integration_helper.start_tracking()
        integration_helper.register_session("s2", "bob", [1])
        integration_helper.track_question_answered("s2", response_time_ms=5)
        asyncio.run(integration_helper.stop_tracking())
        asyncio.run(tracker.stop_tracking())
        assert runner_threads() == []
        assert list(env_log.parent.iterdir()) == []

    def test_initialize_tracker_reads_config_py(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """initialize_tracker() takes its interval from config.py; an interval given to it wins."""
        use_config(monkeypatch, {"tracking_report_interval": 45, "console_logging": False})
        assert (initialize_tracker().report_interval, get_tracker().console_logging) == (45, False)
        assert initialize_tracker(7).report_interval == 7

    @pytest.mark.parametrize("settings", [None, {}], ids=["no STRESS_TEST_CONFIG", "empty"])
    def test_defaults_without_settings(self, monkeypatch: pytest.MonkeyPatch, settings: dict[str, object] | None,
                                       ) -> None:
        """A config module without STRESS_TEST_CONFIG (or without the keys) gives the defaults."""
        use_config(monkeypatch, settings)
        tracker = get_tracker()
        assert (tracker.report_interval, tracker.enabled, tracker.console_logging) == (300, True, True)

    def test_no_config_module_gives_defaults(self) -> None:
        """Without a config module (the fixture's default) get_tracker() has the defaults."""
        with pytest.raises(ModuleNotFoundError):
            __import__("config")
        tracker = get_tracker()
        assert (tracker.report_interval, tracker.enabled, tracker.console_logging) == (300, True, True)

    def test_an_error_in_config_py_propagates(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """An exception raised by config.py (even a missing import inside it) reaches the caller, with a note."""
        folder = tmp_path / "app"
        folder.mkdir()
        monkeypatch.delitem(sys.modules, "config")
        monkeypatch.syspath_prepend(str(folder))
        (folder / "config.py").write_text("import a_module_that_is_not_installed\n")
        with pytest.raises(ModuleNotFoundError, match="a_module_that_is_not_installed") as info:
            get_tracker()
        assert any("config.py" in note for note in getattr(info.value, "__notes__", []))
        (folder / "config.py").write_text("STRESS_TEST_CONFIG = {'tracking_report_interval': 1 / 0}\n")
        for call in (get_tracker, initialize_tracker, integration_helper.start_tracking):
            with pytest.raises(ZeroDivisionError):
                call()
        assert session_tracker._tracker is None

    def test_a_bad_value_in_config_py_is_quoted(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A bad value, or a STRESS_TEST_CONFIG that is no mapping, raises an error quoting it."""
        use_config(monkeypatch, {"tracking_report_interval": "5 min"})
        with pytest.raises(ValueError, match="'5 min'"):
            get_tracker()
        module = use_config(monkeypatch, None)
        module.STRESS_TEST_CONFIG = ["enable_session_tracking"]  # type: ignore[attr-defined]
        with pytest.raises(TypeError, match=re.escape("STRESS_TEST_CONFIG: must be a mapping, got list")):
            get_tracker()


class TestIntegrationHelperConfig:
    """integration_helper.STRESS_TEST_CONFIG starts as a copy of config.py's; what the program sets wins."""

    def test_starts_as_a_copy_of_config_py(self, monkeypatch: pytest.MonkeyPatch, env_log: Path) -> None:
        """The helper's config is the defaults updated with config.py's keys (a copy), read at first use."""
        module = use_config(monkeypatch, {"tracking_report_interval": 90, "max_sessions": 5})
        integration_helper.register_session("s1", "ann")
        assert integration_helper.STRESS_TEST_CONFIG == {"enable_session_tracking": True,
                                                         "tracking_report_interval": 90, "max_sessions": 5}
        assert integration_helper.STRESS_TEST_CONFIG is not module.STRESS_TEST_CONFIG
        assert get_tracker().report_interval == 90
        assert [e["type"] for e in logged(env_log)] == ["session_registered"]

    def test_configure_wins_over_config_py(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """configure() (and a direct update of the dict) after config.py was read wins."""
        use_config(monkeypatch, {"tracking_report_interval": 90, "enable_session_tracking": False})
        integration_helper.configure({"enable_session_tracking": True})
        integration_helper.STRESS_TEST_CONFIG["tracking_report_interval"] = 30
        integration_helper.register_session("s1", "ann")
        tracker = get_tracker()
        assert (tracker.enabled, tracker.report_interval) == (True, 30)
        assert tracker.sessions.keys() == {"s1"}

    def test_without_config_py_the_defaults(self) -> None:
        """Without config.py the helper's config is the defaults."""
        assert integration_helper.STRESS_TEST_CONFIG == {"enable_session_tracking": True,
                                                         "tracking_report_interval": 300}


class TestConsole:
    """The original API's log lines reach stderr by default, once, and can be silenced."""

    def test_on_by_default(self, capsys: pytest.CaptureFixture[str]) -> None:
        """With no logging configured, register lines and the report (with the course list) go to stderr."""
        with no_logging_config():
            track_one_session()
            get_tracker().unregister_session("s1")
        out, err = capsys.readouterr()
        assert out == ""
        lines = err.splitlines()
        assert CONSOLE_LINE.match(lines[0])
        assert lines[0].endswith("[TRACKER] Registered session: s1 (User: ann)")
        assert "PERIODIC SESSION TRACKING REPORT" in err
        assert re.search(r"\n    Duration: \d+\.\d\ds, Courses: 1, 2\n", err), err
        assert re.search(CONSOLE_LINE.pattern + r"\[TRACKER\] Unregistered session: s1 \(Reason: completed", err)

    def test_silenced_by_config(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        """console_logging False (argument or config.py) prints nothing."""
        use_config(monkeypatch, {"console_logging": False})
        with no_logging_config():
            track_one_session()
            tracker = get_tracker({"console_logging": False})
            tracker.register_session("s2", "bob", [3])
        assert capsys.readouterr() == ("", "")

    def test_silenced_by_logger_level(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A level set on the tracker.session_tracker logger (or the tracker logger) applies to the console."""
        with no_logging_config():
            logging.getLogger("tracker").setLevel(logging.WARNING)
            track_one_session()
        assert capsys.readouterr() == ("", "")

    def test_user_handler_gets_each_line_once(self, capsys: pytest.CaptureFixture[str]) -> None:
        """With a root handler configured by the program, the lines go there, once, and not to our console."""
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(name)s|%(message)s"))
        root = logging.getLogger()
        with no_logging_config():
            root.addHandler(handler)
            level = root.level
            root.setLevel(logging.INFO)
            try:
                track_one_session()
            finally:
                root.setLevel(level)
                root.removeHandler(handler)
        assert capsys.readouterr() == ("", "")
        text = stream.getvalue()
        assert text.count("[TRACKER] Registered session: s1 (User: ann)") == 1
        assert text.count("PERIODIC SESSION TRACKING REPORT") == 1
        assert text.startswith(f"{LOGGER}|[TRACKER] Registered session")

    def test_errors_reach_the_console_with_the_traceback(self, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
        """A failing periodic report is printed with its traceback."""
        tracker = get_tracker()

        def fail(*, final: bool) -> None:
            raise OSError(f"disk full (final={final})")

        monkeypatch.setattr(tracker, "_write_reports", fail)
        with no_logging_config():
            tracker._periodic_report()
        err = capsys.readouterr().err
        assert re.search(CONSOLE_LINE.pattern.replace("INFO", "ERROR") + re.escape("[TRACKER] Periodic report failed"),
                         err), err
        assert "OSError: disk full (final=False)" in err


class TestReportText:
    """The report shows each active session's course list."""

    def test_course_list(self, caplog: pytest.LogCaptureFixture) -> None:
        """Courses: 1, 2 for [1, 2]; Courses: none for a session without courses."""
        caplog.set_level(logging.INFO, logger=LOGGER)
        tracker = get_tracker()
        tracker.register_session("s1", "ann", [1, 2])
        tracker.register_session("s2", "bob")
        report = tracker.generate_periodic_report()
        assert [d["course_numbers"] for d in report["active_session_details"]] == [[1, 2], []]
        assert [d["courses_active"] for d in report["active_session_details"]] == [2, 0]
        tracker.log_periodic_report(report)
        text = "\n".join(r.getMessage() for r in caplog.records if r.name == LOGGER)
        assert re.search(r"Duration: \d+\.\d\ds, Courses: 1, 2\n", text)
        assert re.search(r"Duration: \d+\.\d\ds, Courses: none\n", text)
