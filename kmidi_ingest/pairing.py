"""The match step of the pipeline: content evidence, matcher, categories and match rows of a cue.

Where each part runs: a worker process computes everything offline in :func:`match_offline`
(onset evidence of every track × stem pair, the fuzzy matcher, keyword/GM categories, the rows and
the cue offset), because it holds the notes and spectrograms. When the run uses the LLM matcher,
the main process, which owns the database and therefore the answer cache, calls
:func:`apply_matcher` on the finished :class:`~kmidi_ingest.results.CueResult` just before writing
it: one request (or cache hit) per cue, then the rows, categories and offset are rebuilt from the
same onset evidence the worker computed. Workers thus need no database connection and no API key,
and a cached answer is read and written by the single writer only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .audio import StemData
from .categories import CategoryGuess, categorize
from .match import CueMatch, FuzzyMatcher, Matcher, MatchRequest
from .midi import MidiData, Track
from .results import CueResult, Problem, TrackMatchRow
from .verify import OnsetEvidence, cue_offset, is_verified, onset_evidence


@dataclass(frozen=True, kw_only=True)
class CueMatching:
    """What the match step adds to a cue."""

    track_categories: dict[tuple[int, int], CategoryGuess]
    stem_categories: tuple[CategoryGuess, ...]
    matches: tuple[TrackMatchRow, ...]
    midi_offset_s: float | None
    problems: tuple[Problem, ...]
    evidence: OnsetEvidence
    outcome: CueMatch


def instrument_tracks(midi: Sequence[MidiData]) -> list[tuple[int, Track]]:
    """``(midi_index, part)`` of every instrument part, in file and part order."""
    return [(i, t) for i, data in enumerate(midi) for t in data.instrument_tracks]


def _request(
    instruments: list[tuple[int, Track]], stems: Sequence[StemData], evidence: OnsetEvidence
) -> MatchRequest:
    return MatchRequest(
        track_names=tuple(t.part_name or f"Track {t.index}" for _, t in instruments),
        stem_names=tuple(s.name for s in stems),
        track_files=tuple(i for i, _ in instruments),
        onset_correlation=evidence.correlation,
    )


def match_offline(
    midi: Sequence[MidiData],
    stems: Sequence[StemData],
    *,
    threshold: float,
    cue_path: str | None = None,
) -> CueMatching:
    """Evidence, fuzzy matches and offline categories of one cue (runs in the worker)."""
    instruments = instrument_tracks(midi)
    evidence = onset_evidence([t.notes for _, t in instruments], [s.feature for s in stems])
    outcome = FuzzyMatcher(threshold=threshold).match(_request(instruments, stems, evidence))
    return _assemble(instruments, stems, evidence, outcome, cue_path=cue_path)


def apply_matcher(result: CueResult, matcher: Matcher) -> tuple[CueResult, CueMatch]:
    """Re-match a computed cue with ``matcher`` (the LLM step; runs in the writing process).

    Returns the cue with its match rows, categories, offset and match problems replaced, and the
    matcher's answer (for the request / cache / fallback counts of the run summary).
    """
    instruments = instrument_tracks(result.midi)
    evidence = result.onset_evidence
    if evidence is None:
        evidence = onset_evidence(
            [t.notes for _, t in instruments], [s.feature for s in result.stems]
        )
    outcome = matcher.match(_request(instruments, result.stems, evidence))
    matching = _assemble(
        instruments, result.stems, evidence, outcome, cue_path=str(result.source.path)
    )
    kept = tuple(p for p in result.problems if p.stage != "match")
    updated = dataclasses.replace(
        result,
        track_categories=matching.track_categories,
        stem_categories=matching.stem_categories,
        matches=matching.matches,
        midi_offset_s=matching.midi_offset_s,
        problems=kept + matching.problems,
    )
    return updated, outcome


def _assemble(
    instruments: list[tuple[int, Track]],
    stems: Sequence[StemData],
    evidence: OnsetEvidence,
    outcome: CueMatch,
    *,
    cue_path: str | None,
) -> CueMatching:
    track_categories: dict[tuple[int, int], CategoryGuess] = {}
    for row, (midi_index, track) in enumerate(instruments):
        llm = outcome.track_categories[row] if outcome.track_categories else None
        track_categories[(midi_index, track.part_index)] = (
            CategoryGuess(category=llm, source="llm")
            if llm is not None
            else categorize(track.part_name, program=track.program, is_drum=track.is_drum)
        )
    answered = outcome.stem_categories or (None,) * len(stems)
    stem_categories = tuple(
        categorize(stem.name) if llm is None else CategoryGuess(category=llm, source="llm")
        for stem, llm in zip(stems, answered, strict=True)
    )
    rows: list[TrackMatchRow] = []
    verified_lags: list[float] = []
    for r in outcome.results:
        midi_index, track = instruments[r.track_index]
        correlation = lag = None
        if r.stem_index is not None:
            c = float(evidence.correlation[r.track_index, r.stem_index])
            if not np.isnan(c):
                correlation = round(c, 4)
                lag = round(float(evidence.lag_s[r.track_index, r.stem_index]), 4)
        verified = is_verified(correlation)
        if verified and lag is not None:
            verified_lags.append(lag)
        rows.append(
            TrackMatchRow(
                midi_index=midi_index,
                track_index=track.part_index,
                stem_index=r.stem_index,
                score=round(r.score, 3),
                method=r.method,
                fallback_reason=r.fallback_reason,
                onset_correlation=correlation,
                lag_s=lag,
                verified=verified,
            )
        )
    offset = cue_offset(verified_lags)
    problems: list[Problem] = []
    if outcome.fallback_reason is not None:
        problems.append(
            Problem(
                stage="match",
                path=cue_path,
                error_type="LlmFallback",
                severity="warning",
                message=f"matched by fuzzy names instead: {outcome.fallback_reason}",
            )
        )
    frame_s = 1.0 / evidence.frame_rate_hz if evidence.frame_rate_hz else 0.0
    if offset is not None and abs(offset) >= max(2 * frame_s, 0.02):
        problems.append(
            Problem(
                stage="match",
                path=cue_path,
                error_type="MidiOffset",
                severity="warning",
                message=(
                    f"the stems are {abs(offset):.3f} s {'behind' if offset > 0 else 'ahead of'} "
                    f"the MIDI (constant offset of {len(verified_lags)} verified pair(s); "
                    "stored in cues.midi_offset_s)"
                ),
            )
        )
    return CueMatching(
        track_categories=track_categories,
        stem_categories=stem_categories,
        matches=tuple(rows),
        midi_offset_s=offset,
        problems=tuple(problems),
        evidence=evidence,
        outcome=outcome,
    )
