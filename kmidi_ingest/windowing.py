"""Training windows: fixed-length log-mel slices beside the piano roll of the same frames.

:func:`windows` reads a kmidi database and yields one :class:`Window` per slice of a stem's
stored log-mel, with the piano roll of the part paired to that stem on exactly the same frames
(and, with ``mixes=True``, slices of each final mix with the roll of every part of its cue).
Nothing is recomputed or resampled: the mel slice is the stored float16 matrix, bit for bit.

Rules (each pinned by a test in ``tests/test_windows.py``):

Frames
    Frame ``k`` of a feature is centred at ``t_k = (k * hop_length + c) / sample_rate_hz``
    seconds, with ``c = 0`` for centred features (the default) and ``c = n_fft / 2`` otherwise;
    the frame rate is ``sample_rate_hz / hop_length``. A note starting at ``start_s`` has its
    onset in the frame whose centre is nearest, ``floor((start_s - c/sr) * rate + 0.5)``: a start
    exactly halfway between two centres falls in the later frame. It sounds (sustain plane) from
    its onset frame up to, not including, ``floor((end_s - c/sr) * rate + 0.5)``, and always in
    at least its onset frame (zero-length notes included).
Roll
    ``uint8[3, 128, frames]``: plane :data:`ONSET` (1 at a note's onset frame), :data:`SUSTAIN`
    (1 while it sounds) and :data:`VELOCITY` (its MIDI velocity while it sounds; the largest where
    notes of one pitch overlap). Times are the stored seconds (MIDI time zero = the first audio
    sample); ``apply_lag=True`` moves them by the pair's measured ``lag_s`` (the cue's
    ``midi_offset_s`` for mixes). ``sustain="pedal"`` uses ``end_sustain_s`` (the release under
    the sustain pedal) instead of ``end_s``.
Edges and gaps
    Windows start every ``hop_s`` from frame 0. A last window that runs past the stem's last frame
    is padded (``last="pad"``, the default: mel frames set to the feature's floor
    ``10*log10(db_amin/db_ref)`` dB — what digital silence gives — roll frames zero, ``mask``
    false) or left out (``last="drop"``). A stem shorter than one window gives one padded window
    (or none). Notes outside the stem's audio appear in no window (a note that starts before
    frame 0 after a lag sounds from frame 0 without an onset). Silent windows are kept unless
    ``skip_silent=True`` (every valid mel value at the floor). ``min_notes`` keeps windows with at
    least that many onsets.
Frame rate
    Every yielded window has the same frame rate: ``frame_rate_hz`` when given, else the first
    stem's. A stem stored at another rate is refused with :class:`WindowError` naming it and both
    rates (converting would re-compute features; re-ingest at the wanted rate instead).
Splits
    ``train`` / ``validation`` / ``test`` are assigned per cue, never per window, from a hash of
    the seed and the cue's path (:func:`assign_split`): reproducible, independent of the order or
    number of cues (adding cues moves no existing cue), with expected fractions ``splits``.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sqlalchemy import Connection, Engine, bindparam, select

from . import models as m
from .errors import KmidiError
from .store import read_feature

ONSET, SUSTAIN, VELOCITY = 0, 1, 2
SPLIT_NAMES = ("train", "validation", "test")
Split = Literal["train", "validation", "test"]


class WindowError(KmidiError):
    """Windows cannot be cut as asked (bad parameters, another frame rate, no schema)."""

    stage = "windows"


@dataclass(frozen=True, kw_only=True)
class Window:
    """One training window.

    ``log_mel`` is ``float16[n_mels, frames]`` exactly as stored (dB); ``roll`` is
    ``uint8[3, 128, frames]`` (planes :data:`ONSET`, :data:`SUSTAIN`, :data:`VELOCITY`); ``mask``
    is ``bool[frames]``, false on padding. ``part`` describes the paired part (``None`` for a mix
    window, whose roll holds every part of the cue listed in ``mix_parts``); ``pair`` is the
    stored ``track_matches`` row (verification evidence included). A part that owns several
    stems (desk stems) gives windows of each pair; ``pair["stem_rank"]`` is 0 for its primary one.
    """

    window_id: str
    split: Split
    kind: Literal["stem", "mix"]
    cue_id: int
    cue: str
    cue_path: str
    stem_id: int
    stem_name: str
    stem_category: str | None
    feature_id: int
    sample_rate_hz: int
    hop_length: int
    frame_rate_hz: float
    start_frame: int
    start_s: float
    valid_frames: int
    note_count: int
    log_mel: np.ndarray
    roll: np.ndarray
    mask: np.ndarray
    part: dict[str, Any] | None
    pair: dict[str, Any] | None
    mix_parts: tuple[int, ...] = ()


def assign_split(
    cue_key: str, *, splits: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> Split:
    """The split of the cue identified by ``cue_key`` (its ``rel_path``).

    A uniform number in [0, 1) from SHA-256 of ``seed`` and ``cue_key`` is compared with the
    cumulative fractions, so a cue's split depends on nothing but its identity and the seed.
    """
    fractions = _check_splits(splits)
    digest = hashlib.sha256(f"{seed}\0{cue_key}".encode("utf-8", "surrogateescape")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, fraction in zip(SPLIT_NAMES, fractions, strict=True):
        edge += fraction
        if u < edge:
            return name  # type: ignore[return-value]
    # u came within rounding of 1: the last split with a share
    last = max(i for i, f in enumerate(fractions) if f > 0)
    return SPLIT_NAMES[last]  # type: ignore[return-value]


def _check_splits(splits: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(s) for s in splits)
    if len(values) != 3 or any(not math.isfinite(v) or v < 0 for v in values):
        raise WindowError(
            f"splits must be three non-negative fractions (train, validation, test), got {splits!r}"
        )
    if not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise WindowError(f"splits must add up to 1, got {splits!r} (sum {sum(values):g})")
    return values


def note_frames(
    start_s: np.ndarray,
    end_s: np.ndarray,
    *,
    frame_rate_hz: float,
    frame0_s: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Onset frame and end frame (exclusive) of each note: see the module's frame rule."""
    onset = np.floor((np.asarray(start_s, dtype=np.float64) - frame0_s) * frame_rate_hz + 0.5)
    end = np.floor((np.asarray(end_s, dtype=np.float64) - frame0_s) * frame_rate_hz + 0.5)
    onset = onset.astype(np.int64)
    return onset, np.maximum(end.astype(np.int64), onset + 1)


