"""MIDI stage: a Standard MIDI File → plain data (tracks, paired notes, events, tempo and meter maps).

:func:`read_midi` wraps the file handling; :func:`from_mido` is the pure converter.

MIDI facts this module relies on:

- A note-off may also be a note-on with velocity 0.
- A note-off closes the *oldest* open note of the same (channel, pitch): FIFO, as samplers voice it.
  A note-off with nothing open is ignored and counted (``stray_note_off_count``).
- Tempo events may sit in any track of a format 0/1 file and apply to all tracks; in format 2 each
  track is its own sequence with its own tempo and meter.
- Text in meta events is raw bytes; mido hands them over decoded as latin-1, which never fails. We
  re-decode as UTF-8 where that is valid, so both old latin-1 names and modern UTF-8 names read right.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MidiError
from .timing import SMPTE_FPS, MeterMap, TempoMap, last_per_tick

MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar")
NO_BAR = 0  # bar value meaning "no bar/beat" (SMPTE timing); bars are 1-based

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
MARKER_KINDS = {
    "marker": "marker",
    "cue_marker": "cue_point",
    "text": "text",
    "lyrics": "lyrics",
    "copyright": "copyright",
    "instrument_name": "instrument",
    "program_name": "program_name",
    "device_name": "device_name",
}
CHANNEL_TYPES = frozenset(
    {
        "note_on",
        "note_off",
        "control_change",
        "program_change",
        "pitchwheel",
        "aftertouch",
        "polytouch",
    }
)


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
    """One MTrk chunk. Event arrays use the ``*_DTYPE`` layouts of this module."""

    index: int
    name: str
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
    notes_total: int = field(default=0)

    @property
    def instrument_tracks(self) -> tuple[Track, ...]:
        return tuple(track for track in self.tracks if not track.is_conductor)


def decode_text(text: str) -> str:
    """Re-decode a latin-1 decoded meta text as UTF-8 when the bytes are valid UTF-8."""
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        return text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return text


def read_midi(path: str | Path) -> MidiData:
    """Read and convert one MIDI file.

    Raises
    ------
    MidiError
        When the file cannot be parsed; the message names the reason. A file whose only fault is
        data bytes above 127 is read again with those bytes clipped and flagged ``lenient``.
    """
    import mido

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MidiError(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    if not raw:
        raise MidiError("file is empty (0 bytes)", path=path)
    lenient = False
    try:
        mid = _parse(mido, raw, clip=False)
    except Exception as exc:  # mido raises OSError, EOFError, ValueError, KeyError, ...
        reason = _describe(exc)
        if "data byte must be in range" not in reason:
            raise MidiError(f"not a readable MIDI file: {reason}", path=path) from exc
        try:
            mid = _parse(mido, raw, clip=True)
        except Exception as exc2:
            raise MidiError(f"not a readable MIDI file: {_describe(exc2)}", path=path) from exc2
        lenient = True
    return from_mido(
        mid,
        path=path,
        size_bytes=len(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
        lenient=lenient,
    )


def _parse(mido: Any, raw: bytes, *, clip: bool) -> Any:
    import io

    return mido.MidiFile(file=io.BytesIO(raw), clip=clip)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, EOFError) or not text:
        return (
            f"{type(exc).__name__}: file is truncated"
            if isinstance(exc, EOFError)
            else (type(exc).__name__)
        )
    return text


@dataclass
class _RawTrack:
    name: str | None = None
    notes: list[tuple[int, int, int, int, int, int, bool]] = field(default_factory=list)
    cc: list[tuple[int, int, int, int]] = field(default_factory=list)
    programs: list[tuple[int, int, int]] = field(default_factory=list)
    bends: list[tuple[int, int, int]] = field(default_factory=list)
    touch: list[tuple[int, int, int, int]] = field(default_factory=list)
    tempos: list[tuple[int, int, int]] = field(default_factory=list)  # tick, order, tempo
    meters: list[tuple[int, int, tuple[int, int, int, int]]] = field(default_factory=list)
    keys: list[tuple[int, str]] = field(default_factory=list)
    texts: list[tuple[int, str, str]] = field(default_factory=list)
    smpte_offset_s: float | None = None
    sysex_count: int = 0
    stray_note_offs: int = 0
    channel_events: int = 0
    channels: Counter[int] = field(default_factory=Counter)
    end_tick: int = 0


def from_mido(
    mid: Any, *, path: Path, size_bytes: int = 0, sha256: str = "", lenient: bool = False
) -> MidiData:
    """Convert a parsed ``mido.MidiFile`` into :class:`MidiData` (pure)."""
    division = int(mid.ticks_per_beat)
    if division == 0:
        raise MidiError("header division (ticks per beat) is 0", path=path)
    midi_format = int(mid.type)
    raws = [_scan_track(track, order_base=i << 32) for i, track in enumerate(mid.tracks)]

    smpte_fps: Fraction | None = None
    tpf: int | None = None
    if division < 0:
        fps_code = -(division >> 8)
        tpf = division & 0xFF
        if fps_code not in SMPTE_FPS or tpf == 0:
            raise MidiError(
                f"invalid SMPTE division: {fps_code} fps × {tpf} ticks per frame", path=path
            )
        smpte_fps = SMPTE_FPS[fps_code]

    def maps_for(members: list[int]) -> tuple[TempoMap, MeterMap | None, list, list]:
        tempo_events = last_per_tick(
            (tick, order, (tempo, i)) for i in members for tick, order, tempo in raws[i].tempos
        )
        meter_events = last_per_tick(
            (tick, order, (meter, i)) for i in members for tick, order, meter in raws[i].meters
        )
        if smpte_fps is not None:
            assert tpf is not None
            return TempoMap.smpte(smpte_fps, tpf), None, tempo_events, meter_events
        tempo_map = TempoMap.from_events(
            division, ((tick, value[0]) for tick, value in tempo_events)
        )
        meter_map = MeterMap.from_events(
            division,
            ((tick, value[0][:2]) for tick, value in meter_events),
        )
        return tempo_map, meter_map, tempo_events, meter_events

    groups = [[i] for i in range(len(raws))] if midi_format == 2 else [list(range(len(raws)))]

    tracks: list[Track] = []
    tempo_rows: list[TempoChange] = []
    meter_rows: list[TimeSignatureChange] = []
    key_rows: list[KeySignatureChange] = []
    marker_rows: list[MarkerEvent] = []
    length_tick = 0
    length_s = 0.0
    for members in groups:
        tempo_map, meter_map, tempo_events, meter_events = maps_for(members)

        def bar_beat(
            ticks: np.ndarray, meter_map: MeterMap | None = meter_map
        ) -> tuple[np.ndarray, np.ndarray]:
            if meter_map is None:
                return np.full(len(ticks), NO_BAR, np.int64), np.full(len(ticks), np.nan)
            return meter_map.bar_beat(ticks)

        if smpte_fps is None:
            ticks = np.array([tick for tick, _ in tempo_events], dtype=np.int64)
            seconds = tempo_map.seconds(ticks)
            bars, beats = bar_beat(ticks)
            for k, (tick, value) in enumerate(tempo_events):
                tempo, track_index = value
                tempo_rows.append(
                    TempoChange(
                        tick=tick,
                        time_s=float(seconds[k]),
                        tempo_us=tempo,
                        bar=int(bars[k]),
                        beat=float(beats[k]),
                        track_index=track_index,
                    )
                )
        ticks = np.array([tick for tick, _ in meter_events], dtype=np.int64)
        seconds = tempo_map.seconds(ticks)
        bars, _ = bar_beat(ticks)
        for k, (tick, value) in enumerate(meter_events):
            (num, den, clocks, n32), track_index = value
            meter_rows.append(
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
            track = _build_track(i, raw, tempo_map, bar_beat)
            tracks.append(track)
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
        lenient=lenient,
        tracks=tuple(tracks),
        tempo_changes=tuple(tempo_rows),
        time_signatures=tuple(meter_rows),
        key_signatures=tuple(key_rows),
        markers=tuple(marker_rows),
        length_tick=length_tick,
        length_s=length_s,
        notes_total=sum(len(t.notes) for t in tracks),
    )


def _scan_track(track: Iterable[Any], *, order_base: int) -> _RawTrack:
    """One pass over a track's messages: absolute ticks, FIFO note pairing, events by kind."""
    raw = _RawTrack()
    open_notes: dict[tuple[int, int], deque[tuple[int, int]]] = {}
    tick = 0
    for order, msg in enumerate(track):
        tick += msg.time
        kind = msg.type
        if kind in CHANNEL_TYPES:
            channel = msg.channel
            raw.channel_events += 1
            raw.channels[channel] += 1
            if kind == "note_on" and msg.velocity > 0:
                open_notes.setdefault((channel, msg.note), deque()).append((tick, msg.velocity))
            elif kind in ("note_on", "note_off"):
                queue = open_notes.get((channel, msg.note))
                if not queue:
                    raw.stray_note_offs += 1
                    continue
                start, velocity = queue.popleft()
                release = msg.velocity if kind == "note_off" else -1
                raw.notes.append((channel, msg.note, velocity, release, start, tick, False))
            elif kind == "control_change":
                raw.cc.append((channel, tick, msg.control, msg.value))
            elif kind == "program_change":
                raw.programs.append((channel, tick, msg.program))
            elif kind == "pitchwheel":
                raw.bends.append((channel, tick, msg.pitch))
            elif kind == "aftertouch":
                raw.touch.append((channel, tick, -1, msg.value))
            else:  # polytouch
                raw.touch.append((channel, tick, msg.note, msg.value))
        elif kind == "set_tempo":
            raw.tempos.append((tick, order_base + order, msg.tempo))
        elif kind == "time_signature":
            meter = (
                msg.numerator,
                msg.denominator,
                msg.clocks_per_click,
                msg.notated_32nd_notes_per_beat,
            )
            raw.meters.append((tick, order_base + order, meter))
        elif kind == "key_signature":
            raw.keys.append((tick, msg.key))
        elif kind == "track_name":
            if raw.name is None:
                raw.name = decode_text(msg.name)
        elif kind in MARKER_KINDS:
            text = (
                msg.name
                if kind in ("instrument_name", "program_name", "device_name")
                else (msg.text)
            )
            raw.texts.append((tick, MARKER_KINDS[kind], decode_text(text)))
        elif kind == "sysex":
            raw.sysex_count += 1
        elif kind == "smpte_offset" and raw.smpte_offset_s is None:
            fps = {24: 24.0, 25: 25.0, 29.97: 30000 / 1001, 30: 30.0}.get(msg.frame_rate, 30.0)
            raw.smpte_offset_s = (
                msg.hours * 3600
                + msg.minutes * 60
                + msg.seconds
                + (msg.frames + msg.sub_frames / 100) / fps
            )
    raw.end_tick = tick
    # Notes never released are closed at the end of the track, oldest first, and flagged.
    for (channel, pitch), queue in open_notes.items():
        for start, velocity in queue:
            raw.notes.append((channel, pitch, velocity, -1, start, tick, True))
    return raw


