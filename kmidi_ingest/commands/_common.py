"""Helpers shared by the subcommands: argument parsing that returns exit codes, database access."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace | int:
    """Parse ``argv``; return the exit code instead of raising when argparse wants to exit."""
    try:
        return parser.parse_args(list(argv))
    except SystemExit as exc:  # 2 on usage errors, 0 on --help
        return int(exc.code or 0)


def add_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy URL (default: $DATABASE_URL or sqlite:///kmidi.sqlite)",
    )


def database_url(flag: str | None) -> str:
    """The URL to read: the flag, else the settings (environment, ``.env``, default)."""
    from ..config import load_settings

    return load_settings().with_overrides(database_url=flag).database_url


def open_database(prog: str, flag: str | None) -> tuple[str, Engine] | int:
    """``(url, engine)`` for ``--database-url`` (or the settings); on a bad URL or setting, the
    message is printed and the usage exit code returned instead."""
    from ..db import make_engine
    from ..errors import KmidiError

    try:
        url = database_url(flag)
        return url, make_engine(url)
    except KmidiError as exc:
        return fail(prog, str(exc), EXIT_USAGE)


def fail(prog: str, message: str, code: int) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return code


def masked(exc: BaseException, url: str) -> str:
    """``exc`` as text with the password of ``url`` masked."""
    from ..config import mask_url

    return f"{type(exc).__name__}: {str(exc).replace(url, mask_url(url))}"


__all__ = [
    "ConfigError",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_database_url",
    "database_url",
    "fail",
    "masked",
    "open_database",
    "parse",
]
