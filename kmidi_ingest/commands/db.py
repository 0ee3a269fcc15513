"""``kmidi-ingest db ...``: schema migrations and copies between databases, without alembic.ini.

Exit codes: 0 done (for ``copy``: verified identical), 1 failed (for ``copy``: verification found
a difference), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..config import load_settings, mask_url
from ..errors import ConfigError, KmidiError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmidi-ingest db",
        description="Manage the database schema (Alembic, shipped inside the package) and copy "
        "databases between environments.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    url_help = "SQLAlchemy URL (default: $DATABASE_URL or sqlite:///kmidi.sqlite)"

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--database-url", metavar="URL", help=url_help)
        return p

    p = add("upgrade", "migrate the schema up to REV (default: head, the newest)")
    p.add_argument("revision", metavar="REV", nargs="?", default="head")
    p = add("downgrade", "migrate the schema down to REV ('base' removes every table)")
    p.add_argument("revision", metavar="REV")
    add("current", "print the database's revision")
    add("history", "list the revisions shipped with this version, oldest first")
    p = add("stamp", "record REV as the database's revision without running migrations")
    p.add_argument("revision", metavar="REV")

    p = sub.add_parser(
        "copy",
        help="copy every table from SOURCE_URL into TARGET_URL (resumable), then verify",
        description="Migrate TARGET_URL to the revision of SOURCE_URL, copy every row in chunks "
        "(ids preserved; re-run after an interruption to finish), reset identity sequences, and "
        "verify row counts and per-table checksums. Exit code 0 only if the copy is identical.",
    )
    p.add_argument("source_url", metavar="SOURCE_URL")
    p.add_argument("target_url", metavar="TARGET_URL")
    p.add_argument(
        "--chunk-rows",
        type=int,
        default=None,
        metavar="N",
        help="rows per transaction (default: 2000)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    urls: list[str] = []
    try:
        if args.action == "copy":
            urls = [args.source_url, args.target_url]
            return _copy(args)
        url = args.database_url or load_settings().database_url
        urls = [url]
        return _migrate(args, url)
    except ConfigError as exc:
        print(f"kmidi-ingest db: configuration error: {_masked(str(exc), urls)}", file=sys.stderr)
        return EXIT_USAGE
    except KmidiError as exc:
        print(f"kmidi-ingest db: {_masked(str(exc), urls)}", file=sys.stderr)
        return int(getattr(exc, "exit_code", EXIT_FAILED))  # dbcopy.CopyRefused: 2
    except Exception as exc:  # unreachable server, Alembic refusing a revision, ...
        print(f"kmidi-ingest db: {type(exc).__name__}: {_masked(str(exc), urls)}", file=sys.stderr)
        return EXIT_FAILED


def _masked(message: str, urls: Sequence[str]) -> str:
    for url in urls:
        message = message.replace(url, mask_url(url))
    return message


def _migrate(args: argparse.Namespace, url: str) -> int:
    from .. import migrate
    from ..db import make_engine

    if args.action == "history":
        for rev in migrate.history():
            head = " (head)" if rev.is_head else ""
            print(f"{rev.down_revision or '<base>'} -> {rev.revision}{head}, {rev.message}")
        return EXIT_OK
    revision = str(getattr(args, "revision", "head"))
    if revision not in ("head", "base") and not migrate.is_known_revision(revision):
        known = ", ".join(r.revision for r in migrate.history())
        print(
            f"kmidi-ingest db: unknown revision {revision!r}; "
            f"this version knows: {known} (or 'head', 'base')",
            file=sys.stderr,
        )
        return EXIT_USAGE
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
    if chunk_rows < 1:
        raise ConfigError(f"--chunk-rows must be at least 1, got {chunk_rows}")
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
