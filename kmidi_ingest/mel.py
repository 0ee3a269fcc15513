"""The log-mel analysis: librosa's Slaney mel scale and filters, the periodic Hann window, and
:class:`MelStream`, a centred log-mel computed incrementally (see :mod:`kmidi_ingest.audio`).

Written here with numpy so that a worker does not load librosa (and numba, ~115 MB resident);
the tests pin these numbers to librosa's."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

BLOCK_FRAMES = 1 << 17  # source frames read per file per step (~2.7 s at 48 kHz)
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


CURVE_RATE_HZ = 25.0  # the content evidence pools spectrogram frames to about this rate


def curve_pool(sample_rate_hz: int, hop_length: int) -> int:
    """Spectrogram frames per frame of the content evidence's grid (see kmidi_ingest.content)."""
    return max(1, int(round(sample_rate_hz / hop_length / CURVE_RATE_HZ)))


def pool_frames(wide: np.ndarray) -> np.ndarray:
    """The mean of each group of frames, ``(bands, groups, pool)`` float32 → ``(bands, groups)``.

    Each group is reduced on its own, so pooling a spectrogram block by block gives the very
    same values as pooling it whole."""
    pool = wide.shape[2]
    if pool >= 8:
        return np.asarray(wide.mean(axis=2))
    # numpy reduces a short last axis slowly; below 8 terms its sum runs in this very order
    pooled = wide[:, :, 0].copy()
    for k in range(1, pool):
        pooled += wide[:, :, k]
    pooled /= np.float32(pool)
    return pooled


@dataclass(frozen=True, kw_only=True)
class CurveFrames:
    """A stored log-mel spectrogram pooled for the content evidence, computed while the audio
    streamed (where the widened frames are at hand): ``values`` ``(n_mels, frames // pool)``
    float32, ``peak_db`` the loudest stored value of all frames. Transient: never stored."""

    pool: int
    values: np.ndarray
    peak_db: float


_FLOAT16_TABLE: np.ndarray | None = None


def widen(values: np.ndarray) -> np.ndarray:
    """``values`` as float32, exactly. Stored float16 values go through a table of all 65,536
    bit patterns: numpy's own float16 cast is emulated here, about 2x slower than the lookup."""
    global _FLOAT16_TABLE
    values = np.asarray(values)
    if values.dtype != np.float16:
        return values.astype(np.float32, copy=False)
    if _FLOAT16_TABLE is None:
        _FLOAT16_TABLE = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    return np.take(_FLOAT16_TABLE, values.view(np.uint16))


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


def band_centres_hz(*, n_mels: int, fmin_hz: float, fmax_hz: float) -> np.ndarray:
    """The centre frequency (Hz) of each of ``n_mels`` mel filters between ``fmin_hz`` and
    ``fmax_hz`` (the peaks of :func:`mel_filter_bank`'s triangles), shape ``(n_mels,)``."""
    low, high = hz_to_mel(np.array([fmin_hz, fmax_hz], dtype=np.float64))
    return mel_to_hz(np.linspace(low, high, n_mels + 2))[1:-1]


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


@functools.lru_cache(maxsize=8)
def _sparse_bank(
    sample_rate_hz: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float
) -> tuple[Any, Any, np.ndarray]:
    """The filter bank as float64 and float32 sparse matrices, ``(n_mels, 1 + n_fft//2)``, and
    ``1 / W`` of each band (float32, ``(n_mels, 1)``; inf where a band has no weight), read-only
    and shared by every stream of the same analysis (a cue's stems and mixes): building them
    is ~5 ms a stream."""
    import scipy.sparse

    basis = mel_filter_bank(
        sample_rate_hz=sample_rate_hz, n_fft=n_fft, n_mels=n_mels, fmin_hz=fmin_hz, fmax_hz=fmax_hz
    )
    weight_sum = basis.sum(axis=1)[:, None]  # (n_mels, 1): W of each band
    inverse = np.divide(
        1.0, weight_sum, out=np.full_like(weight_sum, np.inf), where=weight_sum > 0
    ).astype(np.float32)
    basis64, basis32 = (
        scipy.sparse.csr_array(basis),
        scipy.sparse.csr_array(basis.astype(np.float32)),
    )
    for array in (inverse, *(a for m in (basis64, basis32) for a in (m.data, m.indices, m.indptr))):
        array.setflags(write=False)
    return basis64, basis32, inverse


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
        self,
        sample_rate_hz: int,
        params: MelParams,
        *,
        expected_samples: int = 0,
        curve_pool: int | None = None,
    ) -> None:
        self.params = params
        self.fmax_hz = params.fmax_hz if params.fmax_hz is not None else sample_rate_hz / 2
        self._basis64, self._basis32, self._inv_weight_sum = _sparse_bank(
            sample_rate_hz, params.n_fft, params.n_mels, params.fmin_hz, self.fmax_hz
        )
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
        # The stored frames pooled by ``curve_pool`` (see CurveFrames), set by finish.
        self._curve_pool = curve_pool
        self._pooled = np.empty(
            (params.n_mels, self._out.shape[1] // curve_pool if curve_pool else 0),
            dtype=np.float32,
        )
        self._pooled_n = 0
        self._carry = np.empty((params.n_mels, 0), dtype=np.float32)
        self._peak = -np.inf
        self.curve: CurveFrames | None = None
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
        if self._curve_pool is not None and self._frames:
            self.curve = CurveFrames(
                pool=self._curve_pool,
                values=self._pooled[:, : self._pooled_n],
                peak_db=self._peak,
            )
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
        if self._curve_pool is not None:
            self._pool_block(stored)

    def _pool_block(self, stored: np.ndarray) -> None:
        """Pool the widened stored frames of one block (with the previous block's remainder)."""
        assert self._curve_pool is not None
        self._peak = max(self._peak, float(stored.max()))
        joined = np.concatenate([self._carry, stored], axis=1) if self._carry.shape[1] else stored
        pool = self._curve_pool
        groups = joined.shape[1] // pool
        self._carry = joined[:, groups * pool :].copy()
        if not groups:
            return
        pooled = pool_frames(joined[:, : groups * pool].reshape(joined.shape[0], groups, pool))
        start, end = self._pooled_n, self._pooled_n + groups
        if end > self._pooled.shape[1]:
            grown = np.empty(
                (self._pooled.shape[0], max(end, 2 * self._pooled.shape[1])), dtype=np.float32
            )
            grown[:, :start] = self._pooled[:, :start]
            self._pooled = grown
        self._pooled[:, start:end] = pooled
        self._pooled_n = end

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
