"""The compiled channel-event scan behind :func:`kmidi_ingest.smf.parse_smf`.

One pass over a track's bytes with numba: channel messages go to an int64 ``(n, 4)`` array
(tick, status, a, b), meta and sysex events to an int64 ``(m, 6)`` array (position among all
events, tick, status, meta type, payload start, payload length) that the Python side decodes.
A problem stops the scan with an error code and up to two integers; :mod:`kmidi_ingest.smf`
turns them into the same message the pure-Python reference scan raises.

numba caches the compiled code (``cache=True``) in ``__pycache__`` beside this file, or, where
that is not writable (a non-editable install), in numba's user-wide cache (``NUMBA_CACHE_DIR``
when the environment sets it), so only the first process on a machine pays the compile.
"""

from __future__ import annotations

import numpy as np
from numba import njit

OK = 0
ERR_DELTA_VLQ = 1  # x: byte of the event
ERR_RUNNING = 2  # x: byte, y: the data byte
ERR_EOT_LENGTH = 3  # x: where the End of Track event ends, relative to the chunk body
ERR_UNDEFINED = 4  # x: the status byte, y: its byte
ERR_OVERRUN = 5  # x: byte of the event that runs past the chunk end
ERR_LENGTH_VLQ = 6  # x: byte of the length
ERR_SHORT = 7  # x: where a read fell off the end of the file (the Python IndexError)

_META = 0xFF
_END_OF_TRACK = 0x2F
_MAX_VLQ_BYTES = 4


@njit(cache=True, nogil=True)
def scan_track(data, pos, end):  # pragma: no cover - compiled
    """Scan one MTrk body ``data[pos:end]``; reads may run past ``end`` exactly as the reference.

    Returns
    -------
    tuple
        ``(channel, other, end_tick, clipped, has_eot, code, x, y)``: the two arrays trimmed to
        their rows, the last tick, data bytes clipped to 127, whether an End of Track was seen,
        and the error code with its two integers (:data:`OK` and zeros when the track is good).
    """
    size = data.shape[0]
    start = pos
    span = end - start
    channel = np.empty((span // 2 + 1, 4), dtype=np.int64)
    other = np.empty((span // 3 + 1, 6), dtype=np.int64)
    n_ch = 0
    n_other = 0
    tick = 0
    running = 0
    clipped = 0
    has_eot = False
    code = OK
    x = 0
    y = 0
    while pos < end:
        event_at = pos
        if pos >= size:
            code = ERR_SHORT
            x = pos
            break
        byte = int(data[pos])
        pos += 1
        if byte < 0x80:
            tick += byte
        else:
            value = byte & 0x7F
            count = 1
            bad = False
            while True:
                if pos >= size:
                    bad = True
                    code = ERR_SHORT
                    x = pos
                    break
                byte = int(data[pos])
                pos += 1
                value = (value << 7) | (byte & 0x7F)
                if byte < 0x80:
                    break
                count += 1
                if count == _MAX_VLQ_BYTES:
                    bad = True
                    code = ERR_DELTA_VLQ
                    x = event_at
                    break
            if bad:
                break
            tick += value
        if pos >= size:
            code = ERR_SHORT
            x = pos
            break
        status = int(data[pos])
        if status < 0x80:
            if running == 0:
                code = ERR_RUNNING
                x = pos
                y = status
                break
            status = running
        else:
            pos += 1
        if status < 0xF0:
            running = status
            if pos >= size:
                code = ERR_SHORT
                x = pos
                break
            a = int(data[pos])
            if status & 0xE0 == 0xC0:
                pos += 1
                b = 0
                if a > 127:
                    a = 127
                    clipped += 1
            else:
                if pos + 1 >= size:
                    code = ERR_SHORT
                    x = pos
                    break
                b = int(data[pos + 1])
                pos += 2
                if a > 127:
                    a = 127
                    clipped += 1
                if b > 127:
                    b = 127
                    clipped += 1
            channel[n_ch, 0] = tick
            channel[n_ch, 1] = status
            channel[n_ch, 2] = a
            channel[n_ch, 3] = b
            n_ch += 1
        elif status == _META or status == 0xF0 or status == 0xF7:
            meta_type = 0
            if status == _META:
                if pos >= size:
                    code = ERR_SHORT
                    x = pos
                    break
                meta_type = int(data[pos])
                pos += 1
            else:
                running = 0
            # The length: a variable-length quantity of at most 4 bytes.
            length = 0
            at = pos
            done = False
            short = False
            for _ in range(_MAX_VLQ_BYTES):
                if at >= size:
                    short = True
                    break
                byte = int(data[at])
                at += 1
                length = (length << 7) | (byte & 0x7F)
                if byte < 0x80:
                    done = True
                    break
            if not done:
                code = ERR_SHORT if short else ERR_LENGTH_VLQ
                x = pos
                break
            pos = at
            other[n_other, 0] = n_ch + n_other
            other[n_other, 1] = tick
            other[n_other, 2] = status
            other[n_other, 3] = meta_type
            other[n_other, 4] = pos
            other[n_other, 5] = length
            n_other += 1
            pos += length
            if status == _META and meta_type == _END_OF_TRACK:
                has_eot = True
                if pos < end:
                    code = ERR_EOT_LENGTH
                    x = pos - start
                    break
        else:
            code = ERR_UNDEFINED
            x = status
            y = pos - 1
            break
        if pos > end:
            code = ERR_OVERRUN
            x = event_at
            break
    return (
        channel[:n_ch].copy(),
        other[:n_other].copy(),
        tick,
        clipped,
        has_eot,
        code,
        x,
        y,
    )
