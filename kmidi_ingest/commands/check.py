"""``kmidi-ingest check ROOT [--quarantine DIR] [--json]``: health check of a tree, no database.

Exit codes: 0 nothing broken, 1 something broken (listed), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from ..errors import DiscoverError, KmidiError
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    describe,
    exit_codes,
    fail,
    new_parser,
    non_empty,
    parse,
    printable,
)

PROG = "kmidi-ingest check"


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        PROG,
        "Open and fully decode every MIDI and audio file below ROOT; list broken ones. "
        "Needs no database.",
        codes=exit_codes(
            ok="nothing broken",
            failed="something broken (listed), or a broken file could not be moved",
            usage="usage error (ROOT missing or no folder, --quarantine inside ROOT's path)",
        ),
    )
    parser.add_argument("root", metavar="ROOT", type=non_empty, help="folder to check (any depth)")
    parser.add_argument(
        "--quarantine",
        metavar="DIR",
        type=non_empty,
        help="move broken files below DIR, keeping their paths relative to ROOT "
        "(never deletes or overwrites; writes a JSON and CSV manifest)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: Sequence[str]) -> int:
    from ..health import check_tree, quarantine

    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    root = Path(args.root)
    dest = Path(args.quarantine) if args.quarantine else None
    if dest is not None and root.is_dir():
        r, d = root.resolve(), dest.resolve()
        if d == r or r.is_relative_to(d):
            return fail(PROG, f"--quarantine {dest} must not be ROOT or hold it", EXIT_USAGE)
    try:
        report = check_tree(root, exclude=dest)
    except DiscoverError as exc:
        return fail(PROG, str(exc), EXIT_USAGE)
    moved = None
    error: str | None = None
    if dest is not None and report.broken:
        try:
            moved = quarantine(report, dest)
        except KmidiError as exc:
            error = str(exc)
        except OSError as exc:
            error = describe(exc)
    if args.json:
        out = report.to_dict()
        if moved is not None:
            out["quarantine"] = {
                "manifest_json": str(moved.manifest_json),
                "manifest_csv": str(moved.manifest_csv),
                "moved": [
                    {"source": str(m.source), "destination": str(m.destination)}
                    for m in moved.moves
                ],
            }
        print(json.dumps(out, indent=2))
    else:
        lines = [
            f"checked {report.midi_checked} MIDI and {report.audio_checked} audio files "
            f"below {report.root}: {len(report.broken)} broken",
            *(f"  BROKEN [{item.kind}] {item.rel_path}: {item.reason}" for item in report.broken),
            *(f"  SKIPPED [{item.kind}] {item.rel_path}: {item.reason}" for item in report.skipped),
        ]
        if moved is not None:
            lines.append(
                f"moved {len(moved.moves)} files to {dest}; manifest {moved.manifest_json}"
            )
        print(printable("\n".join(lines)))
    if error is not None:
        return fail(PROG, error, EXIT_FAILED)
    return EXIT_OK if report.ok else EXIT_FAILED
