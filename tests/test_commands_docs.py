"""Every parser (ingest, each subcommand, each ``db`` action) is documented: its options in the
README, ``--version`` on each, and ``kmidi-ingest --help`` lists the subcommands, the exit codes
and the environment variables (as alembic and sqlite-utils do)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator

import pytest

from kmidi_ingest import __version__
from kmidi_ingest.cli import COMMANDS, SUBCOMMANDS, build_parser, main
from kmidi_ingest.commands._common import EXIT_CODES
from kmidi_ingest.config import ENVIRONMENT
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def parsers() -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    """``(argv prefix, parser)`` for every parser of the CLI, nested ones included."""
    todo: list[tuple[list[str], argparse.ArgumentParser]] = [([], build_parser())]
    todo += [
        ([name], importlib.import_module(module).build_parser())
        for name, module in SUBCOMMANDS.items()
    ]
    while todo:
        prefix, parser = todo.pop(0)
        yield prefix, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [([*prefix, name], sub) for name, sub in action.choices.items()]


PARSERS = list(parsers())
IDS = [" ".join(prefix) or "ingest" for prefix, _ in PARSERS]


def test_every_parser_is_found():
    assert set(IDS) >= {
        "ingest",
        "check",
        "stats",
        "export",
        "plot",
        "db",
        *(f"db {a}" for a in ("upgrade", "downgrade", "current", "history", "stamp", "copy")),
    }


@pytest.mark.parametrize(("prefix", "parser"), PARSERS, ids=IDS)
def test_every_option_of_every_parser_is_in_the_readme(prefix, parser):
    if prefix:
        assert f"kmidi-ingest {' '.join(prefix)} " in README
    options = [
        opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")
    ]
    assert "--version" in options
    missing = [opt for opt in options if opt not in ("--help", "--version") and opt not in README]
    assert not missing, f"{' '.join(prefix) or 'ingest'}: undocumented options {missing}"


@pytest.mark.parametrize(("prefix", "parser"), PARSERS, ids=IDS)
def test_version_on_every_parser(prefix, parser, capsys):
    assert main([*prefix, "--version"]) == 0
    assert capsys.readouterr().out == f"kmidi-ingest {__version__}\n"


@pytest.mark.parametrize(("prefix", "parser"), PARSERS, ids=IDS)
def test_help_of_every_parser_ends_with_the_exit_codes(prefix, parser, capsys):
    assert main([*prefix, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: kmidi-ingest {' '.join(prefix)}".rstrip())
    assert "\nexit codes:\n" in out
    for code in EXIT_CODES:
        assert f"\n  {code:<3}  " in out


def test_main_help_lists_the_commands_exit_codes_and_environment(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "usage: kmidi-ingest ROOT SAMPLE_RATE [options]\n"
        "       kmidi-ingest {db,check,stats,export,plot} ...\n"
    )
    commands = out.split("commands (kmidi-ingest COMMAND --help for each):\n")[1].split("\n\n")[0]
    assert [line.split()[0] for line in commands.splitlines()] == [c for c, _, _ in COMMANDS]
    assert [line.split(None, 1)[1] for line in commands.splitlines()] == [s for _, _, s in COMMANDS]
    codes = out.split("exit codes:\n")[1].split("\n\n")[0]
    assert [int(line.split()[0]) for line in codes.splitlines() if line[2] != " "] == [
        0,
        1,
        2,
        130,
        141,
    ]
    env = out.split("environment variables")[1]
    for name, _, _ in ENVIRONMENT:
        assert f"\n  {name} " in env


def test_readme_documents_the_exit_codes_and_every_variable():
    configuration = README.split("## Configuration")[1].split("\n## ")[0]
    for name, _, _ in ENVIRONMENT:
        assert f"`{name}`" in configuration, name
    usage = README.split("## Usage")[1].split("\n## ")[0]
    for code in EXIT_CODES:
        assert f"`{code}`" in usage, code
    assert "kmidi-ingest --help" in usage and "kmidi-ingest --version" in usage
