"""The match step of the pipeline: content evidence, matcher, categories and match rows of a cue.

Per cue: the names propose (the fuzzy matcher over track names and, for a MIDI file holding one
track, the file's name; or the LLM), the content evidence of every track × stem
(:mod:`kmidi_ingest.content`, from the stored log-mel) confirms, overrules or fills in, and
:mod:`kmidi_ingest.assign` makes one decision per track with its ``verified`` verdict and the
evidence behind it. Final mixes are never candidates (they are not in ``stems``).

Where each part runs: a worker process computes everything offline in :func:`match_offline`
(onset and content evidence of every track × stem pair, the fuzzy matcher, keyword/GM
categories, the rows and the cue offset), because it holds the notes and spectrograms. When the run uses the LLM matcher,
the main process, which owns the database and therefore the answer cache, calls
:func:`apply_matcher` on the finished :class:`~kmidi_ingest.results.CueResult` just before writing
it: one request (or cache hit) per cue, then the rows, categories and offset are rebuilt from the
same onset evidence the worker computed. Workers thus need no database connection and no API key,
and a cached answer is read and written by the single writer only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .assign import Z_PLAUSIBLE, Decision, contradicted, decide, sibling_verdict
from .audio import StemData
from .categories import CategoryGuess, categorize
from .content import ContentEvidence, TrackNotes, content_evidence
from .doubling import doubled_shares
from .kit import kit_evidence
from .match import (
    CueMatch,
    FuzzyMatcher,
    Matcher,
    MatchRequest,
    MatchResult,
    name_scores,
    normalize_name,
    numbered_variants,
)
from .midi import MidiData, Track
from .results import CueResult, Problem, TrackMatchRow
from .verify import OnsetEvidence, cue_offset, onset_evidence


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


def file_names(midi: Sequence[MidiData], instruments: list[tuple[int, Track]]) -> list[str | None]:
    """Per track, the name of its MIDI file (without extension) when the file holds only it."""
    counts = [len(data.instrument_tracks) for data in midi]
    return [midi[i].path.stem if counts[i] == 1 else None for i, _ in instruments]


def _request(
    midi: Sequence[MidiData],
    instruments: list[tuple[int, Track]],
    stems: Sequence[StemData],
    evidence: OnsetEvidence,
) -> MatchRequest:
    return MatchRequest(
        track_names=tuple(t.part_name or f"Track {t.index}" for _, t in instruments),
        stem_names=tuple(s.name for s in stems),
        track_files=tuple(i for i, _ in instruments),
        onset_correlation=evidence.correlation,
        file_names=tuple(file_names(midi, instruments)),
    )


def evidence_of(instruments: list[tuple[int, Track]], stems: Sequence[StemData]) -> OnsetEvidence:
    """Onset and content evidence of every instrument track × stem (computed from the features)."""
    started, started_cpu = time.perf_counter(), time.process_time()
    onsets = onset_evidence([t.notes for _, t in instruments], [s.feature for s in stems])
    content = content_evidence(
        [TrackNotes(notes=t.notes, is_drum=t.is_drum) for _, t in instruments],
        [s.feature for s in stems],
    )
    kit = kit_evidence([(t.notes, t.is_drum) for _, t in instruments], [s.feature for s in stems])
    return dataclasses.replace(
        onsets,
        content=content,
        kit=kit,
        compute_s=time.perf_counter() - started,
        compute_cpu_s=time.process_time() - started_cpu,
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
    evidence = evidence_of(instruments, stems)
    request = _request(midi, instruments, stems, evidence)
    outcome = FuzzyMatcher(threshold=threshold).match(request)
    return _assemble(instruments, stems, evidence, outcome, request=request, cue_path=cue_path)


def apply_matcher(result: CueResult, matcher: Matcher) -> tuple[CueResult, CueMatch]:
    """Re-match a computed cue with ``matcher`` (the LLM step; runs in the writing process).

    Returns the cue with its match rows, categories, offset and match problems replaced, and the
    matcher's answer (for the request / cache / fallback counts of the run summary).
    """
    instruments = instrument_tracks(result.midi)
    evidence = result.onset_evidence
    if evidence is None or evidence.content is None:
        evidence = evidence_of(instruments, result.stems)
    request = _request(result.midi, instruments, result.stems, evidence)
    outcome = matcher.match(request)
    matching = _assemble(
        instruments,
        result.stems,
        evidence,
        outcome,
        request=request,
        cue_path=str(result.source.path),
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


def _drop_alternates(
    decisions: list[Decision], request: MatchRequest, content: ContentEvidence
) -> list[Decision]:
    """One stem, one version of a part: the same track name in several MIDI files is an
    alternate take, and only the one the audio follows best (highest content z) keeps the stem."""
    files = request.track_files or (0,) * len(decisions)
    file_names = request.file_names or (None,) * len(decisions)
    groups: dict[tuple[str, int], list[int]] = {}
    for d in decisions:
        if d.stem_index is not None:
            key = (normalize_name(request.track_names[d.track_index]), d.stem_index)
            groups.setdefault(key, []).append(d.track_index)
    out = list(decisions)
    for (_, stem), members in groups.items():
        if len({files[i] for i in members}) < 2:
            continue
        own = [file_names[i] for i in members]
        if all(own) and len({normalize_name(str(f)) for f in own}) == len(own):
            continue  # one-track files named apart (Kick.mid, Snare.mid): parts, not takes
        z = [float(np.nan_to_num(content.z[i, stem], nan=-np.inf)) for i in members]
        keep = members[int(np.argmax(z))]
        for i in members:
            if files[i] != files[keep]:
                out[i] = Decision(
                    track_index=i,
                    stem_index=None,
                    decided_by="none",
                    verified=None,
                    reason=f"alternate of a track of another MIDI file, which {request.stem_names[stem]!r} follows",
                )
    return out


def _variants_holding(
    stem: int, part_names: Sequence[str | None], stem_names: Sequence[str]
) -> tuple[int, ...]:
    """The numbered variants of the first of the part's names whose variants include ``stem``."""
    for name in part_names:
        if name:
            variants = numbered_variants(name, stem_names)
            if stem in variants:
                return variants
    return ()


