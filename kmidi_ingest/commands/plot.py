"""``kmidi-ingest plot CUE --out FILE.png``: piano rolls over stem log-mels for one cue."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

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

PROG = "kmidi-ingest plot"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Draw every matched track's piano roll over its stem's log-mel on one time "
        "axis, with bar lines from the time-signature map.",
    )
    parser.add_argument("cue", metavar="CUE", help="cue name (e.g. '1M01 Opening') or its path")
    parser.add_argument("--out", required=True, metavar="FILE.png", help="picture to write (PNG)")
    parser.add_argument(
        "--width", type=int, default=1600, metavar="PX", help="width in pixels (default 1600)"
    )
    add_database_url(parser)
    return parser


def main(argv: Sequence[str]) -> int:
    from ..plot import PlotError, plot_cue

    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    if args.width < 400:
        return fail(PROG, f"--width must be at least 400 pixels, got {args.width}", EXIT_USAGE)
    opened = open_database(PROG, args.database_url)
    if isinstance(opened, int):
        return opened
    url, engine = opened
    try:
        result = plot_cue(engine, args.cue, args.out, width_px=args.width)
    except PlotError as exc:
        return fail(PROG, str(exc), EXIT_FAILED)
    except Exception as exc:  # database unreachable, ...
        return fail(PROG, masked(exc, url), EXIT_FAILED)
    finally:
        engine.dispose()
    print(
        f"wrote {result.out} ({result.width_px}x{result.height_px} px, "
        f"{len(result.tracks)} tracks: {', '.join(result.tracks)})"
    )
    return EXIT_OK
