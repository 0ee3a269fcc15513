"""Generate a small, deterministic example cue tree for ``kmidi_ingest``.

The tree mimics what a film-music team hands over per cue: a MIDI export of the
sequencer session (type 1, conductor track first) and the Pro Tools printed
audio stems (multi-mono WAV files) plus the final 5.1 mix ("6mx").  The stems are
*synthesised from the MIDI notes* so that their audio really follows the MIDI
tracks: every note's start and end tick is converted to seconds through the
tempo map of the written file, then rendered with a simple additive tone.

Usage::

    python examples/make_examples.py [OUT_DIR]

``OUT_DIR`` defaults to ``cues`` next to this script; it is deleted and
recreated.  The output is byte-identical on every run (fixed random seeds, no
timestamps in the files).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import numpy.typing as npt
import soundfile as sf

Audio = npt.NDArray[np.float64]

SAMPLE_RATE = 16_000
TICKS_PER_BEAT = 480
TAIL_SECONDS = 0.3  # release tail printed after the last bar of each cue
SEED = 20_240_601
PEAK_LEVEL = 10 ** (-1.0 / 20.0)  # normalise each cue to -1 dBFS
MIX_CHANNELS = ("L", "R", "C", "LFE", "Ls", "Rs")
CENTRE_GAIN = float(np.sqrt(0.5))  # equal-power centre pan for mono stems


# --------------------------------------------------------------------------
# Score description
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """One note of the score; positions are in quarter-note beats from the cue start."""

    start: float
    length: float
    pitch: int
    velocity: int


@dataclass(frozen=True)
class Stem:
    """A printed Pro Tools stem.

    ``channels`` holds the multi-mono suffixes (``("L", "R")``) or ``("",)`` for
    a mono file.  ``pan`` and ``spread`` place notes in a stereo stem: higher
    pitches drift by ``spread`` towards the right, like an orchestral seating.
    """

    name: str
    channels: tuple[str, ...] = ("",)
    subtype: str = "PCM_16"
    pan: float = 0.0
    spread: float = 0.0


@dataclass(frozen=True)
class Track:
    """One instrument track of the MIDI file and the stem it is printed to (if any)."""

    name: str
    channel: int
    program: int
    voice: str
    notes: tuple[Note, ...]
    controls: tuple[tuple[float, int, int], ...]  # (beat, controller, value)
    stem: Stem | None
    zero_velocity_offs: bool = False  # write note-offs as note_on with velocity 0


@dataclass(frozen=True)
class Cue:
    """A cue: conductor data, instrument tracks and optional alternate MIDI files."""

    reel: str
    title: str
    key: str
    tempos: tuple[tuple[float, float], ...]  # (beat, bpm)
    meters: tuple[tuple[float, int, int], ...]  # (beat, numerator, denominator)
    markers: tuple[tuple[float, str], ...]  # (beat, text)
    length_beats: float
    tracks: tuple[Track, ...]
    alternates: tuple[tuple[str, tuple[Track, ...]], ...] = ()  # (title suffix, tracks)

    @property
    def number(self) -> str:
        """Cue number such as ``"1M01"`` (first word of the title)."""
        return self.title.split(" ", 1)[0]


def chord(start: float, length: float, pitches: Iterable[int], velocity: int) -> list[Note]:
    """Return one :class:`Note` per pitch, all with the same timing and velocity."""
    return [Note(start, length, pitch, velocity) for pitch in pitches]


def line(events: Iterable[tuple[float, float, int, int]]) -> list[Note]:
    """Return notes from ``(start, length, pitch, velocity)`` tuples."""
    return [Note(*event) for event in events]


def drums(hits: Iterable[tuple[float, int, int]], length: float = 0.2) -> list[Note]:
    """Return one-shot percussion notes from ``(start, pitch, velocity)`` tuples."""
    return [Note(start, length, pitch, velocity) for start, pitch, velocity in hits]


# fmt: off
def _cue_1m01() -> Cue:
    """1M01 Opening: D major, 4/4, 120 -> 160 BPM at bar 2; includes an unmatched Click."""
    sustained = (chord(0, 1.9, [74, 78], 70) + chord(2, 1.9, [73, 76], 76)
                 + chord(4, 1.9, [71, 74], 90) + chord(6, 1.9, [74, 78], 100))
    top_line = line([(0, 0.95, 81, 80), (1, 0.45, 83, 84), (1.5, 0.45, 85, 88),
                     (2, 1.45, 86, 96), (3.5, 0.45, 85, 90), (4, 0.95, 83, 100),
                     (5, 0.45, 81, 96), (5.5, 0.45, 79, 96), (6, 1.9, 86, 112)])
    strings = sustained + top_line
    rhythm = [(0, 0.7), (0.75, 0.2), (1, 0.9), (2, 0.7), (2.75, 0.2), (3, 0.9),
              (4, 0.45), (4.5, 0.45), (5, 0.45), (5.5, 0.45), (6, 1.9)]
    melody = [62, 62, 69, 66, 66, 74, 71, 69, 67, 66, 69]
    brass: list[Note] = []
    for (start, length), pitch in zip(rhythm, melody, strict=True):
        velocity = 100 if start == int(start) else 80
        brass += chord(start, length, [pitch - 12, pitch], velocity)
    taiko = drums([(0, 36, 120), (1.5, 41, 90), (2, 36, 110), (3, 41, 95), (3.5, 43, 85),
                   (3.75, 43, 90), (4, 35, 127), (4, 36, 120), (4.5, 41, 90), (5, 36, 110),
                   (5.5, 41, 90), (6, 36, 115), (6.25, 43, 80), (6.5, 41, 90), (6.75, 43, 95),
                   (7, 36, 127), (7.25, 41, 100), (7.5, 43, 105), (7.75, 45, 110)])
    click = drums([(beat, 84 if beat % 4 == 0 else 77, 127 if beat % 4 == 0 else 90)
                   for beat in range(8)], length=0.1)
    return Cue(
        reel="Reel 1",
        title="1M01 Opening",
        key="D",
        tempos=((0, 120), (4, 160)),
        meters=((0, 4, 4),),
        markers=((0, "A"), (4, "Hit")),
        length_beats=8,
        tracks=(
            Track("Strings Hi", 0, 48, "strings", tuple(strings),
                  ((0, 7, 100), (0, 1, 50), (2, 1, 70), (4, 1, 100), (6, 1, 120)),
                  Stem("Strings", ("L", "R"), spread=0.6)),
            Track("Brass Ens", 1, 61, "brass", tuple(brass),
                  ((0, 7, 96), (0, 1, 80), (4, 1, 110)), Stem("Brass")),
            Track("Low Perc (Taiko)", 9, 0, "taiko", tuple(taiko),
                  ((0, 7, 110), (0, 1, 64)), Stem("Taiko_02", subtype="PCM_24")),
            Track("Click", 15, 115, "click", tuple(click), ((0, 7, 127),), None),
        ),
    )


def _cue_1m02() -> Cue:
    """1M02 Tension: E minor, 4/4, steady 150 BPM; Piano uses velocity-0 note-offs and CC64."""
    bar_patterns = ([76, 71, 76, 79, 76, 71, 78, 79], [76, 72, 76, 79, 76, 72, 78, 81])
    spicc: list[Note] = []
    for step in range(32):
        if step % 4 == 1:
            continue  # gallop: sixteenth rest after each beat
        pitch = bar_patterns[step // 16][step % 8]
        spicc.append(Note(step * 0.25, 0.1, pitch, 96 if step % 4 == 0 else 72))
    pad = (chord(0, 1.9, [52, 59, 67], 70) + chord(2, 1.9, [50, 59, 66], 72)
           + chord(4, 0.95, [48, 55, 64], 74) + chord(5, 0.95, [48, 57, 64], 76)
           + chord(6, 0.95, [50, 57, 66], 78) + chord(7, 0.95, [52, 59, 67], 80))
    piano = line([(0, 0.5, 40, 110), (0, 0.5, 52, 105), (1.5, 0.5, 40, 90), (1.5, 0.5, 52, 88),
                  (3, 0.25, 67, 80), (3.25, 0.25, 71, 82), (3.5, 0.4, 76, 90),
                  (4, 0.5, 40, 112), (4, 0.5, 52, 106), (5.5, 0.5, 43, 95), (5.5, 0.5, 55, 92),
                  (7, 0.25, 71, 80), (7.25, 0.25, 74, 84), (7.5, 0.4, 78, 92)])
    return Cue(
        reel="Reel 1",
        title="1M02 Tension",
        key="Em",
        tempos=((0, 150),),
        meters=((0, 4, 4),),
        markers=((0, "A"), (4, "B")),
        length_beats=8,
        tracks=(
            Track("Vln 1 Spicc", 0, 48, "spiccato", tuple(spicc),
                  ((0, 7, 100), (0, 1, 60), (4, 1, 90)),
                  Stem("VLN1 spic", ("L", "R"), pan=-0.5, spread=0.2)),
            Track("Synth Pad - Warm", 1, 89, "pad", tuple(pad),
                  ((0, 7, 90), (0, 1, 30), (2, 1, 60), (4, 1, 90), (6, 1, 60)),
                  Stem("Synth Pad", ("L", "R"), spread=0.8)),
            Track("Piano", 2, 0, "piano", tuple(piano),
                  ((0, 7, 105), (0.05, 64, 127), (2.9, 64, 0), (4.05, 64, 127), (7.9, 64, 0)),
                  Stem("PNO"), zero_velocity_offs=True),
        ),
    )


def _cue_2m03() -> Cue:
    """2M03 Chase: G minor, 4/4 then 7/8, 160 -> 192 -> 200 BPM; plus an alternate MIDI."""
    horns = line([(0, 1.4, 67, 95), (1.5, 0.45, 70, 85), (2, 0.9, 74, 100), (3, 0.9, 72, 90),
                  (4, 1.4, 74, 100), (5.5, 0.9, 75, 95), (6.5, 0.9, 74, 90),
                  (7.5, 0.7, 79, 115), (8.25, 0.7, 77, 105), (9, 0.45, 75, 100),
                  (9.5, 0.45, 74, 100), (10, 0.95, 79, 120)])
    hits = [(0, 36, 120), (0.5, 41, 80), (1, 36, 100), (1.5, 41, 80), (2, 36, 110),
            (2.25, 43, 70), (2.5, 41, 85), (3, 36, 105), (3.25, 43, 75), (3.5, 43, 85),
            (3.75, 45, 95), (7.5, 35, 127)]
    for bar_start in (4.0, 7.5):  # two 7/8 bars, eighths grouped 2+2+3
        for eighth in range(7):
            accent = eighth in (0, 2, 4)
            hits.append((bar_start + eighth * 0.5, 36 if accent else 41, 115 if accent else 78))
    perc = drums(sorted(hits, key=lambda hit: hit[0]))
    bass = line([(0, 0.45, 31, 110), (0.75, 0.45, 31, 90), (1.5, 0.45, 34, 95),
                 (2.25, 0.2, 31, 85), (2.5, 0.45, 38, 100), (3.25, 0.45, 36, 95),
                 (4, 0.45, 31, 110), (4.75, 0.2, 31, 85), (5.25, 0.45, 33, 95),
                 (6, 0.45, 34, 100), (6.75, 0.2, 33, 85), (7.25, 0.2, 31, 90),
                 (7.5, 0.45, 31, 115), (8, 0.2, 43, 90), (8.75, 0.45, 31, 100),
                 (9.25, 0.45, 34, 95), (10, 0.2, 38, 100), (10.5, 0.2, 31, 95),
                 (10.75, 0.2, 43, 105)])
    horns_alt = line([(0, 1.9, 67, 90), (2, 1.9, 74, 95), (4, 1.4, 74, 95), (5.5, 1.9, 75, 95),
                      (7.5, 1.4, 79, 110), (9, 0.9, 75, 100), (10, 0.95, 79, 115)])
    horn_controls = ((0, 7, 100), (0, 1, 70), (4, 1, 90), (7.5, 1, 115))
    horn_stem = Stem("French Horns", ("L", "R"), pan=0.3, spread=0.15)
    return Cue(
        reel="Reel 2",
        title="2M03 Chase",
        key="Gm",
        tempos=((0, 160), (4, 192), (7.5, 200)),
        meters=((0, 4, 4), (4, 7, 8)),
        markers=((0, "A"), (4, "B"), (7.5, "Hit")),
        length_beats=11,
        tracks=(
            Track("Hns a4", 0, 60, "horns", tuple(horns), horn_controls, horn_stem),
            Track("Low Perc (Taiko)", 9, 0, "taiko", tuple(perc),
                  ((0, 7, 115), (0, 1, 64)), Stem("Low Perc")),
            Track("Synth Bass", 2, 38, "synth_bass", tuple(bass),
                  ((0, 7, 100), (0, 1, 40), (7.5, 1, 80)), Stem("Synth Bass")),
        ),
        alternates=(
            ("alt", (Track("Hns a4", 0, 60, "horns", tuple(horns_alt), horn_controls, None),)),
        ),
    )


# fmt: on


def example_cues() -> list[Cue]:
    """Return the cues of the example tree.

    Returns
    -------
    list of Cue
        ``1M01 Opening`` and ``1M02 Tension`` (Reel 1), ``2M03 Chase`` (Reel 2).
    """
    return [_cue_1m01(), _cue_1m02(), _cue_2m03()]


# --------------------------------------------------------------------------
# MIDI writing
# --------------------------------------------------------------------------


def beats_to_ticks(beats: float) -> int:
    """Convert a position in quarter-note beats to MIDI ticks."""
    return round(beats * TICKS_PER_BEAT)


def _events_to_track(
    events: list[tuple[int, int, mido.Message | mido.MetaMessage]], end_tick: int
) -> mido.MidiTrack:
    """Sort ``(tick, priority, message)`` events and return a delta-timed track."""
    track = mido.MidiTrack()
    now = 0
    for tick, _priority, message in sorted(events, key=lambda event: (event[0], event[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(end_tick - now, 0)))
    return track


def conductor_track(cue: Cue, name: str) -> mido.MidiTrack:
    """Build track 0: name, meters, key, tempo map and markers (no channel events).

    Parameters
    ----------
    cue : Cue
        Cue providing the conductor data.
    name : str
        Track name written as the first event (the MIDI file's title).

    Returns
    -------
    mido.MidiTrack
        Delta-timed track ending at the cue's last bar line.
    """
    events: list[tuple[int, int, mido.Message | mido.MetaMessage]] = [
        (0, 0, mido.MetaMessage("track_name", name=name)),
        (0, 2, mido.MetaMessage("key_signature", key=cue.key)),
    ]
    for beat, numerator, denominator in cue.meters:
        clocks = 24 if denominator == 4 else 12
        events.append(
            (
                beats_to_ticks(beat),
                1,
                mido.MetaMessage(
                    "time_signature",
                    numerator=numerator,
                    denominator=denominator,
                    clocks_per_click=clocks,
                    notated_32nd_notes_per_beat=8,
                ),
            )
        )
    for beat, bpm in cue.tempos:
        events.append(
            (beats_to_ticks(beat), 3, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
        )
    for beat, text in cue.markers:
        events.append((beats_to_ticks(beat), 4, mido.MetaMessage("marker", text=text)))
    return _events_to_track(events, beats_to_ticks(cue.length_beats))


def instrument_track(track: Track, end_tick: int) -> mido.MidiTrack:
    """Build one instrument track: name, program change, controllers and notes.

    Parameters
    ----------
    track : Track
        Score of the track.
    end_tick : int
        Tick of the cue's end; the track's ``end_of_track`` is placed there.

    Returns
    -------
    mido.MidiTrack
        Delta-timed track.  Note-offs come before note-ons at the same tick.
    """
    channel = track.channel
    events: list[tuple[int, int, mido.Message | mido.MetaMessage]] = [
        (0, 0, mido.MetaMessage("track_name", name=track.name)),
        (0, 1, mido.Message("program_change", channel=channel, program=track.program)),
    ]
    for beat, control, value in track.controls:
        events.append(
            (
                beats_to_ticks(beat),
                2,
                mido.Message("control_change", channel=channel, control=control, value=value),
            )
        )
    for note in track.notes:
        events.append(
            (
                beats_to_ticks(note.start),
                4,
                mido.Message("note_on", channel=channel, note=note.pitch, velocity=note.velocity),
            )
        )
        off_tick = beats_to_ticks(note.start + note.length)
        if track.zero_velocity_offs:
            off = mido.Message("note_on", channel=channel, note=note.pitch, velocity=0)
        else:
            off = mido.Message("note_off", channel=channel, note=note.pitch, velocity=64)
        events.append((off_tick, 3, off))
    return _events_to_track(events, end_tick)


def write_midi(cue: Cue, tracks: Sequence[Track], title: str, path: Path) -> None:
    """Write a type-1 MIDI file (conductor track plus one track per instrument).

    Parameters
    ----------
    cue : Cue
        Cue providing the conductor data.
    tracks : sequence of Track
        Instrument tracks, written in order after the conductor track.
    title : str
        Name of the conductor track.
    path : Path
        Destination ``.mid`` file.
    """
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    end_tick = beats_to_ticks(cue.length_beats)
    midi.tracks.append(conductor_track(cue, title))
    midi.tracks.extend(instrument_track(track, end_tick) for track in tracks)
    midi.save(path)


# --------------------------------------------------------------------------
# MIDI reading (the audio is rendered from the file as written)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PlayedNote:
    """A note as heard: absolute start/end ticks after applying the sustain pedal."""

    start_tick: int
    end_tick: int
    pitch: int
    velocity: int
    channel: int


def absolute_events(track: mido.MidiTrack) -> list[tuple[int, mido.Message | mido.MetaMessage]]:
    """Return ``(absolute_tick, message)`` pairs of a delta-timed track."""
    tick = 0
    result = []
    for message in track:
        tick += message.time
        result.append((tick, message))
    return result


def read_tempo_map(midi: mido.MidiFile) -> list[tuple[int, int]]:
    """Read the tempo map from the conductor track.

    Parameters
    ----------
    midi : mido.MidiFile
        Type-1 file whose track 0 holds the tempo events.

    Returns
    -------
    list of (int, int)
        ``(tick, microseconds_per_quarter)`` segments, sorted, starting at tick 0
        (120 BPM is assumed before the first tempo event).  At equal ticks the
        later event wins.
    """
    segments: dict[int, int] = {0: 500_000}
    for tick, message in absolute_events(midi.tracks[0]):
        if message.type == "set_tempo":
            segments[tick] = message.tempo
    return sorted(segments.items())


def tick_to_seconds(tick: int, tempo_map: Sequence[tuple[int, int]], ticks_per_beat: int) -> float:
    """Convert an absolute tick to seconds through a tempo map.

    Parameters
    ----------
    tick : int
        Absolute tick (>= 0).
    tempo_map : sequence of (int, int)
        ``(tick, microseconds_per_quarter)`` segments as from :func:`read_tempo_map`.
    ticks_per_beat : int
        Pulses per quarter note of the file.

    Returns
    -------
    float
        Time in seconds from tick 0.
    """
    microseconds = 0
    for index, (start, tempo) in enumerate(tempo_map):
        next_start = tempo_map[index + 1][0] if index + 1 < len(tempo_map) else None
        if next_start is not None and tick >= next_start:
            microseconds += (next_start - start) * tempo
            continue
        microseconds += (tick - start) * tempo
        break
    return microseconds / (1_000_000 * ticks_per_beat)


def _pedal_intervals(
    events: Sequence[tuple[int, mido.Message | mido.MetaMessage]], end_tick: int
) -> dict[int, list[tuple[int, int]]]:
    """Return ``channel -> [(down_tick, up_tick), ...]`` for the sustain pedal (CC64)."""
    intervals: dict[int, list[tuple[int, int]]] = {}
    down: dict[int, int] = {}
    for tick, message in events:
        if message.type != "control_change" or message.control != 64:
            continue
        if message.value >= 64:
            down.setdefault(message.channel, tick)
        elif message.channel in down:
            intervals.setdefault(message.channel, []).append((down.pop(message.channel), tick))
    for channel, tick in down.items():
        intervals.setdefault(channel, []).append((tick, end_tick))
    return intervals


def read_notes(track: mido.MidiTrack) -> list[PlayedNote]:
    """Pair note-ons with note-offs (or velocity-0 note-ons) and apply the pedal.

    Parameters
    ----------
    track : mido.MidiTrack
        Delta-timed instrument track.

    Returns
    -------
    list of PlayedNote
        Notes in onset order.  A note released while CC64 is down lasts until
        the pedal comes up.
    """
    events = absolute_events(track)
    end_tick = events[-1][0] if events else 0
    pending: dict[tuple[int, int], list[tuple[int, int]]] = {}
    notes: list[PlayedNote] = []
    for tick, message in events:
        if message.type == "note_on" and message.velocity > 0:
            pending.setdefault((message.channel, message.note), []).append((tick, message.velocity))
        elif message.type in ("note_on", "note_off"):
            started = pending.get((message.channel, message.note))
            if started:
                start, velocity = started.pop(0)
                notes.append(PlayedNote(start, tick, message.note, velocity, message.channel))
    pedals = _pedal_intervals(events, end_tick)
    held = []
    for note in notes:
        end = note.end_tick
        for down, up in pedals.get(note.channel, []):
            if down <= end < up:
                end = up
        held.append(PlayedNote(note.start_tick, end, note.pitch, note.velocity, note.channel))
    return sorted(held, key=lambda note: (note.start_tick, note.pitch))


def controller_value(track: mido.MidiTrack, control: int, tick: int) -> int | None:
    """Return the value of a controller in force at ``tick`` (``None`` if never set)."""
    value = None
    for event_tick, message in absolute_events(track):
        if event_tick > tick:
            break
        if message.type == "control_change" and message.control == control:
            value = message.value
    return value


# --------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Voice:
    """A simple additive instrument: harmonic amplitudes and an ADSR-like envelope."""

    harmonics: tuple[float, ...]
    attack: float
    decay: float
    sustain: float
    release: float
    vibrato: float = 0.0  # relative frequency deviation
    detune_cents: float = 0.0  # >0 renders two detuned copies (pad)
    percussive: bool = False


VOICES: dict[str, Voice] = {
    "strings": Voice((1, 0.6, 0.45, 0.3, 0.2, 0.12), 0.05, 0.3, 0.8, 0.25, vibrato=0.003),
    "spiccato": Voice((1, 0.6, 0.45, 0.3, 0.2, 0.12), 0.006, 0.07, 0.15, 0.05),
    "brass": Voice((1, 0.8, 0.7, 0.55, 0.4, 0.3, 0.2, 0.12), 0.04, 0.2, 0.75, 0.12),
    "horns": Voice((1, 0.5, 0.3, 0.15, 0.08), 0.05, 0.25, 0.8, 0.18, vibrato=0.002),
    "pad": Voice((1, 0.4, 0.25, 0.15), 0.25, 0.5, 0.9, 0.4, detune_cents=2.0),
    "piano": Voice((1, 0.5, 0.35, 0.2, 0.12, 0.08), 0.004, 0.7, 0.0, 0.12),
    "synth_bass": Voice(tuple(1.0 / k for k in range(1, 9)), 0.005, 0.15, 0.6, 0.06),
    "taiko": Voice((1.0,), 0.001, 0.22, 0.0, 0.0, percussive=True),
    "click": Voice((1, 0.3), 0.001, 0.02, 0.0, 0.01),
}


def midi_to_hz(pitch: float) -> float:
    """Equal-tempered frequency of a MIDI pitch (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((pitch - 69) / 12.0)


def envelope(voice: Voice, times: Audio, held: float) -> Audio:
    """Attack/decay/sustain envelope released linearly at ``held`` seconds.

    Parameters
    ----------
    voice : Voice
        Envelope parameters.
    times : ndarray
        Sample times in seconds from the note onset.
    held : float
        Time of the note-off in seconds from the onset.

    Returns
    -------
    ndarray
        Gain per sample in ``[0, 1]``.
    """

    def shape(t: Audio) -> Audio:
        decayed = voice.sustain + (1 - voice.sustain) * np.exp(-(t - voice.attack) / voice.decay)
        return np.where(t < voice.attack, t / voice.attack, decayed)

    gain = shape(times)
    level_at_off = float(shape(np.array([held]))[0])
    releasing = times >= held
    ramp = np.clip(1.0 - (times[releasing] - held) / max(voice.release, 1e-3), 0.0, 1.0)
    gain[releasing] = level_at_off * ramp
    return gain


def tone(voice: Voice, frequency: float, times: Audio) -> Audio:
    """Sum of harmonics (below 0.45 * sample rate) with optional vibrato."""
    vibrato = 1.0 + voice.vibrato * np.sin(2 * np.pi * 5.5 * times)
    phase = 2 * np.pi * np.cumsum(frequency * vibrato) / SAMPLE_RATE
    wave = np.zeros_like(times)
    for number, amplitude in enumerate(voice.harmonics, start=1):
        if number * frequency * (1 + voice.vibrato) < 0.45 * SAMPLE_RATE:
            wave += amplitude * np.sin(number * phase)
    return wave / sum(voice.harmonics)


def drum_hit(voice: Voice, pitch: int, rng: np.random.Generator) -> Audio:
    """Percussion one-shot: decaying noise burst plus a low sine with a pitch drop.

    Parameters
    ----------
    voice : Voice
        ``decay`` sets the body's decay time.
    pitch : int
        GM drum note; lower notes give a lower body (35 -> 50 Hz).
    rng : numpy.random.Generator
        Source of the noise burst.

    Returns
    -------
    ndarray
        Mono samples, 0.7 s long.
    """
    times = np.arange(int(0.7 * SAMPLE_RATE)) / SAMPLE_RATE
    body_hz = 50.0 * 2.0 ** ((pitch - 35) / 12.0) * (1 + 0.6 * np.exp(-times / 0.03))
    body = np.sin(2 * np.pi * np.cumsum(body_hz) / SAMPLE_RATE) * np.exp(-times / voice.decay)
    noise = np.convolve(rng.standard_normal(times.size), np.ones(3) / 3, mode="same")
    burst = 0.5 * noise * np.exp(-times / 0.04)
    attack = np.clip(times / voice.attack, 0.0, 1.0)
    fade = np.clip((times[-1] - times) / 0.05, 0.0, 1.0)
    return (body + burst) * attack * fade


def render_note(voice: Voice, pitch: int, held: float, rng: np.random.Generator) -> Audio:
    """Render one note of ``held`` seconds plus its release (or a drum one-shot)."""
    if voice.percussive:
        return drum_hit(voice, pitch, rng)
    times = np.arange(int((held + voice.release) * SAMPLE_RATE) + 1) / SAMPLE_RATE
    frequency = midi_to_hz(pitch)
    if voice.detune_cents:
        ratio = 2.0 ** (voice.detune_cents / 1200.0)
        wave = 0.5 * (tone(voice, frequency * ratio, times) + tone(voice, frequency / ratio, times))
    else:
        wave = tone(voice, frequency, times)
    return wave * envelope(voice, times, held)


def pan_gains(stem: Stem, pitch: int) -> Audio:
    """Per-channel gains of a note: equal-power pan for stereo, 1.0 for mono."""
    if len(stem.channels) == 1:
        return np.ones(1)
    position = np.clip(stem.pan + stem.spread * np.clip((pitch - 66) / 24.0, -1, 1), -1, 1)
    angle = (position + 1) * np.pi / 4
    return np.array([np.cos(angle), np.sin(angle)])


def render_track(
    track: mido.MidiTrack,
    tempo_map: Sequence[tuple[int, int]],
    voice: Voice,
    stem: Stem,
    n_samples: int,
    rng: np.random.Generator,
) -> Audio:
    """Render the notes of one MIDI track to a stem.

    Parameters
    ----------
    track : mido.MidiTrack
        Instrument track as read back from the written file.
    tempo_map : sequence of (int, int)
        Tempo map of the file (see :func:`read_tempo_map`).
    voice : Voice
        Instrument used for every note.
    stem : Stem
        Stem layout (mono or L/R) and panning.
    n_samples : int
        Length of the cue in samples; notes are truncated to it.
    rng : numpy.random.Generator
        Noise source for percussion.

    Returns
    -------
    ndarray, shape (n_samples, n_channels)
        Unnormalised stem audio.  Loudness follows velocity (``(v/127)**1.5``),
        CC7 (``(v/127)**2``) and CC1 (``0.35 + 0.65 * v/127``) at the onset.
    """
    audio = np.zeros((n_samples, len(stem.channels)))
    for note in read_notes(track):
        start_s = tick_to_seconds(note.start_tick, tempo_map, TICKS_PER_BEAT)
        end_s = tick_to_seconds(note.end_tick, tempo_map, TICKS_PER_BEAT)
        volume = controller_value(track, 7, note.start_tick)
        modwheel = controller_value(track, 1, note.start_tick)
        gain = (note.velocity / 127) ** 1.5
        gain *= 1.0 if volume is None else (volume / 127) ** 2
        gain *= 1.0 if modwheel is None else 0.35 + 0.65 * modwheel / 127
        wave = gain * render_note(voice, note.pitch, end_s - start_s, rng)
        first = round(start_s * SAMPLE_RATE)
        wave = wave[: max(n_samples - first, 0)]
        audio[first : first + wave.size] += wave[:, None] * pan_gains(stem, note.pitch)[None, :]
    return audio


# --------------------------------------------------------------------------
# Final mix
# --------------------------------------------------------------------------


def moving_average(signal: Audio, width: int) -> Audio:
    """Centred moving average (a crude low-pass filter)."""
    return np.convolve(signal, np.ones(width) / width, mode="same")


def diffuse(signal: Audio, delays_s: Sequence[float]) -> Audio:
    """Reverb-ish sum of delayed, decaying copies of ``signal``."""
    out = np.zeros_like(signal)
    for index, delay_s in enumerate(delays_s):
        delay = round(delay_s * SAMPLE_RATE)
        out[delay:] += 0.6**index * signal[: signal.size - delay]
    return out


def front_channel(stem: Audio, side: int) -> Audio:
    """Channel ``side`` (0 = L, 1 = R) of a stereo stem, or a mono stem panned centre."""
    return stem[:, side] if stem.shape[1] == 2 else CENTRE_GAIN * stem[:, 0]


def mixdown(stems: Sequence[Audio]) -> Audio:
    """Fold stems into a 5.1 mix (channel order L, R, C, LFE, Ls, Rs).

    Parameters
    ----------
    stems : sequence of ndarray, shape (n, 1) or (n, 2)
        Mono stems are centre-panned into L/R at -3 dB.

    Returns
    -------
    ndarray, shape (n, 6)
        ``C`` is half the mono sum, ``LFE`` a moving average of the mono sum,
        ``Ls``/``Rs`` quieter delayed copies of ``L``/``R``.
    """
    left = np.sum([front_channel(stem, 0) for stem in stems], axis=0)
    right = np.sum([front_channel(stem, 1) for stem in stems], axis=0)
    mono = np.sum([stem.mean(axis=1) for stem in stems], axis=0)
    lfe = moving_average(mono, 101)  # first null at ~160 Hz
    left_surround = 0.3 * diffuse(left, (0.029, 0.043, 0.061, 0.083, 0.11))
    right_surround = 0.3 * diffuse(right, (0.031, 0.047, 0.067, 0.089, 0.12))
    return np.column_stack([left, right, 0.5 * mono, lfe, left_surround, right_surround])


# --------------------------------------------------------------------------
# Cue folders
# --------------------------------------------------------------------------


def write_multimono(
    folder: Path, stem_title: str, audio: Audio, suffixes: Sequence[str], subtype: str
) -> list[Path]:
    """Write one WAV per channel using the Pro Tools ``Name.L.wav`` convention.

    Parameters
    ----------
    folder : Path
        ``Audio Files`` folder of the cue.
    stem_title : str
        File stem without channel suffix, e.g. ``"1M01 Strings"``.
    audio : ndarray, shape (n, len(suffixes))
        Normalised audio.
    suffixes : sequence of str
        Channel suffixes; ``("",)`` writes a single ``stem_title.wav``.
    subtype : str
        libsndfile subtype, ``"PCM_16"`` or ``"PCM_24"``.

    Returns
    -------
    list of Path
        Files written.
    """
    paths = []
    for index, suffix in enumerate(suffixes):
        name = f"{stem_title}.{suffix}.wav" if suffix else f"{stem_title}.wav"
        path = folder / name
        sf.write(path, audio[:, index], SAMPLE_RATE, subtype=subtype, format="WAV")
        paths.append(path)
    return paths


def cue_length_samples(cue: Cue, tempo_map: Sequence[tuple[int, int]]) -> int:
    """Length of the printed audio: the last bar line plus :data:`TAIL_SECONDS`."""
    end_s = tick_to_seconds(beats_to_ticks(cue.length_beats), tempo_map, TICKS_PER_BEAT)
    return int(np.ceil((end_s + TAIL_SECONDS) * SAMPLE_RATE))


def build_cue(cue: Cue, root: Path, cue_index: int) -> list[Path]:
    """Write the MIDI file(s), stems and 6mx mix of one cue.

    Parameters
    ----------
    cue : Cue
        Cue to build.
    root : Path
        Output root; the cue goes to ``root / cue.reel / cue.title``.
    cue_index : int
        Index used to derive the cue's random seeds.

    Returns
    -------
    list of Path
        Files written.
    """
    cue_dir = root / cue.reel / cue.title
    midi_dir, audio_dir = cue_dir / "MIDI", cue_dir / "Audio Files"
    midi_dir.mkdir(parents=True)
    audio_dir.mkdir()
    midi_path = midi_dir / f"{cue.title}.mid"
    write_midi(cue, cue.tracks, cue.title, midi_path)
    written = [midi_path]
    for suffix, tracks in cue.alternates:
        alt_path = midi_dir / f"{cue.title} {suffix}.mid"
        write_midi(cue, tracks, f"{cue.title} {suffix}", alt_path)
        written.append(alt_path)

    midi = mido.MidiFile(midi_path)  # render from the file exactly as written
    tempo_map = read_tempo_map(midi)
    n_samples = cue_length_samples(cue, tempo_map)
    rendered: list[tuple[Stem, Audio]] = []
    for track_index, (spec, midi_track) in enumerate(zip(cue.tracks, midi.tracks[1:], strict=True)):
        if spec.stem is None:
            continue
        rng = np.random.default_rng([SEED, cue_index, track_index])
        audio = render_track(midi_track, tempo_map, VOICES[spec.voice], spec.stem, n_samples, rng)
        rendered.append((spec.stem, audio))
    mix = mixdown([audio for _stem, audio in rendered])
    peak = max(float(np.max(np.abs(a))) for a in [mix, *(audio for _s, audio in rendered)])
    gain = PEAK_LEVEL / peak
    for stem, audio in rendered:
        written += write_multimono(
            audio_dir, f"{cue.number} {stem.name}", gain * audio, stem.channels, stem.subtype
        )
    written += write_multimono(audio_dir, f"{cue.number} 6mx", gain * mix, MIX_CHANNELS, "PCM_16")
    return written


def _check_output_dir(out_dir: Path) -> Path:
    """Resolve ``out_dir`` and refuse paths that must never be deleted."""
    resolved = out_dir.resolve()
    script_dir = Path(__file__).resolve().parent
    forbidden = {Path(resolved.anchor), Path.home().resolve(), script_dir, *script_dir.parents}
    if resolved in forbidden:
        raise SystemExit(f"refusing to delete {resolved}")
    if resolved.exists() and not resolved.is_dir():
        raise SystemExit(f"{resolved} exists and is not a directory")
    return resolved


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: (re)create the example tree.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        Process exit status.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=Path(__file__).resolve().parent / "cues",
        help="output directory (deleted and recreated; default: %(default)s)",
    )
    out_dir = _check_output_dir(parser.parse_args(argv).out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    written: list[Path] = []
    for cue_index, cue in enumerate(example_cues()):
        written += build_cue(cue, out_dir, cue_index)
    total = sum(path.stat().st_size for path in written)
    for path in written:
        print(f"{path.stat().st_size:>8}  {path.relative_to(out_dir)}")
    print(f"{len(written)} files, {total} bytes in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