def desk_stems(
    decisions: Sequence[Decision],
    request: MatchRequest,
    content: ContentEvidence,
    names: np.ndarray,
    *,
    name_source: str = "name",
) -> tuple[list[Decision], list[tuple[Decision, int]]]:
    """The further stems each part owns where the names say so (desk stems), and their verdicts.

    A part paired with a stem that is one of two or more numbered variants of the part's name
    (track name or, for a one-track file, file name; :func:`~kmidi_ingest.match.numbered_variants`:
    ``violin`` → ``violin1`` … ``violin4``) also owns the other variants, unless another track's
    name scores as high on one (``Violin 2`` beside ``Violin``) or the content contradicts it
    (:func:`~kmidi_ingest.assign.contradicted`). Each pair of such a part, the primary one too,
    is then verified against the stems the part does not own
    (:func:`~kmidi_ingest.assign.sibling_verdict`).

    The lowest-numbered stem the part owns becomes its primary pair (``stem_rank`` 0, whichever
    of the desks the matcher chose), the others follow by number (``stem_rank`` 1, 2, …).
    Returns the primary decisions (those of desk parts re-verified) and ``(decision, stem_rank)``
    of every further pair.
    """
    primary = list(decisions)
    extras: list[tuple[Decision, int]] = []
    owners: dict[int, list[int]] = {}
    for d in decisions:
        if d.stem_index is not None:
            owners.setdefault(d.stem_index, []).append(d.track_index)
    file_names = request.file_names or (None,) * len(decisions)
    for d in decisions:
        i, stem = d.track_index, d.stem_index
        if stem is None:
            continue
        variants = _variants_holding(
            stem, (request.track_names[i], file_names[i]), request.stem_names
        )
        rivals = np.delete(names[:, list(variants)], i, axis=0) if variants else names[:0]
        owned = [
            j
            for k, j in enumerate(variants)
            if j == stem
            or (
                (not rivals.shape[0] or names[i, j] > rivals[:, k].max())
                and contradicted(i, j, content, owners=owners.get(j, ()), desks=variants) is None
            )
        ]
        if len(owned) < 2:
            continue
        for rank, j in enumerate(owned):
            z = content.z[i, j]
            by = (
                d.decided_by
                if j == stem
                else f"{name_source}+content"
                if np.isfinite(z) and z >= Z_PLAUSIBLE
                else name_source
            )
            verdict = sibling_verdict(i, j, by, content, request.stem_names, siblings=owned)
            if rank == 0:
                primary[i] = verdict
            else:
                extras.append((verdict, rank))
    return primary, extras


