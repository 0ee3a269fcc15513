"""The code style gate runs with the tests: ruff (lint + format) and mypy."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "kmidi_ingest", "tests", "benchmarks", "examples/make_examples.py"],
        [
            "ruff",
            "format",
            "--check",
            "kmidi_ingest",
            "tests",
            "benchmarks",
            "examples/make_examples.py",
        ],
        [sys.executable, "-m", "mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_passes(command):
    if command[0] == "ruff" and shutil.which("ruff") is None:
        command = [sys.executable, "-m", *command]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
