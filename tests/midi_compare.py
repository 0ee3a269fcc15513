"""Put the lean decoder's events in the shape mido reports, for event-for-event comparisons."""

from __future__ import annotations

from kmidi_ingest.smf import Event, SmfFile


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
