"""The mido reference path: mido's events in the lean decoder's shape and back, for
event-for-event comparisons, and a mido-parsed file converted by the same semantic pass."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kmidi_ingest.midi import MidiData, convert
from kmidi_ingest.smf import META, Event, SmfFile, SmfTrack


def mido_events(track: Iterable[Any]) -> list[Event]:
    """The event tuples of :mod:`kmidi_ingest.smf` for one ``mido.MidiTrack``.

    Meta events are re-encoded by mido, so their payload is what mido decoded (for example only
    the first three bytes of an over-long tempo event).
    """
    events: list[Event] = []
    tick = 0
    for msg in track:
        tick += msg.time
        data = msg.bytes()
        status = data[0]
        if status == META:
            at = 2
            while data[at] & 0x80:  # skip the variable-length payload length
                at += 1
            events.append((tick, META, data[1], 0, bytes(data[at + 1 :])))
        elif status in (0xF0, 0xF7):
            events.append((tick, 0xF0, 0, 0, bytes(data[1:-1])))
        else:
            events.append((tick, status, data[1], data[2] if len(data) > 2 else 0, None))
    return events


def from_mido(
    mid: Any, *, path: Path, size_bytes: int = 0, sha256: str = "", lenient: bool = False
) -> MidiData:
    """Convert a parsed ``mido.MidiFile`` into :class:`MidiData` (the reference path)."""
    return convert(
        midi_format=int(mid.type),
        division=int(mid.ticks_per_beat),
        tracks=[SmfTrack.from_events(mido_events(track)) for track in mid.tracks],
        path=path,
        size_bytes=size_bytes,
        sha256=sha256,
        clipped_data_bytes=1 if lenient else 0,
    )


def as_mido(events: list[Event]) -> list[Event]:
    """mido reports every sysex as 0xF0 and strips a leading 0xF0 and trailing 0xF7 byte."""
    out: list[Event] = []
    for tick, status, a, b, payload in events:
        if status in (0xF0, 0xF7):
            assert payload is not None
            data = bytes(payload)
            if data[:1] == b"\xf0":
                data = data[1:]
            if data[-1:] == b"\xf7":
                data = data[:-1]
            out.append((tick, 0xF0, 0, 0, data))
        else:
            out.append((tick, status, a, b, None if payload is None else bytes(payload)))
    return out


def smf_as_mido(smf: SmfFile) -> list[list[Event]]:
    return [as_mido(track.events) for track in smf.tracks]
