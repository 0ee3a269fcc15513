"""The write step: the LLM match step, then one transaction per cue (see :mod:`..store`)."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Engine

from .. import discover, store
from ..audio import StemData
from ..discover import CueSource
from ..match import FuzzyMatcher, LlmMatcher, Matcher
from ..options import LlmConfig
from ..pairing import apply_matcher
from ..results import CueResult, Problem
from .compute import CueSpec
from .reports import CueOutcome, LlmUse, Unchanged, report_problem


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
    result = _safe_result(computed)
    try:
        store.write_cue(
            engine, result, run_id=run_id, replace_id=None if known is None else known.id
        )
    except store.CueConflict:
        return CueOutcome(rel_path=rel, status="conflict")  # another process stored it first
    except Exception as exc:
        return fail_cue(engine, cue, exc, run_id=run_id, stage="store")
    safe_rel = discover.safe_text(rel)
    return CueOutcome(
        rel_path=rel,
        status="ingested",
        midi_files=len(result.midi),
        tracks=sum(len(d.instrument_tracks) for d in result.midi),
        notes=sum(d.notes_total for d in result.midi),
        stems=len(result.stems),
        final_mixes=len(result.mixes),
        matches=sum(1 for r in result.matches if r.stem_index is not None),
        audio_s=sum(s.duration_s for s in result.stems + result.mixes),
        problems=tuple(report_problem(p, safe_rel) for p in result.problems),
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
    return CueOutcome(
        rel_path=cue.rel_path, status="failed", problems=(report_problem(problem, rel),)
    )


def _safe_path(path: Path) -> Path:
    return Path(discover.safe_text(str(path)))


def _safe_result(result: CueResult) -> CueResult:
    """``result`` with every file-name-derived text made valid Unicode for the database.

    Non-UTF-8 file names reach Python as lone surrogates, which database drivers reject; they
    are stored with ``\\xNN`` escapes instead. A result without such names is returned as is.
    """
    texts = [str(result.source.path), result.source.name, *result.file_hashes]
    texts += [str(d.path) for d in result.midi]
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
