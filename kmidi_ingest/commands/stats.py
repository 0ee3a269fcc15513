"""``kmidi-ingest stats [--database-url URL] [--json]``: an inventory of the database."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from collections.abc import Sequence
from typing import Any

from ..urls import mask_url
from ._common import (
    DATABASE_VARIABLES,
    EXIT_FAILED,
    EXIT_OK,
    add_database_url,
    describe,
    exit_codes,
    fail,
    new_parser,
    open_database,
    parse,
)

PROG = "kmidi-ingest stats"


def build_parser() -> ArgumentParser:
    parser = new_parser(
        PROG,
        "Inventory of the database: cues, MIDI, audio, categories, matches, errors.",
        codes=exit_codes(failed="the database holds no kmidi schema, or cannot be read"),
        variables=DATABASE_VARIABLES,
    )
    add_database_url(parser)
    parser.add_argument("--json", action="store_true", help="print the inventory as JSON")
    return parser


def main(argv: Sequence[str]) -> int:
    from ..inventory import inventory
    from ..migrate import current_revision

    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    opened = open_database(PROG, args.database_url)
    if isinstance(opened, int):
        return opened
    url, engine = opened
    try:
        if current_revision(engine) is None:
            return fail(
                PROG,
                f"{mask_url(url)} holds no kmidi schema; ingest a tree into it first",
                EXIT_FAILED,
            )
        result = inventory(engine)
    except Exception as exc:  # database unreachable, permission denied, ...
        return fail(PROG, describe(exc, [url]), EXIT_FAILED)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({"database": mask_url(url), **result.to_dict()}, indent=2))
    else:
        print(format_inventory(result.to_dict(), mask_url(url)))
    return EXIT_OK


def format_inventory(data: dict[str, Any], database: str) -> str:
    """The inventory as aligned text tables."""

    def row(label: str, value: object) -> str:
        return f"  {label:<34} {value:>12}"

    lines = [
        f"inventory of {database}",
        row("cues", data["cues"]),
        row("MIDI files", data["midi_files"]),
        row("instrument tracks", data["tracks"]),
        row("notes", data["notes"]),
        row("hours of MIDI", f"{data['midi_hours']:.3f}"),
        row("stems", data["stems"]),
        row("hours of stems", f"{data['stem_hours']:.3f}"),
        row("final mixes", data["final_mixes"]),
        row("hours of final mixes", f"{data['final_mix_hours']:.3f}"),
        "",
        "  track/stem pairs",
        row("tracks matched to a stem", data["tracks_matched"]),
        row("track/stem pairs (desk stems too)", data["pairs"]),
        row("  verified by the audio", data["matches_verified"]),
        row("  rejected by the audio", data["matches_rejected"]),
        row("  unverified", data["matches_unverified"]),
        row("tracks without a stem", data["tracks_unmatched"]),
        row("stems without a track", data["stems_unmatched"]),
        row("cues with MIDI but no stems", data["cues_midi_without_stems"]),
        row("cues with stems but no MIDI", data["cues_stems_without_midi"]),
    ]
    if data["cues_incomplete"]:
        lines.append(row("incomplete cues (ignored)", data["cues_incomplete"]))
    lines += ["", f"  {'category':<20} {'tracks':>8} {'notes':>10} {'stems':>8}"]
    for name, c in data["categories"].items():
        lines.append(f"  {name:<20} {c['tracks']:>8} {c['notes']:>10} {c['stems']:>8}")
    stages = sorted(set(data["errors_by_stage"]) | set(data["warnings_by_stage"]))
    lines += ["", f"  {'stage':<20} {'errors':>8} {'warnings':>10}"]
    for stage in stages:
        lines.append(
            f"  {stage:<20} {data['errors_by_stage'].get(stage, 0):>8} "
            f"{data['warnings_by_stage'].get(stage, 0):>10}"
        )
    if not stages:
        lines.append(f"  {'(none)':<20} {0:>8} {0:>10}")
    return "\n".join(lines)
