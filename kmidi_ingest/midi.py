"""MIDI stage: a Standard MIDI File → plain data (tracks, paired notes, events, tempo and meter maps).

:func:`read_midi` wraps the file handling; :func:`convert` is the pure semantic pass.

MIDI facts this module relies on:

- A note-off may also be a note-on with velocity 0.
- A note-off closes the *oldest* open note of the same (channel, pitch): FIFO, as samplers voice it.
  A note-off with nothing open is ignored and counted (``stray_note_off_count``).
- Tempo events may sit in any track of a format 0/1 file and apply to all tracks; in format 2 each
  track is its own sequence with its own tempo and meter.
- Text in meta events is raw bytes: decoded as UTF-8 where that is valid, else latin-1 (which never
  fails), so both old latin-1 names and modern UTF-8 names read right.
- Running status carries over meta events; sysex cancels it.

The bytes are decoded by :mod:`kmidi_ingest.smf` (lean, strict); the tests convert a parsed
``mido.MidiFile`` through the same semantic pass as their reference (``tests/midi_compare.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import gm
from .errors import MidiError
from .smf import META, SmfError, SmfTrack, parse_smf
from .timing import SMPTE_FPS, MeterMap, TempoMap, last_per_tick

MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar")
NO_BAR = 0  # bar value meaning "no bar/beat" (SMPTE timing); bars are 1-based
DRUM_CHANNEL = 9  # 0-based; "channel 10" of General MIDI

_EVENT_FIELDS = [("channel", "i2"), ("tick", "i8"), ("time_s", "f8"), ("bar", "i8"), ("beat", "f8")]
NOTE_DTYPE = np.dtype(
    [
        ("channel", "i2"),
        ("pitch", "i2"),
        ("velocity", "i2"),
        ("release_velocity", "i2"),  # -1: none (note-on velocity 0, or closed at end of track)
        ("start_tick", "i8"),
        ("end_tick", "i8"),
        ("start_s", "f8"),
        ("end_s", "f8"),
        ("end_sustain_s", "f8"),
        ("start_bar", "i8"),
        ("start_beat", "f8"),
        ("end_inferred", "?"),
    ]
)
CC_DTYPE = np.dtype([*_EVENT_FIELDS, ("controller", "i2"), ("value", "i2")])
PROGRAM_DTYPE = np.dtype([*_EVENT_FIELDS, ("program", "i2")])
BEND_DTYPE = np.dtype([*_EVENT_FIELDS, ("value", "i4")])
TOUCH_DTYPE = np.dtype([*_EVENT_FIELDS, ("pitch", "i2"), ("value", "i2")])  # pitch -1: channel

SUSTAIN_CC = 64
# Meta type byte -> markers.kind. 0x03 (track name) names the track instead.
MARKER_KINDS = {
    0x01: "text",
    0x02: "copyright",
    0x04: "instrument",
    0x05: "lyrics",
    0x06: "marker",
    0x07: "cue_point",
    0x08: "program_name",
    0x09: "device_name",
}
_KEYS_MAJOR = ("Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#")
_KEYS_MINOR = tuple(
    f"{k}m"
    for k in ("Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#", "G#", "D#", "A#")
)
SMPTE_OFFSET_FPS = (Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30))
# A film cue lasts minutes; an event a day into the file means a corrupt delta time.
MAX_LENGTH_S = 24 * 3600.0


@dataclass(frozen=True, kw_only=True)
class TempoChange:
    tick: int
    time_s: float
    tempo_us: int
    bar: int
    beat: float
    track_index: int

    @property
    def bpm(self) -> float:
        return 60_000_000 / self.tempo_us


@dataclass(frozen=True, kw_only=True)
class TimeSignatureChange:
    tick: int
    time_s: float
    bar: int
    numerator: int
    denominator: int
    clocks_per_click: int
    notated_32nds_per_beat: int
    track_index: int


@dataclass(frozen=True, kw_only=True)
class KeySignatureChange:
    tick: int
    time_s: float
    key: str
    track_index: int


@dataclass(frozen=True, kw_only=True)
class MarkerEvent:
    tick: int
    time_s: float
    bar: int
    beat: float
    kind: str
    text: str
    track_index: int


@dataclass(frozen=True, kw_only=True)
class Track:
    """One instrument part of an MTrk chunk, or a whole chunk without notes.

    The part rule (see :func:`split_parts`): a track whose notes use several channels gives one
    part per (track, channel) with notes; a track whose notes use one channel, or that has no
    notes, is one part. ``index`` is the MTrk chunk the part comes from, ``part_index`` its
    position in :attr:`MidiData.tracks` (unique within the file), ``name`` the chunk's name and
    ``part_name`` the part's (the chunk's name when the chunk is one part). Event arrays use the
    ``*_DTYPE`` layouts of this module.
    """

    index: int
    name: str
    part_index: int = 0
    part_name: str = ""
    is_conductor: bool
    channel: int | None
    program: int | None
    is_drum: bool
    notes: np.ndarray
    cc: np.ndarray
    program_changes: np.ndarray
    pitch_bends: np.ndarray
    aftertouch: np.ndarray
    sysex_count: int
    stray_note_off_count: int
    end_tick: int
    end_s: float


@dataclass(frozen=True, kw_only=True)
class MidiData:
    """Everything read from one MIDI file."""

    path: Path
    size_bytes: int
    sha256: str
    midi_format: int
    timing: str  # "ppq" or "smpte"
    ticks_per_beat: int | None
    smpte_fps: float | None
    smpte_ticks_per_frame: int | None
    smpte_offset_s: float | None
    lenient: bool
    tracks: tuple[Track, ...]
    tempo_changes: tuple[TempoChange, ...]
    time_signatures: tuple[TimeSignatureChange, ...]
    key_signatures: tuple[KeySignatureChange, ...]
    markers: tuple[MarkerEvent, ...]
    length_tick: int = 0
    length_s: float = 0.0
    notes_total: int = 0
    clipped_data_bytes: int = 0  # data bytes > 127 clipped to 127 (``lenient`` read)

    @property
    def instrument_tracks(self) -> tuple[Track, ...]:
        """The instrument parts (every part that is not a conductor track), in file order."""
        return tuple(track for track in self.tracks if not track.is_conductor)

    @property
    def track_count(self) -> int:
        """The number of MTrk chunks (every chunk gives at least one part)."""
        return len({track.index for track in self.tracks})


def decode_text(raw: bytes) -> str:
    """Decode meta-event text: UTF-8 when the bytes are valid UTF-8, else latin-1 (never fails).

    Some writers pad names with NUL bytes (C strings); those are dropped, and a NUL inside the text
    becomes U+FFFD, because PostgreSQL text cannot hold NUL.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if "\x00" in text:
        text = text.rstrip("\x00").replace("\x00", "\ufffd")
    return text


