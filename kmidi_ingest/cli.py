"""Command line: ``kmidi-ingest ROOT SAMPLE_RATE [options]`` and ``kmidi-ingest COMMAND ...``.

The only module that knows argv, progress bars, printing and exit codes (see
:data:`~kmidi_ingest.commands._common.EXIT_CODES`): 0 all good, 1 something failed (see the
summary), 2 usage or configuration error, 130 Ctrl-C, 141 output closed early.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from .commands._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    database_url,
    describe,
    exit_codes,
    fail,
    guarded,
    masked,
    new_parser,
    non_empty,
    parse,
    printable,
)
from .config import (
    ENVIRONMENT,
    MATCHERS,
    SettingError,
    Settings,
    load_settings,
    mix_patterns_from,
    mix_patterns_setting,
    read_environment,
)
from .errors import ConfigError, DiscoverError, KmidiError
from .options import LlmConfig
from .version import __version__

if TYPE_CHECKING:
    from .options import MatcherName

PROG = "kmidi-ingest"

# Subcommands: ``kmidi-ingest NAME ...`` runs ``main(argv) -> int`` of the module named here.
# Anything else is the ingest command (``kmidi-ingest ROOT SAMPLE_RATE``).
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("db", "kmidi_ingest.commands.db", "schema migrations (upgrade, current, ...) and db copy"),
    ("check", "kmidi_ingest.commands.check", "decode every file of a tree; list broken ones"),
    ("stats", "kmidi_ingest.commands.stats", "inventory of the database"),
    (
        "export",
        "kmidi_ingest.commands.export",
        "training export: JSONL, Parquet, multitrack, windows",
    ),
    ("plot", "kmidi_ingest.commands.plot", "piano rolls over stem log-mels for one cue"),
)
SUBCOMMANDS: dict[str, str] = {name: module for name, module, _ in COMMANDS}

# Settings the ingest command's flags replace: a bad variable gets the flag as a hint.
FLAG_FOR_VARIABLE = {
    "DATABASE_URL": "--database-url URL",
    "KMIDI_DB_IAM": "--database-url URL",
    "KMIDI_MATCHER": "--matcher NAME",
    "KMIDI_WORKERS": "--workers N",
}


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        PROG,
        "Ingest film/TV music cues (MIDI + printed stems) into a database.",
        usage="%(prog)s ROOT SAMPLE_RATE [options]\n"
        "       %(prog)s {" + ",".join(SUBCOMMANDS) + "} ...",
        codes=exit_codes(
            failed="something failed (listed in the summary and in ingest_errors; "
            "for --dry-run: problems found)"
        ),
        variables=[name for name, _, _ in ENVIRONMENT],
        commands=[(name, summary) for name, _, summary in COMMANDS],
    )
    parser.add_argument(
        "root", metavar="ROOT", type=non_empty, help="folder holding cue folders (any depth)"
    )
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
    """Run ``kmidi-ingest`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    return guarded(PROG, lambda: _dispatch(args_list))


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        return int(module.main(argv[1:]))
    return ingest_command(argv)


def ingest_command(argv: Sequence[str]) -> int:
    """``kmidi-ingest ROOT SAMPLE_RATE [options]``: ingest, or with ``--dry-run`` plan."""
    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        mix = mix_patterns_from(args.mix_pattern) if args.mix_pattern else None
        if args.dry_run:  # a plan reads DATABASE_URL and the mix patterns only
            settings = Settings(
                database_url=database_url(args.database_url),
                mix_patterns=mix_patterns_setting(read_environment(), mix),
            )
            settings.validate()
        else:
            settings = load_settings(
                database_url=args.database_url,
                matcher=args.matcher,
                workers=args.workers,
                mix_patterns=mix,
            )
    except ConfigError as exc:
        return fail(PROG, f"configuration error: {_with_flag_hint(exc)}", EXIT_USAGE)
    if args.dry_run:
        return _run_plan(args, settings)
    return _run_ingest(args, settings)


def _with_flag_hint(exc: ConfigError) -> str:
    message = str(exc)
    if isinstance(exc, SettingError) and exc.variable in FLAG_FOR_VARIABLE:
        message += f" (or give {FLAG_FOR_VARIABLE[exc.variable]})"
    return message


def _call_ingest(args: argparse.Namespace, settings: Settings, **hooks: Any) -> Any:
    """The one call into the library's ingest: settings and flags become its arguments."""
    from .batch import ingest

    return ingest(
        args.root,
        args.sample_rate,
        database_url=settings.database_url,
        matcher=cast("MatcherName", settings.matcher),  # validated by Settings
        llm=_llm_config(settings),
        force=args.force,
        workers=settings.workers,
        writer_memory_mb=settings.writer_memory_mb,
        executor=args.executor,
        scheduler=args.scheduler,
        options=_cue_options(settings),
        **hooks,
    )


def _call_plan(args: argparse.Namespace, settings: Settings) -> Any:
    """The one call into the library's plan (``--dry-run``)."""
    from .batch import plan

    return plan(
        args.root,
        args.sample_rate,
        database_url=settings.database_url,
        force=args.force,
        options=_cue_options(settings),
    )


def _cue_options(settings: Settings) -> Any:
    from .batch import CueOptions
    from .discover import GroupingRules

    return CueOptions(rules=GroupingRules(final_mix_patterns=settings.mix_patterns))


def _library_error(exc: BaseException, settings: Settings) -> int:
    """Print the message for an error raised by ingest or plan; return its exit code."""
    urls = [settings.database_url]
    if isinstance(exc, (ConfigError, DiscoverError)):
        return fail(PROG, flag_hints(masked(str(exc), urls)), EXIT_USAGE)
    if isinstance(exc, KmidiError):
        return fail(PROG, masked(str(exc), urls), EXIT_FAILED)
    return fail(PROG, describe(exc, urls), EXIT_FAILED)  # database unreachable, disk full, ...


def _run_ingest(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from .allocator import keep_freed_memory

    keep_freed_memory()  # this process computes the cues itself with one worker

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
            bars[0].set_postfix_str(f"{outcome}: {printable(cue)}"[-60:], refresh=False)
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
        summary = _call_ingest(
            args,
            settings,
            progress=progress,
            on_start=on_start,
            stop=stop,
            audio_progress=audio_progress,
        )
    except KeyboardInterrupt:  # Ctrl-C before the run started, or a second one
        print("kmidi-ingest: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _library_error(exc, settings)
    finally:
        signal.signal(signal.SIGINT, previous)
        for bar in bars:
            bar.close()

    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, default=str))
    else:
        print(printable(format_summary(summary)))
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


def _llm_config(settings: Any) -> LlmConfig | None:
    if not settings.openai_api_key:
        return None
    return LlmConfig(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        model=settings.llm_model,
        timeout_s=settings.llm_timeout_s,
    )


# The library's messages name its parameters; on the command line they are flags and variables.
_FLAG_HINTS = (
    ('executor="dask"', "--executor dask"),
    ('executor="local"', "--executor local"),
    ('scheduler="tcp://HOST:PORT"', "--scheduler tcp://HOST:PORT"),
    ("scheduler is only used", "--scheduler is only used"),
    ('database_url="postgresql://..."', "--database-url postgresql://..."),
    ('matcher="llm" needs llm=LlmConfig(api_key=...)', "KMIDI_MATCHER=llm needs OPENAI_API_KEY"),
    ('(or use matcher="fuzzy" or "auto")', "(or use the fuzzy or auto matcher)"),
    ("sample rate must be", "SAMPLE_RATE must be"),
)


def flag_hints(message: str) -> str:
    """``message`` of a library error with its parameter names spelt as the CLI's flags."""
    for parameter, flag in _FLAG_HINTS:
        message = message.replace(parameter, flag)
    return message


def _run_plan(args: argparse.Namespace, settings: Settings) -> int:
    try:
        report = _call_plan(args, settings)
    except Exception as exc:
        return _library_error(exc, settings)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(printable(format_plan(report)))
    return EXIT_FAILED if report.errors else EXIT_OK


_UNIT_NOTES = {  # how a unit of work was formed (discover.scan); a cue folder needs no note
    "performance": " (performance: MIDI file + same-named audio)",
    "file": " (MIDI file on its own)",
}


def format_plan(report: Any) -> str:
    """Human-readable listing of a :class:`~kmidi_ingest.batch.DryRunReport`."""
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
    """Human-readable summary of an :class:`~kmidi_ingest.batch.IngestSummary`."""
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
