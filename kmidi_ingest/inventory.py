"""Inventory of a database: what a training-set builder has (``kmidi-ingest stats``).

Read-only queries over the stored schema; :func:`inventory` returns plain data. Only cues whose
``status`` is ``complete`` count (their rows become visible together).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, and_, case, exists, func, select

from . import models as m

UNCATEGORIZED = "(none)"


@dataclass(frozen=True, kw_only=True)
class CategoryCounts:
    tracks: int  # instrument tracks of this category
    notes: int  # notes of those tracks
    stems: int  # stems of this category


@dataclass(frozen=True, kw_only=True)
class Inventory:
    """Counts over the complete cues of a database."""

    cues: int
    cues_incomplete: int  # rows left by a writer that never finished (normally 0)
    midi_files: int
    tracks: int  # instrument tracks (conductor tracks excluded)
    conductor_tracks: int
    notes: int
    midi_hours: float  # summed length of the MIDI files
    stems: int
    stem_hours: float  # summed duration of the instrument stems
    final_mixes: int
    final_mix_hours: float
    categories: dict[str, CategoryCounts]
    tracks_matched: int  # instrument tracks paired with a stem
    tracks_unmatched: int  # instrument tracks without a stem
    pairs: int  # track/stem pairs: tracks_matched plus the further stems some parts own (desks)
    matches_verified: int  # pairs whose audio confirmed the MIDI
    matches_rejected: int  # pairs whose audio contradicted the MIDI
    matches_unverified: int  # pairs the audio could not decide
    stems_unmatched: int  # stems no track was paired with
    cues_midi_without_stems: int
    cues_stems_without_midi: int
    errors_by_stage: dict[str, int]
    warnings_by_stage: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inventory(engine: Engine) -> Inventory:
    """Count what the database at ``engine`` holds (a handful of aggregate queries)."""
    complete = m.Cue.status == "complete"
    with engine.connect() as conn:

        def one(query: Any) -> Any:
            return conn.execute(query).scalar_one()

        cue_status = conn.execute(
            select(
                func.count().filter(complete), func.count().filter(m.Cue.status != "complete")
            ).select_from(m.Cue)
        ).one()
        file_row = conn.execute(
            select(func.count(), func.coalesce(func.sum(m.MidiFile.length_s), 0.0))
            .join(m.Cue, m.Cue.id == m.MidiFile.cue_id)
            .where(complete)
        ).one()
        track_base = (
            select(m.MidiTrack)
            .join(m.MidiFile, m.MidiFile.id == m.MidiTrack.midi_file_id)
            .join(m.Cue, m.Cue.id == m.MidiFile.cue_id)
            .where(complete)
        ).subquery()
        track_row = conn.execute(
            select(
                func.count().filter(track_base.c.is_conductor.is_(False)),
                func.count().filter(track_base.c.is_conductor.is_(True)),
                func.coalesce(func.sum(track_base.c.note_count), 0),
            )
        ).one()
        stem_row = conn.execute(
            select(func.count(), func.coalesce(func.sum(m.AudioFile.duration_s), 0.0))
            .join(m.Cue, m.Cue.id == m.AudioFile.cue_id)
            .where(complete)
        ).one()
        mix_row = conn.execute(
            select(func.count(), func.coalesce(func.sum(m.FinalMix.duration_s), 0.0))
            .join(m.Cue, m.Cue.id == m.FinalMix.cue_id)
            .where(complete)
        ).one()

        categories: dict[str, dict[str, int]] = {}
        category = func.coalesce(track_base.c.category, UNCATEGORIZED)
        for name, tracks, notes in conn.execute(
            select(category, func.count(), func.sum(track_base.c.note_count))
            .where(track_base.c.is_conductor.is_(False))
            .group_by(category)
        ):
            categories.setdefault(name, {"tracks": 0, "notes": 0, "stems": 0}).update(
                tracks=int(tracks), notes=int(notes)
            )
        stem_category = func.coalesce(m.AudioFile.category, UNCATEGORIZED)
        for name, stems in conn.execute(
            select(stem_category, func.count())
            .join(m.Cue, m.Cue.id == m.AudioFile.cue_id)
            .where(complete)
            .group_by(stem_category)
        ):
            categories.setdefault(name, {"tracks": 0, "notes": 0, "stems": 0})["stems"] = int(stems)

        paired = m.TrackMatch.audio_file_id.is_not(None)
        match_row = conn.execute(
            select(
                func.count().filter(and_(paired, m.TrackMatch.stem_rank == 0)),
                func.count().filter(and_(paired, m.TrackMatch.verified.is_(True))),
                func.count().filter(and_(paired, m.TrackMatch.verified.is_(False))),
                func.count().filter(and_(paired, m.TrackMatch.verified.is_(None))),
                func.count().filter(paired),
            ).where(
                m.TrackMatch.track_id.in_(
                    select(track_base.c.id).where(track_base.c.is_conductor.is_(False))
                )
            )
        ).one()
        stems_unmatched = one(
            select(func.count())
            .select_from(m.AudioFile)
            .join(m.Cue, m.Cue.id == m.AudioFile.cue_id)
            .where(
                complete,
                ~exists().where(m.TrackMatch.audio_file_id == m.AudioFile.id),
            )
        )
        has_midi = exists().where(m.MidiFile.cue_id == m.Cue.id)
        has_stems = exists().where(m.AudioFile.cue_id == m.Cue.id)
        cue_mix = conn.execute(
            select(
                func.sum(case((and_(has_midi, ~has_stems), 1), else_=0)),
                func.sum(case((and_(has_stems, ~has_midi), 1), else_=0)),
            ).where(complete)
        ).one()

        by_stage: dict[str, dict[str, int]] = {"error": {}, "warning": {}}
        for stage, severity, n in conn.execute(
            select(m.IngestError.stage, m.IngestError.severity, func.count())
            .group_by(m.IngestError.stage, m.IngestError.severity)
            .order_by(m.IngestError.stage)
        ):
            by_stage.setdefault(severity, {})[stage] = int(n)

    tracks = int(track_row[0])
    return Inventory(
        cues=int(cue_status[0]),
        cues_incomplete=int(cue_status[1]),
        midi_files=int(file_row[0]),
        tracks=tracks,
        conductor_tracks=int(track_row[1]),
        notes=int(track_row[2]),
        midi_hours=float(file_row[1]) / 3600,
        stems=int(stem_row[0]),
        stem_hours=float(stem_row[1]) / 3600,
        final_mixes=int(mix_row[0]),
        final_mix_hours=float(mix_row[1]) / 3600,
        categories={name: CategoryCounts(**values) for name, values in sorted(categories.items())},
        tracks_matched=int(match_row[0]),
        tracks_unmatched=tracks - int(match_row[0]),
        pairs=int(match_row[4]),
        matches_verified=int(match_row[1]),
        matches_rejected=int(match_row[2]),
        matches_unverified=int(match_row[3]),
        stems_unmatched=int(stems_unmatched),
        cues_midi_without_stems=int(cue_mix[0] or 0),
        cues_stems_without_midi=int(cue_mix[1] or 0),
        errors_by_stage=by_stage["error"],
        warnings_by_stage=by_stage["warning"],
    )
