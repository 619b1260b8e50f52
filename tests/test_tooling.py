"""The repository's own promises: lint and types are clean, and CI runs the README's test command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import BACKGROUND

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
        """mypy --strict (configured in pyproject.toml) passes on the package, tests and benchmarks (run beside the
        other tests since the session began: see conftest.py)."""
        process = BACKGROUND.pop("mypy", None)
        if process is None:
            result = _run(str(BIN / "mypy"))
            assert result.returncode == 0, result.stdout + result.stderr
            return
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output


class TestReadme:
    def test_ci_runs_the_readme_test_command(self) -> None:
        """.ci/run ends by running exactly the second command of the README."""
        commands = re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text())
        assert len(commands) >= 2
        ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and line[0] != "#"]
        assert ci_lines[-1] == commands[1]


def _module_table() -> list[list[str]]:
    """The modules of docs/internals.md's table, row by row, in its order."""
    text = (ROOT / "docs" / "internals.md").read_text()
    table = text.split("| module | job |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    return [re.findall(r"`([a-z_]+)`", row.split("|")[1]) for row in table.splitlines()]


def _imports(module: str) -> set[str]:
    """The package modules ``module`` imports, at its top or inside a function."""
    source = (ROOT / "tracker" / f"{module}.py").read_text()
    found = set(re.findall(r"^\s*from \.([a-z_]+) import", source, re.MULTILINE))
    for names in re.findall(r"^\s*from \. import ([a-z_, ]+)", source, re.MULTILINE):
        found |= {name.strip() for name in names.split(",")}
    return found


class TestLayout:
    def test_the_module_table_lists_every_module(self) -> None:
        """docs/internals.md's table names every module of the package, once."""
        listed = [module for row in _module_table() for module in row]
        modules = sorted(p.stem for p in (ROOT / "tracker").glob("*.py") if not p.stem.startswith("__"))
        assert sorted(listed) == modules

    def test_each_module_imports_only_those_above_it(self) -> None:
        """Imports go one way: in the table's order of the data flow, a module imports only modules above it."""
        above: set[str] = set()
        wrong = []
        for row in _module_table():
            wrong += [f"{module} imports {name}" for module in row for name in sorted(_imports(module) - above)
                      if name not in row]
            above |= set(row)
        assert wrong == []
