"""A lean Standard MIDI File decoder: bytes → header + per-track event tuples.

mido builds one Python object per message and checks every attribute; that dominates its cost.
This decoder walks the bytes once into flat integer lists (channel messages, four ints each, which
:mod:`kmidi_ingest.midi` turns into one numpy array per track) and a short list of meta/sysex
events. It is stricter than mido where mido silently accepts damage (see :func:`parse_smf`). The
test-suite cross-checks it event for event against mido on real files.

``SmfTrack.events`` gives the events of a track as tuples ``(tick, status, a, b, payload)`` with ``tick`` absolute within the track:

- channel messages: ``status`` 0x80–0xEF (channel in the low nibble), ``a``/``b`` the data bytes
  (``b`` is 0 for the one-data-byte messages 0xC0 and 0xD0), ``payload`` ``None``;
- meta events: ``status`` 0xFF, ``a`` the meta type, ``b`` 0, ``payload`` the data bytes;
- sysex: ``status`` 0xF0 or 0xF7, ``a`` = ``b`` = 0, ``payload`` the bytes after the length.

SMF facts relied on here: running status carries over meta events (every common writer relies on
it) but sysex cancels it; a variable-length quantity has at most 4 bytes (max 0x0FFFFFFF); chunks
of unknown type are skipped; status bytes 0xF1–0xF6 and 0xF8–0xFE are not allowed in a file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import kernels

Event = tuple[int, int, int, int, bytes | None]

META = 0xFF
END_OF_TRACK = 0x2F
MAX_VLQ_BYTES = 4


class SmfError(Exception):
    """The bytes are not a readable SMF; the message is the reason (no path: the caller adds it)."""


@dataclass(frozen=True, kw_only=True)
class SmfTrack:
    """One MTrk chunk, stored for speed as two streams.

    ``channel`` holds the channel messages as an int64 array of shape ``(n, 4)``: ``tick, status,
    a, b`` per row.
    ``other`` holds the meta and sysex events with their position among all events of the track.
    :attr:`events` merges them back into the event tuples of this module.
    """

    channel: np.ndarray
    other: list[tuple[int, Event]]
    end_tick: int
    clipped_data_bytes: int = 0
    has_end_of_track: bool = False

    @property
    def events(self) -> list[Event]:
        """All events in file order as ``(tick, status, a, b, payload)`` tuples."""
        rows = self.channel.tolist()
        out: list[Event] = []
        at = 0
        for position, event in self.other:
            while len(out) < position:
                tick, status, a, b = rows[at]
                out.append((tick, status, a, b, None))
                at += 1
            out.append(event)
        for tick, status, a, b in rows[at:]:
            out.append((tick, status, a, b, None))
        return out

    @classmethod
    def from_events(cls, events: Sequence[Event]) -> SmfTrack:
        """Build from event tuples (e.g. converted from another parser)."""
        channel: list[int] = []
        other: list[tuple[int, Event]] = []
        for position, event in enumerate(events):
            if event[1] < 0xF0:
                channel.extend(event[:4])
            else:
                other.append((position, event))
        end_tick = events[-1][0] if events else 0
        has_eot = any(e[1] == META and e[2] == END_OF_TRACK for _, e in other)
        return cls(
            channel=_as_rows(channel), other=other, end_tick=end_tick, has_end_of_track=has_eot
        )


@dataclass(frozen=True, kw_only=True)
class SmfFile:
    """Header fields and tracks of one SMF.

    ``division`` is the raw signed 16-bit header value: > 0 ticks per quarter note, < 0 SMPTE
    (high byte = -frames per second, low byte = ticks per frame).
    """

    midi_format: int
    declared_tracks: int
    division: int
    tracks: tuple[SmfTrack, ...]

    @property
    def clipped_data_bytes(self) -> int:
        return sum(track.clipped_data_bytes for track in self.tracks)


def _as_rows(flat: list[int]) -> np.ndarray:
    return np.array(flat, dtype=np.int64).reshape(-1, 4)


def parse_smf(raw: bytes, *, compiled: bool | None = None) -> SmfFile:
    """Decode an SMF.

    Data bytes above 127 in channel messages are clipped to 127 (as ``mido``'s ``clip=True``) and
    counted, so the caller can flag the file as read leniently.

    Raises
    ------
    SmfError
        Not a MIDI file, unknown format, truncated, a chunk length that does not match its content,
        running status without a preceding status, an undefined status byte, or a variable-length
        quantity longer than 4 bytes.

    ``compiled`` chooses the track scan: ``True`` the numba kernel of :mod:`kmidi_ingest.smf_scan`,
    ``False`` the pure-Python reference (same result, same errors; the tests compare them),
    ``None`` the reference until the process has spent enough CPU time in its references to
    pay for numba (:mod:`kmidi_ingest.kernels`), then the kernel.
    """
    if compiled is None and not kernels.use_compiled():
        with kernels.renting():
            return _parse(raw, _parse_track_py)
    return _parse(raw, _parse_track_py if compiled is False else _compiled_parser(raw))


def _parse(raw: bytes, parse_track: Callable[[bytes, int, int, int], SmfTrack]) -> SmfFile:
    size = len(raw)
    if size < 8 or raw[:4] != b"MThd":
        if size >= 4 and raw[:4] == b"RIFF" and b"MThd" in raw[:64]:
            raise SmfError("RIFF-wrapped MIDI (RMID) is not supported: MThd not found at byte 0")
        raise SmfError("MThd not found at byte 0: probably not a MIDI file")
    header_length = int.from_bytes(raw[4:8], "big")
    if header_length < 6:
        raise SmfError(f"wrong chunk length: MThd declares {header_length} bytes, needs 6")
    if size < 8 + header_length:
        raise SmfError(
            f"truncated: MThd declares {header_length} bytes, only {size - 8} remain in the file"
        )
    midi_format = int.from_bytes(raw[8:10], "big")
    declared = int.from_bytes(raw[10:12], "big")
    division = int.from_bytes(raw[12:14], "big", signed=True)
    if midi_format > 2:
        raise SmfError(f"unknown MIDI format {midi_format} (must be 0, 1 or 2)")
    pos = 8 + header_length
    tracks: list[SmfTrack] = []
    while len(tracks) < declared:
        if pos + 8 > size:
            raise SmfError(
                f"truncated: header declares {declared} tracks, the file ends after {len(tracks)}"
                + (f" (with {size - pos} stray bytes)" if size > pos else "")
            )
        chunk_id = raw[pos : pos + 4]
        length = int.from_bytes(raw[pos + 4 : pos + 8], "big")
        body = pos + 8
        if chunk_id != b"MTrk":
            if not all(0x20 <= c < 0x7F for c in chunk_id):
                raise SmfError(
                    f"wrong chunk length: no chunk header at byte {pos} (found {bytes(chunk_id)!r}"
                    f" after {len(tracks)} tracks)"
                )
            pos = body + length  # alien chunk: skip, as the SMF spec asks
            continue
        if body + length > size:
            raise SmfError(
                f"truncated: track {len(tracks)} declares {length} bytes, only {size - body}"
                " remain in the file"
            )
        tracks.append(parse_track(raw, body, body + length, len(tracks)))
        pos = body + length
    return SmfFile(
        midi_format=midi_format,
        declared_tracks=declared,
        division=division,
        tracks=tuple(tracks),
    )


def _compiled_parser(raw: bytes) -> Callable[[bytes, int, int, int], SmfTrack]:
    from . import smf_scan  # imported on first use: numba costs ~0.5 s to import

    kernels.loaded()
    data = np.frombuffer(raw, dtype=np.uint8)

    def parse_track(raw: bytes, pos: int, end: int, index: int) -> SmfTrack:
        result: tuple[Any, ...] = smf_scan.scan_track(data, pos, end)
        channel, other_rows, end_tick, clipped, has_eot, code, x, y = result
        if code != smf_scan.OK:
            raise SmfError(_scan_error(code, x, y, index, pos, end, len(raw)))
        other: list[tuple[int, Event]] = []
        for position, tick, status, meta_type, at, length in other_rows.tolist():
            other.append((position, (tick, status, meta_type, 0, raw[at : at + length])))
        return SmfTrack(
            channel=channel,
            other=other,
            end_tick=int(end_tick),
            clipped_data_bytes=int(clipped),
            has_end_of_track=bool(has_eot),
        )

    return parse_track


def _scan_error(code: int, x: int, y: int, index: int, start: int, end: int, size: int) -> str:
    """The reference scan's message for an error code of :func:`smf_scan.scan_track`."""
    from . import smf_scan

    if code == smf_scan.ERR_DELTA_VLQ:
        return (
            f"absurd delta time in track {index} at byte {x}: "
            f"variable-length quantity longer than {MAX_VLQ_BYTES} bytes"
        )
    if code == smf_scan.ERR_RUNNING:
        return (
            f"running status without a status in track {index} at byte {x}: "
            f"data byte 0x{y:02X} with no preceding status byte"
        )
    if code == smf_scan.ERR_EOT_LENGTH:
        return (
            f"wrong chunk length: track {index} declares {end - start} bytes but"
            f" its End of Track event ends at byte {x}"
        )
    if code == smf_scan.ERR_UNDEFINED:
        return f"undefined status byte 0x{x:02X} in track {index} at byte {y}"
    if code == smf_scan.ERR_LENGTH_VLQ:
        return (
            f"absurd length in track {index} at byte {x}: "
            f"variable-length quantity longer than {MAX_VLQ_BYTES} bytes"
        )
    # ERR_OVERRUN (x: the event) and ERR_SHORT (x: the read that fell off the file)
    return _overrun(index, x, start, end, size)


def _parse_track_py(data: bytes, pos: int, end: int, index: int) -> SmfTrack:
    """The pure-Python reference scan (the compiled kernel must match it exactly)."""
    channel: list[int] = []
    extend = channel.extend
    other: list[tuple[int, Event]] = []
    tick = 0
    running = 0
    clipped = 0
    has_eot = False
    start = pos
    try:
        while pos < end:
            event_at = pos
            # Delta time: a variable-length quantity of at most 4 bytes.
            byte = data[pos]
            pos += 1
            if byte < 0x80:
                tick += byte
            else:
                value = byte & 0x7F
                count = 1
                while True:
                    byte = data[pos]
                    pos += 1
                    value = (value << 7) | (byte & 0x7F)
                    if byte < 0x80:
                        break
                    count += 1
                    if count == MAX_VLQ_BYTES:
                        raise SmfError(
                            f"absurd delta time in track {index} at byte {event_at}: "
                            f"variable-length quantity longer than {MAX_VLQ_BYTES} bytes"
                        )
                tick += value
            status = data[pos]
            if status < 0x80:
                if not running:
                    raise SmfError(
                        f"running status without a status in track {index} at byte {pos}: "
                        f"data byte 0x{status:02X} with no preceding status byte"
                    )
                status = running
            else:
                pos += 1
            if status < 0xF0:
                running = status
                a = data[pos]
                if status & 0xE0 == 0xC0:  # program change, channel pressure: one data byte
                    pos += 1
                    b = 0
                    if a > 127:
                        a = 127
                        clipped += 1
                else:
                    b = data[pos + 1]
                    pos += 2
                    if a > 127 or b > 127:
                        clipped += (a > 127) + (b > 127)
                        a = min(a, 127)
                        b = min(b, 127)
                extend((tick, status, a, b))
            elif status == META:
                meta_type = data[pos]
                pos += 1
                length, pos = _vlq(data, pos, index)
                payload = data[pos : pos + length]
                pos += length
                other.append(
                    ((len(channel) >> 2) + len(other), (tick, META, meta_type, 0, payload))
                )
                if meta_type == END_OF_TRACK:
                    has_eot = True
                    if pos < end:
                        raise SmfError(
                            f"wrong chunk length: track {index} declares {end - start} bytes but"
                            f" its End of Track event ends at byte {pos - start}"
                        )
            elif status == 0xF0 or status == 0xF7:
                running = 0
                length, pos = _vlq(data, pos, index)
                payload = data[pos : pos + length]
                pos += length
                other.append(((len(channel) >> 2) + len(other), (tick, status, 0, 0, payload)))
            else:
                raise SmfError(
                    f"undefined status byte 0x{status:02X} in track {index} at byte {pos - 1}"
                )
            if pos > end:
                raise SmfError(_overrun(index, event_at, start, end, len(data)))
    except IndexError:
        raise SmfError(_overrun(index, pos, start, end, len(data))) from None
    return SmfTrack(
        channel=_as_rows(channel),
        other=other,
        end_tick=tick,
        clipped_data_bytes=clipped,
        has_end_of_track=has_eot,
    )


def _overrun(index: int, event_at: int, start: int, end: int, size: int) -> str:
    if end >= size:
        return (
            f"truncated: track {index} ends inside an event (event at byte {event_at}, "
            f"file ends at byte {size})"
        )
    return (
        f"wrong chunk length: an event of track {index} at byte {event_at} runs past the chunk "
        f"end (track declares {end - start} bytes)"
    )


def _vlq(data: bytes, pos: int, index: int) -> tuple[int, int]:
    value = 0
    for _ in range(MAX_VLQ_BYTES):
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos
    raise SmfError(
        f"absurd length in track {index} at byte {pos - MAX_VLQ_BYTES}: "
        f"variable-length quantity longer than {MAX_VLQ_BYTES} bytes"
    )
