"""Audio stage: a stem group → composite mono at the requested rate → log-mel spectrogram.

Everything is streamed in blocks: each channel is read, resampled (soxr) and mixed block by block,
and the mel spectrogram is computed on the mixed stream with the frame overlap carried across
blocks, so memory stays flat however long the files are. The result equals
``librosa.feature.melspectrogram(y=mono, center=True, pad_mode="constant")`` followed by
``10*log10(max(S, amin) / ref)`` on the whole signal, up to float rounding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .discover import GroupingRules, StemGroup
from .errors import AudioError

BLOCK_FRAMES = 1 << 18  # source frames read per channel per step (~5.5 s at 48 kHz)

# Default channel order of interleaved files with no channel mask (WAVE / SMPTE order).
DEFAULT_LAYOUTS = {
    1: ("M",),
    2: ("L", "R"),
    3: ("L", "R", "C"),
    4: ("L", "R", "Ls", "Rs"),
    5: ("L", "R", "C", "Ls", "Rs"),
    6: ("L", "R", "C", "LFE", "Ls", "Rs"),
    8: ("L", "R", "C", "LFE", "Ls", "Rs", "Lss", "Rss"),
}


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
    """One channel of a stem: where it came from and its level."""

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


class MelStream:
    """Incremental centred log-mel: push samples, get finished frames; ``finish`` flushes the rest.

    Frame ``k`` covers samples ``[k*hop - n_fft//2, k*hop + n_fft//2)`` of the signal, zero-padded
    at both ends (librosa's ``center=True, pad_mode="constant"``).
    """

    def __init__(self, sample_rate_hz: int, params: MelParams) -> None:
        import librosa

        self.params = params
        self.fmax_hz = params.fmax_hz if params.fmax_hz is not None else sample_rate_hz / 2
        self._basis = librosa.filters.mel(
            sr=sample_rate_hz,
            n_fft=params.n_fft,
            n_mels=params.n_mels,
            fmin=params.fmin_hz,
            fmax=self.fmax_hz,
        ).astype(np.float32)
        self._buffer = np.zeros(params.n_fft // 2, dtype=np.float32)
        self._blocks: list[np.ndarray] = []
        self.samples_in = 0

    def push(self, samples: np.ndarray) -> None:
        self.samples_in += len(samples)
        self._buffer = np.concatenate([self._buffer, samples.astype(np.float32, copy=False)])
        self._emit()

    def finish(self) -> np.ndarray:
        """Return the whole log-mel matrix, shape ``(n_mels, 1 + samples // hop)``."""
        pad = np.zeros(self.params.n_fft - self.params.n_fft // 2, dtype=np.float32)
        self._buffer = np.concatenate([self._buffer, pad])
        self._emit()
        blocks = self._blocks or [np.zeros((self.params.n_mels, 0), np.float32)]
        power = np.concatenate(blocks, axis=1)
        expected = 1 + self.samples_in // self.params.hop_length
        assert power.shape[1] == expected, (power.shape, expected)
        return power

    def _emit(self) -> None:
        import librosa

        n_fft, hop = self.params.n_fft, self.params.hop_length
        if len(self._buffer) < n_fft:
            return
        count = 1 + (len(self._buffer) - n_fft) // hop
        span = self._buffer[: (count - 1) * hop + n_fft]
        spec = librosa.stft(span, n_fft=n_fft, hop_length=hop, center=False, window="hann")
        power = (spec.real**2 + spec.imag**2).astype(np.float32)
        mel = self._basis @ power
        db = 10.0 * np.log10(np.maximum(mel, self.params.db_amin))
        db -= 10.0 * np.log10(self.params.db_ref)
        self._blocks.append(db.astype(self.params.dtype))
        self._buffer = self._buffer[count * hop :].copy()


@dataclass
class _Source:
    """An open file and the stem channels it feeds."""

    handle: object
    path: Path
    rel_path: str
    label: str | None
    channels: int
    sample_rate_hz: int
    frames: int
    audio_format: str
    subtype: str
    size_bytes: int
    done: bool = False


def _open(path: Path, rel_path: str, label: str | None) -> _Source:
    import soundfile as sf

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioError(f"cannot read file: {exc.strerror}", path=path) from exc
    if size == 0:
        raise AudioError("file is empty (0 bytes)", path=path)
    try:
        # Bytes, not str: libsndfile gets non-UTF-8 file names exactly as the OS gave them.
        handle = sf.SoundFile(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"cannot decode audio: {exc}", path=path) from exc
    if handle.channels < 1 or handle.frames <= 0 or handle.samplerate <= 0:
        handle.close()
        raise AudioError(
            f"no audio in file ({handle.channels} channels, {handle.frames} frames)", path=path
        )
    return _Source(
        handle=handle,
        path=path,
        rel_path=rel_path,
        label=label,
        channels=handle.channels,
        sample_rate_hz=handle.samplerate,
        frames=handle.frames,
        audio_format=handle.format,
        subtype=handle.subtype,
        size_bytes=size,
    )


def _labels(source: _Source) -> list[str]:
    if source.channels == 1:
        return [source.label or "M"]
    if source.label is not None:
        return [f"{source.label}{k + 1}" for k in range(source.channels)]
    return list(
        DEFAULT_LAYOUTS.get(source.channels, tuple(f"A{k + 1}" for k in range(source.channels)))
    )


def process_group(
    group: StemGroup,
    *,
    sample_rate_hz: int,
    params: MelParams | None = None,
    rules: GroupingRules | None = None,
) -> StemData:
    """Mix a stem group to composite mono at ``sample_rate_hz`` and compute its log-mel.

    The composite is the mean of the channels (LFE excluded unless it is the only channel),
    shorter channels zero-padded (and reported in ``warnings``).

    Raises
    ------
    AudioError
        When any channel file cannot be opened or decoded; the stem is then not stored.
    """
    import soxr

    params = params or MelParams()
    rules = rules or GroupingRules()
    if sample_rate_hz <= 0:
        raise AudioError(f"sample rate must be positive, got {sample_rate_hz}")
    sources: list[_Source] = []
    try:
        for file in group.files:
            sources.append(_open(file.path, file.rel_path, file.label))
        labels = [_labels(s) for s in sources]
        flat = [
            (si, k, label) for si, src in enumerate(sources) for k, label in enumerate(labels[si])
        ]
        excluded = {label.upper() for label in rules.exclude_from_mono}
        in_mono = [label.upper() not in excluded for _, _, label in flat]
        if not any(in_mono):
            in_mono = [True] * len(flat)
        weights = np.array(in_mono, dtype=np.float32) / sum(in_mono)

        resamplers = [
            None
            if sources[si].sample_rate_hz == sample_rate_hz
            else soxr.ResampleStream(
                sources[si].sample_rate_hz, sample_rate_hz, 1, dtype="float32", quality="HQ"
            )
            for si, _, _ in flat
        ]
        pending: list[list[np.ndarray]] = [[] for _ in flat]
        pending_len = [0] * len(flat)
        finished = [False] * len(flat)
        peak = np.zeros(len(flat))
        sumsq = np.zeros(len(flat))
        mel = MelStream(sample_rate_hz, params)
        mono_peak = 0.0
        mono_sumsq = 0.0

        def mix(n: int) -> None:
            nonlocal mono_peak, mono_sumsq
            out = np.zeros(n, dtype=np.float32)
            for c in range(len(flat)):
                take, taken = [], 0
                while taken < n and pending[c]:
                    head = pending[c][0]
                    need = n - taken
                    if len(head) <= need:
                        take.append(head)
                        pending[c].pop(0)
                        taken += len(head)
                    else:
                        take.append(head[:need])
                        pending[c][0] = head[need:]
                        taken += need
                pending_len[c] -= taken
                if weights[c] and take:
                    chunk = np.concatenate(take) if len(take) > 1 else take[0]
                    out[: len(chunk)] += weights[c] * chunk
            if n:
                mono_peak = max(mono_peak, float(np.max(np.abs(out))))
                mono_sumsq += float(np.dot(out.astype(np.float64), out))
                mel.push(out)

        while not all(s.done for s in sources):
            for si, src in enumerate(sources):
                if src.done:
                    continue
                try:
                    block = src.handle.read(BLOCK_FRAMES, dtype="float32", always_2d=True)  # type: ignore[attr-defined]
                except Exception as exc:
                    raise AudioError(f"cannot decode audio: {exc}", path=src.path) from exc
                last = len(block) < BLOCK_FRAMES
                src.done = last
                for c, (fsi, k, _label) in enumerate(flat):
                    if fsi != si:
                        continue
                    x = np.ascontiguousarray(block[:, k])
                    if len(x):
                        peak[c] = max(peak[c], float(np.max(np.abs(x))))
                        sumsq[c] += float(np.dot(x.astype(np.float64), x))
                    resampler = resamplers[c]
                    y = x if resampler is None else resampler.resample_chunk(x, last=last)
                    if len(y):
                        pending[c].append(y)
                        pending_len[c] += len(y)
                    finished[c] = last
            # Mix as far as every still-running channel has delivered.
            running = [pending_len[c] for c in range(len(flat)) if not finished[c]]
            mix(min(running) if running else max(pending_len))
        mix(max(pending_len))
        values = mel.finish()
    finally:
        for src in sources:
            src.handle.close()  # type: ignore[attr-defined]

    durations = [src.frames / src.sample_rate_hz for src in sources]
    warnings: list[str] = []
    if len({src.sample_rate_hz for src in sources}) > 1:
        rates = ", ".join(f"{s.path.name}={s.sample_rate_hz}" for s in sources)
        warnings.append(f"channel files have different sample rates ({rates}); each resampled")
    if max(durations) - min(durations) > 1.0 / sample_rate_hz:
        lengths = ", ".join(
            f"{s.path.name}={d:.6f}s" for s, d in zip(sources, durations, strict=True)
        )
        warnings.append(f"channel files differ in length ({lengths}); shorter ones zero-padded")

    channels = tuple(
        ChannelInfo(
            order=c,
            label=label,
            path=sources[si].path,
            rel_path=sources[si].rel_path,
            file_channel=k,
            file_channels=sources[si].channels,
            size_bytes=sources[si].size_bytes,
            audio_format=sources[si].audio_format,
            subtype=sources[si].subtype,
            sample_rate_hz=sources[si].sample_rate_hz,
            frames=sources[si].frames,
            duration_s=durations[si],
            peak=float(peak[c]),
            rms=float(np.sqrt(sumsq[c] / sources[si].frames)),
            in_mono=bool(in_mono[c]),
        )
        for c, (si, k, label) in enumerate(flat)
    )
    n_out = mel.samples_in
    return StemData(
        name=group.name,
        key=group.key,
        is_final_mix=group.is_final_mix,
        channels=channels,
        source_sample_rate_hz=max(src.sample_rate_hz for src in sources),
        duration_s=max(durations),
        peak=mono_peak,
        rms=float(np.sqrt(mono_sumsq / n_out)) if n_out else 0.0,
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
        ),
        warnings=tuple(warnings),
    )
