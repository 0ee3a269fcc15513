"""One tiny file per MIDI edge case (``tests/fixtures/midi``), each with its exact values.

Seconds are checked to 1 µs against values worked out by hand from the ticks.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import mido
import numpy as np
import pytest

from kmidi_ingest.errors import MidiError
from kmidi_ingest.midi import MidiData, read_midi
from kmidi_ingest.smf import parse_smf
from tests.fixtures.make_midi_fixtures import CASES, HERE
from tests.midi_compare import from_mido, mido_events, smf_as_mido

US = 1e-6


def fixture(name: str) -> Path:
    return HERE / f"{name}.mid"


def read(name: str) -> MidiData:
    return read_midi(fixture(name))


def column(array: np.ndarray, name: str) -> list[object]:
    return array[name].tolist()


def test_committed_fixtures_match_the_generator():
    on_disk = {p.stem: p.read_bytes() for p in HERE.glob("*.mid")}
    assert on_disk == CASES


def test_tempo_change_in_another_track_applies_to_all_tracks():
    data = read("tempo_change_other_track")
    conductor, piano = data.tracks
    assert conductor.is_conductor and not piano.is_conductor
    assert data.instrument_tracks == (piano,)
    assert column(piano.notes, "start_tick") == [0, 960, 1920]
    assert piano.notes["start_s"] == pytest.approx([0.0, 1.0, 1.5], abs=US)
    assert piano.notes["end_s"] == pytest.approx([0.5, 1.25, 1.75], abs=US)
    assert column(piano.notes, "start_bar") == [1, 1, 2]
    assert column(piano.notes, "start_beat") == [1.0, 3.0, 1.0]
    assert [(t.tick, t.tempo_us, t.time_s, t.bar, t.beat) for t in data.tempo_changes] == [
        (0, 500_000, 0.0, 1, 1.0),
        (960, 250_000, 1.0, 1, 3.0),
    ]
    assert data.tempo_changes[1].bpm == 240.0


def test_same_tick_tempos_last_wins_within_and_across_tracks():
    data = read("same_tick_tempos_last_wins")
    # Tick 0: 1 000 000 then 500 000 in track 0. Tick 480: 400 000 in track 0, then 250 000 in
    # track 1, which comes later in file order.
    assert [(t.tick, t.tempo_us, t.track_index) for t in data.tempo_changes] == [
        (0, 500_000, 0),
        (480, 250_000, 1),
    ]
    note = data.tracks[1].notes[0]
    assert (note["start_tick"], note["end_tick"]) == (960, 1440)
    assert note["start_s"] == pytest.approx(0.75, abs=US)
    assert note["end_s"] == pytest.approx(1.0, abs=US)


def test_thousands_of_tempo_changes_do_not_drift():
    data = read("many_tempo_changes")
    assert len(data.tempo_changes) == 3000
    tempos = [400_000 + 1000 * (i % 500) for i in range(3000)]
    start = Fraction(7 * sum(tempos), 96_000_000)  # each tempo lasts 7 ticks, the last too
    end = start + Fraction(96 * tempos[-1], 96_000_000)
    note = data.tracks[0].notes[0]
    assert (note["start_tick"], note["end_tick"]) == (7 * 3000, 7 * 3000 + 96)
    assert abs(note["start_s"] - float(start)) < 1e-9
    assert abs(note["end_s"] - float(end)) < 1e-9
    assert data.tempo_changes[-1].time_s == pytest.approx(
        float(start - Fraction(7 * tempos[-1], 96_000_000)), abs=1e-9
    )


def test_smpte_25fps_ignores_tempo_and_reads_the_offset():
    data = read("smpte_25fps")
    assert (data.timing, data.ticks_per_beat) == ("smpte", None)
    assert (data.smpte_fps, data.smpte_ticks_per_frame) == (25.0, 40)
    assert data.smpte_offset_s == pytest.approx(3600 + 2 * 60 + 3 + 12.5 / 25, abs=US)
    assert data.tempo_changes == ()  # a tempo event does not apply under SMPTE timing
    note = data.tracks[0].notes[0]
    assert (note["start_s"], note["end_s"]) == (0.5, 1.5)  # 25 × 40 = 1000 ticks per second
    assert note["start_bar"] == 0 and np.isnan(note["start_beat"])
    assert data.length_s == 1.5


def test_smpte_2997_drop_frame_is_30000_over_1001_frames_per_second():
    data = read("smpte_2997")
    assert data.smpte_fps == pytest.approx(30000 / 1001)
    assert data.smpte_ticks_per_frame == 80
    note = data.tracks[0].notes[0]
    rate = Fraction(30000, 1001) * 80
    assert note["start_s"] == pytest.approx(float(2398 / rate), abs=US)
    assert note["start_s"] == pytest.approx(1.000165833, abs=US)
    assert note["end_s"] == pytest.approx(9.99999, abs=US)  # 23976 ticks, not 10.0 s


def test_format2_tracks_keep_their_own_tempo_and_meter():
    data = read("format2_per_track_tempo")
    first, second = data.tracks
    assert first.notes["start_s"].tolist() == [0.0, 0.75]  # 250 000 µs/quarter
    assert first.notes["end_s"].tolist() == [0.25, 1.0]
    assert second.notes["start_s"].tolist() == [0.0, 1.5]  # default 120 BPM
    assert second.notes["end_s"].tolist() == [0.5, 2.0]
    assert column(first.notes, "start_bar") == [1, 1]  # 4/4: tick 1440 is beat 4
    assert column(first.notes, "start_beat") == [1.0, 4.0]
    assert column(second.notes, "start_bar") == [1, 2]  # its own 3/4: tick 1440 starts bar 2
    assert column(second.notes, "start_beat") == [1.0, 1.0]
    assert [(t.tick, t.tempo_us, t.track_index) for t in data.tempo_changes] == [(0, 250_000, 0)]
    assert [(m.numerator, m.denominator, m.track_index) for m in data.time_signatures] == [
        (3, 4, 1)
    ]
    assert data.length_s == 2.0


def test_meter_change_mid_bar_starts_a_new_bar():
    data = read("meter_change_mid_bar")
    piano = data.tracks[1]
    assert column(piano.notes, "start_tick") == [0, 1920, 2400, 3120]
    assert column(piano.notes, "start_bar") == [1, 2, 3, 4]
    assert column(piano.notes, "start_beat") == [1.0, 1.0, 1.0, 1.0]
    # 3/8: beats are eighths (240 ticks); tick 2640 is the second eighth of bar 3.
    assert (piano.cc["bar"][0], piano.cc["beat"][0]) == (3, 2.0)
    (marker,) = data.markers
    assert (marker.tick, marker.kind, marker.text, marker.bar, marker.beat) == (
        2640,
        "marker",
        "Hit",
        3,
        2.0,
    )
    assert marker.time_s == pytest.approx(2.75, abs=US)
    assert [(m.tick, m.numerator, m.denominator, m.bar) for m in data.time_signatures] == [
        (0, 4, 4, 1),
        (2400, 3, 8, 3),
    ]


def notes_of(name: str, track: int = 0) -> list[tuple[int, int, int, int, int, bool]]:
    notes = read(name).tracks[track].notes
    return [
        (
            int(n["pitch"]),
            int(n["start_tick"]),
            int(n["end_tick"]),
            int(n["velocity"]),
            int(n["release_velocity"]),
            bool(n["end_inferred"]),
        )
        for n in notes
    ]


def test_restruck_note_closes_the_oldest_first():
    assert notes_of("restruck_note_fifo") == [
        (60, 0, 200, 90, -1, False),  # the velocity-0 note-on closes the first
        (60, 100, 300, 80, 33, False),  # the note-off closes the second
    ]


def test_note_on_velocity_zero_is_a_note_off():
    assert notes_of("note_on_velocity_zero") == [(60, 0, 480, 90, -1, False)]


def test_unreleased_notes_close_at_track_end_flagged():
    assert notes_of("unreleased_notes") == [
        (60, 0, 480, 100, 64, False),
        (64, 240, 960, 100, -1, True),
    ]
    track = read("unreleased_notes").tracks[0]
    assert (track.end_tick, track.end_s) == (960, 1.0)


def test_zero_length_notes_are_kept():
    assert notes_of("zero_length_note") == [
        (60, 480, 480, 90, 10, False),
        (62, 480, 480, 91, -1, False),
    ]


def test_stray_note_offs_are_ignored_and_counted():
    data = read("stray_note_off")
    assert notes_of("stray_note_off") == [(60, 0, 480, 100, 64, False)]
    assert data.tracks[0].stray_note_off_count == 3


def test_sustain_pedal_end_beside_the_raw_end():
    notes = read("sustain_pedal").tracks[0].notes
    assert column(notes, "end_tick") == [480, 1100, 1300]
    assert notes["end_s"] == pytest.approx([0.5, 1100 / 960, 1300 / 960], abs=US)
    # Released under the pedal: until the pedal comes up (960) or the track ends (1920).
    assert notes["end_sustain_s"] == pytest.approx([1.0, 1100 / 960, 2.0], abs=US)


def test_latin1_name_and_text():
    data = read("latin1_track_name")
    assert data.tracks[0].name == "Violoncélle"
    assert [m.text for m in data.markers] == ["Début"]


def test_utf8_name():
    assert read("utf8_track_name").tracks[0].name == "Flûte 弦楽"


def test_nul_padding_is_dropped_and_inner_nul_replaced():
    data = read("nul_padded_track_name")
    assert data.tracks[0].name == "Horn 1"
    assert [m.text for m in data.markers] == ["a\ufffdb"]


def test_marker_track_is_not_an_instrument():
    data = read("marker_track_only")
    markers, piano = data.tracks
    assert (markers.name, markers.is_conductor, markers.channel, markers.sysex_count) == (
        "Markers",
        True,
        None,
        1,
    )
    assert [t.name for t in data.instrument_tracks] == ["Piano"]
    assert [(m.tick, m.kind, m.text, m.bar, m.beat, m.time_s) for m in data.markers] == [
        (0, "marker", "A", 1, 1.0, 0.0),
        (960, "cue_point", "Hit", 1, 3.0, 1.0),
        (1920, "text", "note", 2, 1.0, 2.0),
        (2400, "lyrics", "la", 2, 2.0, 2.5),
    ]
    assert [(k.tick, k.key, k.time_s) for k in data.key_signatures] == [
        (0, "D", 0.0),
        (1920, "Bbm", 2.0),
    ]


def test_pitch_bends_and_aftertouch():
    track = read("pitch_bend_and_aftertouch").tracks[0]
    bends = track.pitch_bends
    assert [tuple(r) for r in bends[["channel", "tick", "value"]].tolist()] == [
        (0, 0, 0),
        (1, 480, 8191),
        (1, 960, -8192),
    ]
    assert column(bends, "time_s") == [0.0, 0.5, 1.0]
    touch = track.aftertouch
    assert [tuple(r) for r in touch[["channel", "tick", "pitch", "value"]].tolist()] == [
        (1, 480, -1, 64),  # channel pressure
        (0, 960, 60, 80),  # poly pressure on key 60
    ]


def test_running_status_carries_over_meta_events():
    data = read("running_status_notes")
    assert notes_of("running_status_notes") == [
        (60, 0, 480, 100, -1, False),
        (62, 240, 480, 100, -1, False),
    ]
    assert data.tracks[0].notes["end_s"] == pytest.approx([0.55, 0.55], abs=US)


def test_unknown_meta_keeps_its_delta_time():
    # mido 1.3 builds unknown meta events without their delta; we keep every tick.
    note = read("unknown_meta_delta").tracks[0].notes[0]
    assert (note["start_tick"], note["end_tick"]) == (480, 960)


def test_alien_chunks_are_skipped():
    assert notes_of("alien_chunk") == [(60, 0, 480, 100, 64, False)]


def test_data_byte_over_127_is_clipped_and_flagged_lenient():
    data = read("data_byte_over_127")
    assert (data.lenient, data.clipped_data_bytes) == (True, 1)
    assert notes_of("data_byte_over_127") == [(60, 0, 480, 127, 64, False)]


CORRUPT = {
    "truncated": "truncated: track 0 declares 31 bytes, only 24 remain in the file",
    "wrong_chunk_length": (
        "wrong chunk length: an event of track 0 at byte 31 runs past the chunk end "
        "(track declares 11 bytes)"
    ),
    "wrong_chunk_length_long": (
        "wrong chunk length: track 0 declares 21 bytes but its End of Track event ends at byte 13"
    ),
    "running_status_without_status": (
        "running status without a status in track 0 at byte 23: "
        "data byte 0x3C with no preceding status byte"
    ),
    "running_status_after_sysex": (
        "running status without a status in track 0 at byte 33: "
        "data byte 0x3C with no preceding status byte"
    ),
    "zero_ticks_per_beat": "zero ticks per beat: header division is 0",
    "absurd_delta": (
        "absurd tick values: track 0 ends at tick 268435935, 77.7 h into the file (limit 24 h)"
    ),
    "absurd_vlq": (
        "absurd delta time in track 0 at byte 22: variable-length quantity longer than 4 bytes"
    ),
    "undefined_status_byte": "undefined status byte 0xF8 in track 0 at byte 27",
    "unknown_format": "unknown MIDI format 3 (must be 0, 1 or 2)",
    "short_tempo_event": "malformed set_tempo event in track 0 at tick 0: 2 data bytes, needs 3",
    "not_midi": "MThd not found at byte 0: probably not a MIDI file",
    "empty": "file is empty (0 bytes)",
    "smpte_invalid_fps": (
        "invalid SMPTE division: 23 frames/s × 4 ticks/frame "
        "(frames/s must be 24, 25, 29 or 30 and ticks/frame > 0)"
    ),
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_file_raises_midi_error_naming_file_and_reason(name):
    path = fixture(name)
    with pytest.raises(MidiError) as info:
        read_midi(path)
    assert info.value.reason == CORRUPT[name]
    assert info.value.path == str(path)
    assert str(info.value) == f"{path}: {CORRUPT[name]}"
    assert info.value.stage == "midi"


# mido reads these differently on purpose or by a quirk (see the tests above).
MIDO_DIFFERS = {"unknown_meta_delta", "alien_chunk", "data_byte_over_127"}


@pytest.mark.parametrize("name", sorted(set(CASES) - set(CORRUPT) - MIDO_DIFFERS))
def test_fixture_events_match_mido_event_for_event(name):
    raw = fixture(name).read_bytes()
    ours = parse_smf(raw)
    theirs = mido.MidiFile(file=io.BytesIO(raw))
    assert [mido_events(t) for t in theirs.tracks] == smf_as_mido(ours)


def test_clipped_fixture_matches_mido_clip_mode():
    raw = fixture("data_byte_over_127").read_bytes()
    theirs = mido.MidiFile(file=io.BytesIO(raw), clip=True)
    assert [mido_events(t) for t in theirs.tracks] == smf_as_mido(parse_smf(raw))


ARRAYS = ("notes", "cc", "program_changes", "pitch_bends", "aftertouch")


@pytest.mark.parametrize("name", sorted(set(CASES) - set(CORRUPT) - MIDO_DIFFERS))
def test_read_midi_equals_the_mido_reference_path(name):
    path = fixture(name)
    lean = read_midi(path)
    reference = from_mido(mido.MidiFile(str(path)), path=path)
    for a, b in zip(lean.tracks, reference.tracks, strict=True):
        for array in ARRAYS:  # byte equality: NaN beats compare equal too
            assert getattr(a, array).tobytes() == getattr(b, array).tobytes(), array
        assert (a.name, a.is_conductor, a.channel, a.end_tick, a.sysex_count) == (
            b.name,
            b.is_conductor,
            b.channel,
            b.end_tick,
            b.sysex_count,
        )
    for field in ("tempo_changes", "time_signatures", "key_signatures", "markers", "timing"):
        assert getattr(lean, field) == getattr(reference, field)
    assert (lean.smpte_fps, lean.smpte_offset_s) == (reference.smpte_fps, reference.smpte_offset_s)
