"""The CLI's plumbing, written once for ``kmidi-ingest`` and every subcommand: exit codes, parsers
that list exit codes and environment variables in ``--help`` and know ``--version``, argument
parsing that returns an exit code instead of exiting, reading the database URL, opening a
database (never creating one for a command that only reads), and turning errors into one-line
messages with a next step and every password masked.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ENVIRONMENT, database_url_setting, read_environment
from ..errors import ConfigError, KmidiError
from ..urls import mask_url, sqlite_path
from ..version import __version__

if TYPE_CHECKING:
    from sqlalchemy import Engine

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "all good",
    EXIT_FAILED: "something failed (listed in the output)",
    EXIT_USAGE: "usage or configuration error (bad argument, setting or URL; no database at PATH)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_BROKEN_PIPE: "the output was closed early (e.g. piped into head); as Unix tools do",
}

# The variables a command reading a database takes its URL from.
DATABASE_VARIABLES = ("DATABASE_URL", "KMIDI_DB_IAM", "AWS_REGION")


def exit_codes(**meanings: str) -> dict[int, str]:
    """:data:`EXIT_CODES` with the meaning of 0, 1 or 2 replaced (``ok=``, ``failed=``,
    ``usage=``) for one command."""
    codes = dict(EXIT_CODES)
    for key, code in (("ok", EXIT_OK), ("failed", EXIT_FAILED), ("usage", EXIT_USAGE)):
        if key in meanings:
            codes[code] = meanings[key]
    return codes


def epilog(
    *,
    codes: Mapping[int, str] = EXIT_CODES,
    variables: Sequence[str] = (),
    commands: Sequence[tuple[str, str]] = (),
) -> str:
    """The end of a ``--help`` text: commands, exit codes and environment variables."""
    parts = []
    if commands:
        width = max(len(name) for name, _ in commands)
        parts.append(
            "commands (kmidi-ingest COMMAND --help for each):\n"
            + "\n".join(_item(name, summary, width) for name, summary in commands)
        )
    parts.append(
        "exit codes:\n" + "\n".join(_item(str(code), text, 3) for code, text in codes.items())
    )
    if variables:
        known = {name: (meaning, default) for name, meaning, default in ENVIRONMENT}
        width = max(len(name) for name in variables)
        lines = [
            _item(name, known[name][0] + _default(known[name][1]), width) for name in variables
        ]
        parts.append(
            _wrap(
                "environment variables (also read from a .env file in the working directory; "
                "the environment wins over the file, flags win over both):"
            )
            + "\n"
            + "\n".join(lines)
        )
    return "\n\n".join(parts)


HELP_WIDTH = 79


def _item(name: str, text: str, width: int) -> str:
    indent = " " * (width + 4)
    return _wrap(f"  {name:<{width}}  {text}", indent)


def _wrap(text: str, indent: str = "") -> str:
    import textwrap

    return textwrap.fill(text, HELP_WIDTH, subsequent_indent=indent, break_on_hyphens=False)


def _default(value: str) -> str:
    return "" if value == "-" else f" (default: {value})"


def new_parser(
    prog: str,
    description: str,
    *,
    codes: Mapping[int, str] = EXIT_CODES,
    variables: Sequence[str] = (),
    commands: Sequence[tuple[str, str]] = (),
    usage: str | None = None,
) -> argparse.ArgumentParser:
    """An argument parser whose help ends with :func:`epilog`, with ``--version``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=usage,
        description=description,
        epilog=epilog(codes=codes, variables=variables, commands=commands),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version(parser)
    return parser


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"kmidi-ingest {__version__}")


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace | int:
    """Parse ``argv``; return the exit code instead of raising when argparse wants to exit
    (2 on usage errors, 0 after ``--help`` or ``--version``)."""
    try:
        return parser.parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def non_empty(text: str) -> str:
    """An argparse type refusing ``""`` (an empty path would mean the working directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def guarded(prog: str, run: Callable[[], int]) -> int:
    """``run()``, ending quietly when stdout is closed early (``| head``) or on Ctrl-C.

    Output is flushed before returning, so that a closed pipe is met here and not in the
    interpreter's last flush (which would print "Exception ignored ... BrokenPipeError").
    """
    try:
        code = run()
        sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def _discard_stdout() -> None:
    # What is still buffered can go nowhere: point stdout at /dev/null so the final flush succeeds.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced, e.g. captured by a test
        pass


def add_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy URL (default: $DATABASE_URL or sqlite:///kmidi.sqlite)",
    )


def database_url(flag: str | None) -> str:
    """The URL to use: the flag, else ``DATABASE_URL`` (environment, ``.env``), else the
    default. Reads no other setting, and no setting at all when the flag is given."""
    if flag is not None:
        return flag
    return database_url_setting(read_environment())


def open_database(
    prog: str, flag: str | None, *, must_exist: bool = True
) -> tuple[str, Engine] | int:
    """``(url, engine)`` for ``--database-url`` (or ``DATABASE_URL``).

    With ``must_exist`` (commands that only read) a SQLite file that is not there is refused
    instead of created. On a bad URL or setting, or no database, the message is printed and
    :data:`EXIT_USAGE` returned instead.
    """
    from ..db import make_engine

    url = flag or ""
    try:
        url = database_url(flag)
        if must_exist:
            problem = missing_database(url)
            if problem is not None:
                return fail(prog, problem, EXIT_USAGE)
        return url, make_engine(url)
    except KmidiError as exc:
        return fail(prog, masked(str(exc), [url]), EXIT_USAGE)


def missing_database(url: str) -> str | None:
    """Why a command that only reads cannot use the SQLite database of ``url`` (``None``: it can,
    or ``url`` is no SQLite file)."""
    path = sqlite_path(url)
    if path is None:
        return None
    if path.is_dir():
        return f"{printable(str(path))} is a folder, not a database file"
    if not path.exists():
        return f"no database at {printable(str(path))}"
    return None


def fail(prog: str, message: str, code: int) -> int:
    """Print ``prog: message`` to stderr and return ``code``."""
    print(f"{prog}: {printable(message)}", file=sys.stderr)
    return code


def printable(text: str) -> str:
    """``text`` as valid Unicode: undecodable bytes of file names become ``\\xNN`` escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def masked(message: str, urls: Sequence[str]) -> str:
    """``message`` with each of ``urls`` shown with its password masked."""
    for url in urls:
        if url:
            message = message.replace(url, mask_url(url))
    return message


