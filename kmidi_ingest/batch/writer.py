"""The write step: the LLM match step, then one transaction per cue (see :mod:`..store`); on
PostgreSQL two cues are written at once (:func:`write_all`)."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future

from sqlalchemy import Engine

from .. import discover, spill, store
from ..claims import CueClaims
from ..db import is_dsql
from ..discover import CueSource
from ..match import FuzzyMatcher, LlmMatcher, Matcher
from ..options import LlmConfig
from ..pairing import apply_matcher
from ..results import CueResult, Problem
from .compute import CueSpec
from .planning import Job
from .reports import CueOutcome, Elsewhere, LlmUse, Unchanged, in_cue


def write_outcome(
    engine: Engine,
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
    engine: Engine,
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
        return fail_cue(engine, cue, computed, run_id=run_id, stage="ingest")
    llm_use = LlmUse()
    if llm is not None:
        try:
            computed, llm_use = _apply_llm(llm, computed)
        except Exception as exc:  # e.g. the cache table is unreachable: fails only this cue
            return fail_cue(engine, cue, exc, run_id=run_id, stage="match")
    result = computed  # file-name text is escaped by the database engine (kmidi_ingest.text)
    try:
        store.write_cue(
            engine, result, run_id=run_id, replace_id=None if known is None else known.id
        )
    except store.CueConflict:
        return CueOutcome(rel_path=rel, status="conflict")  # another process stored it first
    except Exception as exc:
        return fail_cue(engine, cue, exc, run_id=run_id, stage="store")
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
        matches=sum(1 for r in result.matches if r.stem_index is not None and r.stem_rank == 0),
        audio_s=sum(s.duration_s for s in result.stems + result.mixes),
        problems=tuple(in_cue(p, safe_rel) for p in result.problems),
        llm_requests=llm_use.requests,
        llm_cache_hits=llm_use.cache_hits,
        match_fallbacks=llm_use.fallbacks,
        midi_offset_s=result.midi_offset_s
        if any(p.error_type == "MidiOffset" for p in result.problems)
        else None,
    )


def llm_matcher(llm: LlmConfig, engine: Engine, spec: CueSpec) -> Matcher:
    """The LLM matcher of a run, caching its answers in this database's ``llm_cache``."""
    return LlmMatcher(
        model=llm.model,
        api_key=llm.api_key,
        base_url=llm.base_url,
        timeout_s=llm.timeout_s,
        cache=store.DbAnswerCache(engine),
        fallback=FuzzyMatcher(threshold=spec.options.match_threshold),
    )


def _apply_llm(llm: Matcher, result: CueResult) -> tuple[CueResult, LlmUse]:
    """The LLM match step, run in the writing process (see :mod:`kmidi_ingest.pairing`)."""
    updated, answer = apply_matcher(result, llm)
    return updated, LlmUse(
        requests=answer.requests,
        cache_hits=int(answer.cache_hit),
        fallbacks=int(answer.fallback_reason is not None),
    )


def fail_cue(
    engine: Engine,
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
    return CueOutcome(rel_path=cue.rel_path, status="failed", problems=(in_cue(problem, rel),))


WRITER_THREADS = 2  # cues written at once on PostgreSQL (one transaction and connection each)


def writer_threads(engine: Engine, llm: Matcher | None) -> int:
    """How many cues this process writes at once: two on PostgreSQL (while the server works
    through one cue's rows, the other's are built and sent), one on SQLite (a single writer),
    on Aurora DSQL (its optimistic transactions would conflict) and with the LLM matcher."""
    if engine.dialect.name != "postgresql" or is_dsql(engine) or llm is not None:
        return 1
    return WRITER_THREADS


def write_all(
    engine: Engine,
    computed_jobs: Iterator[tuple[Job, CueResult | Unchanged | Elsewhere | BaseException]],
    claims: CueClaims,
    *,
    run_id: int,
    llm: Matcher | None = None,
) -> Iterator[CueOutcome]:
    """Write each computed job's cue in its own transaction and yield the outcomes in job order,
    releasing each cue's claim once it is written (claims stay on this thread).

    :func:`writer_threads` cues are written at once: a cue's rows never depend on another
    cue's, so their order of commit does not matter. With one, in this thread."""
    threads = writer_threads(engine, llm)
    if threads <= 1:
        for (cue, _fp, known), computed in computed_jobs:
            try:
                yield _outcome(engine, cue, known, computed, run_id=run_id, llm=llm)
            finally:
                claims.release_later(cue.rel_path)
        return
    from concurrent.futures import ThreadPoolExecutor

    writing: deque[tuple[str, Future[CueOutcome]]] = deque()

    def done(head: tuple[str, Future[CueOutcome]]) -> CueOutcome:
        rel_path, future = head
        try:
            return future.result()
        finally:
            claims.release_later(rel_path)

    with ThreadPoolExecutor(threads, thread_name_prefix="kmidi-writer") as pool:
        try:
            for (cue, _fp, known), computed in computed_jobs:
                writing.append(
                    (
                        cue.rel_path,
                        pool.submit(_outcome, engine, cue, known, computed, run_id=run_id),
                    )
                )
                while writing and (len(writing) >= threads or writing[0][1].done()):
                    yield done(writing.popleft())
            while writing:
                yield done(writing.popleft())
        finally:
            for _rel, future in writing:  # a consumer that stops early: finish what was sent
                future.result()


def _outcome(
    engine: Engine,
    cue: CueSource,
    known: store.StoredCue | None,
    computed: CueResult | Unchanged | Elsewhere | BaseException,
    *,
    run_id: int,
    llm: Matcher | None = None,
) -> CueOutcome:
    if isinstance(computed, Elsewhere):
        return CueOutcome(rel_path=cue.rel_path, status="elsewhere")
    return write_outcome(engine, cue, known, computed, run_id=run_id, llm=llm)
