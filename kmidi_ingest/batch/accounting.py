"""Claims and accounting: claim a job's cue before computing it; add each outcome to the summary."""

from __future__ import annotations

from sqlalchemy import Engine

from .. import discover, store
from ..claims import CueClaims
from .compute import CueSpec
from .planning import Job, up_to_date
from .reports import CueOutcome, CueStatus, IngestSummary, ProgressOutcome


def claim_job(
    claims: CueClaims, engine: Engine, job: Job, spec: CueSpec, force: bool
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
    if up_to_date(known, stat_fp, spec.sample_rate_hz, force):
        claims.release(cue.rel_path)
        return None
    return (cue, stat_fp, known)


def account(summary: IngestSummary, outcome: CueOutcome) -> None:
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


PROGRESS: dict[CueStatus, ProgressOutcome] = {
    "ingested": "ingested",
    "unchanged": "skipped",
    "conflict": "skipped",
    "elsewhere": "skipped",
    "failed": "failed",
}
