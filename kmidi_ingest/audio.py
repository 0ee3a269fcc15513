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
from typing import Any

import numpy as np

# Re-exported (``kmidi_ingest.audio`` is the stage's face): headers and the mel analysis live in
# modules of their own.
from .audio_headers import AudioHeader as AudioHeader
from .audio_headers import file_channel_labels as file_channel_labels
from .audio_headers import mask_labels as mask_labels
from .audio_headers import read_channel_mask as read_channel_mask
from .audio_headers import read_header as read_header
from .discover import ChannelFile, GroupingRules, StemGroup
from .errors import AudioError
from .features import Encoded
from .mel import BLOCK_FRAMES as BLOCK_FRAMES
from .mel import CurveFrames, curve_pool
from .mel import MelParams as MelParams
from .mel import MelStream as MelStream
from .mel import hann_window as hann_window
from .mel import hz_to_mel as hz_to_mel
from .mel import mel_filter_bank as mel_filter_bank
from .mel import mel_to_hz as mel_to_hz
from .options import check_sample_rate

# Source rates a stem file can have. A damaged header outside them (1 Hz, 2^31 Hz) would make
# the resampler turn a few kilobytes into hours of audio.
SOURCE_RATE_RANGE_HZ = (1000, 768_000)
# Integer PCM read as integers (libsndfile's float conversion costs ~8x the read), with the factor
# that turns them into libsndfile's own float values: x / 2^15 for 16-bit, and 24-bit arrives
# left-justified in int32, so x / 2^31. Both are exact in float32 (at most 24 significant bits).
INT_READS = {"PCM_16": (np.int16, 2.0**-15), "PCM_24": (np.int32, 2.0**-31)}


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
    # ``values`` pooled for the content evidence while the audio streamed (transient, never
    # stored), or None: the evidence then pools ``values`` itself, to the same numbers.
    curve: CurveFrames | None = None
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
        sample_rate_hz,
        params,
        expected_samples=-(-total * sample_rate_hz // source_rate),
        curve_pool=curve_pool(sample_rate_hz, params.hop_length),
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
            curve=mel.curve,
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
