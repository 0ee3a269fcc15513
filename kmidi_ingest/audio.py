"""Audio stage: a stem group → composite mono at the requested rate → log-mel spectrogram.

Everything is streamed in blocks: the channel files of a stem are read side by side, mixed to mono
at their own rate (a weighted mean, the LFE of a surround mix excluded), the mono stream is resampled once (soxr; the mean
of resampled channels equals the resampled mean, resampling being linear) and the mel spectrogram is
computed on it with the frame overlap carried across blocks, so memory stays flat however long the
files are. The result equals ``librosa.feature.melspectrogram(y=mono, center=True,
pad_mode="constant")`` followed by ``10*log10(max(S, amin) / ref)`` on the whole signal, up to
float rounding.

Channel labels come from the file name's suffix (multi-mono ``Strings.L.wav``), from the
channel mask of an interleaved file (the ``dwChannelMask`` of a ``WAVE_FORMAT_EXTENSIBLE``
header in WAV, BWF, RF64/BW64 and W64, or FLAC's ``WAVEFORMATEXTENSIBLE_CHANNEL_MASK`` tag;
soundfile exposes neither, so the headers are parsed here) or, failing both, from the WAVE/FLAC
default order for the channel count. AIFF/AIFC files carry no mask that is read here and take
the same default order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .discover import ChannelFile, GroupingRules, StemGroup
from .errors import AudioError
from .features import Encoded
from .options import check_sample_rate

BLOCK_FRAMES = 1 << 17  # source frames read per file per step (~2.7 s at 48 kHz)
# Source rates a stem file can have. A damaged header outside them (1 Hz, 2^31 Hz) would make
# the resampler turn a few kilobytes into hours of audio.
SOURCE_RATE_RANGE_HZ = (1000, 768_000)
# Integer PCM read as integers (libsndfile's float conversion costs ~8x the read), with the factor
# that turns them into libsndfile's own float values: x / 2^15 for 16-bit, and 24-bit arrives
# left-justified in int32, so x / 2^31. Both are exact in float32 (at most 24 significant bits).
INT_READS = {"PCM_16": (np.int16, 2.0**-15), "PCM_24": (np.int32, 2.0**-31)}
FFT_FRAMES = (
    128  # spectrogram frames transformed per batch (measured fastest here: 64-256 within 7 %)
)
# Float32 FFT error per bin assumed by the precision check, in float32 epsilons times the frame's
# L2 norm, and the relative error allowed in a band before the frame is redone in float64 (1e-3
# is 0.004 dB, a tenth of the float16 spacing of the stored values). Calibrated, not proven: the
# largest per-bin errors seen (~41 eps) sit at loud bins, where they are relatively harmless;
# with 32 the worst accepted band error measured (benchmark stems, tones, comb-filtered and
# low-passed noise mixes) was 3.3e-5 relative, 30x inside F32_REL_TOL.
F32_BIN_ERROR = 32.0
F32_REL_TOL = 1e-3

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


@dataclass(frozen=True, kw_only=True)
class MelParams:
    """Log-mel parameters; ``fmax_hz=None`` means Nyquist of the requested rate."""

    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin_hz: float = 0.0
    fmax_hz: float | None = None
    db_ref: float = 1.0  # fixed reference: levels stay comparable across stems
    db_amin: float = 1e-10
    dtype: str = "float16"


@dataclass(frozen=True, kw_only=True)
class ChannelInfo:
    """One channel of a stem: where it came from and its level (peak/RMS at the file's rate)."""

    order: int
    label: str
    path: Path
    rel_path: str
    file_channel: int
    file_channels: int
    size_bytes: int
    audio_format: str
    subtype: str
    sample_rate_hz: int
    frames: int
    duration_s: float
    peak: float
    rms: float
    in_mono: bool


@dataclass(frozen=True, kw_only=True)
class FeatureData:
    """A log-mel spectrogram, shape ``(n_mels, n_frames)``, dB re ``db_ref``, with its parameters."""

    kind: str
    sample_rate_hz: int
    n_fft: int
    hop_length: int
    n_mels: int
    fmin_hz: float
    fmax_hz: float
    db_ref: float
    db_amin: float
    centered: bool
    values: np.ndarray
    # Spectral flux of ``values`` as stored (see verify.stem_onset_envelope), shape (n_frames,),
    # float32; computed while streaming, where the frames are at hand, or None.
    onset_strength: np.ndarray | None = None
    # ``values`` encoded for storage (codec, chunks, sha256), set by the worker that computed
    # them (kmidi_ingest.batch.compute), or None: the writer then encodes them itself.
    encoded: Encoded | None = None


@dataclass(frozen=True, kw_only=True)
class StemData:
    """A processed stem or final mix."""

    name: str
    key: str
    is_final_mix: bool
    channels: tuple[ChannelInfo, ...]
    source_sample_rate_hz: int
    duration_s: float
    peak: float
    rms: float
    feature: FeatureData
    warnings: tuple[str, ...] = field(default=())

    @property
    def layout(self) -> str:
        return ",".join(c.label for c in self.channels)


class StemError(AudioError):
    """A stem that cannot be processed; ``errors`` holds one :class:`AudioError` per bad file."""

    def __init__(self, stem: str, errors: Sequence[AudioError]) -> None:
        self.errors = tuple(errors)
        paths = ", ".join(str(e.path) for e in self.errors)
        super().__init__(
            f"stem {stem!r} not stored: {len(self.errors)} channel file(s) unusable ({paths})",
            path=self.errors[0].path if self.errors else None,
        )


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Hz → mels on Slaney's scale (librosa's default, ``htk=False``): linear below 1 kHz,
    logarithmic above. Returns a new float64 array."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    high = hz >= 1000.0
    mel[high] = 15.0 + np.log(hz[high] / 1000.0) / (np.log(6.4) / 27.0)
    return mel


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    hz = mel * (200.0 / 3)
    high = mel >= 15.0
    hz[high] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[high] - 15.0))
    return hz


