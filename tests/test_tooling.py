"""The repository's own promises: lint and types are clean, and CI runs the README's test command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


class TestTooling:
    def test_ruff(self) -> None:
        """ruff finds nothing to report."""
        result = _run(str(BIN / "ruff"), "check", ".")
        assert result.returncode == 0, result.stdout + result.stderr

    def test_mypy_strict(self) -> None:
        """mypy --strict (configured in pyproject.toml) passes on the package, tests and benchmarks."""
        result = _run(str(BIN / "mypy"))
        assert result.returncode == 0, result.stdout + result.stderr


class TestReadme:
    def test_ci_runs_the_readme_test_command(self) -> None:
        """.ci/run ends by running exactly the second command of the README."""
        commands = re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text())
        assert len(commands) >= 2
        ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and line[0] != "#"]
        assert ci_lines[-1] == commands[1]