def read_midi(path: str | Path) -> MidiData:
    """Read and convert one MIDI file.

    Parameters
    ----------
    path : str or Path
        The ``.mid`` file.

    Returns
    -------
    MidiData
        ``lenient`` is set (and ``clipped_data_bytes`` counts them) when data bytes above 127 had
        to be clipped to 127 to read the file.

    Raises
    ------
    MidiError
        When the file cannot be read or is corrupt; the message names the file and the reason
        (truncated, wrong chunk length, running status without a status, absurd tick values,
        zero ticks per beat, ...).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MidiError(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    return decode_midi(raw, path=path)


def decode_midi(raw: bytes, *, path: Path) -> MidiData:
    """Decode the bytes of a MIDI file (``path`` only names it in the result and in errors).

    Raises
    ------
    MidiError
        As :func:`read_midi`.
    """
    if not raw:
        raise MidiError("file is empty (0 bytes)", path=path)
    try:
        smf = parse_smf(raw)
    except SmfError as exc:
        raise MidiError(str(exc), path=path) from None
    return convert(
        midi_format=smf.midi_format,
        division=smf.division,
        tracks=smf.tracks,
        path=path,
        size_bytes=len(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
        clipped_data_bytes=smf.clipped_data_bytes,
    )


@dataclass
class _RawTrack:
    channel: np.ndarray  # int64 (n, 4): tick, status, data 1, data 2
    end_tick: int
    name: str | None = None
    tempos: list[tuple[int, int, int]] = field(default_factory=list)  # tick, order, tempo
    meters: list[tuple[int, int, tuple[int, int, int, int]]] = field(default_factory=list)
    keys: list[tuple[int, str]] = field(default_factory=list)
    texts: list[tuple[int, str, str]] = field(default_factory=list)
    smpte_offset_s: float | None = None
    sysex_count: int = 0


def convert(
    *,
    midi_format: int,
    division: int,
    tracks: Sequence[SmfTrack],
    path: Path,
    size_bytes: int = 0,
    sha256: str = "",
    clipped_data_bytes: int = 0,
) -> MidiData:
    """Turn decoded tracks into :class:`MidiData`: pairing, tempo/meter maps, seconds, bars.

    Raises
    ------
    MidiError
        Zero ticks per beat, an invalid SMPTE division, a malformed tempo or time-signature event,
        or absurd tick values (an event more than 24 h into the file).
    """
    if division == 0:
        raise MidiError("zero ticks per beat: header division is 0", path=path)
    smpte_fps: Fraction | None = None
    tpf: int | None = None
    if division < 0:
        fps_code = -(division >> 8)
        tpf = division & 0xFF
        if fps_code not in SMPTE_FPS or tpf == 0:
            raise MidiError(
                f"invalid SMPTE division: {fps_code} frames/s × {tpf} ticks/frame "
                "(frames/s must be 24, 25, 29 or 30 and ticks/frame > 0)",
                path=path,
            )
        smpte_fps = SMPTE_FPS[fps_code]
    try:
        raws = [_scan_track(track, index=i) for i, track in enumerate(tracks)]
    except SmfError as exc:
        raise MidiError(str(exc), path=path) from None

    groups = [[i] for i in range(len(raws))] if midi_format == 2 else [list(range(len(raws)))]
    out_tracks: list[Track] = []
    tempo_rows: list[TempoChange] = []
    meter_rows: list[TimeSignatureChange] = []
    key_rows: list[KeySignatureChange] = []
    marker_rows: list[MarkerEvent] = []
    length_tick = 0
    length_s = 0.0
    for members in groups:
        tempo_events = last_per_tick(
            (tick, order, (tempo, i)) for i in members for tick, order, tempo in raws[i].tempos
        )
        meter_events = last_per_tick(
            (tick, order, (meter, i)) for i in members for tick, order, meter in raws[i].meters
        )
        meter_map: MeterMap | None = None
        if smpte_fps is not None:
            assert tpf is not None
            tempo_map = TempoMap.smpte(smpte_fps, tpf)
        else:
            tempo_map = TempoMap.from_events(division, ((t, v[0]) for t, v in tempo_events))
            meter_map = MeterMap.from_events(division, ((t, v[0][:2]) for t, v in meter_events))
        bar_beat = _bar_beat_function(meter_map)

        if smpte_fps is None:  # SMPTE timing ignores tempo events: none is in force
            ticks = np.array([tick for tick, _ in tempo_events], dtype=np.int64)
            seconds = tempo_map.seconds(ticks)
            bars, beats = bar_beat(ticks)
            tempo_rows.extend(
                TempoChange(
                    tick=tick,
                    time_s=float(seconds[k]),
                    tempo_us=tempo,
                    bar=int(bars[k]),
                    beat=float(beats[k]),
                    track_index=track_index,
                )
                for k, (tick, (tempo, track_index)) in enumerate(tempo_events)
            )
        ticks = np.array([tick for tick, _ in meter_events], dtype=np.int64)
        seconds = tempo_map.seconds(ticks)
        bars, _ = bar_beat(ticks)
        meter_rows.extend(
            TimeSignatureChange(
                tick=tick,
                time_s=float(seconds[k]),
                bar=int(bars[k]),
                numerator=num,
                denominator=den,
                clocks_per_click=clocks,
                notated_32nds_per_beat=n32,
                track_index=track_index,
            )
            for k, (tick, ((num, den, clocks, n32), track_index)) in enumerate(meter_events)
        )
        for i in members:
            raw = raws[i]
            if raw.keys:
                seconds = tempo_map.seconds([tick for tick, _ in raw.keys])
                key_rows.extend(
                    KeySignatureChange(tick=tick, time_s=float(s), key=key, track_index=i)
                    for (tick, key), s in zip(raw.keys, seconds, strict=True)
                )
            if raw.texts:
                ticks = np.array([tick for tick, _, _ in raw.texts], dtype=np.int64)
                seconds = tempo_map.seconds(ticks)
                bars, beats = bar_beat(ticks)
                marker_rows.extend(
                    MarkerEvent(
                        tick=tick,
                        time_s=float(seconds[k]),
                        bar=int(bars[k]),
                        beat=float(beats[k]),
                        kind=kind,
                        text=text,
                        track_index=i,
                    )
                    for k, (tick, kind, text) in enumerate(raw.texts)
                )
            track, strays = _build_track(i, raw, tempo_map, bar_beat)
            if not track.end_s <= MAX_LENGTH_S:
                raise MidiError(
                    f"absurd tick values: track {i} ends at tick {track.end_tick}, "
                    f"{track.end_s / 3600:.1f} h into the file (limit {MAX_LENGTH_S / 3600:g} h)",
                    path=path,
                )
            out_tracks.extend(_split_parts(track, strays, first_part_index=len(out_tracks)))
            length_tick = max(length_tick, track.end_tick)
            length_s = max(length_s, track.end_s)

    smpte_offset = next((r.smpte_offset_s for r in raws if r.smpte_offset_s is not None), None)
    return MidiData(
        path=path,
        size_bytes=size_bytes,
        sha256=sha256,
        midi_format=midi_format,
        timing="smpte" if smpte_fps is not None else "ppq",
        ticks_per_beat=None if smpte_fps is not None else division,
        smpte_fps=None if smpte_fps is None else float(smpte_fps),
        smpte_ticks_per_frame=tpf,
        smpte_offset_s=smpte_offset,
        lenient=clipped_data_bytes > 0,
        tracks=tuple(out_tracks),
        tempo_changes=tuple(tempo_rows),
        time_signatures=tuple(meter_rows),
        key_signatures=tuple(key_rows),
        markers=tuple(marker_rows),
        length_tick=length_tick,
        length_s=length_s,
        notes_total=sum(len(t.notes) for t in out_tracks),
        clipped_data_bytes=clipped_data_bytes,
    )


BarBeat = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _bar_beat_function(meter_map: MeterMap | None) -> BarBeat:
    if meter_map is None:  # SMPTE: no beats, so no bars

        def no_bars(ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            n = len(ticks)
            return np.full(n, NO_BAR, np.int64), np.full(n, np.nan)

        return no_bars
    return meter_map.bar_beat


def _scan_track(track: SmfTrack, *, index: int) -> _RawTrack:
    """Channel messages as one int64 array; meta and sysex events by kind."""
    raw = _RawTrack(
        channel=np.asarray(track.channel, dtype=np.int64).reshape(-1, 4), end_tick=track.end_tick
    )
    order_base = index << 32
    for position, (tick, status, a, _b, payload) in track.other:
        if status == META:
            assert payload is not None
            _scan_meta(raw, tick, order_base + position, a, payload, index)
        else:
            raw.sysex_count += 1
    return raw


def _pair_notes(
    events: np.ndarray, end_tick: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """FIFO note pairing per (channel, pitch), vectorised.

    Within one (channel, pitch), a note-off is stray when nothing is open, i.e. when the count of
    open notes before it is 0; that count is the running sum of +1 (on) / -1 (off) clamped at 0,
    which is the running sum minus its running minimum (taken with 0). The valid note-offs then close
    the note-ons in order: the j-th valid note-off ends the j-th note-on (the oldest open one).
    Note-ons left over stay open to the end of the track.

    Returns
    -------
    notes : NOTE_DTYPE array in (channel, pitch, file) order, times not yet filled in
    start_rows, end_rows : int64 arrays, row of each note's start and end in ``events``; an end
        row of ``len(events)`` means the end of the track
    strays : int64 array (16,), note-offs that closed nothing, per channel
    """
    kind = events[:, 1] & 0xF0
    velocity = events[:, 3]
    is_on = (kind == 0x90) & (velocity > 0)
    is_off = ((kind == 0x80) | (kind == 0x90)) & ~is_on
    rows = np.flatnonzero(is_on | is_off)
    if not len(rows):
        none = np.zeros(0, dtype=np.int64)
        return np.zeros(0, NOTE_DTYPE), none, none, np.zeros(16, dtype=np.int64)
    key = (events[rows, 1] & 0x0F) * 128 + events[rows, 2]
    order = np.argsort(key, kind="stable")
    rows, key = rows[order], key[order]
    on = is_on[rows]
    n = len(rows)
    first = np.ones(n, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    group = np.cumsum(first) - 1
    step = np.where(on, 1, -1)
    total = np.cumsum(step)
    local = total - (total - step)[first][group]
    # Shift each group below all earlier ones so one running minimum restarts at every group.
    shift = group * (2 * n + 2)
    shifted = local - shift
    open_after = shifted - np.minimum(np.minimum.accumulate(shifted), -shift)
    open_before = np.zeros(n, dtype=np.int64)
    open_before[1:] = open_after[:-1]
    open_before[first] = 0
    closes = ~on & (open_before > 0)
    strays = np.bincount(events[rows[~on & ~closes], 1] & 0x0F, minlength=16)

    on_rows, off_rows = rows[on], rows[closes]
    on_group = group[on]
    rank = np.arange(len(on_rows)) - np.searchsorted(on_group, on_group)
    closed_in_group = np.bincount(group[closes], minlength=int(group[-1]) + 1)
    matched = rank < closed_in_group[on_group]

    notes = np.zeros(len(on_rows), NOTE_DTYPE)
    notes["channel"] = events[on_rows, 1] & 0x0F
    notes["pitch"] = events[on_rows, 2]
    notes["velocity"] = events[on_rows, 3]
    notes["start_tick"] = events[on_rows, 0]
    end_rows = np.full(len(on_rows), len(events), dtype=np.int64)
    end_rows[matched] = off_rows
    ends = np.full(len(on_rows), end_tick, dtype=np.int64)
    ends[matched] = events[off_rows, 0]
    notes["end_tick"] = ends
    release = np.full(len(on_rows), -1, dtype=np.int64)
    release[matched] = np.where(kind[off_rows] == 0x80, events[off_rows, 3], -1)
    notes["release_velocity"] = release
    notes["end_inferred"] = ~matched
    return notes, on_rows, end_rows, strays


def _scan_meta(
    raw: _RawTrack, tick: int, order: int, meta_type: int, data: bytes, index: int
) -> None:
    if meta_type == 0x51:
        if len(data) < 3:
            raise SmfError(
                f"malformed set_tempo event in track {index} at tick {tick}: "
                f"{len(data)} data bytes, needs 3"
            )
        tempo = (data[0] << 16) | (data[1] << 8) | data[2]
        if tempo == 0:
            raise SmfError(f"set_tempo of 0 µs per quarter note in track {index} at tick {tick}")
        raw.tempos.append((tick, order, tempo))
    elif meta_type == 0x58:
        if len(data) < 4:
            raise SmfError(
                f"malformed time_signature event in track {index} at tick {tick}: "
                f"{len(data)} data bytes, needs 4"
            )
        if data[0] == 0 or data[1] > 8:  # 0/x or a denominator beyond 1/256: not a meter
            raise SmfError(
                f"invalid time signature {data[0]}/2^{data[1]} in track {index} at tick {tick}"
            )
        raw.meters.append((tick, order, (data[0], 1 << data[1], data[2], data[3])))
    elif meta_type == 0x03:
        if raw.name is None:
            raw.name = decode_text(data)
    elif meta_type in MARKER_KINDS:
        raw.texts.append((tick, MARKER_KINDS[meta_type], decode_text(data)))
    elif meta_type == 0x59 and len(data) >= 2:
        sharps = data[0] - 256 if data[0] > 127 else data[0]
        mode = data[1]
        if -7 <= sharps <= 7 and mode in (0, 1):  # anything else names no key: skipped
            raw.keys.append((tick, (_KEYS_MINOR if mode else _KEYS_MAJOR)[sharps + 7]))
    elif meta_type == 0x54 and len(data) >= 5 and raw.smpte_offset_s is None:
        fps = SMPTE_OFFSET_FPS[data[0] >> 5 & 0x03]
        raw.smpte_offset_s = float(
            (data[0] & 0x1F) * 3600
            + data[1] * 60
            + data[2]
            + (data[3] + Fraction(data[4], 100)) / fps
        )


def _build_track(
    index: int, raw: _RawTrack, tempo_map: TempoMap, bar_beat: BarBeat
) -> tuple[Track, np.ndarray]:
    """The whole chunk as one :class:`Track`, and its stray note-offs per channel."""
    events = raw.channel
    notes, start_rows, end_rows, strays = _pair_notes(events, raw.end_tick)
    # Convert every channel event's tick (and the track end) once; events index into that.
    ticks = np.append(events[:, 0], raw.end_tick)
    seconds = tempo_map.seconds(ticks)
    bars, beats = bar_beat(ticks) if len(events) else (np.zeros(1, np.int64), np.zeros(1))
    if len(notes):
        # Stable: notes with equal keys stay in file order.
        order = np.lexsort(
            (notes["end_tick"], notes["pitch"], notes["channel"], notes["start_tick"])
        )
        notes, start_rows, end_rows = notes[order], start_rows[order], end_rows[order]
        notes["start_s"] = seconds[start_rows]
        notes["end_s"] = seconds[end_rows]
        notes["start_bar"] = bars[start_rows]
        notes["start_beat"] = beats[start_rows]
    kind = events[:, 1] & 0xF0
    first, second = events[:, 2], events[:, 3]

    def select(mask: np.ndarray, dtype: np.dtype) -> np.ndarray:
        rows = np.flatnonzero(mask)
        array = np.zeros(len(rows), dtype)
        if len(rows):
            array["channel"] = events[rows, 1] & 0x0F
            array["tick"] = events[rows, 0]
            array["time_s"] = seconds[rows]
            array["bar"] = bars[rows]
            array["beat"] = beats[rows]
        return array

    mask = kind == 0xB0
    cc = select(mask, CC_DTYPE)
    cc["controller"], cc["value"] = first[mask], second[mask]
    mask = kind == 0xC0
    programs = select(mask, PROGRAM_DTYPE)
    programs["program"] = first[mask]
    mask = kind == 0xE0
    bends = select(mask, BEND_DTYPE)
    bends["value"] = ((second[mask] << 7) | first[mask]) - 8192
    mask = (kind == 0xA0) | (kind == 0xD0)
    touch = select(mask, TOUCH_DTYPE)
    channel_pressure = kind[mask] == 0xD0
    touch["pitch"] = np.where(channel_pressure, -1, first[mask])
    touch["value"] = np.where(channel_pressure, first[mask], second[mask])
    if len(notes):
        notes["end_sustain_s"] = notes["end_s"]
        if len(cc) and np.any(cc["controller"] == SUSTAIN_CC):
            sustained = _sustained_end_ticks(notes, cc, raw.end_tick)
            notes["end_sustain_s"] = tempo_map.seconds(sustained)

    counts = np.bincount(events[:, 1] & 0x0F, minlength=16)
    busiest = int(np.argmax(counts))  # ties: the lowest channel
    channel = busiest if counts[busiest] else None
    track = Track(
        index=index,
        name=raw.name if raw.name is not None else "",
        is_conductor=channel is None,
        channel=channel,
        program=int(programs["program"][0]) if len(programs) else None,
        is_drum=channel == DRUM_CHANNEL,
        notes=notes,
        cc=cc,
        program_changes=programs,
        pitch_bends=bends,
        aftertouch=touch,
        sysex_count=raw.sysex_count,
        stray_note_off_count=int(strays.sum()),
        end_tick=raw.end_tick,
        end_s=float(seconds[-1]),
    )
    return track, strays


def part_program(programs: np.ndarray, channel: int, first_note_tick: int) -> int | None:
    """The program of a part: the one in force at its first note.

    That is the last program change on ``channel`` at or before ``first_note_tick`` (one at the
    same tick counts, whichever comes first in the file: writers put the patch and the first note
    at one tick in either order); when the part's first program change comes after its first note,
    that one; ``None`` when the channel has none.
    """
    own = programs[programs["channel"] == channel]
    if not len(own):
        return None
    before = np.flatnonzero(own["tick"] <= first_note_tick)
    return int(own["program"][before[-1] if len(before) else 0])


def _split_parts(track: Track, strays: np.ndarray, *, first_part_index: int) -> list[Track]:
    """The instrument parts of one chunk (the part rule of the module docstring)."""
    noted = np.unique(track.notes["channel"]).tolist()
    if len(noted) <= 1:
        if not noted:  # no notes: the chunk stays whole, as a conductor or a controller track
            return [dataclasses.replace(track, part_index=first_part_index, part_name=track.name)]
        channel = int(noted[0])
        program = part_program(track.program_changes, channel, int(track.notes["start_tick"][0]))
        return [
            dataclasses.replace(
                track,
                part_index=first_part_index,
                part_name=track.name,
                channel=channel,
                program=program,
                is_drum=channel == DRUM_CHANNEL,
            )
        ]
    orphan = ~np.isin(np.arange(16), noted)  # channels with events but no notes in this chunk
    instruments = []
    for channel in noted:
        first_tick = int(track.notes["start_tick"][track.notes["channel"] == channel][0])
        program = part_program(track.program_changes, channel, first_tick)
        name = gm.program_name(program, is_drum=channel == DRUM_CHANNEL)
        instruments.append((channel, program, name or f"Channel {channel + 1}"))
    names = [name for _, _, name in instruments]
    parts: list[Track] = []
    for k, (channel, program, name) in enumerate(instruments):

        def pick(array: np.ndarray, channel: int = channel, first: bool = k == 0) -> np.ndarray:
            mask = array["channel"] == channel
            if first:  # channel events of note-less channels stay with the first part
                mask |= orphan[array["channel"]]
            return array[mask]

        parts.append(
            dataclasses.replace(
                track,
                part_index=first_part_index + k,
                part_name=f"{name} (ch {channel + 1})" if names.count(name) > 1 else name,
                channel=channel,
                program=program,
                is_drum=channel == DRUM_CHANNEL,
                notes=track.notes[track.notes["channel"] == channel],
                cc=pick(track.cc),
                program_changes=pick(track.program_changes),
                pitch_bends=pick(track.pitch_bends),
                aftertouch=pick(track.aftertouch),
                sysex_count=track.sysex_count if k == 0 else 0,
                stray_note_off_count=int(strays[channel] + (strays[orphan].sum() if k == 0 else 0)),
            )
        )
    return parts


def _sustained_end_ticks(notes: np.ndarray, cc: np.ndarray, track_end: int) -> np.ndarray:
    """End ticks with the sustain pedal applied.

    A note released while CC64 ≥ 64 (pedal down) on its channel sounds until the pedal comes up,
    or until the track ends if it never does. Of several pedal events at one tick the last counts.
    """
    ends = notes["end_tick"].copy()
    pedal = cc[cc["controller"] == SUSTAIN_CC]
    if not len(pedal):
        return ends
    for channel in np.unique(pedal["channel"]):
        events = pedal[pedal["channel"] == channel]
        ticks = events["tick"]
        down = events["value"] >= 64
        # For each pedal event, the tick of the first "up" event after it (or the track end).
        up_ticks = np.append(ticks[~down], track_end)
        next_up = up_ticks[np.searchsorted(ticks[~down], ticks, side="right")]
        mask = notes["channel"] == channel
        idx = np.searchsorted(ticks, ends[mask], side="right") - 1
        held = (idx >= 0) & down[np.clip(idx, 0, None)]
        ends[mask] = np.where(
            held, np.maximum(ends[mask], next_up[np.clip(idx, 0, None)]), ends[mask]
        )
    return ends
