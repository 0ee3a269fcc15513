"""Pipeline: find cues, skip the ones already stored, compute the rest and write each cue in one
transaction.

Executors: ``local`` computes serially or in a process pool while this process writes (the single
writer SQLite needs); ``dask`` runs the same per-cue task (compute and write) on the workers of a
Dask distributed cluster, all writing to one PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from queue import Empty
from typing import Any, TypeAlias

from . import __version__, discover, spill, store
from .audio import MelParams, StemData, process_group
from .claims import CueClaims
from .config import Settings, load_settings, mask_url
from .discover import CueSource, GroupingRules
from .errors import ConfigError, KmidiError
from .match import FuzzyMatcher, LlmMatcher, Matcher, resolve_matcher
from .midi import MidiData, read_midi
from .pairing import apply_matcher, match_offline
from .results import CueResult, Problem

log = logging.getLogger(__name__)

EXECUTORS = ("local", "dask")


@dataclass(frozen=True, kw_only=True)
class CueOptions:
    """Everything a worker needs to compute one cue (picklable)."""

    sample_rate_hz: int
    mel: MelParams = field(default_factory=MelParams)
    rules: GroupingRules = field(default_factory=GroupingRules)
    match_threshold: float = 60.0
    # A pool worker hands MIDI arrays larger than this to the writer through a temporary file
    # (kmidi_ingest.spill); None: never.
    spill_midi_bytes: int | None = None


@dataclass(frozen=True, kw_only=True)
class Unchanged:
    """A cue whose content hash equals the stored one (only its stat fingerprint moved)."""

    rel_path: str
    stat_fingerprint: str


@dataclass(frozen=True)
class Elsewhere:
    """A job not computed: another run holds the cue's claim or has stored the cue."""


@dataclass(kw_only=True)
class ProblemReport:
    cue: str | None
    stage: str
    path: str | None
    error_type: str
    message: str
    severity: str = "error"


