"""``kmidi-ingest export OUT --format jsonl|parquet|multitrack [...]``: a training export."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from ..errors import KmidiError
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_database_url,
    fail,
    masked,
    open_database,
    parse,
)

PROG = "kmidi-ingest export"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export notes, tempo maps, time signatures, categories and stem log-mels "
        "for training, one record per cue (or per matched track), with a manifest beside OUT.",
    )
    parser.add_argument(
        "out", metavar="OUT", help="output file (e.g. corpus.jsonl); a folder for multitrack"
    )
    parser.add_argument(
        "--format",
        required=True,
        choices=("jsonl", "parquet", "multitrack"),
        help="multitrack: the paired parts and their stems per cue in Slakh's layout",
    )
    parser.add_argument(
        "--per",
        default="cue",
        choices=("cue", "track"),
        help="one record per cue or per matched track",
    )
    parser.add_argument(
        "--features",
        default="arrays",
        choices=("arrays", "files"),
        help="log-mels inside the records, or as .npy files in OUT.features/ (paths in the records)",
    )
    parser.add_argument(
        "--category",
        action="append",
        default=[],
        metavar="C",
        help="only tracks of this category (repeatable)",
    )
    parser.add_argument(
        "--cue",
        action="append",
        default=[],
        metavar="NAME",
        help="only this cue, by name or path (repeatable)",
    )
    parser.add_argument(
        "--min-notes", type=_count, default=0, metavar="N", help="only tracks with at least N notes"
    )
    parser.add_argument(
        "--verified-only", action="store_true", help="only tracks whose stem match was verified"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_database_url(parser)
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value


def main(argv: Sequence[str]) -> int:
    from ..export import ExportError, ExportOptions, export, summary_dict

    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    options = ExportOptions(
        format=args.format,
        per=args.per,
        features=args.features,
        categories=tuple(args.category),
        cues=tuple(args.cue),
        min_notes=args.min_notes,
        verified_only=args.verified_only,
        overwrite=args.overwrite,
    )
    opened = open_database(PROG, args.database_url)
    if isinstance(opened, int):
        return opened
    url, engine = opened
    try:
        summary = export(engine, args.out, options)
    except ExportError as exc:
        return fail(PROG, str(exc), EXIT_USAGE)
    except KmidiError as exc:
        return fail(PROG, str(exc), EXIT_FAILED)
    except Exception as exc:  # database unreachable, disk full, ...
        return fail(PROG, masked(exc, url), EXIT_FAILED)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(summary_dict(summary), indent=2))
    else:
        print(
            f"wrote {summary.records} records ({summary.cues} cues, {summary.tracks} tracks, "
            f"{summary.notes} notes, {summary.stems} stems, {summary.final_mixes} final mixes) "
            f"to {summary.out}; manifest {summary.manifest}"
        )
        if summary.feature_dir is not None:
            print(f"{summary.feature_files} log-mel .npy files in {summary.feature_dir}")
    return EXIT_OK
