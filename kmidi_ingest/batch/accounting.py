"""Claims and accounting: claim a job's cue before computing it; add each outcome to the summary."""

from __future__ import annotations

from collections.abc import Sequence

from .. import discover, store
from ..claims import CueClaims
from .compute import CueSpec
from .planning import Job, up_to_date
from .reports import CueOutcome, CueStatus, IngestSummary, ProgressOutcome


def claim_job(claims: CueClaims, job: Job, spec: CueSpec, force: bool) -> Job | None:
    """Claim a job's cue before computing it: the job with what is stored now, or None when
    another run holds the cue or has stored it since this run looked (its claim is released)."""
    return claim_jobs(claims, [job], spec, force)[0]


def claim_jobs(
    claims: CueClaims, jobs: Sequence[Job], spec: CueSpec, force: bool
) -> list[Job | None]:
    """:func:`claim_job` of each of ``jobs``, in two round trips for all of them (the claims,
    then what is stored now, read on the claims' own connection)."""
    granted = claims.claim_many([cue.rel_path for cue, _fp, _known in jobs])
    if not claims.shared:
        return [job if ok else None for job, ok in zip(jobs, granted, strict=True)]
    mine = [job for job, ok in zip(jobs, granted, strict=True) if ok]
    try:
        conn = claims.connection
        assert conn is not None
        now = store.stored_cues_at(conn, [discover.safe_text(cue.rel_path) for cue, *_ in mine])
    except Exception:
        for cue, *_ in mine:
            claims.release(cue.rel_path)
        raise
    out: list[Job | None] = []
    for job, ok in zip(jobs, granted, strict=True):
        if not ok:
            out.append(None)
            continue
        cue, stat_fp, _known = job
        known = now.get(discover.safe_text(cue.rel_path))
        if up_to_date(known, stat_fp, spec.sample_rate_hz, force):
            claims.release_later(cue.rel_path)
            out.append(None)
        else:
            out.append((cue, stat_fp, known))
    return out


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