def piano_roll(
    pitch: np.ndarray,
    velocity: np.ndarray,
    onset: np.ndarray,
    end: np.ndarray,
    n_frames: int,
) -> np.ndarray:
    """``uint8[3, 128, n_frames]`` roll of notes given by frames (see :func:`note_frames`)."""
    roll = np.zeros((3, 128, n_frames), dtype=np.uint8)
    lo = np.clip(onset, 0, n_frames)
    hi = np.clip(end, 0, n_frames)
    keep = hi > lo
    pitch, velocity, onset, lo, hi = pitch[keep], velocity[keep], onset[keep], lo[keep], hi[keep]
    starts = (onset >= 0) & (onset < n_frames)
    roll[ONSET, pitch[starts], onset[starts]] = 1
    lengths = hi - lo
    # Every (pitch, frame) a note sounds in, flattened: note i covers lo[i] .. hi[i] - 1.
    frames = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths - lo, lengths)
    pitches = np.repeat(pitch, lengths)
    roll[SUSTAIN, pitches, frames] = 1
    np.maximum.at(roll[VELOCITY], (pitches, frames), np.repeat(velocity, lengths).astype(np.uint8))
    return roll


def windows(
    database: str | Engine,
    *,
    window_s: float,
    hop_s: float | None = None,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    split: Split | Sequence[Split] | None = None,
    categories: Sequence[str] = (),
    cues: Sequence[str] = (),
    verified_only: bool = False,
    min_notes: int = 0,
    mixes: bool = False,
    stems: bool = True,
    last: Literal["pad", "drop"] = "pad",
    skip_silent: bool = False,
    frame_rate_hz: float | None = None,
    apply_lag: bool = False,
    sustain: Literal["note", "pedal"] = "note",
) -> Iterator[Window]:
    """Yield training windows from the database at ``database`` (a URL or an Engine).

    Parameters
    ----------
    window_s, hop_s : float
        Window length and hop in seconds (``hop_s`` defaults to ``window_s``); rounded to whole
        frames of the features' frame rate.
    splits, seed : fractions and seed of the per-cue split (:func:`assign_split`).
    split : which split(s) to yield; default all.
    categories : keep pairs whose part or stem category is one of these (case-insensitive).
    cues : keep cues whose name or path is one of these (case-insensitive).
    verified_only : keep pairs whose ``verified`` is true.
    min_notes : keep windows with at least this many note onsets.
    mixes, stems : yield final-mix windows (roll of all parts of the cue) / part ↔ stem windows.
    last, skip_silent, frame_rate_hz, apply_lag, sustain : see the module docstring.

    Windows come in a fixed order: cues by path, then stems by name (mixes after stems), pairs
    by part, windows by start frame. The same arguments give the same windows in the same order.
    """
    if not (window_s > 0 and math.isfinite(window_s)):
        raise WindowError(f"window_s must be a positive number of seconds, got {window_s!r}")
    hop = window_s if hop_s is None else hop_s
    if not (hop > 0 and math.isfinite(hop)):
        raise WindowError(f"hop_s must be a positive number of seconds, got {hop_s!r}")
    if last not in ("pad", "drop"):
        raise WindowError(f"last must be 'pad' or 'drop', got {last!r}")
    if sustain not in ("note", "pedal"):
        raise WindowError(f"sustain must be 'note' or 'pedal', got {sustain!r}")
    if min_notes < 0:
        raise WindowError(f"min_notes must be 0 or more, got {min_notes}")
    _check_splits(splits)
    wanted_splits = _wanted_splits(split)
    engine, owned = _engine(database)
    state = _Cutter(
        window_s=window_s,
        hop_s=hop,
        frame_rate_hz=frame_rate_hz,
        last=last,
        skip_silent=skip_silent,
        min_notes=min_notes,
    )
    try:
        with engine.connect() as conn:
            _require_schema(conn, engine)
            for cue in _cues(conn, cues):
                cue_split = assign_split(cue["cue_path"], splits=splits, seed=seed)
                if cue_split not in wanted_splits:
                    continue
                notes = _cue_notes(conn, cue["cue_id"], sustain)
                if stems:
                    yield from _stem_windows(
                        conn, cue, cue_split, state, notes,
                        categories=categories, verified_only=verified_only, apply_lag=apply_lag,
                    )  # fmt: skip
                if mixes:
                    yield from _mix_windows(conn, cue, cue_split, state, notes, apply_lag=apply_lag)
    finally:
        if owned:
            engine.dispose()


