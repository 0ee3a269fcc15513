"""``kmidi-ingest plot CUE --out FILE.png``: piano rolls over stem log-mels for one cue."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._common import (
    DATABASE_VARIABLES,
    EXIT_FAILED,
    EXIT_OK,
    add_database_url,
    describe,
    exit_codes,
    fail,
    new_parser,
    non_empty,
    open_database,
    parse,
)

PROG = "kmidi-ingest plot"
MIN_WIDTH_PX, MAX_WIDTH_PX = 400, 16000


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        PROG,
        "Draw every matched track's piano roll over its stem's log-mel on one time axis, with "
        "bar lines from the time-signature map.",
        codes=exit_codes(failed="no such cue, nothing to draw, or the picture cannot be written"),
        variables=DATABASE_VARIABLES,
    )
    parser.add_argument(
        "cue", metavar="CUE", type=non_empty, help="cue name (e.g. '1M01 Opening') or its path"
    )
    parser.add_argument(
        "--out", required=True, metavar="FILE.png", type=non_empty, help="picture to write (PNG)"
    )
    parser.add_argument(
        "--width",
        type=_width,
        default=1600,
        metavar="PX",
        help=f"width in pixels, {MIN_WIDTH_PX} to {MAX_WIDTH_PX} (default 1600)",
    )
    add_database_url(parser)
    return parser


def _width(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of pixels, got {text!r}"
        ) from None
    if not MIN_WIDTH_PX <= value <= MAX_WIDTH_PX:
        raise argparse.ArgumentTypeError(
            f"must be {MIN_WIDTH_PX} to {MAX_WIDTH_PX} pixels, got {value}"
        )
    return value


def main(argv: Sequence[str]) -> int:
    from ..plot import PlotError, plot_cue

    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    opened = open_database(PROG, args.database_url)
    if isinstance(opened, int):
        return opened
    url, engine = opened
    try:
        result = plot_cue(engine, args.cue, args.out, width_px=args.width)
    except PlotError as exc:
        return fail(PROG, str(exc), EXIT_FAILED)
    except Exception as exc:  # database unreachable, unwritable output, ...
        return fail(PROG, describe(exc, [url]), EXIT_FAILED)
    finally:
        engine.dispose()
    print(
        f"wrote {result.out} ({result.width_px}x{result.height_px} px, "
        f"{len(result.tracks)} tracks: {', '.join(result.tracks)})"
    )
    return EXIT_OK
