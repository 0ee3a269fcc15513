"""Pipeline: find cues, skip the ones already stored, compute the rest (serially or in a process
pool) and write each in one transaction from this process (the single writer).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__, discover, store
from .audio import MelParams, StemData, process_group
from .config import Settings, load_settings, mask_url
from .discover import CueSource, GroupingRules
from .errors import ConfigError, KmidiError
from .match import FuzzyMatcher, LlmMatcher, Matcher, resolve_matcher
from .midi import MidiData, read_midi
from .pairing import apply_matcher, match_offline
from .results import CueResult, Problem


@dataclass(frozen=True, kw_only=True)
class CueOptions:
    """Everything a worker needs to compute one cue (picklable)."""

    sample_rate_hz: int
    mel: MelParams = field(default_factory=MelParams)
    rules: GroupingRules = field(default_factory=GroupingRules)
    match_threshold: float = 60.0


@dataclass(frozen=True, kw_only=True)
class Unchanged:
    """A cue whose content hash equals the stored one (only its stat fingerprint moved)."""

    rel_path: str
    stat_fingerprint: str


@dataclass(kw_only=True)
class ProblemReport:
    cue: str | None
    stage: str
    path: str | None
    error_type: str
    message: str
    severity: str = "error"


@dataclass(kw_only=True)
class IngestSummary:
    """What a run did. ``ok`` is false when anything failed."""

    run_id: int | None = None
    database: str = ""
    root: str = ""
    sample_rate_hz: int = 0
    cues_found: int = 0
    cues_ingested: int = 0
    cues_skipped: int = 0
    cues_failed: int = 0
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


ProgressCallback = Callable[[str, str], None]  # (cue rel_path, outcome) after each cue


def process_cue(
    cue: CueSource,
    options: CueOptions,
    *,
    stat_fingerprint: str,
    stored_content_fingerprint: str | None = None,
) -> CueResult | Unchanged:
    """Compute everything for one cue (pure computation, no database).

    Returns :class:`Unchanged` when the content hash equals ``stored_content_fingerprint``.
    Per-file failures become :class:`~kmidi_ingest.results.Problem` entries, never exceptions.
    """
    started = time.perf_counter()
    problems: list[Problem] = [
        Problem(stage="discover", error_type="UnreadableFolder", message=reason, path=path)
        for path, reason in cue.problems
    ]
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
                    path=str(path),
                )
            )
    content_fp = hashlib.sha256(
        "".join(f"{rel}\0{digest}\n" for rel, digest in sorted(hashes.items())).encode(
            "utf-8", "surrogateescape"
        )
    ).hexdigest()
    if stored_content_fingerprint is not None and content_fp == stored_content_fingerprint:
        return Unchanged(rel_path=cue.rel_path, stat_fingerprint=stat_fingerprint)

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
    """
    from .db import make_engine
    from .migrate import upgrade

    started = time.perf_counter()
    settings = settings or load_settings()
    url = database_url or settings.database_url
    if sample_rate <= 0:
        raise ConfigError(f"SAMPLE_RATE must be a positive number of Hz, got {sample_rate}")
    if settings.matcher == "llm" and not settings.openai_api_key:
        raise ConfigError(
            "KMIDI_MATCHER=llm needs OPENAI_API_KEY (or use the fuzzy or auto matcher)"
        )
    options = options or CueOptions(sample_rate_hz=sample_rate)
    root_path = Path(root)
    cues = discover.find_cues(root_path)

    engine = make_engine(url)
    try:
        upgrade(engine)
        summary = IngestSummary(
            database=mask_url(str(url)),
            root=str(root_path),
            sample_rate_hz=sample_rate,
            cues_found=len(cues),
        )
        run_id = store.start_run(
            engine,
            root=str(root_path.resolve()),
            sample_rate_hz=sample_rate,
            matcher=settings.matcher,
            version=__version__,
            parameters={
                "force": force,
                "workers": workers,
                "mel": asdict(options.mel),
                "match_threshold": options.match_threshold,
            },
        )
        summary.run_id = run_id
        summary.matcher = resolve_matcher(settings.matcher, api_key=settings.openai_api_key)
        llm = _llm_matcher(settings, engine, options) if summary.matcher == "llm" else None
        if on_start is not None:
            on_start(len(cues))
        try:
            _run(
                engine,
                cues,
                options,
                summary,
                run_id=run_id,
                force=force,
                workers=workers,
                progress=progress,
                llm=llm,
            )
        except KeyboardInterrupt:
            summary.interrupted = True
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


def _run(
    engine: Any,
    cues: list[CueSource],
    options: CueOptions,
    summary: IngestSummary,
    *,
    run_id: int,
    force: bool,
    workers: int | None,
    progress: ProgressCallback | None,
    llm: Matcher | None = None,
) -> None:
    stored = store.stored_cues(engine)
    jobs: list[tuple[CueSource, str, store.StoredCue | None]] = []
    for cue in cues:
        stat_fp = discover.stat_fingerprint(cue)
        known = stored.get(cue.rel_path)
        if (
            not force
            and known is not None
            and known.status == "complete"
            and known.stat_fingerprint == stat_fp
            and known.sample_rate_hz == options.sample_rate_hz
        ):
            summary.cues_skipped += 1
            if progress:
                progress(cue.rel_path, "skipped")
            continue
        jobs.append((cue, stat_fp, known))

    for (cue, _stat_fp, known), outcome in zip(
        jobs, _compute(jobs, options, force, workers), strict=True
    ):
        _write(engine, cue, known, outcome, summary, run_id=run_id, llm=llm)
        if progress:
            last = (
                "failed"
                if isinstance(outcome, BaseException)
                else ("skipped" if isinstance(outcome, Unchanged) else "ingested")
            )
            progress(cue.rel_path, last)