@dataclass(frozen=True, kw_only=True)
class CueOutcome:
    """What happened to one cue once written (small and picklable: Dask workers return it).

    ``status`` is ``ingested``, ``unchanged`` (content hash equal to the stored one),
    ``conflict`` (another process stored the cue first), ``elsewhere`` (another run was
    ingesting it or had just stored it, so it was not computed here) or ``failed``.
    """

    rel_path: str
    status: str
    midi_files: int = 0
    tracks: int = 0
    notes: int = 0
    stems: int = 0
    final_mixes: int = 0
    matches: int = 0
    audio_s: float = 0.0
    llm_requests: int = 0
    llm_cache_hits: int = 0
    match_fallbacks: int = 0
    midi_offset_s: float | None = None  # set when the cue's stems are offset from its MIDI
    problems: tuple[ProblemReport, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LlmUse:
    """What the LLM match step of one cue cost: requests sent, cached answers, fallbacks."""

    requests: int = 0
    cache_hits: int = 0
    fallbacks: int = 0


@dataclass(kw_only=True)
class IngestSummary:
    """What a run did. ``ok`` is false when anything failed."""

    run_id: int | None = None
    database: str = ""
    root: str = ""
    sample_rate_hz: int = 0
    executor: str = "local"
    workers: int = 1
    cues_found: int = 0
    cues_ingested: int = 0
    cues_skipped: int = 0
    cues_failed: int = 0
    cues_elsewhere: int = 0  # of the skipped: ingested by another run at the same time
    midi_files: int = 0
    tracks: int = 0
    notes: int = 0
    stems: int = 0
    final_mixes: int = 0
    matches: int = 0
    matcher: str = "fuzzy"
    llm_requests: int = 0
    llm_cache_hits: int = 0
    match_fallbacks: int = 0  # cues the LLM could not match (fuzzy used instead)
    midi_offsets: dict[str, float] = field(default_factory=dict)  # cue → stems behind MIDI, s
    audio_s: float = 0.0
    problems: list[ProblemReport] = field(default_factory=list)
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def errors(self) -> list[ProblemReport]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[ProblemReport]:
        return [p for p in self.problems if p.severity != "error"]

    @property
    def ok(self) -> bool:
        return not self.errors and self.cues_failed == 0 and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["errors"] = [asdict(p) for p in self.errors]
        data["warnings"] = [asdict(p) for p in self.warnings]
        data["error_count"] = len(self.errors)
        data["warning_count"] = len(self.warnings)
        return data


@dataclass(frozen=True, kw_only=True)
class PlannedGroup:
    """A stem or final mix a dry run found: its name, channel labels and files (cue-relative)."""

    name: str
    layout: str
    files: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class PlannedCue:
    """One cue of a dry run. ``action``: ``ingest`` (new), ``update`` (stored, files changed:
    re-hashed and replaced if the content differs) or ``skip`` (stored, unchanged)."""

    rel_path: str
    action: str
    midi_files: tuple[str, ...]
    stems: tuple[PlannedGroup, ...]
    final_mixes: tuple[PlannedGroup, ...]


@dataclass(frozen=True, kw_only=True)
class DryRunReport:
    """What :func:`ingest` would do, found without writing anything."""

    root: str
    database: str
    sample_rate_hz: int
    cues: tuple[PlannedCue, ...]
    problems: tuple[ProblemReport, ...]

    @property
    def errors(self) -> list[ProblemReport]:
        return [p for p in self.problems if p.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["error_count"] = len(self.errors)
        data["to_ingest"] = sum(1 for c in self.cues if c.action != "skip")
        data["to_skip"] = sum(1 for c in self.cues if c.action == "skip")
        return data


ProgressCallback = Callable[[str, str], None]  # (cue rel_path, outcome) after each cue


def process_cue(
    cue: CueSource,
    options: CueOptions,
    *,
    stat_fingerprint: str,
    stored_content_fingerprint: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> CueResult | Unchanged:
    """Compute everything for one cue (pure computation, no database).

    Returns :class:`Unchanged` when the content hash equals ``stored_content_fingerprint``.
    Per-file failures become :class:`~kmidi_ingest.results.Problem` entries, never exceptions.
    ``progress`` is called with seconds of audio as they are decoded.
    """
    started = time.perf_counter()
    problems: list[Problem] = [_tree_problem(p) for p in cue.problems]
    # Hashing comes first: it decides whether there is anything to compute, and it leaves the
    # files in the page cache for decoding. It runs in this thread, not beside it, so that a
    # worker keeps exactly one core busy: --workers N means N cores.
    hashed = _hash_cue(cue)
    if stored_content_fingerprint is not None and hashed[2] == stored_content_fingerprint:
        return Unchanged(rel_path=cue.rel_path, stat_fingerprint=stat_fingerprint)
    return _compute_cue(cue, options, stat_fingerprint, started, problems, hashed, progress)


_Hashed = tuple[dict[str, str], list[Problem], str]


def _hash_cue(cue: CueSource) -> _Hashed:
    """SHA-256 of every file of ``cue``: ``(hashes by cue-relative path, problems, content fp)``."""
    problems: list[Problem] = []
    hashes: dict[str, str] = {}
    for path in sorted(cue.midi_files + cue.audio_files):
        rel = path.relative_to(cue.path).as_posix()
        try:
            hashes[rel] = discover.sha256_file(path)
        except OSError as exc:
            hashes[rel] = "unreadable"
            problems.append(
                Problem(
                    stage="discover",
                    error_type="UnreadableFile",
                    message=f"cannot read file: {exc.strerror}",
                    path=discover.safe_text(str(path)),
                )
            )
    content_fp = hashlib.sha256(
        "".join(f"{rel}\0{digest}\n" for rel, digest in sorted(hashes.items())).encode(
            "utf-8", "surrogateescape"
        )
    ).hexdigest()
    return hashes, problems, content_fp


def _compute_cue(
    cue: CueSource,
    options: CueOptions,
    stat_fingerprint: str,
    started: float,
    problems: list[Problem],
    hashed: _Hashed,
    progress: Callable[[float], None] | None = None,
) -> CueResult:
    """The computing part of :func:`process_cue`."""
    tree_problems = len(problems)
    midi: list[MidiData] = []
    for path in cue.midi_files:
        try:
            midi.append(read_midi(path))
        except KmidiError as exc:
            problems.append(_problem(exc, path))

    groups = discover.group_channels(
        [(p, p.relative_to(cue.path).as_posix()) for p in cue.audio_files], options.rules
    )
    stems: list[StemData] = []
    mixes: list[StemData] = []
    for group in groups:
        try:
            data = process_group(
                group,
                sample_rate_hz=options.sample_rate_hz,
                params=options.mel,
                rules=options.rules,
                progress=progress,
            )
        except KmidiError as exc:
            # A stem with several bad files records one problem per file.
            for err in getattr(exc, "errors", None) or (exc,):
                problems.append(_problem(err, err.path or group.key))
            continue
        problems.extend(
            Problem(
                stage="audio",
                error_type="AudioWarning",
                message=w,
                path=str(group.files[0].path),
                severity="warning",
            )
            for w in data.warnings
        )
        (mixes if data.is_final_mix else stems).append(data)

    for midi_data in midi:
        if midi_data.lenient:
            problems.append(
                Problem(
                    stage="midi",
                    error_type="LenientRead",
                    severity="warning",
                    path=str(midi_data.path),
                    message="data bytes above 127 were clipped to read this file",
                )
            )

    matching = match_offline(midi, stems, threshold=options.match_threshold, cue_path=str(cue.path))
    problems.extend(matching.problems)
    hashes, hash_problems, content_fp = hashed
    problems[tree_problems:tree_problems] = hash_problems  # in the order they always had
    return CueResult(
        source=cue,
        stat_fingerprint=stat_fingerprint,
        content_fingerprint=content_fp,
        sample_rate_hz=options.sample_rate_hz,
        midi=tuple(midi),
        stems=tuple(stems),
        mixes=tuple(mixes),
        track_categories=matching.track_categories,
        stem_categories=matching.stem_categories,
        matches=matching.matches,
        file_hashes=hashes,
        problems=tuple(problems),
        midi_offset_s=matching.midi_offset_s,
        onset_evidence=matching.evidence,
        elapsed_s=time.perf_counter() - started,
    )


def _problem(exc: KmidiError, path: object) -> Problem:
    return Problem(
        stage=exc.stage,
        error_type=type(exc).__name__,
        message=exc.reason,
        path=str(exc.path or path),
    )


def ingest(
    root: str | Path,
    sample_rate: int,
    *,
    database_url: str | None = None,
    settings: Settings | None = None,
    force: bool = False,
    workers: int | None = 1,
    progress: ProgressCallback | None = None,
    on_start: Callable[[int], None] | None = None,
    options: CueOptions | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    stop: threading.Event | None = None,
    audio_progress: Callable[[float], None] | None = None,
) -> IngestSummary:
    """Ingest every cue below ``root`` at ``sample_rate`` Hz into the database.

    Parameters
    ----------
    root : path
        Folder to walk; cues are found at any depth.
    sample_rate : int
        Rate (Hz) of the composite mono signals the features are computed from.
    database_url : str, optional
        SQLAlchemy URL; default from ``settings`` (``DATABASE_URL`` or ``sqlite:///kmidi.sqlite``).
    force : bool
        Re-ingest cues even when their fingerprint says they are stored already.
    workers : int, optional
        Processes computing cues in parallel (``None``: CPU count). This process writes.
    progress : callable, optional
        Called with ``(cue_rel_path, outcome)`` after each cue; outcome is one of
        ``ingested``, ``skipped``, ``failed``.
    on_start : callable, optional
        Called once with the number of cues found, before any work.
    executor : {"local", "dask"}
        ``dask`` computes and writes each cue on a worker of the Dask cluster at ``scheduler``
        (``tcp://HOST:PORT``); it needs PostgreSQL (SQLite allows one writer only).
    stop : threading.Event, optional
        When set (e.g. by a SIGINT handler), the run finishes the cues in flight, starts no
        other and returns a summary with ``interrupted`` true.
    audio_progress : callable, optional
        Called with seconds of audio (stems and mixes) as they are decoded, block by block, from
        this process or, through a queue, from the worker processes; with the ``dask`` executor
        once per cue, when it is stored.

    Raises
    ------
    ConfigError
        For a bad sample rate, executor or scheduler, or SQLite with the ``dask`` executor.
    DiscoverError
        When ``root`` is not a readable folder.
    """
    from .db import make_engine, normalize_url

    started = time.perf_counter()
    settings = settings or load_settings()
    url = str(database_url or settings.database_url)
    if sample_rate <= 0:
        raise ConfigError(f"SAMPLE_RATE must be a positive number of Hz, got {sample_rate}")
    if settings.matcher == "llm" and not settings.openai_api_key:
        raise ConfigError(
            "KMIDI_MATCHER=llm needs OPENAI_API_KEY (or use the fuzzy or auto matcher)"
        )
    _check_executor(executor, scheduler, normalize_url(url).get_backend_name())
    worker_count = _worker_count(workers)
    options = options or CueOptions(
        sample_rate_hz=sample_rate,
        spill_midi_bytes=spill_threshold(settings.writer_memory_mb, worker_count),
    )
    root_path = Path(root)
    tree = discover.scan(root_path)
    cues = list(tree.cues)
    stop = stop or threading.Event()

    engine = make_engine(url)
    try:
        _upgrade(engine)
        summary = IngestSummary(
            database=mask_url(url),
            root=discover.safe_text(str(root_path)),
            sample_rate_hz=sample_rate,
            executor=executor,
            workers=worker_count,
            cues_found=len(cues),
        )
        run_id = store.start_run(
            engine,
            root=discover.safe_text(str(root_path.resolve())),
            sample_rate_hz=sample_rate,
            matcher=settings.matcher,
            version=__version__,
            parameters={
                "force": force,
                "workers": worker_count,
                "executor": executor,
                "scheduler": scheduler,
                "mel": asdict(options.mel),
                "match_threshold": options.match_threshold,
            },
        )
        summary.run_id = run_id
        tree_problems = [_tree_problem(p) for p in tree.problems]
        summary.problems.extend(_report(p, None) for p in tree_problems)
        with contextlib.suppress(Exception):  # a failing database still gets a summary
            store.record_problems(engine, run_id, tree_problems)
        summary.matcher = resolve_matcher(settings.matcher, api_key=settings.openai_api_key)
        llm = _llm_matcher(settings, engine, options) if summary.matcher == "llm" else None
        if on_start is not None:
            on_start(len(cues))
        try:
            _run(
                engine,
                url,
                cues,
                options,
                summary,
                run_id=run_id,
                force=force,
                workers=worker_count,
                executor=executor,
                scheduler=scheduler,
                progress=progress,
                audio_progress=audio_progress,
                stop=stop,
                llm=llm,
                llm_settings=settings if summary.matcher == "llm" else None,
            )
        except KeyboardInterrupt:
            stop.set()
        summary.interrupted = stop.is_set()
        summary.elapsed_s = time.perf_counter() - started
        store.finish_run(
            engine,
            run_id,
            status="interrupted" if summary.interrupted else ("ok" if summary.ok else "failed"),
            counts={
                "cues_found": summary.cues_found,
                "cues_ingested": summary.cues_ingested,
                "cues_skipped": summary.cues_skipped,
                "cues_failed": summary.cues_failed,
                "error_count": len(summary.errors),
                "elapsed_s": summary.elapsed_s,
            },
        )
        return summary
    finally:
        engine.dispose()


def _upgrade(engine: Any) -> None:
    from .migrate import upgrade

    upgrade(engine)


def spill_threshold(writer_memory_mb: int, workers: int) -> int:
    """The MIDI bytes above which a worker spills a cue, so that the results the writer holds
    (up to ``2 × workers`` waiting, plus the one being written) stay within ``writer_memory_mb``."""
    return writer_memory_mb * 2**20 // (2 * workers + 1)


def _worker_count(workers: int | None) -> int:
    count = workers if workers is not None else (os.cpu_count() or 1)
    if count < 1:
        raise ConfigError(f"workers must be at least 1, got {count}")
    return count


def _check_executor(executor: str, scheduler: str | None, backend: str) -> None:
    if executor not in EXECUTORS:
        raise ConfigError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    if executor != "dask":
        if scheduler is not None:
            raise ConfigError("--scheduler is only used with --executor dask")
        return
    if not scheduler:
        raise ConfigError("--executor dask needs --scheduler tcp://HOST:PORT")
    if backend == "sqlite":
        raise ConfigError(
            "--executor dask needs a PostgreSQL database: every Dask worker writes its cues "
            "itself and SQLite allows one writer only; use --database-url postgresql://... "
            "or the local executor"
        )
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "--executor dask needs Dask distributed: pip install 'kmidi-ingest[dask]'"
        ) from exc


def plan(
    root: str | Path,
    sample_rate: int,
    *,
    database_url: str | None = None,
    settings: Settings | None = None,
    force: bool = False,
    options: CueOptions | None = None,
) -> DryRunReport:
    """Say what :func:`ingest` would do, without writing anything (not even the schema).

    Cues, their MIDI files, stem groups and final mixes come from the tree; whether a cue would
    be skipped comes from the stored stat fingerprints, read only if the database already
    exists and holds the schema.
    """
    from .db import normalize_url

    settings = settings or load_settings()
    url = str(database_url or settings.database_url)
    if sample_rate <= 0:
        raise ConfigError(f"SAMPLE_RATE must be a positive number of Hz, got {sample_rate}")
    options = options or CueOptions(sample_rate_hz=sample_rate)
    tree = discover.scan(root)
    stored = {} if force else _peek_stored(normalize_url(url))
    cues: list[PlannedCue] = []
    problems = [_report(_tree_problem(p), None) for p in tree.problems]
    for cue in tree.cues:
        known = stored.get(discover.safe_text(cue.rel_path))
        if known is None or known.sample_rate_hz != sample_rate:
            action = "ingest"
        elif known.status == "complete" and known.stat_fingerprint == discover.stat_fingerprint(
            cue
        ):
            action = "skip"
        else:
            action = "update"
        groups = discover.group_channels(
            [(p, p.relative_to(cue.path).as_posix()) for p in cue.audio_files], options.rules
        )
        planned = [
            PlannedGroup(
                name=discover.safe_text(g.name),
                layout=",".join(f.label or "mono" for f in g.files),
                files=tuple(discover.safe_text(f.rel_path) for f in g.files),
            )
            for g in groups
        ]
        cues.append(
            PlannedCue(
                rel_path=discover.safe_text(cue.rel_path),
                action=action,
                midi_files=tuple(
                    discover.safe_text(p.relative_to(cue.path).as_posix()) for p in cue.midi_files
                ),
                stems=tuple(p for p, g in zip(planned, groups, strict=True) if not g.is_final_mix),
                final_mixes=tuple(
                    p for p, g in zip(planned, groups, strict=True) if g.is_final_mix
                ),
            )
        )
        problems.extend(
            _report(_tree_problem(p), discover.safe_text(cue.rel_path)) for p in cue.problems
        )
    return DryRunReport(
        root=discover.safe_text(str(root)),
        database=mask_url(url),
        sample_rate_hz=sample_rate,
        cues=tuple(cues),
        problems=tuple(problems),
    )


def _peek_stored(url: Any) -> dict[str, store.StoredCue]:
    from .db import make_engine

    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:" or not Path(database).is_file():
            return {}  # never create the file
    engine = make_engine(url)
    try:
        return store.stored_cues_if_any(engine)
    finally:
        engine.dispose()


def _tree_problem(p: discover.TreeProblem) -> Problem:
    return Problem(
        stage="discover",
        error_type=p.error_type,
        message=p.message,
        path=p.path,
        severity=p.severity,
    )


def _report(p: Problem, cue: str | None) -> ProblemReport:
    return ProblemReport(
        cue=cue,
        stage=p.stage,
        path=None if p.path is None else discover.safe_text(p.path),
        error_type=p.error_type,
        message=discover.safe_text(p.message),
        severity=p.severity,
    )


Job = tuple[CueSource, str, "store.StoredCue | None"]
Computed: TypeAlias = "CueResult | Unchanged | Elsewhere | BaseException"


def _run(
    engine: Any,
    url: str,
    cues: list[CueSource],
    options: CueOptions,
    summary: IngestSummary,
    *,
    run_id: int,
    force: bool,
    workers: int,
    executor: str,
    scheduler: str | None,
    progress: ProgressCallback | None,
    audio_progress: Callable[[float], None] | None,
    stop: threading.Event,
    llm: Matcher | None = None,
    llm_settings: Settings | None = None,
) -> None:
    stored = store.stored_cues(engine)
    jobs: list[Job] = []
    for cue in cues:
        stat_fp = discover.stat_fingerprint(cue)
        known = stored.get(discover.safe_text(cue.rel_path))
        if _up_to_date(known, stat_fp, options, force):
            summary.cues_skipped += 1
            if progress:
                progress(cue.rel_path, "skipped")
            continue
        jobs.append((cue, stat_fp, known))

    outcomes: Iterable[CueOutcome]
    if executor == "dask":
        assert scheduler is not None
        outcomes = _dask_outcomes(
            engine, jobs, options, force, url, run_id, scheduler, stop, llm_settings
        )
    else:
        outcomes = _local_outcomes(
            engine, jobs, options, force, workers, stop, audio_progress, run_id=run_id, llm=llm
        )
    for outcome in outcomes:
        _account(summary, outcome)
        log.info("%s: %s", outcome.status, discover.safe_text(outcome.rel_path))
        if executor == "dask" and audio_progress and outcome.audio_s:
            audio_progress(outcome.audio_s)
        if progress:
            progress(outcome.rel_path, _PROGRESS[outcome.status])


_PROGRESS = {
    "ingested": "ingested",
    "unchanged": "skipped",
    "conflict": "skipped",
    "elsewhere": "skipped",
    "failed": "failed",
}


def _up_to_date(
    known: store.StoredCue | None, stat_fp: str, options: CueOptions, force: bool
) -> bool:
    """Whether the stored cue is complete, from the same files, at the same sample rate."""
    return (
        not force
        and known is not None
        and known.status == "complete"
        and known.stat_fingerprint == stat_fp
        and known.sample_rate_hz == options.sample_rate_hz
    )


def _claim(
    claims: CueClaims, engine: Any, job: Job, options: CueOptions, force: bool
) -> Job | None:
    """Claim a job's cue before computing it: the job with what is stored now, or None when
    another run holds the cue or has stored it since this run looked (its claim is released)."""
    cue, stat_fp, known = job
    if not claims.claim(cue.rel_path):
        return None
    if not claims.shared:
        return job
    try:
        known = store.stored_cue(engine, discover.safe_text(cue.rel_path))
    except Exception:
        claims.release(cue.rel_path)
        raise
    if _up_to_date(known, stat_fp, options, force):
        claims.release(cue.rel_path)
        return None
    return (cue, stat_fp, known)


def _local_outcomes(
    engine: Any,
    jobs: list[Job],
    options: CueOptions,
    force: bool,
    workers: int,
    stop: threading.Event,
    audio_progress: Callable[[float], None] | None,
    *,
    run_id: int,
    llm: Matcher | None,
) -> Iterator[CueOutcome]:
    """Compute the jobs here or in a process pool and write them from this process, in order."""
    with CueClaims(engine) as claims:

        def claim(job: Job) -> Job | None:
            return _claim(claims, engine, job, options, force)

        for (cue, _fp, known), computed in _compute(
            jobs, options, force, workers, stop, audio_progress, claim
        ):
            try:
                if isinstance(computed, Elsewhere):
                    yield CueOutcome(rel_path=cue.rel_path, status="elsewhere")
                else:
                    yield _write(engine, cue, known, computed, run_id=run_id, llm=llm)
            finally:
                claims.release(cue.rel_path)


def _account(summary: IngestSummary, outcome: CueOutcome) -> None:
    if outcome.status == "ingested":
        summary.cues_ingested += 1
    elif outcome.status == "failed":
        summary.cues_failed += 1
    else:
        summary.cues_skipped += 1
    if outcome.status in ("conflict", "elsewhere"):
        summary.cues_elsewhere += 1
    summary.midi_files += outcome.midi_files
    summary.tracks += outcome.tracks
    summary.notes += outcome.notes
    summary.stems += outcome.stems
    summary.final_mixes += outcome.final_mixes
    summary.matches += outcome.matches
    summary.audio_s += outcome.audio_s
    summary.llm_requests += outcome.llm_requests
    summary.llm_cache_hits += outcome.llm_cache_hits
    summary.match_fallbacks += outcome.match_fallbacks
    if outcome.midi_offset_s is not None:
        summary.midi_offsets[discover.safe_text(outcome.rel_path)] = outcome.midi_offset_s
    summary.problems.extend(outcome.problems)


def _reusable_fingerprint(
    known: store.StoredCue | None, options: CueOptions, force: bool
) -> str | None:
    if force or known is None or known.status != "complete":
        return None
    if known.sample_rate_hz != options.sample_rate_hz:
        return None
    return known.content_fingerprint


_worker_progress: Any = None  # in a pool worker: the queue audio seconds are reported to


def _init_worker(parent_pid: int, progress: Any = None) -> None:
    global _worker_progress
    # Ctrl-C reaches the whole process group; the main process decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    _worker_progress = progress


def _process_cue_in_worker(
    cue: CueSource,
    options: CueOptions,
    *,
    stat_fingerprint: str,
    stored_content_fingerprint: str | None,
) -> CueResult | Unchanged:
    result = process_cue(
        cue,
        options,
        stat_fingerprint=stat_fingerprint,
        stored_content_fingerprint=stored_content_fingerprint,
        progress=None if _worker_progress is None else _worker_progress.put,
    )
    limit = options.spill_midi_bytes
    if isinstance(result, CueResult) and limit is not None and spill.midi_nbytes(result) > limit:
        return spill.spill(result)  # the writer reads it back file by file, then removes it
    return result


def _relay(queue: Any, callback: Callable[[float], None], done: threading.Event) -> None:
    """Pass the workers' audio seconds to ``callback`` until ``done`` is set and all is read.

    This process only reads the queue: were a worker killed while writing to it, the main
    process could not be left waiting for the queue's lock.
    """
    while True:
        try:
            seconds = queue.get(timeout=0.1)
        except Empty:
            if done.is_set():
                return
            continue
        callback(seconds)


def _exit_with_parent(parent_pid: int) -> None:
    # A worker blocked on the task queue would wait forever for a parent killed with -9.
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _compute(
    jobs: list[Job],
    options: CueOptions,
    force: bool,
    workers: int,
    stop: threading.Event,
    audio_progress: Callable[[float], None] | None,
    claim: Callable[[Job], Job | None],
) -> Iterator[tuple[Job, Computed]]:
    """Yield each job (as ``claim`` returned it) with its outcome, in job order; exceptions are
    yielded, not raised. ``claim`` is called just before a job starts; a job it refuses (None)
    is not computed and comes back with :class:`Elsewhere`.

    Stops early once ``stop`` is set: the cues already handed to a worker are finished and
    yielded, no other is started. At most ``2 × workers`` results wait in memory.
    """
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            if stop.is_set():
                return
            try:
                claimed = claim(job)
                if claimed is None:
                    yield job, Elsewhere()
                    continue
                cue, stat_fp, known = job = claimed
                yield (
                    job,
                    process_cue(
                        cue,
                        options,
                        stat_fingerprint=stat_fp,
                        stored_content_fingerprint=_reusable_fingerprint(known, options, force),
                        progress=audio_progress,
                    ),
                )
            except Exception as exc:  # a bug or an unexpected failure fails only this cue
                yield job, exc
        return
    queue = None
    relay = None
    done = threading.Event()
    if audio_progress is not None:
        queue = multiprocessing.get_context().Queue()
        relay = threading.Thread(target=_relay, args=(queue, audio_progress, done), daemon=True)
        relay.start()
    try:
        yield from _compute_in_pool(jobs, options, force, workers, stop, queue, claim)
    finally:
        done.set()  # the pool has shut down: its workers flushed what they put
        if relay is not None:
            relay.join(timeout=5.0)


def _compute_in_pool(
    jobs: list[Job],
    options: CueOptions,
    force: bool,
    workers: int,
    stop: threading.Event,
    progress_queue: Any,
    claim: Callable[[Job], Job | None],
) -> Iterator[tuple[Job, Computed]]:
    pending = iter(jobs)
    # Each job with its future, or with what it is instead (Elsewhere, or the claim's error).
    window: deque[tuple[Job, Future[CueResult | Unchanged] | Computed]] = deque()
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        initializer=_init_worker,
        initargs=(os.getpid(), progress_queue),
    ) as pool:

        def submit() -> bool:
            job = next(pending, None)
            if job is None:
                return False
            try:
                claimed = claim(job)
            except Exception as exc:
                window.append((job, exc))
                return True
            if claimed is None:
                window.append((job, Elsewhere()))
                return True
            cue, stat_fp, known = claimed
            future = pool.submit(
                _process_cue_in_worker,
                cue,
                options,
                stat_fingerprint=stat_fp,
                stored_content_fingerprint=_reusable_fingerprint(known, options, force),
            )
            window.append((claimed, future))
            return True

        while sum(isinstance(w, Future) for _, w in window) < 2 * workers and submit():
            pass
        try:
            while window:
                if stop.is_set():
                    # Keep only what a worker already holds; drop the rest.
                    window = deque(
                        (job, w) for job, w in window if isinstance(w, Future) and not w.cancel()
                    )
                    pending = iter(())
                    if not window:
                        return
                job, work = window.popleft()
                result: Computed
                if isinstance(work, Future):
                    try:
                        result = work.result()
                    except Exception as exc:
                        result = exc
                    if not stop.is_set():
                        while submit() and not isinstance(window[-1][1], Future):
                            pass  # refill the one worker slot this job freed
                else:
                    result = work
                yield job, result
        finally:
            for _, work in window:
                if isinstance(work, Future):
                    work.cancel()


def _write(
    engine: Any,
    cue: CueSource,
    known: store.StoredCue | None,
    computed: CueResult | Unchanged | BaseException,
    *,
    run_id: int,
    llm: Matcher | None = None,
) -> CueOutcome:
    """Store one computed cue (one transaction) and say what happened.

    With ``llm``, the LLM match step runs here first (in the process that owns the database and
    its answer cache; see :mod:`kmidi_ingest.pairing`).
    """
    try:
        return _write_computed(engine, cue, known, computed, run_id=run_id, llm=llm)
    finally:
        spill.discard(computed)  # a spilled cue's temporary file, written or not


def _write_computed(
    engine: Any,
    cue: CueSource,
    known: store.StoredCue | None,
    computed: CueResult | Unchanged | BaseException,
    *,
    run_id: int,
    llm: Matcher | None = None,
) -> CueOutcome:
    rel = cue.rel_path
    if isinstance(computed, Unchanged):
        assert known is not None
        store.touch_cue(engine, known.id, stat_fingerprint=computed.stat_fingerprint)
        return CueOutcome(rel_path=rel, status="unchanged")
    if isinstance(computed, BaseException):
        return _fail(engine, cue, computed, run_id=run_id, stage="ingest")
    llm_use = LlmUse()
    if llm is not None:
        try:
            computed, llm_use = _apply_llm(llm, computed)
        except Exception as exc:  # e.g. the cache table is unreachable: fails only this cue
            return _fail(engine, cue, exc, run_id=run_id, stage="match")
    result = _safe_result(computed)
    try:
        store.write_cue(
            engine, result, run_id=run_id, replace_id=None if known is None else known.id
        )
    except store.CueConflict:
        return CueOutcome(rel_path=rel, status="conflict")  # another process stored it first
    except Exception as exc:
        return _fail(engine, cue, exc, run_id=run_id, stage="store")
    safe_rel = discover.safe_text(rel)
    instrument_tracks, notes, _ = spill.totals(result.midi)
    return CueOutcome(
        rel_path=rel,
        status="ingested",
        midi_files=len(result.midi),
        tracks=instrument_tracks,
        notes=notes,
        stems=len(result.stems),
        final_mixes=len(result.mixes),
        matches=sum(1 for r in result.matches if r.stem_index is not None),
        audio_s=sum(s.duration_s for s in result.stems + result.mixes),
        problems=tuple(_report(p, safe_rel) for p in result.problems),
        llm_requests=llm_use.requests,
        llm_cache_hits=llm_use.cache_hits,
        match_fallbacks=llm_use.fallbacks,
        midi_offset_s=result.midi_offset_s
        if any(p.error_type == "MidiOffset" for p in result.problems)
        else None,
    )


def _llm_matcher(settings: Settings, engine: Any, options: CueOptions) -> Matcher:
    """The LLM matcher of a run, caching its answers in this database's ``llm_cache``."""
    return LlmMatcher(
        model=settings.llm_model,
        api_key=settings.openai_api_key or "",
        base_url=settings.openai_base_url,
        timeout_s=settings.llm_timeout_s,
        cache=store.DbAnswerCache(engine),
        fallback=FuzzyMatcher(threshold=options.match_threshold),
    )


def _apply_llm(llm: Matcher, result: CueResult) -> tuple[CueResult, LlmUse]:
    """The LLM match step, run in the writing process (see :mod:`kmidi_ingest.pairing`)."""
    updated, answer = apply_matcher(result, llm)
    return updated, LlmUse(
        requests=answer.requests,
        cache_hits=int(answer.cache_hit),
        fallbacks=int(answer.fallback_reason is not None),
    )


def _fail(
    engine: Any,
    cue: CueSource,
    exc: BaseException,
    *,
    run_id: int,
    stage: str,
) -> CueOutcome:
    stage = getattr(exc, "stage", stage)
    rel = discover.safe_text(cue.rel_path)
    problem = Problem(
        stage=stage,
        error_type=type(exc).__name__,
        message=discover.safe_text(str(exc)),
        path=discover.safe_text(str(cue.path)),
    )
    # If the database itself is failing, the summary still reports the cue.
    with contextlib.suppress(Exception):
        store.record_problems(engine, run_id, [problem], cue_path=rel)
    return CueOutcome(rel_path=cue.rel_path, status="failed", problems=(_report(problem, rel),))


def _safe_path(path: Path) -> Path:
    return Path(discover.safe_text(str(path)))


def _safe_result(result: CueResult) -> CueResult:
    """``result`` with every file-name-derived text made valid Unicode for the database.

    Non-UTF-8 file names reach Python as lone surrogates, which database drivers reject; they
    are stored with ``\\xNN`` escapes instead. A result without such names is returned as is.
    """
    texts = [str(result.source.path), result.source.name, *result.file_hashes]
    texts += spill.totals(result.midi)[2]
    texts += [p.message for p in result.problems] + [p.path or "" for p in result.problems]
    for data in result.stems + result.mixes:
        texts += [data.name, data.key, *(str(c.path) for c in data.channels)]
    if all(discover.safe_text(t) is t for t in texts):
        return result

    def safe_stem(s: StemData) -> StemData:
        return replace(
            s,
            name=discover.safe_text(s.name),
            key=discover.safe_text(s.key),
            channels=tuple(
                replace(c, path=_safe_path(c.path), rel_path=discover.safe_text(c.rel_path))
                for c in s.channels
            ),
            warnings=tuple(discover.safe_text(w) for w in s.warnings),
        )

    source = result.source
    return replace(
        result,
        source=replace(
            source,
            path=_safe_path(source.path),
            rel_path=discover.safe_text(source.rel_path),
            name=discover.safe_text(source.name),
        ),
        midi=tuple(replace(d, path=_safe_path(d.path)) for d in result.midi),
        stems=tuple(safe_stem(s) for s in result.stems),
        mixes=tuple(safe_stem(s) for s in result.mixes),
        file_hashes={discover.safe_text(k): v for k, v in result.file_hashes.items()},
        problems=tuple(
            replace(
                p,
                message=discover.safe_text(p.message),
                path=None if p.path is None else discover.safe_text(p.path),
            )
            for p in result.problems
        ),
    )


# --- Dask executor -------------------------------------------------------------------------

_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()


def _worker_engine(url: str) -> Any:
    """One engine per worker process and URL, reused across tasks (threads share it)."""
    from .db import make_engine

    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = make_engine(url)
        return engine


def run_cue_task(
    cue: CueSource,
    options: CueOptions,
    *,
    stat_fingerprint: str,
    known: store.StoredCue | None,
    force: bool,
    database_url: str,
    run_id: int,
    llm_settings: Settings | None = None,
) -> CueOutcome:
    """Compute one cue and write it to ``database_url`` (the task a Dask worker runs).

    With ``llm_settings`` the worker runs the LLM match step itself, caching answers in the
    shared database like the local executor does.
    """
    engine = _worker_engine(database_url)
    llm = None if llm_settings is None else _llm_matcher(llm_settings, engine, options)
    with CueClaims(engine) as claims:
        try:
            claimed = _claim(claims, engine, (cue, stat_fingerprint, known), options, force)
        except Exception as exc:
            return _fail(engine, cue, exc, run_id=run_id, stage="ingest")
        if claimed is None:
            return CueOutcome(rel_path=cue.rel_path, status="elsewhere")
        known = claimed[2]
        try:
            computed: CueResult | Unchanged | BaseException = process_cue(
                cue,
                options,
                stat_fingerprint=stat_fingerprint,
                stored_content_fingerprint=_reusable_fingerprint(known, options, force),
            )
        except Exception as exc:
            computed = exc
        return _write(engine, cue, known, computed, run_id=run_id, llm=llm)


def _dask_outcomes(
    engine: Any,
    jobs: list[Job],
    options: CueOptions,
    force: bool,
    url: str,
    run_id: int,
    scheduler: str,
    stop: threading.Event,
    llm_settings: Settings | None = None,
) -> Iterator[CueOutcome]:
    """Run every job as a task on the cluster; yield the outcomes in job order.

    Once ``stop`` is set, unfinished tasks are cancelled: a task already running on a worker
    cannot be interrupted and still commits its cue (whole, in one transaction).
    """
    from distributed import Client

    try:
        client = Client(scheduler, timeout="30s", set_as_default=False)
    except OSError as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    with client:
        futures = [
            client.submit(
                run_cue_task,
                cue,
                options,
                stat_fingerprint=stat_fp,
                known=known,
                force=force,
                database_url=url,
                run_id=run_id,
                llm_settings=llm_settings,
                key=f"kmidi-cue-{uuid.uuid4().hex}",
            )
            for cue, stat_fp, known in jobs
        ]
        by_key = {f.key: job for f, job in zip(futures, jobs, strict=True)}
        try:
            for future in futures:  # in job order; the cluster runs them in any order
                try:
                    yield future.result()
                except Exception as exc:  # the worker died or the task could not run
                    yield _fail(engine, by_key[future.key][0], exc, run_id=run_id, stage="ingest")
                if stop.is_set():
                    return
        finally:
            client.cancel([f for f in futures if not f.done()])
