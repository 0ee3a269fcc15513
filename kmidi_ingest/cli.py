"""Command line: ``kmidi-ingest ROOT SAMPLE_RATE [options]``.

The only module that knows argv, progress bars, printing and exit codes:
0 all good, 1 something failed (see the summary), 2 usage or configuration error, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import MATCHERS, load_settings, mask_url, mix_patterns_from
from .discover import safe_text
from .errors import ConfigError, DiscoverError, KmidiError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# Subcommands: ``kmidi-ingest NAME ...`` runs ``main(argv) -> int`` of the module named here.
# Anything else is the ingest command (``kmidi-ingest ROOT SAMPLE_RATE``).
SUBCOMMANDS: dict[str, str] = {
    "db": "kmidi_ingest.commands.db",
    "check": "kmidi_ingest.commands.check",
    "stats": "kmidi_ingest.commands.stats",
    "export": "kmidi_ingest.commands.export",
    "plot": "kmidi_ingest.commands.plot",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmidi-ingest",
        description="Ingest film/TV music cues (MIDI + printed stems) into a database.",
    )
    parser.add_argument("root", metavar="ROOT", help="folder holding cue folders (any depth)")
    parser.add_argument(
        "sample_rate",
        metavar="SAMPLE_RATE",
        type=_positive_int,
        help="sample rate in Hz of the composite mono used for features, e.g. 48000",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy URL (default: $DATABASE_URL or sqlite:///kmidi.sqlite)",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="processes computing cues in parallel (default: $KMIDI_WORKERS or the CPU count)",
    )
    parser.add_argument(
        "--executor",
        choices=("local", "dask"),
        default="local",
        help="local: this machine (default); dask: a Dask cluster writing to PostgreSQL",
    )
    parser.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="address of the Dask scheduler (with --executor dask)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list the cues, MIDI files, stems and mixes that would be ingested; write nothing",
    )
    parser.add_argument(
        "--matcher", choices=MATCHERS, help="track/stem matcher (default: $KMIDI_MATCHER or fuzzy)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="re-ingest every cue, even those stored with the same content",
    )
    parser.add_argument(
        "--mix-pattern",
        action="append",
        metavar="REGEX",
        help="name pattern of a final mix, repeatable; 'default' stands for the built-in "
        "patterns (default: $KMIDI_MIX_PATTERNS or the built-in 6mx, 2mx, mix, Full Mix, …)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level",
    )
    parser.add_argument("--version", action="version", version=f"kmidi-ingest {__version__}")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive whole number, got {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in SUBCOMMANDS:
        import importlib

        module = importlib.import_module(SUBCOMMANDS[args_list[0]])
        return int(module.main(args_list[1:]))
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(exc.code or 0)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings().with_overrides(
            database_url=args.database_url,
            matcher=args.matcher,
            workers=args.workers,
            mix_patterns=mix_patterns_from(args.mix_pattern) if args.mix_pattern else None,
        )
    except ConfigError as exc:
        print(f"kmidi-ingest: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:
        return _run_plan(args, settings)
    return _run_ingest(args, settings)


def _run_ingest(args: argparse.Namespace, settings: Any) -> int:
    import signal
    import threading

    from .pipeline import ingest

    bars: list[Any] = []
    show = not args.quiet and not args.json and sys.stderr.isatty()
    stop = threading.Event()

    def on_start(total: int) -> None:
        if show:
            from tqdm import tqdm

            bars.append(tqdm(total=total, unit="cue", desc="cues", file=sys.stderr, position=0))
            bars.append(tqdm(unit="s", desc="audio", file=sys.stderr, position=1, unit_scale=True))

    def progress(cue: str, outcome: str) -> None:
        if bars:
            bars[0].set_postfix_str(f"{outcome}: {safe_text(cue)}"[-60:], refresh=False)
            bars[0].update(1)

    def audio_progress(seconds: float) -> None:
        if bars:
            bars[1].update(seconds)

    def on_sigint(_signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        stop.set()
        print(
            "kmidi-ingest: interrupted; finishing the cues in flight (Ctrl-C again to abort)",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        summary = ingest(
            args.root,
            args.sample_rate,
            settings=settings,
            force=args.force,
            workers=settings.workers,
            progress=progress,
            on_start=on_start,
            executor=args.executor,
            scheduler=args.scheduler,
            stop=stop,
            audio_progress=audio_progress,
        )
    except KeyboardInterrupt:  # Ctrl-C before the run started, or a second one
        print("kmidi-ingest: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ConfigError, DiscoverError) as exc:
        print(f"kmidi-ingest: {_masked(exc, settings)}", file=sys.stderr)
        return EXIT_USAGE
    except KmidiError as exc:
        print(f"kmidi-ingest: {_masked(exc, settings)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # database unreachable, permission denied, ...
        print(f"kmidi-ingest: {type(exc).__name__}: {_masked(exc, settings)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGINT, previous)
        for bar in bars:
            bar.close()

    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, default=str))
    else:
        print(format_summary(summary))
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.ok else EXIT_FAILED


def _matcher_note(summary: Any) -> str:
    if summary.matcher != "llm":
        return f"{summary.matcher} matcher"
    note = f"llm matcher: {summary.llm_requests} requests, {summary.llm_cache_hits} cached answers"
    if summary.match_fallbacks:
        note += f", {summary.match_fallbacks} cues fell back to fuzzy"
    return note


def _masked(exc: BaseException, settings: Any) -> str:
    return safe_text(str(exc).replace(settings.database_url, mask_url(settings.database_url)))


def _run_plan(args: argparse.Namespace, settings: Any) -> int:
    from .pipeline import plan

    try:
        report = plan(args.root, args.sample_rate, settings=settings, force=args.force)
    except (ConfigError, DiscoverError) as exc:
        print(f"kmidi-ingest: {_masked(exc, settings)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # database unreachable, ...
        print(f"kmidi-ingest: {type(exc).__name__}: {_masked(exc, settings)}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_plan(report))
    return EXIT_FAILED if report.errors else EXIT_OK


_UNIT_NOTES = {  # how a unit of work was formed (discover.scan); a cue folder needs no note
    "performance": " (performance: MIDI file + same-named audio)",
    "file": " (MIDI file on its own)",
}


def format_plan(report: Any) -> str:
    """Human-readable listing of a :class:`~kmidi_ingest.pipeline.DryRunReport`."""
    todo = sum(1 for c in report.cues if c.action != "skip")
    lines = [
        f"kmidi-ingest {__version__} dry run: {report.root} at {report.sample_rate_hz} Hz "
        f"→ {report.database} (nothing written)",
        f"  {len(report.cues)} cues: {todo} to ingest, {len(report.cues) - todo} to skip "
        "(already stored)",
    ]
    for cue in report.cues:
        lines.append(f"  [{cue.action}] {cue.rel_path}{_UNIT_NOTES.get(cue.kind, '')}")
        lines.extend(f"      MIDI  {name}" for name in cue.midi_files)
        for label, groups in (("stem", cue.stems), ("mix ", cue.final_mixes)):
            lines.extend(
                f"      {label}  {g.name} ({g.layout}): {', '.join(g.files)}" for g in groups
            )
    for problem in report.problems:
        tag = "ERROR" if problem.severity == "error" else "warning"
        lines.append(f"  {tag} [{problem.stage}] {problem.path}: {problem.message}")
    return "\n".join(lines)


def _skipped_note(summary: Any) -> str:
    if not summary.cues_elsewhere:
        return "already stored"
    return f"already stored; {summary.cues_elsewhere} by another run at the same time"


def format_summary(summary: Any) -> str:
    """Human-readable summary of an :class:`~kmidi_ingest.pipeline.IngestSummary`."""
    lines = [
        f"kmidi-ingest {__version__}: {summary.root} at {summary.sample_rate_hz} Hz "
        f"→ {summary.database}",
        f"  cues        {summary.cues_found} found, {summary.cues_ingested} ingested, "
        f"{summary.cues_skipped} skipped ({_skipped_note(summary)}), "
        f"{summary.cues_failed} failed",
        f"  MIDI        {summary.midi_files} files, {summary.tracks} instrument tracks, "
        f"{summary.notes} notes",
        f"  audio       {summary.stems} stems, {summary.final_mixes} final mixes, "
        f"{summary.audio_s:.1f} s of audio",
        f"  matches     {summary.matches} tracks matched to stems ({_matcher_note(summary)})",
        *(
            f"  offset      {cue}: stems {abs(offset):.3f} s "
            f"{'behind' if offset > 0 else 'ahead of'} the MIDI"
            for cue, offset in sorted(summary.midi_offsets.items())
        ),
        f"  problems    {len(summary.errors)} errors, {len(summary.warnings)} warnings",
        f"  elapsed     {summary.elapsed_s:.1f} s",
    ]
    for problem in summary.problems:
        tag = "ERROR" if problem.severity == "error" else "warning"
        lines.append(f"  {tag} [{problem.stage}] {problem.path}: {problem.message}")
    if summary.interrupted:
        lines.append("  interrupted: stopped after the cue in flight; re-run to finish")
    return "\n".join(lines)
