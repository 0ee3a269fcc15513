"""Every option of the check/stats/export/plot subcommands is documented in the README."""

from __future__ import annotations

import importlib

import pytest

from kmidi_ingest.cli import SUBCOMMANDS
from tests.conftest import REPO


@pytest.mark.parametrize("name", ["check", "stats", "export", "plot"])
def test_subcommand_options_are_in_the_readme(name):
    readme = (REPO / "README.md").read_text()
    parser = importlib.import_module(SUBCOMMANDS[name]).build_parser()
    assert f"kmidi-ingest {name} " in readme
    options = [
        opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")
    ]
    missing = [opt for opt in options if opt != "--help" and opt not in readme]
    assert not missing, f"{name}: undocumented options {missing}"
