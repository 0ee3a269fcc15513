"""``kmidi-ingest export OUT --format jsonl|parquet|multitrack|windows [...]``: a training export."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from ..errors import KmidiError
from ._common import (
    DATABASE_VARIABLES,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_database_url,
    describe,
    exit_codes,
    fail,
    new_parser,
    non_empty,
    open_database,
    parse,
)

PROG = "kmidi-ingest export"


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        PROG,
        "Export notes, tempo maps, time signatures, categories and stem log-mels for training, "
        "one record per cue (or per matched track), with a manifest beside OUT.",
        codes=exit_codes(
            failed="a --cue or --category matches nothing (nothing written), or the export failed",
            usage="usage or configuration error, an existing OUT, no database at PATH",
        ),
        variables=DATABASE_VARIABLES,
    )
    parser.add_argument(
        "out",
        metavar="OUT",
        type=non_empty,
        help="output file (e.g. corpus.jsonl); a folder for multitrack",
    )
    parser.add_argument(
        "--format",
        required=True,
        choices=("jsonl", "parquet", "multitrack", "windows"),
        help="multitrack: the paired parts and their stems per cue in Slakh's layout; windows: "
        "fixed-length log-mel + piano-roll windows as .npz shards in the folder OUT",
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
        help="only tracks of this category, any case (repeatable)",
    )
    parser.add_argument(
        "--cue",
        action="append",
        default=[],
        metavar="NAME",
        help="only this cue, by name or path, any case (repeatable)",
    )
    parser.add_argument(
        "--min-notes", type=_count, default=0, metavar="N", help="only tracks with at least N notes"
    )
    parser.add_argument(
        "--verified-only", action="store_true", help="only tracks whose stem match was verified"
    )
    windows = parser.add_argument_group("windows (with --format windows)")
    windows.add_argument(
        "--window", type=_seconds, metavar="S", help="window length in seconds (required)"
    )
    windows.add_argument(
        "--hop",
        type=_seconds,
        metavar="S",
        help="seconds between window starts (default: --window)",
    )
    windows.add_argument(
        "--split",
        type=_fractions,
        default=(0.8, 0.1, 0.1),
        metavar="TRAIN,VAL,TEST",
        help="per-cue split fractions (default 0.8,0.1,0.1)",
    )
    windows.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of the per-cue split (default 0)"
    )
    windows.add_argument(
        "--mixes", action="store_true", help="also windows of final mixes, with every part's roll"
    )
    windows.add_argument(
        "--last",
        choices=("pad", "drop"),
        default="pad",
        help="a last window past the audio: padded with a mask (default) or dropped",
    )
    windows.add_argument(
        "--shard-mb",
        type=_seconds,
        default=256.0,
        metavar="MB",
        help="largest shard in megabytes (default 256)",
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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(not 0 <= v <= 1 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(
            f"expected three fractions adding up to 1, e.g. 0.8,0.1,0.1, got {text!r}"
        )
    return values


def _nothing_selected(unmatched: dict[str, list[str]]) -> str | None:
    parts = [
        f"no {what} matches {flag} {', '.join(repr(v) for v in values)}"
        for what, flag, values in (
            ("cue", "--cue", unmatched["cues"]),
            ("track or stem", "--category", unmatched["categories"]),
        )
        if values
    ]
    if not parts:
        return None
    return "; ".join(parts) + " (matched ignoring case); nothing written"


def main(argv: Sequence[str]) -> int:
    from ..export import ExportError, ExportOptions, export, summary_dict, unmatched_selectors
    from ..migrate import current_revision

    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    if args.format == "windows":
        return _windows(args, argv)
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
        if current_revision(engine) is not None:
            problem = _nothing_selected(unmatched_selectors(engine, options))
            if problem is not None:
                return fail(PROG, problem, EXIT_FAILED)
        summary = export(engine, args.out, options)
    except ExportError as exc:
        return fail(PROG, str(exc), EXIT_USAGE)
    except KmidiError as exc:
        return fail(PROG, str(exc), EXIT_FAILED)
    except Exception as exc:  # database unreachable, disk full, ...
        return fail(PROG, describe(exc, [url]), EXIT_FAILED)
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


def _windows(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``--format windows``: :func:`kmidi_ingest.window_export.export_windows` with a progress
    bar of windows written."""
    import sys

    from ..window_export import export_windows
    from ..windowing import WindowError

    if args.window is None:
        return fail(PROG, "--format windows needs --window SECONDS", EXIT_USAGE)
    opened = open_database(PROG, args.database_url)
    if isinstance(opened, int):
        return opened
    url, engine = opened
    bar = None
    if not args.json and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="window", desc="windows", file=sys.stderr)
    try:
        summary = export_windows(
            engine,
            args.out,
            window_s=args.window,
            hop_s=args.hop,
            splits=args.split,
            seed=args.seed,
            shard_mb=args.shard_mb,
            overwrite=args.overwrite,
            command=["kmidi-ingest", "export", *argv],
            progress=None if bar is None else bar.update,
            categories=tuple(args.category),
            cues=tuple(args.cue),
            verified_only=args.verified_only,
            min_notes=args.min_notes,
            mixes=args.mixes,
            last=args.last,
        )
    except WindowError as exc:
        return fail(PROG, str(exc), EXIT_USAGE)
    except KmidiError as exc:
        return fail(PROG, str(exc), EXIT_FAILED)
    except Exception as exc:  # database unreachable, disk full, ...
        return fail(PROG, describe(exc, [url]), EXIT_FAILED)
    finally:
        if bar is not None:
            bar.close()
        engine.dispose()
    if not summary.windows:
        fail(PROG, "no window matched the filters; the export holds none", EXIT_FAILED)
    if args.json:
        print(json.dumps({"out": str(summary.out), "windows": summary.windows,
                          "shards": summary.shards, "counts": summary.counts}, indent=2))  # fmt: skip
    else:
        counts = ", ".join(f"{c['windows']} {name}" for name, c in summary.counts.items())
        print(
            f"wrote {summary.windows} windows ({counts}) in {summary.shards} shards to "
            f"{summary.out}; manifest {summary.manifest}"
        )
    return EXIT_OK if summary.windows else EXIT_FAILED