def _wanted_splits(split: Split | Sequence[Split] | None) -> set[str]:
    if split is None:
        return set(SPLIT_NAMES)
    names: set[str] = {split} if isinstance(split, str) else set(split)
    unknown = names - set(SPLIT_NAMES)
    if unknown:
        raise WindowError(f"split {sorted(unknown)[0]!r} is not one of {', '.join(SPLIT_NAMES)}")
    return names


def _engine(database: str | Engine) -> tuple[Engine, bool]:
    if isinstance(database, Engine):
        return database, False
    from .db import make_engine

    return make_engine(database), True


def _require_schema(conn: Connection, engine: Engine) -> None:
    from sqlalchemy import inspect

    if not inspect(conn).has_table("audio_features"):
        from .urls import mask_url

        raise WindowError(
            f"{mask_url(str(engine.url))} holds no kmidi schema; ingest into it first"
        )


def _cues(conn: Connection, names: Sequence[str]) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(
            m.Cue.id.label("cue_id"),
            m.Cue.name.label("cue"),
            m.Cue.rel_path.label("cue_path"),
            m.Cue.midi_offset_s,
        )
        .where(m.Cue.status == "complete")
        .order_by(m.Cue.rel_path)
    ).all()
    wanted = {n.lower() for n in names}
    return [
        dict(r._mapping)
        for r in rows
        if not wanted or r.cue.lower() in wanted or r.cue_path.lower() in wanted
    ]