def _row(
    instruments: list[tuple[int, Track]],
    evidence: OnsetEvidence,
    names: np.ndarray,
    r: MatchResult,
    d: Decision,
    *,
    stem_rank: int,
) -> TrackMatchRow:
    midi_index, track = instruments[r.track_index]
    stem = d.stem_index
    correlation = lag = None
    if stem is not None:
        c = float(evidence.correlation[r.track_index, stem])
        if not np.isnan(c):
            correlation = round(c, 4)
            lag = round(float(evidence.lag_s[r.track_index, stem]), 4)
    name_score = None if stem is None else round(float(names[r.track_index, stem]), 3)
    return TrackMatchRow(
        midi_index=midi_index,
        track_index=track.part_index,
        stem_index=stem,
        # the matcher's score for its own proposal; the name score where content moved it
        score=round(r.score, 3) if stem == r.stem_index else (name_score or 0.0),
        method=r.method,
        fallback_reason=r.fallback_reason,
        onset_correlation=correlation,
        lag_s=lag,
        verified=d.verified,
        name_score=name_score,
        content_score=d.content_score,
        content_z=d.content_z,
        content_p=d.content_p,
        content_lag_s=d.content_lag_s,
        runner_up_stem_index=d.runner_up,
        margin_z=d.margin,
        decided_by=d.decided_by,
        evidence=d.evidence,
        verify_reason=d.reason,
        stem_rank=stem_rank,
    )


def _doubled(
    instruments: list[tuple[int, Track]], content: ContentEvidence, audio_s: float | None
) -> np.ndarray | None:
    """The doubled shares of the tracks where the joint content picks read them: only when two
    or more tracks have content evidence (else, as for a cue without stems, none is needed and
    comparing every pair of tracks' notes would cost as much as reading the MIDI)."""
    if int(np.isfinite(content.z).any(axis=1).sum()) <= 1:
        return None
    return doubled_shares([t.notes for _, t in instruments], until_s=audio_s)


def _assemble(
    instruments: list[tuple[int, Track]],
    stems: Sequence[StemData],
    evidence: OnsetEvidence,
    outcome: CueMatch,
    *,
    request: MatchRequest,
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
    content = evidence.content
    if content is None:
        content = ContentEvidence.empty(len(instruments), len(stems), "no content evidence")
    names = name_scores(
        request.track_names, request.stem_names, file_names=request.file_names or None
    )
    by_llm = any(r.method == "llm" for r in outcome.results)
    families = [
        None if guess.category == "Other" else guess.category
        for guess in (track_categories[(m, t.part_index)] for m, t in instruments)
    ]
    audio_s = max((s.duration_s for s in stems), default=None)
    decisions = decide(
        [r.stem_index for r in outcome.results],
        content,
        stem_names=request.stem_names,
        name_source="llm" if by_llm else "name",
        families=families,
        doubled=_doubled(instruments, content, audio_s),
        kit=evidence.kit,
    )
    decisions = _drop_alternates(decisions, request, content)
    decisions, extras = desk_stems(
        decisions, request, content, names, name_source="llm" if by_llm else "name"
    )
    for r, d in zip(outcome.results, decisions, strict=True):
        pair = _row(instruments, evidence, names, r, d, stem_rank=0)
        if pair.verified and pair.lag_s is not None:
            verified_lags.append(pair.lag_s)  # one lag per part: its further stems do not weigh
        rows.append(pair)
    results = {r.track_index: r for r in outcome.results}
    for d, rank in extras:
        rows.append(_row(instruments, evidence, names, results[d.track_index], d, stem_rank=rank))
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
