"""``kmidi-ingest db ...``: schema migrations and copies between databases, without alembic.ini.

Exit codes: 0 done (for ``copy``: verified identical), 1 failed (for ``copy``: verification found
a difference), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError, KmidiError
from ..urls import mask_url
from ._common import (
    DATABASE_VARIABLES,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_database_url,
    add_version,
    database_url,
    describe,
    epilog,
    exit_codes,
    fail,
    masked,
    missing_database,
    new_parser,
    non_empty,
    parse,
)

PROG = "kmidi-ingest db"
CODES = exit_codes(
    ok="done (for copy: verified identical)",
    failed="failed (for copy: verification found a difference)",
    usage="usage or configuration error (bad URL or revision; no database at PATH for current, "
    "downgrade and the source of copy)",
)
# Actions that only read the database, or make no sense without one: a mistyped SQLite path is
# refused instead of created.
NEEDS_DATABASE = ("current", "downgrade")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        PROG,
        "Manage the database schema (Alembic, shipped inside the package) and copy databases "
        "between environments.",
        codes=CODES,
        variables=DATABASE_VARIABLES,
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def add(name: str, help_text: str, *, url: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog(codes=CODES, variables=DATABASE_VARIABLES if url else ()),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_version(p)
        if url:
            add_database_url(p)
        return p

    p = add("upgrade", "migrate the schema up to REV (default: head, the newest)")
    p.add_argument("revision", metavar="REV", type=non_empty, nargs="?", default="head")
    p = add("downgrade", "migrate the schema down to REV ('base' removes every table)")
    p.add_argument("revision", metavar="REV", type=non_empty)
    add("current", "print the database's revision")
    add("history", "list the revisions shipped with this version, oldest first", url=False)
    p = add("stamp", "record REV as the database's revision without running migrations")
    p.add_argument("revision", metavar="REV", type=non_empty)

    p = add(
        "copy",
        "copy every table from SOURCE_URL into TARGET_URL (resumable), then verify",
        url=False,
    )
    p.description = (
        "Migrate TARGET_URL to the revision of SOURCE_URL, copy every row in chunks (ids "
        "preserved; re-run after an interruption to finish), reset identity sequences, and "
        "verify row counts and per-table checksums. Exit code 0 only if the copy is identical."
    )
    p.add_argument("source_url", metavar="SOURCE_URL")
    p.add_argument("target_url", metavar="TARGET_URL")
    p.add_argument(
        "--chunk-rows",
        type=_chunk_rows,
        default=None,
        metavar="N",
        help="rows per transaction (default: 2000)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _chunk_rows(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str]) -> int:
    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    if args.action == "history":
        return _history()
    urls: list[str] = []
    try:
        if args.action == "copy":
            urls = [args.source_url, args.target_url]
            return _copy(args)
        urls = [database_url(args.database_url)]
        return _migrate(args, urls[0])
    except ConfigError as exc:
        return fail(PROG, f"configuration error: {masked(str(exc), urls)}", EXIT_USAGE)
    except KmidiError as exc:
        # dbcopy.CopyRefused carries exit code 2: nothing was written
        return fail(PROG, masked(str(exc), urls), int(getattr(exc, "exit_code", EXIT_FAILED)))
    except Exception as exc:  # unreachable server, Alembic refusing a revision, ...
        return fail(PROG, describe(exc, urls), EXIT_FAILED)


def _history() -> int:
    from .. import migrate

    for rev in migrate.history():
        head = " (head)" if rev.is_head else ""
        print(f"{rev.down_revision or '<base>'} -> {rev.revision}{head}, {rev.message}")
    return EXIT_OK


def _migrate(args: argparse.Namespace, url: str) -> int:
    from .. import migrate
    from ..db import make_engine

    revision = str(getattr(args, "revision", "head"))
    if revision not in ("head", "base") and not migrate.is_known_revision(revision):
        known = ", ".join(r.revision for r in migrate.history())
        return fail(
            PROG,
            f"unknown revision {revision!r}; this version knows: {known} (or 'head', 'base')",
            EXIT_USAGE,
        )
    if args.action in NEEDS_DATABASE:
        problem = missing_database(url)
        if problem is not None:
            return fail(PROG, problem, EXIT_USAGE)
    engine = make_engine(url)
    try:
        shown = mask_url(url)
        if args.action == "current":
            current = migrate.current_revision(engine)
            if current is None:
                print(f"{shown}: no revision (empty database; run `kmidi-ingest db upgrade`)")
            else:
                head = " (head)" if current == migrate.head_revision() else ""
                print(f"{shown}: {current}{head}")
        elif args.action == "upgrade":
            migrate.upgrade(engine, revision)
            print(f"{shown}: upgraded to {migrate.current_revision(engine)}")
        elif args.action == "downgrade":
            migrate.downgrade(engine, revision)
            print(f"{shown}: downgraded to {migrate.current_revision(engine) or 'base'}")
        elif args.action == "stamp":
            migrate.stamp(engine, revision)
            print(f"{shown}: stamped {migrate.current_revision(engine) or 'base'}")
    finally:
        engine.dispose()
    return EXIT_OK


def _copy(args: argparse.Namespace) -> int:
    from ..db import make_engine
    from ..dbcopy import DEFAULT_CHUNK_ROWS, copy_database

    chunk_rows = DEFAULT_CHUNK_ROWS if args.chunk_rows is None else args.chunk_rows
    problem = missing_database(args.source_url)
    if problem is not None:
        return fail(PROG, f"SOURCE_URL: {problem}", EXIT_USAGE)
    source = make_engine(args.source_url)
    target = make_engine(args.target_url)
    bar: Any = None
    show = not args.quiet and sys.stderr.isatty()

    def on_start(todo: dict[str, int]) -> None:
        nonlocal bar
        if show:
            from tqdm import tqdm

            bar = tqdm(total=sum(todo.values()), unit="row", desc="copy", file=sys.stderr)

    def on_chunk(table: str, rows: int) -> None:
        if bar is not None:
            bar.set_postfix_str(table, refresh=False)
            bar.update(rows)

    try:
        report = copy_database(
            source, target, chunk_rows=chunk_rows, on_start=on_start, on_chunk=on_chunk
        )
    finally:
        if bar is not None:
            bar.close()
        source.dispose()
        target.dispose()
    print(
        f"copied {mask_url(args.source_url)} -> {mask_url(args.target_url)} "
        f"at revision {report.revision}: {sum(report.rows_copied.values())} rows written"
    )
    width = max((len(c.table) for c in report.checks), default=5)
    for check in report.checks:
        status = "ok" if check.ok else "MISMATCH"
        line = (
            f"  {check.table:<{width}}  {check.source_rows:>9} -> {check.target_rows:>9} rows  "
            f"sha256 {check.source_sha256[:12]}"
        )
        if check.target_sha256 != check.source_sha256:
            line += f" vs {check.target_sha256[:12]}"
        print(f"{line}  {status}")
    bad = [c.table for c in report.checks if not c.ok]
    if bad:
        print(f"verification FAILED for: {', '.join(bad)}")
        return EXIT_FAILED
    print(f"verified: {len(report.checks)} tables identical")
    return EXIT_OK