def _build_track(index: int, raw: _RawTrack, tempo_map: TempoMap, bar_beat: Any) -> Track:
    notes = np.zeros(len(raw.notes), dtype=NOTE_DTYPE)
    if raw.notes:
        raw.notes.sort(key=lambda n: (n[4], n[0], n[1], n[5]))
        cols = list(zip(*raw.notes, strict=True))
        for name, col in zip(
            (
                "channel",
                "pitch",
                "velocity",
                "release_velocity",
                "start_tick",
                "end_tick",
                "end_inferred",
            ),
            cols,
            strict=True,
        ):
            notes[name] = col
        notes["start_s"] = tempo_map.seconds(notes["start_tick"])
        notes["end_s"] = tempo_map.seconds(notes["end_tick"])
        notes["start_bar"], notes["start_beat"] = bar_beat(notes["start_tick"])
        sustain_ticks = _sustained_end_ticks(notes, raw.cc, raw.end_tick)
        notes["end_sustain_s"] = tempo_map.seconds(sustain_ticks)

    def events(
        rows: Sequence[tuple[int, ...]], dtype: np.dtype, names: tuple[str, ...]
    ) -> np.ndarray:
        array = np.zeros(len(rows), dtype=dtype)
        if rows:
            cols = list(zip(*rows, strict=True))
            array["channel"] = cols[0]
            array["tick"] = cols[1]
            for name, col in zip(names, cols[2:], strict=True):
                array[name] = col
            array["time_s"] = tempo_map.seconds(array["tick"])
            array["bar"], array["beat"] = bar_beat(array["tick"])
        return array

    channel = raw.channels.most_common(1)[0][0] if raw.channels else None
    program = raw.programs[0][2] if raw.programs else None
    return Track(
        index=index,
        name=raw.name if raw.name is not None else "",
        is_conductor=raw.channel_events == 0,
        channel=channel,
        program=program,
        is_drum=channel == 9,
        notes=notes,
        cc=events(raw.cc, CC_DTYPE, ("controller", "value")),
        program_changes=events(raw.programs, PROGRAM_DTYPE, ("program",)),
        pitch_bends=events(raw.bends, BEND_DTYPE, ("value",)),
        aftertouch=events(raw.touch, TOUCH_DTYPE, ("pitch", "value")),
        sysex_count=raw.sysex_count,
        stray_note_off_count=raw.stray_note_offs,
        end_tick=raw.end_tick,
        end_s=float(tempo_map.seconds(raw.end_tick)),
    )