@dataclass(kw_only=True)
class _Cutter:
    """Window geometry, fixed by the first stem seen (one frame rate per iteration)."""

    window_s: float
    hop_s: float
    frame_rate_hz: float | None
    last: str
    skip_silent: bool
    min_notes: int

    def geometry(self, feature: Any, stem_name: str) -> tuple[float, int, int]:
        rate = feature.sample_rate_hz / feature.hop_length
        if self.frame_rate_hz is None:
            self.frame_rate_hz = rate
        elif not math.isclose(rate, self.frame_rate_hz, rel_tol=1e-9):
            raise WindowError(
                f"stem {stem_name!r} has features at {rate:g} frames/s "
                f"({feature.sample_rate_hz} Hz / hop {feature.hop_length}), not the "
                f"{self.frame_rate_hz:g} frames/s of this iteration; pass cues= or "
                "frame_rate_hz= to choose, or re-ingest at one sample rate"
            )
        size = max(1, round(self.window_s * rate))
        step = max(1, round(self.hop_s * rate))
        return rate, size, step

    def starts(self, n_frames: int, size: int, step: int) -> list[int]:
        """Start frames: every whole window, then (``last="pad"``) one more where frames remain."""
        whole = list(range(0, max(n_frames - size + 1, 0), step))
        if self.last == "pad" and n_frames > 0:
            covered = whole[-1] + size if whole else 0
            if covered < n_frames:
                whole.append(whole[-1] + step if whole else 0)
        return whole


@functools.cache
def _statements() -> dict[str, Any]:
    """The queries of one cue, built once (SQLAlchemy then reuses their compiled form)."""
    cue_id: Any = bindparam("cue_id")
    match_columns = [c for c in m.TrackMatch.__table__.columns if c.name != "id"]
    feature = (
        m.AudioFeature.id.label("feature_id"),
        m.AudioFeature.sample_rate_hz,
        m.AudioFeature.hop_length,
        m.AudioFeature.n_fft,
        m.AudioFeature.centered,
        m.AudioFeature.db_ref,
        m.AudioFeature.db_amin,
    )
    pairs = (
        select(
            *match_columns,
            m.MidiTrack.name.label("part_name"),
            m.MidiTrack.track_index,
            m.MidiTrack.channel,
            m.MidiTrack.program,
            m.MidiTrack.category.label("part_category"),
            m.MidiTrack.is_drum,
            m.MidiFile.rel_path.label("midi_file"),
            m.AudioFile.name.label("stem_name"),
            m.AudioFile.category.label("stem_category"),
            *feature,
        )
        .join(m.MidiTrack, m.MidiTrack.id == m.TrackMatch.track_id)
        .join(m.MidiFile, m.MidiFile.id == m.MidiTrack.midi_file_id)
        .join(m.AudioFile, m.AudioFile.id == m.TrackMatch.audio_file_id)
        .join(m.AudioFeature, m.AudioFeature.audio_file_id == m.AudioFile.id)
        .where(m.AudioFile.cue_id == cue_id)
        .order_by(m.AudioFile.name, m.AudioFile.id, m.MidiFile.rel_path, m.MidiTrack.track_index,
                  m.MidiTrack.id)
    )  # fmt: skip
    mixes = (
        select(m.FinalMix.id, m.FinalMix.name, *feature)
        .join(m.AudioFeature, m.AudioFeature.final_mix_id == m.FinalMix.id)
        .where(m.FinalMix.cue_id == cue_id)
        .order_by(m.FinalMix.name, m.FinalMix.id)
    )
    notes = {
        end: select(
            m.MidiNote.track_id, m.MidiNote.pitch, m.MidiNote.velocity, m.MidiNote.start_s, column
        )
        .join(m.MidiTrack, m.MidiTrack.id == m.MidiNote.track_id)
        .join(m.MidiFile, m.MidiFile.id == m.MidiTrack.midi_file_id)
        .where(m.MidiFile.cue_id == cue_id, m.MidiTrack.is_conductor.is_(False))
        .order_by(m.MidiNote.track_id, m.MidiNote.id)
        for end, column in (("note", m.MidiNote.end_s), ("pedal", m.MidiNote.end_sustain_s))
    }
    return {
        "pairs": pairs,
        "mixes": mixes,
        "notes": notes,
        "match_names": {c.name for c in match_columns},
    }


