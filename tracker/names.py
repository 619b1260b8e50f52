"""The names of the report files in an output folder (one place: the writer, the HTML report and the checks that
no output is a log all use these)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

__all__ = ("CHECKPOINT_DIR", "ERRORS_FILE", "MANIFEST_FILE", "REPORT_HTML", "REPORT_NAME",
           "SESSIONS_FILE_PREFIX", "SUMMARY_FILE", "TAIL_LOCK_FILE", "THRESHOLDS_FILE", "TOTALS_FILE",
           "session_file_name")

SUMMARY_FILE: Final = "session_tracking_summary.csv"
TOTALS_FILE: Final = "session_tracking_totals.csv"
ERRORS_FILE: Final = "session_tracking_errors.csv"
#: The verdicts of the thresholds (written only when some are given).
THRESHOLDS_FILE: Final = "session_tracking_thresholds.csv"
SESSIONS_FILE_PREFIX: Final = "session_tracking_report_"
#: The HTML report, made from the CSV files.
REPORT_HTML: Final = "session_tracking_report.html"
#: The list of report files a writer wrote into its folder, so that a later run removes only those.
MANIFEST_FILE: Final = ".tracker-reports.json"
#: The tail's checkpoint folder in its output folder (unless --checkpoint-dir), and the lock a running tail holds
#: in it.
CHECKPOINT_DIR: Final = ".tracker-checkpoint"
TAIL_LOCK_FILE: Final = ".tracker-tail.lock"
#: Every report file's name.
REPORT_NAME: Final = re.compile(
    r"session_tracking_(?:(?:summary|totals|errors|thresholds|report_\d{8}_\d{6})\.csv|report\.html)")


def session_file_name(window_end_us: int) -> str:
    """``session_tracking_report_YYYYMMDD_HHMMSS.csv``, stamped with the window's end in UTC."""
    stamp = datetime.fromtimestamp(window_end_us // 1_000_000, UTC).strftime("%Y%m%d_%H%M%S")
    return f"{SESSIONS_FILE_PREFIX}{stamp}.csv"
