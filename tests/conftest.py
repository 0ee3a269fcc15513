"""Shared fixtures: tiny MIDI and audio files written by the tests themselves."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

pytest_plugins = ["tests.pg_fixtures"]

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "cues"
SHARED_MIDI = REPO.parent / "shared" / "data" / "midi"
SHARED_REAL = REPO.parent / "shared" / "data" / "real"
SLAKH_TRACK = SHARED_REAL / "slakh" / "babyslakh_16k" / "Track00001"


def write_midi(
    path: Path,
    tracks: Sequence[Sequence[mido.Message | mido.MetaMessage]],
    *,
    ticks_per_beat: int = 480,
    midi_type: int = 1,
) -> Path:
    """Write a MIDI file from message lists whose ``time`` fields are delta ticks."""
    mid = mido.MidiFile(type=midi_type, ticks_per_beat=ticks_per_beat)
    for messages in tracks:
        track = mido.MidiTrack()
        track.extend(messages)
        mid.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    mid.save(str(path))
    return path


def note_track(
    name: str, notes: Sequence[tuple[int, int, int]], *, channel: int = 0, program: int = 0
) -> list[mido.Message | mido.MetaMessage]:
    """A track of non-overlapping notes given as ``(start_tick, end_tick, pitch)``, sorted."""
    messages: list[mido.Message | mido.MetaMessage] = [
        mido.MetaMessage("track_name", name=name, time=0),
        mido.Message("program_change", program=program, channel=channel, time=0),
    ]
    now = 0
    for start, end, pitch in notes:
        messages.append(
            mido.Message("note_on", note=pitch, velocity=100, channel=channel, time=start - now)
        )
        messages.append(
            mido.Message("note_off", note=pitch, velocity=40, channel=channel, time=end - start)
        )
        now = end
    return messages


def write_tone(
    path: Path,
    *,
    seconds: float = 1.0,
    sample_rate: int = 22050,
    freq: float = 440.0,
    amplitude: float = 0.5,
    channels: int = 1,
    subtype: str = "PCM_16",
) -> Path:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    y = amplitude * np.sin(2 * np.pi * freq * t)
    data = np.stack([y] * channels, axis=1) if channels > 1 else y
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sample_rate, subtype=subtype)
    return path


CueMaker = Callable[..., Path]


@pytest.fixture
def make_cue(tmp_path: Path) -> CueMaker:
    """Write a small cue folder: one MIDI file with two instruments, stereo strings, mono brass,
    and a 5.1 multi-mono ``6mx`` mix."""

    def make(name: str = "1M01 Opening", *, root: Path | None = None) -> Path:
        cue = (root or tmp_path / "cues") / name
        code = name.split()[0]
        write_midi(
            cue / "MIDI" / f"{name}.mid",
            [
                [
                    mido.MetaMessage("track_name", name=name),
                    mido.MetaMessage("set_tempo", tempo=500_000, time=0),
                    mido.MetaMessage("time_signature", numerator=4, denominator=4),
                    mido.MetaMessage("marker", text="A", time=0),
                    mido.MetaMessage("set_tempo", tempo=250_000, time=1920),
                ],
                note_track(
                    "Strings Hi", [(0, 480, 60), (960, 1440, 64), (1920, 2400, 67)], program=48
                ),
                note_track("Brass Ens", [(480, 960, 48), (2400, 2880, 50)], channel=1, program=61),
            ],
        )
        audio = cue / "Audio Files"
        write_tone(audio / f"{code} Strings.L.wav", freq=440)
        write_tone(audio / f"{code} Strings.R.wav", freq=660)
        write_tone(audio / f"{code} Brass.wav", freq=220)
        for label in ("L", "R", "C", "LFE", "Ls", "Rs"):
            write_tone(audio / f"{code} 6mx.{label}.wav", freq=330, amplitude=0.2)
        return cue

    return make


def _async_index_on_postgresql(_conn, _cursor, statement, parameters, _context, _many):
    """Stand-in for Aurora DSQL on the local server: PostgreSQL builds indexes synchronously and
    knows no ``ASYNC`` keyword (everything else the DSQL profile sends is plain PostgreSQL)."""
    if statement.startswith(("CREATE INDEX ASYNC ", "CREATE UNIQUE INDEX ASYNC ")):
        statement = statement.replace(" INDEX ASYNC ", " INDEX ", 1)
    return statement, parameters


@pytest.fixture
def dsql_on_postgresql():
    """Let DSQL-profile DDL run on the local PostgreSQL. Fixtures that record statements and are
    requested before this one see them as DSQL would receive them."""
    from sqlalchemy import Engine, event

    event.listen(Engine, "before_cursor_execute", _async_index_on_postgresql, retval=True)
    yield
    event.remove(Engine, "before_cursor_execute", _async_index_on_postgresql)


def run_as_nobody(task: Callable[[], str]) -> str:
    """Run ``task`` in a forked child that has dropped to ``nobody`` when the suite runs as root
    (root reads files whatever their permissions); return the text it answered."""
    import os
    import pwd

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            os.write(write_end, task().encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        answer = pipe.read()
    assert os.waitpid(pid, 0)[1] == 0
    return answer