def mel_filter_bank(
    *, sample_rate_hz: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float
) -> np.ndarray:
    """Triangular Slaney-normalised mel filters, shape ``(n_mels, 1 + n_fft // 2)``, float64.

    The same numbers as ``librosa.filters.mel`` (Slaney scale and norm), computed here so that
    a worker does not load librosa (and numba, ~115 MB resident) just for this matrix.
    """
    fft_hz = np.linspace(0.0, sample_rate_hz / 2, 1 + n_fft // 2)
    edges = mel_to_hz(
        np.linspace(
            hz_to_mel(np.array([fmin_hz], dtype=np.float64))[0],
            hz_to_mel(np.array([fmax_hz], dtype=np.float64))[0],
            n_mels + 2,
        )
    )
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, fft_hz)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window of ``n`` samples (``scipy.signal.get_window("hann", n)``), float64."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


class MelStream:
    """Incremental centred log-mel: push samples, get finished frames; ``finish`` flushes the rest.

    Frame ``k`` covers samples ``[k*hop - n_fft//2, k*hop + n_fft//2)`` of the signal, zero-padded
    at both ends (librosa's ``center=True, pad_mode="constant"``), weighted by a periodic Hann
    window. Samples are kept as float32. Frames are transformed in batches of
    :data:`FFT_FRAMES`, and the mel projection uses the filter bank as a sparse matrix (each FFT
    bin feeds at most two bands), which makes it ~60x cheaper than the dense product.

    Precision: librosa transforms in float64. A float32 FFT is twice as fast, but its rounding
    error per bin is up to ~41 float32 epsilons times the frame's norm (measured on noise, tones
    and square waves), which shows in bands far quieter than the frame (~0.1 dB at -100 dB next
    to a pure tone). So every frame is transformed in float32 first, and a bound on each band's
    error is checked: with ``e`` = :data:`F32_BIN_ERROR` × eps × ‖frame‖ (a calibrated per-bin
    error, see the constant) the error of a bin's power is at most ``2|X|e + e²``, so a band of
    power ``P`` and weight sum ``W`` is off by at most ``δ = 2e·sqrt(W·P) + e²·W``
    (Cauchy–Schwarz). A frame where any band has
    ``δ > F32_REL_TOL × max(P, amin)`` is transformed again in float64. Broadband frames (music,
    noise) pass; near-pure tones fall back. The choice depends only on the frame, so the result
    does not depend on how samples are pushed.
    """

    def __init__(
        self, sample_rate_hz: int, params: MelParams, *, expected_samples: int = 0
    ) -> None:
        import scipy.sparse

        self.params = params
        self.fmax_hz = params.fmax_hz if params.fmax_hz is not None else sample_rate_hz / 2
        basis = mel_filter_bank(
            sample_rate_hz=sample_rate_hz,
            n_fft=params.n_fft,
            n_mels=params.n_mels,
            fmin_hz=params.fmin_hz,
            fmax_hz=self.fmax_hz,
        )
        self._basis64 = scipy.sparse.csr_array(basis)  # (n_mels, 1 + n_fft//2)
        self._basis32 = scipy.sparse.csr_array(basis.astype(np.float32))
        weight_sum = basis.sum(axis=1)[:, None]  # (n_mels, 1): W of each band
        self._inv_weight_sum = np.divide(
            1.0, weight_sum, out=np.full_like(weight_sum, np.inf), where=weight_sum > 0
        ).astype(np.float32)
        s0 = np.sqrt(1.0 + F32_REL_TOL) - 1.0
        self._f32_scale = (F32_BIN_ERROR * float(np.finfo(np.float32).eps) / s0) ** 2
        self._window = hann_window(params.n_fft)
        self._window32 = self._window.astype(np.float32)
        self._batch = np.empty((FFT_FRAMES, params.n_fft), dtype=np.float32)
        self._power_t = np.empty((1 + params.n_fft // 2, FFT_FRAMES), dtype=np.float32)
        self._db_offset = np.float32(10.0 * np.log10(max(params.db_amin, params.db_ref)))
        self._buffer = np.zeros(params.n_fft + BLOCK_FRAMES, dtype=np.float32)
        self._fill = params.n_fft // 2  # the centring pad
        # Frames are written in place as columns of a C-order (n_mels, frames) matrix, so the
        # result costs its own size once (no blocks to concatenate, no transposed copy for
        # storage); sized from the expected length, grown if needed.
        self._out = np.empty(
            (params.n_mels, 1 + expected_samples // params.hop_length), dtype=params.dtype
        )
        # Onset strength as librosa computes it from the stored matrix (mean over bands of the
        # rise from the previous frame, silence before the first), one value per frame.
        self._onset = np.empty(self._out.shape[1], dtype=np.float32)
        floor = np.float32(10.0 * np.log10(params.db_amin / params.db_ref))
        self._last = np.full(params.n_mels, floor, dtype=np.float32)
        self.onset_strength: np.ndarray | None = None  # set by finish
        self._frames = 0
        self.samples_in = 0
        self.precise_frames = 0  # frames transformed again in float64

    def push(self, samples: np.ndarray) -> None:
        """Append mono samples (any length) and transform every frame they complete."""
        self.samples_in += len(samples)
        offset = 0
        while offset < len(samples):
            room = len(self._buffer) - self._fill
            take = min(room, len(samples) - offset)
            self._buffer[self._fill : self._fill + take] = samples[offset : offset + take]
            self._fill += take
            offset += take
            self._emit()

    def finish(self) -> np.ndarray:
        """Return the whole log-mel matrix, shape ``(n_mels, 1 + samples // hop)``."""
        self.push(np.zeros(self.params.n_fft - self.params.n_fft // 2, dtype=np.float32))
        self.samples_in -= self.params.n_fft - self.params.n_fft // 2
        values = self._out[:, : self._frames]
        if not values.flags.c_contiguous:  # the length was not the expected one
            values = values.copy()
        self._out = values
        self.onset_strength = self._onset[: self._frames]
        expected = 1 + self.samples_in // self.params.hop_length
        if values.shape[1] != expected:
            raise AssertionError(f"mel frame count {values.shape[1]} != {expected}")
        return values

    def _store(self, mel: np.ndarray) -> None:
        """Append ``mel``, shape ``(n_mels, frames)``, as columns of the output."""
        start, end = self._frames, self._frames + mel.shape[1]
        capacity = self._out.shape[1]
        if end > capacity:
            grown = np.empty((self.params.n_mels, max(end, 2 * capacity)), self._out.dtype)
            grown[:, :start] = self._out[:, :start]
            self._out = grown
            onset = np.empty(grown.shape[1], dtype=np.float32)
            onset[:start] = self._onset[:start]
            self._onset = onset
        rounded = mel.astype(self._out.dtype)  # a contiguous cast: ~2x a strided one
        self._out[:, start:end] = rounded
        # The rise from the previous frame, written over ``mel`` (no longer needed): what
        # np.diff(prepend=last) computes, without its concatenated copy.
        stored = rounded.astype(np.float32)
        rise = mel
        np.subtract(stored[:, 1:], stored[:, :-1], out=rise[:, 1:])
        np.subtract(stored[:, 0], self._last, out=rise[:, 0])
        np.maximum(rise, 0.0, out=rise)
        self._onset[start:end] = rise.mean(axis=0)
        self._last = stored[:, -1].copy()
        self._frames = end

    def _mel_power(self, frames: np.ndarray) -> np.ndarray:
        """Mel power of ``frames`` (float32 samples), floored at ``db_amin``, float32, shape
        ``(n_mels, frames)``."""
        from scipy import fft

        batch = self._batch[: len(frames)]
        np.multiply(frames, self._window32, out=batch)
        spec = fft.rfft(batch, axis=1, overwrite_x=True)  # complex64
        parts = spec.view(np.float32)  # re, im interleaved
        np.square(parts, out=parts)
        # |X|² summed straight into a (bins, frames) C-order buffer: the layout the sparse
        # product reads, without a separate transposed copy.
        power_t = self._power_t[:, : len(frames)]
        np.add(parts[:, 0::2].T, parts[:, 1::2].T, out=power_t)
        mel = np.asarray(self._basis32 @ power_t)
        # The float32 error bound (see the class docstring): a band passes when
        # 2e·sqrt(W·P) + e²·W <= tol·max(P, amin), i.e. when max(P, amin)/W >= e²/s0² with
        # s0 = sqrt(1 + tol) - 1. The frame's energy is bounded by Parseval: 2·sum(|X|²)/n_fft.
        energy = np.add.reduce(power_t, axis=0) * np.float32(2.0 / self.params.n_fft)
        need = energy * self._f32_scale
        amin = np.float32(self.params.db_amin)
        np.maximum(mel, amin, out=mel)
        unsure = (mel * self._inv_weight_sum).min(axis=0) < need
        if np.any(unsure):
            redo = frames[unsure] * self._window  # float64, as librosa
            spec64 = fft.rfft(redo, axis=1)
            power64 = np.square(spec64.real)
            power64 += np.square(spec64.imag)
            mel64 = np.asarray(self._basis64 @ np.ascontiguousarray(power64.T))
            mel[:, unsure] = np.maximum(mel64, amin)
            self.precise_frames += int(np.count_nonzero(unsure))
        return mel

    def _emit(self) -> None:
        from numpy.lib.stride_tricks import sliding_window_view

        n_fft, hop = self.params.n_fft, self.params.hop_length
        if self._fill < n_fft:
            return
        count = 1 + (self._fill - n_fft) // hop
        frames = sliding_window_view(self._buffer[: self._fill], n_fft)[::hop]
        for first in range(0, count, FFT_FRAMES):
            mel = self._mel_power(frames[first : min(count, first + FFT_FRAMES)])
            np.log10(mel, out=mel)
            mel *= 10.0
            mel -= self._db_offset
            self._store(mel)
        used = count * hop
        rest = self._fill - used
        self._buffer[:rest] = self._buffer[used : self._fill]
        self._fill = rest


@dataclass(kw_only=True)
class _Source:
    """An open channel file and the stem channels it feeds."""

    handle: Any
    file: ChannelFile
    labels: tuple[str, ...]
    channels: int
    sample_rate_hz: int
    frames: int
    audio_format: str
    subtype: str
    size_bytes: int
    weights: (
        np.ndarray
    )  # (channels,) float32: 0 if left out of the mono, else its read scale / the unit
    read_dtype: Any  # what the file is read as: float32, or int16/int32 for integer PCM
    scale: float  # read value × scale = sample in [-1, 1)
    peak: np.ndarray  # (channels,) float64
    sumsq: np.ndarray  # (channels,) float64
    frames_read: int = 0
    done: bool = False


_HEADER_FORMATS = ("WAV", "WAVEX", "RF64", "W64", "FLAC", "AIFF", "AU")


def _open(file: ChannelFile) -> tuple[Any, int, tuple[str, ...]]:
    """Open ``file`` with soundfile; return ``(handle, size_bytes, channel labels)``.

    This is the first half of the soundness rule shared with ``check`` (the second half is
    :func:`_finish_source`, once every frame is read): a file that cannot be opened or read, is
    empty, will not decode, holds no frames, or whose header promises more audio data than the
    file holds (a cut-off copy) raises :class:`AudioError` with the reason.
    """
    import soundfile as sf

    path = file.path
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise AudioError(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    if size == 0:
        raise AudioError("file is empty (0 bytes)", path=path)
    try:
        # Bytes, not str: libsndfile gets non-UTF-8 file names exactly as the OS gave them.
        handle = sf.SoundFile(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as exc:
        reason = getattr(exc, "error_string", None) or str(exc)
        raise AudioError(
            f"cannot decode audio (wrong header or unsupported codec): {reason}", path=path
        ) from exc
    low_hz, high_hz = SOURCE_RATE_RANGE_HZ
    if handle.samplerate > 0 and not low_hz <= handle.samplerate <= high_hz:
        handle.close()
        raise AudioError(
            f"sample rate {handle.samplerate} Hz is outside {low_hz}..{high_hz} Hz: "
            f"a damaged header? re-export the file",
            path=path,
        )
    if handle.channels < 1 or handle.frames <= 0 or handle.samplerate <= 0:
        handle.close()
        raise AudioError(
            f"no audio in file ({handle.channels} channels, {handle.frames} frames, "
            f"{handle.samplerate} Hz)",
            path=path,
        )
    header = AudioHeader()
    if handle.format in _HEADER_FORMATS:
        try:
            header = read_header(path)
        except OSError as exc:
            handle.close()
            raise AudioError(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    if header.truncated:
        handle.close()
        # libsndfile would read such a file up to where it ends, without an error.
        raise AudioError(
            f"truncated: the header promises {header.data_bytes} bytes, "
            f"the file holds {header.held_bytes}",
            path=path,
        )
    return (
        handle,
        size,
        file_channel_labels(suffix_label=file.label, channels=handle.channels, mask=header.mask),
    )


def _source(file: ChannelFile) -> _Source:
    """Open ``file`` (see :func:`_open`) as a stream source; raises :class:`AudioError`."""
    handle, size, labels = _open(file)
    channels = handle.channels
    read_dtype, scale = INT_READS.get(handle.subtype, (np.float32, 1.0))
    return _Source(
        handle=handle,
        file=file,
        labels=labels,
        channels=channels,
        sample_rate_hz=handle.samplerate,
        frames=handle.frames,
        audio_format=handle.format,
        subtype=handle.subtype,
        size_bytes=size,
        weights=np.zeros(channels, dtype=np.float32),
        read_dtype=read_dtype,
        scale=scale,
        peak=np.zeros(channels),
        sumsq=np.zeros(channels),
    )


def _finish_source(src: _Source) -> AudioError | None:
    """The second half of the soundness rule, once ``src`` is read to its end: fewer frames
    decoded than its header promises (a cut-off FLAC, OGG or MP3), or NaN/infinite samples
    (seen for free in the sums of squares)."""
    if src.frames_read < src.frames:
        return AudioError(
            f"truncated: the header promises {src.frames} frames, only {src.frames_read} decode",
            path=src.file.path,
        )
    if not np.isfinite(src.sumsq).all():
        return AudioError("audio holds NaN or infinite samples", path=src.file.path)
    return None


def check_file(path: Path, *, block_frames: int = BLOCK_FRAMES) -> str | None:
    """Return why ``path`` is not a sound audio file, or ``None`` when every frame decodes.

    The rule ingest applies to every channel file (``kmidi-ingest check`` uses it): see
    :func:`_open` and :func:`_finish_source`. The file is read in blocks of ``block_frames``,
    so memory stays flat.
    """
    try:
        src = _source(ChannelFile(path=path, rel_path=path.name, label=None))
    except AudioError as exc:
        return exc.reason
    try:
        buffer = np.empty((block_frames, src.channels), dtype=src.read_dtype)
        planar = np.empty(block_frames, dtype=np.float32)
        while not src.done:
            _accumulate(src, _read(src, buffer, block_frames), None, planar)
    except AudioError as exc:
        return exc.reason
    finally:
        src.handle.close()
    error = _finish_source(src)
    return None if error is None else error.reason


def _is_surround(group: StemGroup, excluded: frozenset[str]) -> bool:
    """A surround mix: a final mix by name, or a multi-mono group with an LFE-suffixed file."""
    return group.is_final_mix or any((f.label or "").upper() in excluded for f in group.files)


def _left_out(
    src: _Source, k: int, group: StemGroup, excluded: frozenset[str], *, surround: bool
) -> bool:
    """Whether channel ``k`` of ``src`` stays out of the composite mono.

    Only an LFE (``rules.exclude_from_mono``) is left out, and only where it is one: when its
    file's name says so (``Mix.LFE.wav``), or when the channel mask or default layout says so
    of a surround mix. A 6-channel file that is no mix (a hexaphonic guitar pickup, whose
    writer set mask 0x3F by default) keeps all six channels.
    """
    if (src.file.label or "").upper() in excluded:
        return True
    return surround and src.labels[k].rsplit(".", 1)[-1].upper() in excluded


def process_group(
    group: StemGroup,
    *,
    sample_rate_hz: int,
    params: MelParams | None = None,
    rules: GroupingRules | None = None,
    progress: Callable[[float], None] | None = None,
) -> StemData:
    """Mix a stem group to composite mono at ``sample_rate_hz`` and compute its log-mel.

    ``progress``, if given, is called with the seconds of the stem just read, block by block.

    The composite is the mean of the channels; an LFE (labels in ``rules.exclude_from_mono``)
    is left out only where it is one (see :func:`_left_out`), and never when nothing else is
    left. Every file is read once, in blocks of :data:`BLOCK_FRAMES` frames. The stem's
    ``peak`` is its loudest channel's, its ``rms`` the RMS over all samples of all channels.

    A stem is returned only when all its audio is sound: every channel file readable, not
    empty, decodable, holding every frame its header promises and no NaN/infinite sample, and
    all files of one sample rate and one length.

    Raises
    ------
    StemError
        When any channel file breaks the rule above; ``errors`` holds one :class:`AudioError`
        per file, each naming the file and the reason.
    ConfigError
        When ``sample_rate_hz`` is outside 8000–384000 Hz (:func:`~kmidi_ingest.options.check_sample_rate`).
    """
    params = params or MelParams()
    rules = rules or GroupingRules()
    check_sample_rate(sample_rate_hz)
    excluded = frozenset(label.upper() for label in rules.exclude_from_mono)
    sources: list[_Source] = []
    errors: list[AudioError] = []
    try:
        for file in group.files:
            try:
                sources.append(_source(file))
            except AudioError as exc:
                errors.append(exc)
        errors.extend(_rate_errors(group, sources) or _length_errors(group, sources))
        if errors:
            raise StemError(group.key, errors)
        try:
            return _stream(group, sources, sample_rate_hz, params, excluded, progress)
        except StemError:
            raise
        except AudioError as exc:  # a file that breaks off while being decoded
            raise StemError(group.key, [exc]) from exc
    finally:
        for src in sources:
            src.handle.close()


def _length_errors(group: StemGroup, sources: list[_Source]) -> list[AudioError]:
    """One error per file whose length differs from the group's most common length."""
    lengths = [s.frames for s in sources]
    if len(set(lengths)) <= 1:
        return []
    common = max(lengths, key=lambda n: (lengths.count(n), -lengths.index(n)))
    return [
        AudioError(
            f"length {s.frames} frames ({s.frames / s.sample_rate_hz:.3f} s) differs from the "
            f"{common} frames ({common / s.sample_rate_hz:.3f} s) of the other channel files of "
            f"stem {group.key!r}; re-export the stem's channels at one length",
            path=s.file.path,
        )
        for s in sources
        if s.frames != common
    ]


def _rate_errors(group: StemGroup, sources: list[_Source]) -> list[AudioError]:
    """One error per file whose rate differs from the group's most common rate."""
    rates = [s.sample_rate_hz for s in sources]
    if len(set(rates)) <= 1:
        return []
    common = max(rates, key=lambda r: (rates.count(r), -rates.index(r)))
    return [
        AudioError(
            f"sample rate {s.sample_rate_hz} Hz differs from the {common} Hz of the other "
            f"channel files of stem {group.key!r}; re-export the stem at one rate",
            path=s.file.path,
        )
        for s in sources
        if s.sample_rate_hz != common
    ]


def _stream(
    group: StemGroup,
    sources: list[_Source],
    sample_rate_hz: int,
    params: MelParams,
    excluded: frozenset[str],
    progress: Callable[[float], None] | None,
) -> StemData:
    import soxr

    flat = [(src, k) for src in sources for k in range(src.channels)]
    in_mono = [
        not _left_out(src, k, group, excluded, surround=_is_surround(group, excluded))
        for src, k in flat
    ]
    if not any(in_mono):
        in_mono = [True] * len(flat)
    share = 1.0 / sum(in_mono)
    for (src, k), used in zip(flat, in_mono, strict=True):
        src.weights[k] = 1.0 if used else 0.0  # the 1/n share is applied to the sum

    source_rate = sources[0].sample_rate_hz
    resampler = (
        None
        if source_rate == sample_rate_hz
        else soxr.ResampleStream(source_rate, sample_rate_hz, 1, dtype="float32", quality="HQ")
    )
    total = max(src.frames for src in sources)
    mel = MelStream(
        sample_rate_hz, params, expected_samples=-(-total * sample_rate_hz // source_rate)
    )
    # The mono mix is summed in units of the finest read scale and scaled once per block: for
    # 16-bit stems the sum of integers is exact, and the other scales are powers of two of it.
    unit = min(src.scale for src in sources)
    for src in sources:
        src.weights *= np.float32(src.scale / unit)
    mono = np.zeros(BLOCK_FRAMES, dtype=np.float32)
    planar = np.empty(BLOCK_FRAMES, dtype=np.float32)
    buffers = [np.empty((BLOCK_FRAMES, src.channels), dtype=src.read_dtype) for src in sources]
    position = 0
    while position < total:
        n = min(BLOCK_FRAMES, total - position)
        mono[:n] = 0.0
        for src, buffer in zip(sources, buffers, strict=True):
            if src.done:
                continue
            block = _read(src, buffer, n)
            _accumulate(src, block, mono, planar)
        position += n
        if progress is not None:
            progress(n / source_rate)
        chunk = mono[:n]
        chunk *= np.float32(share * unit)
        last = position >= total
        if resampler is None:
            mel.push(chunk)
        else:
            mel.push(resampler.resample_chunk(chunk, last=last))
    values = mel.finish()

    errors = [e for e in map(_finish_source, sources) if e is not None]
    if errors:
        raise StemError(group.key, errors)
    channels = tuple(
        ChannelInfo(
            order=c,
            label=src.labels[k],
            path=src.file.path,
            rel_path=src.file.rel_path,
            file_channel=k,
            file_channels=src.channels,
            size_bytes=src.size_bytes,
            audio_format=src.audio_format,
            subtype=src.subtype,
            sample_rate_hz=src.sample_rate_hz,
            frames=src.frames,
            duration_s=src.frames / src.sample_rate_hz,
            peak=float(src.peak[k]),
            rms=float(np.sqrt(src.sumsq[k] / src.frames)),
            in_mono=bool(in_mono[c]),
        )
        for c, (src, k) in enumerate(flat)
    )
    return StemData(
        name=group.name,
        key=group.key,
        is_final_mix=group.is_final_mix,
        channels=channels,
        source_sample_rate_hz=source_rate,
        duration_s=total / source_rate,
        # The stem's levels: the loudest channel's peak, and the RMS over every sample of every
        # channel (LFE included; all channels have the same length).
        peak=max(c.peak for c in channels),
        rms=float(np.sqrt(sum(float(src.sumsq.sum()) for src in sources) / (total * len(flat)))),
        feature=FeatureData(
            kind="log_mel",
            sample_rate_hz=sample_rate_hz,
            n_fft=params.n_fft,
            hop_length=params.hop_length,
            n_mels=params.n_mels,
            fmin_hz=params.fmin_hz,
            fmax_hz=mel.fmax_hz,
            db_ref=params.db_ref,
            db_amin=params.db_amin,
            centered=True,
            values=values,
            onset_strength=mel.onset_strength,
        ),
    )


def _read(src: _Source, buffer: np.ndarray, n: int) -> np.ndarray:
    """Read up to ``n`` frames of ``src`` into ``buffer``; shape ``(frames, channels)``."""
    try:
        block = src.handle.read(n, dtype=buffer.dtype.name, always_2d=True, out=buffer[:n])
    except Exception as exc:  # soundfile raises several types for a corrupt stream
        # libsndfile often gives no text for a stream that breaks off (a cut FLAC frame).
        reason = getattr(exc, "error_string", None) or str(exc) or type(exc).__name__
        try:
            decoded = int(src.handle.tell())  # frames decoded before the failure
        except Exception:  # the handle may be unusable now
            decoded = src.frames_read
        raise AudioError(
            f"cannot decode audio after frame {decoded} of the {src.frames} the header "
            f"promises (cut off or damaged): {reason}",
            path=src.file.path,
        ) from exc
    src.frames_read += len(block)
    if len(block) < n or src.frames_read >= src.frames:
        src.done = True
    return block


def _accumulate(
    src: _Source, block: np.ndarray, mono: np.ndarray | None, planar: np.ndarray
) -> None:
    """Add ``block``'s channels × their weights to ``mono`` (unless ``None``) and update each
    channel's peak and sum of squares (in samples, i.e. read values × ``src.scale``).
    ``planar`` is scratch space of at least ``len(block)`` float32."""
    count = len(block)
    if count == 0:
        return
    x = planar[:count]
    for k in range(src.channels):
        column = block[:, k]
        top = max(float(column.max()), -float(column.min()))
        np.copyto(x, column)  # one channel, contiguous float32 (exact for 16/24-bit integers)
        src.peak[k] = max(src.peak[k], top * src.scale)
        src.sumsq[k] += float(np.dot(x, x)) * src.scale**2
        weight = src.weights[k]
        if mono is None:
            continue
        if weight == 1.0:
            mono[:count] += x
        elif weight:
            x *= weight
            mono[:count] += x
