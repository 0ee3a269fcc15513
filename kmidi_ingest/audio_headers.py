"""Audio file headers read here because soundfile exposes neither: the channel mask of an
interleaved file (``dwChannelMask`` of ``WAVE_FORMAT_EXTENSIBLE`` in WAV, BWF, RF64/BW64 and W64,
FLAC's ``WAVEFORMATEXTENSIBLE_CHANNEL_MASK`` tag), the data size a header promises against the
bytes the file holds (a cut-off copy), and the channel labels that follow from them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# Default channel order of interleaved files with no channel mask (WAVE and FLAC order:
# FL FR FC LFE BL BR SL SR, named as Pro Tools names them).
DEFAULT_LAYOUTS = {
    1: ("M",),
    2: ("L", "R"),
    3: ("L", "R", "C"),
    4: ("L", "R", "Ls", "Rs"),
    5: ("L", "R", "C", "Ls", "Rs"),
    6: ("L", "R", "C", "LFE", "Ls", "Rs"),
    7: ("L", "R", "C", "LFE", "Cs", "Ls", "Rs"),
    8: ("L", "R", "C", "LFE", "Lsr", "Rsr", "Lss", "Rss"),
}

# dwChannelMask bits in the order channels appear in the file (Microsoft's SPEAKER_* constants).
# "BL"/"BR" and "SL"/"SR" are renamed once the whole mask is known (see mask_labels).
MASK_SPEAKERS = (
    "L", "R", "C", "LFE", "BL", "BR", "Lc", "Rc", "Cs", "SL", "SR",
    "Ts", "Ltf", "Ctf", "Rtf", "Ltr", "Ctr", "Rtr",
)  # fmt: skip
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_RIFF_IDS = (b"RIFF", b"RF64", b"BW64")
_MAX_CHUNKS = 256  # chunks skipped before giving up on finding "fmt "


def mask_labels(mask: int, channels: int) -> tuple[str, ...]:
    """Labels of an interleaved file's channels from its ``dwChannelMask``.

    Back and side pairs are ``Ls``/``Rs`` when only one of them is present (5.1 is written both
    ways); with both (7.1) the back pair is ``Lsr``/``Rsr`` and the side pair ``Lss``/``Rss``.
    Channels beyond the bits set in the mask are unassigned and labelled ``A1``, ``A2`` …
    """
    speakers = [name for bit, name in enumerate(MASK_SPEAKERS) if mask >> bit & 1]
    both = "BL" in speakers and "SL" in speakers
    rename = (
        {"BL": "Lsr", "BR": "Rsr", "SL": "Lss", "SR": "Rss"}
        if both
        else {"BL": "Ls", "BR": "Rs", "SL": "Ls", "SR": "Rs"}
    )
    labels = [rename.get(name, name) for name in speakers][:channels]
    labels += [f"A{k + 1}" for k in range(channels - len(labels))]
    return tuple(labels)


def _mask_from_fmt(data: bytes) -> int | None:
    # WAVEFORMATEXTENSIBLE: wFormatTag, nChannels, nSamplesPerSec, nAvgBytesPerSec, nBlockAlign,
    # wBitsPerSample, cbSize, wValidBitsPerSample, dwChannelMask, SubFormat.
    if len(data) < 24 or int.from_bytes(data[0:2], "little") != WAVE_FORMAT_EXTENSIBLE:
        return None
    if int.from_bytes(data[16:18], "little") < 22:
        return None
    return int.from_bytes(data[20:24], "little")


def _mask_from_vorbis_comment(data: bytes) -> int | None:
    # Vorbis comment: vendor length + vendor, count, then length-prefixed "KEY=value" entries
    # (all lengths 32-bit little-endian). FLAC encoders store the WAVE mask under this key.
    vendor = int.from_bytes(data[0:4], "little")
    pos = 4 + vendor
    count = int.from_bytes(data[pos : pos + 4], "little")
    pos += 4
    for _ in range(min(count, len(data) // 4)):
        size = int.from_bytes(data[pos : pos + 4], "little")
        key, _, value = data[pos + 4 : pos + 4 + size].partition(b"=")
        pos += 4 + size
        if key.upper() == b"WAVEFORMATEXTENSIBLE_CHANNEL_MASK":
            text = value.decode("ascii", "replace").strip().lower()
            try:
                return int(text, 16) if text.startswith("0x") else int(text)
            except ValueError:
                return None
    return None


@dataclass(frozen=True, kw_only=True)
class AudioHeader:
    """What a file's own header says, read without decoding (see :func:`read_header`).

    ``data_bytes`` is the length of the audio data the header promises, ``held_bytes`` what the
    file holds after the data's start; both ``None`` when the format has no such count (FLAC,
    OGG, MP3 …) or the writer left it open (a streamed RIFF's ``0xFFFFFFFF``).
    """

    mask: int | None = None
    data_bytes: int | None = None
    held_bytes: int | None = None

    @property
    def truncated(self) -> bool:
        return (
            self.data_bytes is not None
            and self.held_bytes is not None
            and self.held_bytes < self.data_bytes
        )


def _riff_header(handle: BinaryIO, size: int, rf64: bool) -> AudioHeader:
    mask = None
    ds64_data: int | None = None
    for _ in range(_MAX_CHUNKS):
        chunk = handle.read(8)
        if len(chunk) < 8:
            break
        length = int.from_bytes(chunk[4:8], "little")
        if chunk[:4] == b"data":
            # 0xFFFFFFFF: the size is in ds64 (RF64/BW64), or a streaming writer left it open.
            declared = (ds64_data if rf64 else None) if length == 0xFFFFFFFF else length
            return AudioHeader(mask=mask, data_bytes=declared, held_bytes=size - handle.tell())
        body = handle.read(min(length, 40)) if chunk[:4] in (b"fmt ", b"ds64") else b""
        if chunk[:4] == b"fmt ":
            mask = _mask_from_fmt(body)
        elif chunk[:4] == b"ds64" and len(body) >= 16:  # riffSize, dataSize, sampleCount
            ds64_data = int.from_bytes(body[8:16], "little")
        handle.seek(length + (length & 1) - len(body), 1)
    return AudioHeader(mask=mask)


def _w64_header(handle: BinaryIO, size: int) -> AudioHeader:
    # Sony Wave64: 16-byte GUID ids (the first 4 bytes spell the name), 8-byte sizes that count
    # the 24-byte chunk header, chunks aligned to 8 bytes.
    mask = None
    handle.seek(40)
    for _ in range(_MAX_CHUNKS):
        chunk = handle.read(24)
        if len(chunk) < 24:
            break
        length = int.from_bytes(chunk[16:24], "little")
        if length < 24:
            break
        if chunk[:4] == b"data":
            return AudioHeader(mask=mask, data_bytes=length - 24, held_bytes=size - handle.tell())
        body = handle.read(min(length - 24, 40)) if chunk[:4] == b"fmt " else b""
        if chunk[:4] == b"fmt ":
            mask = _mask_from_fmt(body)
        handle.seek(((length + 7) & ~7) - 24 - len(body), 1)
    return AudioHeader(mask=mask)


def _aiff_header(handle: BinaryIO, size: int) -> AudioHeader:
    # FORM/AIFF and AIFC: big-endian chunks; SSND holds offset and block size (4 bytes each),
    # then ``offset`` bytes to skip, then the samples.
    for _ in range(_MAX_CHUNKS):
        chunk = handle.read(8)
        if len(chunk) < 8:
            break
        length = int.from_bytes(chunk[4:8], "big")
        if chunk[:4] == b"SSND":
            offset = int.from_bytes(handle.read(8)[:4], "big")
            start = handle.tell() + offset
            return AudioHeader(data_bytes=length - 8 - offset, held_bytes=size - start)
        handle.seek(length + (length & 1), 1)
    return AudioHeader()


def _flac_header(handle: BinaryIO) -> AudioHeader:
    # Metadata blocks: 1 byte last-flag/type, 3 bytes big-endian size; type 4 is the comment.
    handle.seek(4)
    for _ in range(_MAX_CHUNKS):
        block = handle.read(4)
        if len(block) < 4:
            break
        size = int.from_bytes(block[1:4], "big")
        if block[0] & 0x7F == 4:
            return AudioHeader(mask=_mask_from_vorbis_comment(handle.read(size)))
        if block[0] & 0x80:
            break
        handle.seek(size, 1)
    return AudioHeader()


def read_header(path: str | Path) -> AudioHeader:
    """Read the channel mask and the promised audio data length from a file's header.

    Only chunk headers are read, never the samples. The mask is the ``dwChannelMask`` of a
    ``WAVE_FORMAT_EXTENSIBLE`` ``fmt `` chunk (WAV, BWF, RF64/BW64, W64) or FLAC's
    ``WAVEFORMATEXTENSIBLE_CHANNEL_MASK`` tag. The data length is the ``data`` chunk's size
    (RF64/BW64: the ``ds64`` chunk's), W64's ``data`` chunk, AIFF/AIFC's ``SSND`` chunk less
    its offset fields, or the AU header's data size. A file of any other format, or a header
    that cannot be parsed, gives what could be read (``None`` fields).

    Raises
    ------
    OSError
        When the file cannot be opened or read.
    """
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(12)
        if head[:4] in _RIFF_IDS and head[8:12] == b"WAVE":
            return _riff_header(handle, size, rf64=head[:4] != b"RIFF")
        if head[:4] == b"riff":
            return _w64_header(handle, size)
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return _aiff_header(handle, size)
        if head[:4] == b".snd" and len(head) == 12:  # AU: offset, data size (big-endian)
            offset = int.from_bytes(head[4:8], "big")
            declared = int.from_bytes(head[8:12], "big")
            if declared == 0xFFFFFFFF:
                return AudioHeader()
            return AudioHeader(data_bytes=declared, held_bytes=size - offset)
        if head[:4] == b"fLaC":
            return _flac_header(handle)
    return AudioHeader()


def read_channel_mask(path: str | Path) -> int | None:
    """Return the channel mask of a WAV/BWF/RF64/BW64/W64 or FLAC file, or ``None``.

    See :func:`read_header`; a plain ``WAVE_FORMAT_PCM`` header, a file of another format, or a
    malformed header gives ``None``.
    """
    return read_header(path).mask


def file_channel_labels(
    *, suffix_label: str | None, channels: int, mask: int | None
) -> tuple[str, ...]:
    """Labels of the channels of one file, in file order.

    A mono file takes its name's suffix (``M`` without one). An interleaved file takes its
    channel mask, else the default layout for its channel count, else ``A1`` … ``An``; if its
    name also carries a suffix, each label is prefixed with it (``A1.L``, ``A1.R``).
    """
    if channels == 1:
        return (suffix_label or "M",)
    if mask:
        own = mask_labels(mask, channels)
    else:
        own = DEFAULT_LAYOUTS.get(channels, tuple(f"A{k + 1}" for k in range(channels)))
    if suffix_label is None:
        return own
    return tuple(f"{suffix_label}.{label}" for label in own)
