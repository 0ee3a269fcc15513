import mido
import pytest

from kmidi_ingest.errors import MidiError
from kmidi_ingest.midi import read_midi
from tests.conftest import SHARED_MIDI, note_track, write_midi


def test_notes_times_through_tempo_change_in_another_track(tmp_path):
    path = write_midi(
        tmp_path / "a.mid",
        [
            [
                mido.MetaMessage("set_tempo", tempo=500_000),
                mido.MetaMessage("set_tempo", tempo=250_000, time=960),
            ],
            note_track("Piano", [(0, 480, 60), (960, 1440, 62), (1920, 2400, 64)]),
        ],
    )
    data = read_midi(path)
    conductor, piano = data.tracks
    assert conductor.is_conductor and not piano.is_conductor
    assert piano.name == "Piano"
    assert piano.notes["start_s"].tolist() == [0.0, 1.0, 1.5]
    assert piano.notes["end_s"].tolist() == [0.5, 1.25, 1.75]
    assert piano.notes["start_bar"].tolist() == [1, 1, 2]
    assert piano.notes["start_beat"].tolist() == [1.0, 3.0, 1.0]
    assert [(t.tick, t.tempo_us) for t in data.tempo_changes] == [(0, 500_000), (960, 250_000)]


def test_fifo_pairing_and_unreleased_notes(tmp_path):
    msgs = [
        mido.Message("note_on", note=60, velocity=90, time=0),
        mido.Message("note_on", note=60, velocity=80, time=100),  # re-struck while open
        mido.Message("note_on", note=60, velocity=0, time=100),  # closes the oldest (FIFO)
        mido.Message("note_off", note=61, velocity=0, time=10),  # stray
        mido.Message("note_on", note=64, velocity=70, time=40),  # never released
        mido.Message("note_off", note=60, velocity=33, time=50),
    ]
    data = read_midi(write_midi(tmp_path / "b.mid", [msgs], midi_type=0))
    notes = data.tracks[0].notes
    rows = [
        (
            int(n["start_tick"]),
            int(n["end_tick"]),
            int(n["velocity"]),
            int(n["release_velocity"]),
            bool(n["end_inferred"]),
        )
        for n in notes
    ]
    assert rows == [(0, 200, 90, -1, False), (100, 300, 80, 33, False), (250, 300, 70, -1, True)]
    assert data.tracks[0].stray_note_off_count == 1


def test_latin1_track_name(tmp_path):
    path = write_midi(tmp_path / "c.mid", [note_track("Violoncelle", [(0, 10, 40)])])
    raw = path.read_bytes().replace(b"Violoncelle", b"Violonc\xe9lle")  # not valid UTF-8
    path.write_bytes(raw)
    assert read_midi(path).tracks[0].name == "Violoncélle"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"RIFF\x00\x00\x00\x04WAVE", "MThd not found"),
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02", ""),
    ],
)
def test_corrupt_files_raise_midi_error_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(MidiError) as info:
        read_midi(path)
    assert str(path) in str(info.value)
    assert reason in str(info.value)


def test_real_files_parse_without_errors():
    files = [p for p in SHARED_MIDI.rglob("*") if p.suffix.lower() in (".mid", ".midi", ".kar")]
    if not files:
        pytest.skip("../shared/data/midi is not present")
    total = sum(read_midi(p).notes_total for p in files)
    assert len(files) == 144
    assert total > 100_000