def _cue_notes(conn: Connection, cue_id: int, sustain: str) -> dict[int, dict[str, np.ndarray]]:
    """Every note of the cue's instrument tracks, as arrays per track id."""
    rows = conn.execute(_statements()["notes"][sustain], {"cue_id": cue_id}).all()
    if not rows:
        return {}
    track, pitch, velocity, start, end = (np.asarray(c) for c in zip(*rows, strict=True))
    cuts = np.flatnonzero(np.diff(track)) + 1
    out = {}
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(track)], strict=True):
        out[int(track[lo])] = {
            "pitch": pitch[lo:hi].astype(np.int64),
            "velocity": velocity[lo:hi].astype(np.int64),
            "start_s": start[lo:hi].astype(np.float64),
            "end_s": end[lo:hi].astype(np.float64),
        }
    return out


def _join_notes(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    keys = ("pitch", "velocity", "start_s", "end_s")
    if not parts:
        return {k: np.zeros(0, dtype=np.float64 if k.endswith("_s") else np.int64) for k in keys}
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def _stem_windows(
    conn: Connection,
    cue: dict[str, Any],
    cue_split: Split,
    cutter: _Cutter,
    notes: dict[int, dict[str, np.ndarray]],
    *,
    categories: Sequence[str],
    verified_only: bool,
    apply_lag: bool,
) -> Iterator[Window]:
    wanted = {c.lower() for c in categories}
    statements = _statements()
    pairs = [
        dict(p._mapping)
        for p in conn.execute(statements["pairs"], {"cue_id": cue["cue_id"]})
        if (not verified_only or p.verified is True)
        and (
            not wanted
            or (p.part_category or "").lower() in wanted
            or (p.stem_category or "").lower() in wanted
        )
    ]
    log_mel, loaded = None, None
    for pair in pairs:
        feature = _Feature(**{k: pair[k] for k in _Feature.__dataclass_fields__})
        rate, size, step = cutter.geometry(feature, pair["stem_name"])
        if loaded != feature.feature_id:
            log_mel, loaded = read_feature(conn, feature.feature_id), feature.feature_id
        assert log_mel is not None
        lag = (pair.get("lag_s") or 0.0) if apply_lag else 0.0
        part = {
            "track_id": pair["track_id"],
            "name": pair["part_name"],
            "midi_file": pair["midi_file"],
            "track_index": pair["track_index"],
            "channel": pair["channel"],
            "program": pair["program"],
            "category": pair["part_category"],
            "is_drum": bool(pair["is_drum"]),
        }
        identity = (
            f"{cue['cue_path']}\0stem\0{pair['stem_name']}\0{pair['midi_file']}"
            f"\0{pair['track_index']}\0{pair['channel']}\0{pair['part_name']}"
        )
        yield from _cut(
            cue, cue_split, cutter, feature, log_mel, _join_notes(
                [notes[pair["track_id"]]] if pair["track_id"] in notes else []
            ), lag, rate, size, step,
            kind="stem", stem_id=pair["audio_file_id"], stem_name=pair["stem_name"],
            stem_category=pair["stem_category"], identity=identity, part=part,
            pair={k: v for k, v in pair.items() if k in statements["match_names"]}, mix_parts=(),
        )  # fmt: skip


def _mix_windows(
    conn: Connection,
    cue: dict[str, Any],
    cue_split: Split,
    cutter: _Cutter,
    notes: dict[int, dict[str, np.ndarray]],
    *,
    apply_lag: bool,
) -> Iterator[Window]:
    mixes = conn.execute(_statements()["mixes"], {"cue_id": cue["cue_id"]}).all()
    if not mixes:
        return
    track_ids = tuple(sorted(notes))
    every = _join_notes([notes[t] for t in track_ids])
    lag = (cue["midi_offset_s"] or 0.0) if apply_lag else 0.0
    for mix in mixes:
        feature = _Feature(**{k: getattr(mix, k) for k in _Feature.__dataclass_fields__})
        rate, size, step = cutter.geometry(feature, mix.name)
        log_mel = read_feature(conn, feature.feature_id)
        yield from _cut(
            cue, cue_split, cutter, feature, log_mel, every, lag, rate, size, step,
            kind="mix", stem_id=mix.id, stem_name=mix.name, stem_category=None,
            identity=f"{cue['cue_path']}\0mix\0{mix.name}", part=None, pair=None,
            mix_parts=track_ids,
        )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class _Feature:
    feature_id: int
    sample_rate_hz: int
    hop_length: int
    n_fft: int
    centered: bool
    db_ref: float
    db_amin: float


def _cut(
    cue: dict[str, Any],
    cue_split: Split,
    cutter: _Cutter,
    feature: Any,
    log_mel: np.ndarray,
    notes: dict[str, np.ndarray],
    lag_s: float,
    rate: float,
    size: int,
    step: int,
    *,
    kind: Literal["stem", "mix"],
    stem_id: int,
    stem_name: str,
    stem_category: str | None,
    identity: str,
    part: dict[str, Any] | None,
    pair: dict[str, Any] | None,
    mix_parts: tuple[int, ...],
) -> Iterator[Window]:
    n_frames = log_mel.shape[1]
    frame0_s = 0.0 if feature.centered else feature.n_fft / 2 / feature.sample_rate_hz
    onset, end = note_frames(
        notes["start_s"] + lag_s, notes["end_s"] + lag_s, frame_rate_hz=rate, frame0_s=frame0_s
    )
    roll = piano_roll(notes["pitch"], notes["velocity"], onset, end, n_frames)
    onsets_sorted = np.sort(onset)
    floor_db = np.float16(10.0 * math.log10(feature.db_amin / feature.db_ref))
    id_prefix = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    for start in cutter.starts(n_frames, size, step):
        stop = start + size
        valid = min(stop, n_frames) - start
        count = int(
            np.searchsorted(onsets_sorted, start + valid, "left")
            - np.searchsorted(onsets_sorted, start, "left")
        )
        if count < cutter.min_notes:
            continue
        if valid == size:
            mel = log_mel[:, start:stop]
            window_roll = roll[:, :, start:stop]
            mask = np.ones(size, dtype=bool)
        else:
            mel = np.full((log_mel.shape[0], size), floor_db, dtype=log_mel.dtype)
            mel[:, :valid] = log_mel[:, start:]
            window_roll = np.zeros((3, 128, size), dtype=np.uint8)
            window_roll[:, :, :valid] = roll[:, :, start:]
            mask = np.zeros(size, dtype=bool)
            mask[:valid] = True
        if cutter.skip_silent and not np.any(mel[:, :valid] > floor_db):
            continue
        yield Window(
            window_id=f"{id_prefix}-{start:08d}",
            split=cue_split,
            kind=kind,
            cue_id=cue["cue_id"],
            cue=cue["cue"],
            cue_path=cue["cue_path"],
            stem_id=stem_id,
            stem_name=stem_name,
            stem_category=stem_category,
            feature_id=feature.feature_id,
            sample_rate_hz=feature.sample_rate_hz,
            hop_length=feature.hop_length,
            frame_rate_hz=rate,
            start_frame=start,
            start_s=start / rate,
            valid_frames=valid,
            note_count=count,
            log_mel=mel,
            roll=window_roll,
            mask=mask,
            part=part,
            pair=pair,
            mix_parts=mix_parts,
        )
