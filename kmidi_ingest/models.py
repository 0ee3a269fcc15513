"""The ORM schema. Alembic (``migrations/``) owns it in the database; ``alembic check`` keeps the two
in step.

Naming rules analysts rely on: every time column says its unit (``*_tick``, ``*_s``, ``tempo_us``,
``bpm``), bars and beats are 1-based, ids are integers, and "part of" foreign keys cascade on delete
(deleting a cue deletes everything that came from it).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    literal,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT identity on PostgreSQL (Aurora DSQL accepts identity, not SERIAL); SQLite's INTEGER
# PRIMARY KEY is its rowid alias and autoincrements by itself.
Id = BigInteger().with_variant(Integer(), "sqlite")
US_PER_S = 1e6  # midi_notes times are whole microseconds
_US_PER_S = literal(US_PER_S, Float)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _pk() -> Mapped[int]:
    return mapped_column(Id, Identity(), primary_key=True)


def _fk(target: str, *, nullable: bool = False, ondelete: str = "CASCADE") -> Mapped[int]:
    return mapped_column(Id, ForeignKey(target, ondelete=ondelete), nullable=nullable)


class IngestRun(Base):
    """One invocation of the ingest job."""

    __tablename__ = "ingest_runs"

    id: Mapped[int] = _pk()
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="running")
    root: Mapped[str] = mapped_column(Text)
    sample_rate_hz: Mapped[int] = mapped_column(Integer)
    matcher: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(32))
    parameters_json: Mapped[str] = mapped_column(Text, default="{}")
    cues_found: Mapped[int] = mapped_column(Integer, default=0)
    cues_ingested: Mapped[int] = mapped_column(Integer, default=0)
    cues_skipped: Mapped[int] = mapped_column(Integer, default=0)
    cues_failed: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    elapsed_s: Mapped[float | None] = mapped_column(Float)


class Cue(Base):
    """A cue folder. Its children become visible together when ``status`` is ``complete``."""

    __tablename__ = "cues"
    # name: analysts pick a cue by name (notes_view's cue_name); from it a question reaches its
    # notes through the files, parts and the notes' (track_id, id) key instead of a full scan.
    __table_args__ = (UniqueConstraint("rel_path"), Index(None, "run_id"), Index(None, "name"))

    id: Mapped[int] = _pk()
    name: Mapped[str] = mapped_column(Text)
    rel_path: Mapped[str] = mapped_column(Text)
    abs_path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    stat_fingerprint: Mapped[str] = mapped_column(String(64))
    content_fingerprint: Mapped[str] = mapped_column(String(64))
    sample_rate_hz: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int | None] = _fk("ingest_runs.id", nullable=True, ondelete="SET NULL")
    midi_file_count: Mapped[int] = mapped_column(Integer, default=0)
    stem_count: Mapped[int] = mapped_column(Integer, default=0)
    final_mix_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    midi_offset_s: Mapped[float | None] = mapped_column(Float)
    ingested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IngestError(Base):
    """A failure or warning, tied to the run, and to the cue and file where known."""

    __tablename__ = "ingest_errors"
    __table_args__ = (Index(None, "run_id"), Index(None, "cue_id"))

    id: Mapped[int] = _pk()
    run_id: Mapped[int | None] = _fk("ingest_runs.id", nullable=True, ondelete="CASCADE")
    cue_id: Mapped[int | None] = _fk("cues.id", nullable=True, ondelete="CASCADE")
    cue_path: Mapped[str | None] = mapped_column(Text)
    file_path: Mapped[str | None] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(8), default="error")
    error_type: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MidiFile(Base):
    __tablename__ = "midi_files"
    __table_args__ = (Index(None, "cue_id"),)

    id: Mapped[int] = _pk()
    cue_id: Mapped[int] = _fk("cues.id")
    rel_path: Mapped[str] = mapped_column(Text)
    file_name: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    midi_format: Mapped[int] = mapped_column(SmallInteger)
    timing: Mapped[str] = mapped_column(String(8))  # "ppq" (ticks per quarter) or "smpte"
    ticks_per_beat: Mapped[int | None] = mapped_column(Integer)
    smpte_fps: Mapped[float | None] = mapped_column(Float)
    smpte_ticks_per_frame: Mapped[int | None] = mapped_column(Integer)
    smpte_offset_s: Mapped[float | None] = mapped_column(Float)
    track_count: Mapped[int] = mapped_column(Integer)
    note_count: Mapped[int] = mapped_column(Integer)
    length_tick: Mapped[int] = mapped_column(BigInteger)
    length_s: Mapped[float] = mapped_column(Float)
    lenient: Mapped[bool] = mapped_column(Boolean, default=False)


class MidiTrack(Base):
    """An instrument part: a (track, channel) with notes; or a track without notes, whole.

    A track whose notes use one channel is one row, as are conductor tracks; a track whose notes
    use several channels (a format-0 file) gives one row per channel with notes.
    """

    __tablename__ = "midi_tracks"
    __table_args__ = (
        Index(None, "midi_file_id"),
        Index(None, "midi_file_id", "part_index", unique=True),
    )

    id: Mapped[int] = _pk()
    midi_file_id: Mapped[int] = _fk("midi_files.id")
    track_index: Mapped[int] = mapped_column(Integer)  # the MTrk chunk, 0-based
    part_index: Mapped[int] = mapped_column(Integer)  # 0-based position of the part in the file
    name: Mapped[str] = mapped_column(Text)  # the track's name (shared by its parts)
    part_name: Mapped[str] = mapped_column(Text)  # track name, or GM program name of the part
    is_conductor: Mapped[bool] = mapped_column(Boolean)
    # The part's channel, 0-based (a track without notes: its most used channel).
    channel: Mapped[int | None] = mapped_column(SmallInteger)
    # Program in force at the part's first note, 0-based (history in midi_program_changes).
    program: Mapped[int | None] = mapped_column(SmallInteger)
    is_drum: Mapped[bool] = mapped_column(Boolean)
    category: Mapped[str | None] = mapped_column(String(32))
    category_source: Mapped[str | None] = mapped_column(String(16))
    note_count: Mapped[int] = mapped_column(Integer)
    sysex_count: Mapped[int] = mapped_column(Integer, default=0)
    stray_note_off_count: Mapped[int] = mapped_column(Integer, default=0)
    end_tick: Mapped[int] = mapped_column(BigInteger)
    end_s: Mapped[float] = mapped_column(Float)


# The columns SQLite's midi_notes stores in place of end times (migration 0012), with the end
# and the start each is the difference of: a length is a smaller integer than an end late in a
# file, and SQLite stores integers in 1 to 8 bytes by magnitude (about 2.2 of ~42 bytes a note).
STORED_LENGTHS = {
    "duration_ticks": ("end_tick", "start_tick"),
    "duration_us": ("end_us", "start_us"),
}


class MidiNote(Base):
    """A paired note. ``end_inferred`` marks a note never released, closed at the end of its track.

    Times are whole microseconds from the start of the file (the tempo map applied);
    ``end_sustain_us`` is NULL where the sustain pedal does not lengthen the note (it would equal
    ``end_us``). ``start_s``, ``end_s`` and ``end_sustain_s`` are the same times in seconds, as SQL
    expressions (also columns of ``notes_view``). The table is keyed by ``(track_id, id)``: on SQLite
    it is clustered by part (``WITHOUT ROWID``), so the notes of a part are one range of it.

    The model is the table as it reads on both backends. On SQLite the rows store each note's
    length (``duration_ticks``, ``duration_us``, not mapped here) and ``end_tick`` and ``end_us``
    are virtual columns computed from them (migration 0012): they read like stored ones, but a
    write names the lengths, so the ORM writes no notes there (the ingest writes them in bulk).
    """

    __tablename__ = "midi_notes"
    __table_args__ = (PrimaryKeyConstraint("track_id", "id"), {"sqlite_with_rowid": False})

    id: Mapped[int] = mapped_column(Id, Identity())
    track_id: Mapped[int] = mapped_column(
        Id, ForeignKey("midi_tracks.id", ondelete="CASCADE"), nullable=False
    )
    channel: Mapped[int] = mapped_column(SmallInteger)
    pitch: Mapped[int] = mapped_column(SmallInteger)
    velocity: Mapped[int] = mapped_column(SmallInteger)
    release_velocity: Mapped[int | None] = mapped_column(SmallInteger)
    start_tick: Mapped[int] = mapped_column(BigInteger)
    end_tick: Mapped[int] = mapped_column(BigInteger)
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    end_sustain_us: Mapped[int | None] = mapped_column(BigInteger)
    start_bar: Mapped[int | None] = mapped_column(Integer)
    start_beat: Mapped[float | None] = mapped_column(Float)
    end_inferred: Mapped[bool] = mapped_column(Boolean, default=False)

    # An integer over a double constant: a double division on both backends.
    start_s: Mapped[float] = column_property((start_us / _US_PER_S).label("start_s"))
    end_s: Mapped[float] = column_property((end_us / _US_PER_S).label("end_s"))
    end_sustain_s: Mapped[float] = column_property(
        (func.coalesce(end_sustain_us, end_us) / _US_PER_S).label("end_sustain_s")
    )


class _ChannelEvent:
    """Columns shared by the per-event tables (tick, seconds, bar/beat, channel)."""

    channel: Mapped[int] = mapped_column(SmallInteger)
    tick: Mapped[int] = mapped_column(BigInteger)
    time_s: Mapped[float] = mapped_column(Float)
    bar: Mapped[int | None] = mapped_column(Integer)
    beat: Mapped[float | None] = mapped_column(Float)


class MidiCC(_ChannelEvent, Base):
    __tablename__ = "midi_cc"
    __table_args__ = (Index(None, "track_id"),)

    id: Mapped[int] = _pk()
    track_id: Mapped[int] = _fk("midi_tracks.id")
    controller: Mapped[int] = mapped_column(SmallInteger)
    value: Mapped[int] = mapped_column(SmallInteger)


class MidiProgramChange(_ChannelEvent, Base):
    __tablename__ = "midi_program_changes"
    __table_args__ = (Index(None, "track_id"),)

    id: Mapped[int] = _pk()
    track_id: Mapped[int] = _fk("midi_tracks.id")
    program: Mapped[int] = mapped_column(SmallInteger)


class MidiPitchBend(_ChannelEvent, Base):
    __tablename__ = "midi_pitch_bends"
    __table_args__ = (Index(None, "track_id"),)

    id: Mapped[int] = _pk()
    track_id: Mapped[int] = _fk("midi_tracks.id")
    value: Mapped[int] = mapped_column(Integer)  # -8192 .. 8191, 0 = centre


class MidiAftertouch(_ChannelEvent, Base):
    """Channel pressure (``pitch`` NULL) and polyphonic key pressure."""

    __tablename__ = "midi_aftertouch"
    __table_args__ = (Index(None, "track_id"),)

    id: Mapped[int] = _pk()
    track_id: Mapped[int] = _fk("midi_tracks.id")
    pitch: Mapped[int | None] = mapped_column(SmallInteger)
    value: Mapped[int] = mapped_column(SmallInteger)


class _FileEvent:
    tick: Mapped[int] = mapped_column(BigInteger)
    time_s: Mapped[float] = mapped_column(Float)
    track_index: Mapped[int] = mapped_column(Integer)


class TempoChange(_FileEvent, Base):
    """The effective tempo map (after merging tracks; at one tick the last event wins)."""

    __tablename__ = "tempo_changes"
    __table_args__ = (Index(None, "midi_file_id"),)

    id: Mapped[int] = _pk()
    midi_file_id: Mapped[int] = _fk("midi_files.id")
    tempo_us: Mapped[int] = mapped_column(Integer)  # microseconds per quarter note
    bpm: Mapped[float] = mapped_column(Float)
    bar: Mapped[int | None] = mapped_column(Integer)
    beat: Mapped[float | None] = mapped_column(Float)


class TimeSignature(_FileEvent, Base):
    __tablename__ = "time_signatures"
    __table_args__ = (Index(None, "midi_file_id"),)

    id: Mapped[int] = _pk()
    midi_file_id: Mapped[int] = _fk("midi_files.id")
    bar: Mapped[int | None] = mapped_column(Integer)
    numerator: Mapped[int] = mapped_column(SmallInteger)
    denominator: Mapped[int] = mapped_column(SmallInteger)
    clocks_per_click: Mapped[int] = mapped_column(SmallInteger)
    notated_32nds_per_beat: Mapped[int] = mapped_column(SmallInteger)


class KeySignature(_FileEvent, Base):
    __tablename__ = "key_signatures"
    __table_args__ = (Index(None, "midi_file_id"),)

    id: Mapped[int] = _pk()
    midi_file_id: Mapped[int] = _fk("midi_files.id")
    key: Mapped[str] = mapped_column(String(8))  # e.g. "C", "F#m", "Bb"


class Marker(_FileEvent, Base):
    """Markers, cue points, text, lyrics, copyright and other text meta events."""

    __tablename__ = "markers"
    __table_args__ = (Index(None, "midi_file_id"),)

    id: Mapped[int] = _pk()
    midi_file_id: Mapped[int] = _fk("midi_files.id")
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    bar: Mapped[int | None] = mapped_column(Integer)
    beat: Mapped[float | None] = mapped_column(Float)


class _Stem:
    name: Mapped[str] = mapped_column(Text)  # canonical name (channel suffix and cue code removed)
    group_key: Mapped[str] = mapped_column(Text)  # file name stem without the channel suffix
    channel_count: Mapped[int] = mapped_column(Integer)
    channel_layout: Mapped[str] = mapped_column(Text)  # e.g. "L,R" or "L,R,C,LFE,Ls,Rs"
    source_sample_rate_hz: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    peak: Mapped[float] = mapped_column(Float)  # of the composite mono, linear full scale
    rms: Mapped[float] = mapped_column(Float)


class AudioFile(_Stem, Base):
    """An instrument stem: one or more channel files grouped under one canonical name."""

    __tablename__ = "audio_files"
    __table_args__ = (Index(None, "cue_id"),)

    id: Mapped[int] = _pk()
    cue_id: Mapped[int] = _fk("cues.id")
    category: Mapped[str | None] = mapped_column(String(32))
    category_source: Mapped[str | None] = mapped_column(String(16))


class FinalMix(_Stem, Base):
    """A final mix (a name matching a final-mix pattern, e.g. ``6mx``, ``mix``); never a stem."""

    __tablename__ = "final_mixes"
    __table_args__ = (Index(None, "cue_id"),)

    id: Mapped[int] = _pk()
    cue_id: Mapped[int] = _fk("cues.id")


_ONE_OWNER = "(audio_file_id IS NULL) <> (final_mix_id IS NULL)"


class AudioChannel(Base):
    """One channel of a stem or mix: a mono file, or one channel of an interleaved file."""

    __tablename__ = "audio_channels"
    __table_args__ = (
        CheckConstraint(_ONE_OWNER, name="one_owner"),
        Index(None, "audio_file_id"),
        Index(None, "final_mix_id"),
    )

    id: Mapped[int] = _pk()
    audio_file_id: Mapped[int | None] = _fk("audio_files.id", nullable=True)
    final_mix_id: Mapped[int | None] = _fk("final_mixes.id", nullable=True)
    channel_order: Mapped[int] = mapped_column(Integer)  # 0-based position in the group
    label: Mapped[str] = mapped_column(String(8))  # L, R, C, LFE, Ls, ... or M for mono
    rel_path: Mapped[str] = mapped_column(Text)
    file_name: Mapped[str] = mapped_column(Text)
    file_channel: Mapped[int] = mapped_column(Integer)  # 0-based channel within the file
    file_channels: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    audio_format: Mapped[str] = mapped_column(String(16))  # soundfile format, e.g. WAV, AIFF
    subtype: Mapped[str] = mapped_column(String(16))  # e.g. PCM_24, FLOAT
    sample_rate_hz: Mapped[int] = mapped_column(Integer)
    frames: Mapped[int] = mapped_column(BigInteger)
    duration_s: Mapped[float] = mapped_column(Float)
    peak: Mapped[float] = mapped_column(Float)
    rms: Mapped[float] = mapped_column(Float)
    in_mono: Mapped[bool] = mapped_column(Boolean)  # False for LFE (excluded from the composite)


class AudioFeature(Base):
    """A feature matrix of a stem or mix; its bytes live in ``audio_feature_chunks``."""

    __tablename__ = "audio_features"
    __table_args__ = (
        CheckConstraint(_ONE_OWNER, name="one_owner"),
        Index(None, "audio_file_id"),
        Index(None, "final_mix_id"),
    )

    id: Mapped[int] = _pk()
    audio_file_id: Mapped[int | None] = _fk("audio_files.id", nullable=True)
    final_mix_id: Mapped[int | None] = _fk("final_mixes.id", nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # "log_mel"
    sample_rate_hz: Mapped[int] = mapped_column(Integer)
    n_fft: Mapped[int] = mapped_column(Integer)
    hop_length: Mapped[int] = mapped_column(Integer)
    n_mels: Mapped[int] = mapped_column(Integer)
    fmin_hz: Mapped[float] = mapped_column(Float)
    fmax_hz: Mapped[float] = mapped_column(Float)
    db_ref: Mapped[float] = mapped_column(Float)  # dB = 10*log10(max(power, amin) / db_ref)
    db_amin: Mapped[float] = mapped_column(Float)
    centered: Mapped[bool] = mapped_column(Boolean)  # frame k centred on sample k*hop_length
    dtype: Mapped[str] = mapped_column(String(16))  # e.g. "float16"
    encoding: Mapped[str] = mapped_column(String(16))  # "npy"
    # How the .npy bytes were compressed (features.CODECS); NULL: raw, rows from before codecs.
    codec: Mapped[str | None] = mapped_column(String(64), nullable=True)
    n_frames: Mapped[int] = mapped_column(Integer)
    byte_count: Mapped[int] = mapped_column(BigInteger)
    chunk_count: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))


class AudioFeatureChunk(Base):
    """At most 1 MiB of a feature's encoded (compressed) bytes (fits every target database's
    column limit)."""

    __tablename__ = "audio_feature_chunks"
    __table_args__ = (UniqueConstraint("feature_id", "chunk_index"),)

    id: Mapped[int] = _pk()
    feature_id: Mapped[int] = _fk("audio_features.id")
    chunk_index: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class TrackMatch(Base):
    """A stem a MIDI part was printed to.

    One row per matched or considered part with ``stem_rank`` 0 (its primary pair, or its
    unmatched row with ``audio_file_id`` NULL), plus one row per further stem the part owns
    (``stem_rank`` 1, 2, …: desk stems ``violin1`` … ``violin4`` of one ``violin`` part).
    """

    __tablename__ = "track_matches"
    __table_args__ = (
        UniqueConstraint("track_id", "audio_file_id"),
        UniqueConstraint("track_id", "stem_rank"),
        Index(None, "audio_file_id"),
    )

    id: Mapped[int] = _pk()
    track_id: Mapped[int] = _fk("midi_tracks.id")
    audio_file_id: Mapped[int | None] = _fk("audio_files.id", nullable=True)
    method: Mapped[str] = mapped_column(String(16))  # fuzzy | llm | fuzzy_fallback
    score: Mapped[float] = mapped_column(Float)  # 0..100
    fallback_reason: Mapped[str | None] = mapped_column(Text)
    onset_correlation: Mapped[float | None] = mapped_column(Float)
    lag_s: Mapped[float | None] = mapped_column(Float)
    verified: Mapped[bool | None] = mapped_column(Boolean)
    # Evidence of the decision (kmidi_ingest.assign): see the README, "Matching tracks to stems".
    name_score: Mapped[float | None] = mapped_column(Float)  # 0..100, best of track / file name
    content_score: Mapped[float | None] = mapped_column(Float)  # mean correlation at content_lag_s
    content_z: Mapped[float | None] = mapped_column(Float)  # against circularly shifted notes
    content_p: Mapped[float | None] = mapped_column(Float)  # Bonferroni tail of content_z
    content_lag_s: Mapped[float | None] = mapped_column(Float)  # > 0: the audio comes later
    runner_up_audio_file_id: Mapped[int | None] = _fk(
        "audio_files.id", nullable=True, ondelete="SET NULL"
    )
    margin_z: Mapped[float | None] = mapped_column(Float)  # content_z minus the runner-up's
    decided_by: Mapped[str | None] = mapped_column(String(24))  # name | content | name+content ...
    evidence: Mapped[str | None] = mapped_column(String(48))  # curves with z >= 2
    verify_reason: Mapped[str | None] = mapped_column(Text)  # why verified is false or NULL
    # 0: the part's primary pair (or its unmatched row); 1, 2, …: further stems the part owns
    stem_rank: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")


class LlmCache(Base):
    """LLM answers keyed by a hash of (model, prompt), so a re-run costs no request."""

    __tablename__ = "llm_cache"
    __table_args__ = (UniqueConstraint("cache_key"),)

    id: Mapped[int] = _pk()
    cache_key: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(Text)
    request_json: Mapped[str] = mapped_column(Text)
    response_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