def _reusable_fingerprint(
    known: store.StoredCue | None, options: CueOptions, force: bool
) -> str | None:
    if force or known is None or known.status != "complete":
        return None
    if known.sample_rate_hz != options.sample_rate_hz:
        return None
    return known.content_fingerprint


def _compute(
    jobs: list[tuple[CueSource, str, store.StoredCue | None]],
    options: CueOptions,
    force: bool,
    workers: int | None,
) -> Iterator[CueResult | Unchanged | BaseException]:
    """Yield each job's outcome in job order; exceptions are yielded, not raised."""
    count = workers if workers is not None else (os.cpu_count() or 1)
    if count <= 1 or len(jobs) <= 1:
        for cue, stat_fp, known in jobs:
            try:
                yield process_cue(
                    cue,
                    options,
                    stat_fingerprint=stat_fp,
                    stored_content_fingerprint=_reusable_fingerprint(known, options, force),
                )
            except Exception as exc:  # a bug or an unexpected failure fails only this cue
                yield exc
        return
    with ProcessPoolExecutor(max_workers=min(count, len(jobs))) as pool:
        futures: list[Future[CueResult | Unchanged]] = [
            pool.submit(
                process_cue,
                cue,
                options,
                stat_fingerprint=stat_fp,
                stored_content_fingerprint=_reusable_fingerprint(known, options, force),
            )
            for cue, stat_fp, known in jobs
        ]
        try:
            for future in futures:
                try:
                    yield future.result()
                except Exception as exc:
                    yield exc
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _write(
    engine: Any,
    cue: CueSource,
    known: store.StoredCue | None,
    outcome: CueResult | Unchanged | BaseException,
    summary: IngestSummary,
    *,
    run_id: int,
    llm: Matcher | None = None,
) -> None:
    if isinstance(outcome, Unchanged):
        assert known is not None
        store.touch_cue(engine, known.id, stat_fingerprint=outcome.stat_fingerprint)
        summary.cues_skipped += 1
        return
    if isinstance(outcome, BaseException):
        _fail(engine, cue, outcome, summary, run_id=run_id, stage="ingest")
        return
    if llm is not None:
        try:
            outcome = _apply_llm(llm, outcome, summary)
        except Exception as exc:  # e.g. the cache table is unreachable: fails only this cue
            _fail(engine, cue, exc, summary, run_id=run_id, stage="match")
            return
    try:
        store.write_cue(
            engine, outcome, run_id=run_id, replace_id=None if known is None else known.id
        )
    except store.CueConflict:
        summary.cues_skipped += 1  # another process stored this cue first
        return
    except Exception as exc:
        _fail(engine, cue, exc, summary, run_id=run_id, stage="store")
        return
    summary.cues_ingested += 1
    summary.midi_files += len(outcome.midi)
    summary.tracks += sum(len(d.instrument_tracks) for d in outcome.midi)
    summary.notes += sum(d.notes_total for d in outcome.midi)
    summary.stems += len(outcome.stems)
    summary.final_mixes += len(outcome.mixes)
    summary.matches += sum(1 for r in outcome.matches if r.stem_index is not None)
    if outcome.midi_offset_s is not None and any(
        p.error_type == "MidiOffset" for p in outcome.problems
    ):
        summary.midi_offsets[cue.rel_path] = outcome.midi_offset_s
    summary.problems.extend(
        ProblemReport(
            cue=cue.rel_path,
            stage=p.stage,
            path=p.path,
            error_type=p.error_type,
            message=p.message,
            severity=p.severity,
        )
        for p in outcome.problems
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


def _apply_llm(llm: Matcher, outcome: CueResult, summary: IngestSummary) -> CueResult:
    """The LLM match step, run here in the writing process (see :mod:`kmidi_ingest.pairing`)."""
    updated, answer = apply_matcher(outcome, llm)
    summary.llm_requests += answer.requests
    summary.llm_cache_hits += int(answer.cache_hit)
    summary.match_fallbacks += int(answer.fallback_reason is not None)
    return updated


def _fail(
    engine: Any,
    cue: CueSource,
    exc: BaseException,
    summary: IngestSummary,
    *,
    run_id: int,
    stage: str,
) -> None:
    stage = getattr(exc, "stage", stage)
    problem = Problem(
        stage=stage, error_type=type(exc).__name__, message=str(exc), path=str(cue.path)
    )
    summary.cues_failed += 1
    summary.problems.append(
        ProblemReport(
            cue=cue.rel_path,
            stage=stage,
            path=str(cue.path),
            error_type=problem.error_type,
            message=problem.message,
        )
    )
    # If the database itself is failing, the summary still reports the cue.
    with contextlib.suppress(Exception):
        store.record_problems(engine, run_id, [problem], cue_path=cue.rel_path)