def _sustained_end_ticks(
    notes: np.ndarray, cc: list[tuple[int, int, int, int]], track_end: int
) -> np.ndarray:
    """End ticks with the sustain pedal applied: a note released while CC64 ≥ 64 on its channel
    sounds until the pedal comes up (or the track ends)."""
    ends = notes["end_tick"].copy()
    pedal = [(ch, tick, value >= 64) for ch, tick, ctrl, value in cc if ctrl == SUSTAIN_CC]
    if not pedal:
        return ends
    for channel in {ch for ch, _, _ in pedal}:
        events = [(tick, down) for ch, tick, down in pedal if ch == channel]
        ticks = np.array([tick for tick, _ in events], dtype=np.int64)
        down = np.array([d for _, d in events], dtype=bool)
        # For each pedal event, the tick of the first "up" event after it (or the track end).
        next_up = np.full(len(events), track_end, dtype=np.int64)
        upcoming = track_end
        for j in range(len(events) - 1, -1, -1):
            next_up[j] = upcoming
            if not down[j]:
                upcoming = ticks[j]
        mask = notes["channel"] == channel
        idx = np.searchsorted(ticks, ends[mask], side="right") - 1
        held = (idx >= 0) & down[np.clip(idx, 0, None)]
        sustained = np.where(
            held, np.maximum(ends[mask], next_up[np.clip(idx, 0, None)]), ends[mask]
        )
        ends[mask] = sustained
    return ends