def describe(exc: BaseException, urls: Sequence[str] = ()) -> str:
    """A one-line message for an unexpected ``exc`` (database, file system, ...), with every
    password of ``urls`` masked. Database errors name the database and a next step, without
    SQLAlchemy's SQL dump and background link."""
    text = database_error(exc, urls[0]) if urls else None
    if text is None and isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        text = f"{exc.strerror}{where}"
    if text is None:
        text = f"{type(exc).__name__}: {exc}"
    return masked(text, urls)


def database_error(exc: BaseException, url: str) -> str | None:
    """The message for a SQLAlchemy error raised while using the database at ``url``;
    ``None`` when ``exc`` is no database error."""
    from sqlalchemy.exc import SQLAlchemyError

    if not isinstance(exc, SQLAlchemyError):
        return None
    orig = getattr(exc, "orig", None)
    lines = str(orig if orig is not None else exc).strip().splitlines() or [type(exc).__name__]
    detail = lines[0]
    try:
        path: Path | None = sqlite_path(url)
    except ConfigError:
        path = None
    shown = printable(str(path)) if path is not None else mask_url(url)
    lowered = detail.lower()
    if path is not None:
        if "unable to open database file" in lowered:
            return f"cannot open database file {shown}: does the folder exist and is it writable?"
        if "readonly database" in lowered:
            return f"cannot write database file {shown}: are it and its folder writable?"
        if "file is not a database" in lowered:
            return f"{shown} is not a SQLite database: check --database-url or DATABASE_URL"
        if "database is locked" in lowered:
            return f"database file {shown} is locked by another program: try again later"
        if "disk i/o error" in lowered or "disk is full" in lowered:
            return f"database file {shown}: {detail}: is the disk full or failing?"
    elif "connection" in lowered or "could not translate host" in lowered or "timeout" in lowered:
        return (
            f"cannot connect to {shown}: {detail}: is the server running, and are the host, "
            "port, user and password right?"
        )
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return f"{shown} does not hold the kmidi schema ({detail}): run `kmidi-ingest db upgrade`"
    return f"database error on {shown}: {detail}"


__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ConfigError",
    "add_database_url",
    "add_version",
    "database_error",
    "database_url",
    "describe",
    "epilog",
    "exit_codes",
    "fail",
    "guarded",
    "masked",
    "missing_database",
    "new_parser",
    "non_empty",
    "open_database",
    "parse",
    "printable",
]
