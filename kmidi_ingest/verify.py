"""Content verification: does a stem's audio follow a MIDI track's notes, and with what lag?

For a track, the *note-onset envelope* is a train of impulses at the notes' ``start_s`` (weighted
by velocity); for a stem, the *onset-strength envelope* is librosa's spectral flux computed from
the stem's stored log-mel spectrogram (``onset_strength(S=...)``), so no audio is read again.
Both are sampled at the feature frame rate (``sample_rate_hz / hop_length``), smoothed by a
Gaussian of :data:`ONSET_SMOOTH_S` (sampler attacks and print jitter), and cross-correlated over
lags up to ±``max_lag_s``. The best lag (sub-frame, parabolic interpolation) is where the stem's
onsets sit relative to the MIDI: ``lag_s > 0`` means the audio comes later (a stem printed with
pre-roll). The stored correlation is the cross-correlation of the standardised envelopes at that
lag (Pearson's r at lag 0; see :func:`correlate`).
This onset correlation is stored (``onset_correlation``, ``lag_s``) and breaks ties between
similar names; whether a pair is *verified* is decided from the richer, pitch-aware content
evidence of :mod:`kmidi_ingest.content` by :mod:`kmidi_ingest.assign` (identity, not rhythm).

No librosa here (issue 13 item 5): the spectral flux librosa's ``onset_strength(S=...,
center=False)`` computes from a log-mel is the band mean of the positive frame-to-frame rise,
which is three lines of numpy (the streaming mel code in :mod:`kmidi_ingest.audio` computes the
same numbers while the audio streams); importing librosa in every worker costs numba's compile
time and ~115 MB resident for nothing. ``tests/test_verify.py`` pins the equality with librosa.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .audio import FeatureData
from .content import ContentEvidence
from .mel import widen

ONSET_SMOOTH_S = 0.03
DEFAULT_MAX_LAG_S = 2.0
VERIFY_THRESHOLD = 0.45
MIN_ONSETS = 4  # a track with fewer distinct note starts cannot be told from chance
OFFSET_TOLERANCE_S = 0.05  # verified lags within this of their median share one cue offset


@dataclass(frozen=True, kw_only=True)
class OnsetEvidence:
    """Correlation and best lag of every track × stem pair of a cue.

    ``correlation`` and ``lag_s`` have shape ``(n_tracks, n_stems)``; NaN where a track has fewer
    than :data:`MIN_ONSETS` distinct note starts or a stem no onsets (nothing to compare).
    ``compute_s`` and ``compute_cpu_s`` are the wall and CPU seconds of all of a cue's evidence
    from the audio (onsets, note templates, kit bands), for the cost figure.
    """

    correlation: np.ndarray
    lag_s: np.ndarray
    frame_rate_hz: float
    content: ContentEvidence | None = None  # the pitch-aware evidence of the same pairs
    kit: np.ndarray | None = None  # kmidi_ingest.kit.kit_evidence of the same pairs (drum tracks)
    compute_s: float = 0.0
    compute_cpu_s: float = 0.0


def note_onset_envelope(
    start_s: np.ndarray, velocity: np.ndarray, *, n_frames: int, frame_rate_hz: float
) -> np.ndarray:
    """Impulses at the note starts, shape ``(n_frames,)``; a note's weight is ``velocity / 127``."""
    envelope = np.zeros(n_frames, dtype=np.float64)
    frames = np.rint(np.asarray(start_s, dtype=np.float64) * frame_rate_hz).astype(np.int64)
    inside = (frames >= 0) & (frames < n_frames)
    np.add.at(envelope, frames[inside], np.asarray(velocity, dtype=np.float64)[inside] / 127.0)
    return envelope


def stem_onset_envelope(feature: FeatureData) -> np.ndarray:
    """Onset strength of a stored log-mel spectrogram, shape ``(n_frames,)``.

    Frame ``k`` is the rise of the spectrum from frame ``k-1`` to ``k`` (silence before frame 0),
    log-compressed so a few loud hits do not outweigh every other onset. The spectrogram is
    already centred (frame ``k`` is at ``k * hop / sr`` seconds), so librosa's own centring shift
    is turned off.
    """
    if feature.onset_strength is not None:  # computed the same way while the audio streamed
        return np.log1p(np.asarray(feature.onset_strength, dtype=np.float64))
    values = widen(feature.values)
    if values.shape[1] == 0:
        return np.zeros(0, dtype=np.float64)
    # A silent frame before the first one, so a note at 0 s is a rise like any other.
    floor = 10.0 * np.log10(feature.db_amin / feature.db_ref)
    padded = np.concatenate(
        [np.full((values.shape[0], 1), floor, dtype=np.float32), values], axis=1
    )
    onset = np.maximum(np.diff(padded, axis=1), 0.0).mean(axis=0)
    return np.log1p(np.asarray(onset, dtype=np.float64))


def onset_lead_s(feature: FeatureData) -> float:
    """How early a log-mel onset envelope rises before the true onset, in seconds.

    A centred frame's window reaches ``n_fft / 2`` samples ahead of its centre, and in dB even the
    first faint sight of a note out of silence is a large rise: measured on rendered notes, the
    peak comes about ``n_fft / 4`` samples early (one frame at the default n_fft = 4 × hop).
    """
    return feature.n_fft / 4 / feature.sample_rate_hz


def _smooth(envelope: np.ndarray, frame_rate_hz: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(
        envelope, sigma=max(1.0, ONSET_SMOOTH_S * frame_rate_hz), mode="constant"
    )


def _standardize(envelope: np.ndarray, frame_rate_hz: float) -> np.ndarray | None:
    smooth = _smooth(envelope, frame_rate_hz)
    std = smooth.std()
    if len(smooth) < 2 or std == 0:
        return None
    return (smooth - smooth.mean()) / std


def _spectra(envelopes: np.ndarray, n: int) -> np.ndarray:
    """Zero-padded spectra of envelopes of length ``n`` (rows), long enough for no circular wrap."""
    from scipy.fft import next_fast_len, rfft

    return np.asarray(rfft(envelopes, next_fast_len(2 * n), axis=-1))


def _cross_correlations(
    midi_spectra: np.ndarray, audio: np.ndarray, max_lag: int
) -> tuple[np.ndarray, np.ndarray]:
    """``sum_t a[t]·b[t+L] / n`` for ``L`` in ``-max_lag..max_lag``, for every track envelope ``a``.

    ``midi_spectra`` are the :func:`_spectra` of the track envelopes, shape ``(k, bins)``;
    ``audio`` has shape ``(n,)``. Returns ``(lags, values)``, values of shape
    ``(k, 2·max_lag + 1)``.
    """
    from scipy.fft import irfft

    n = audio.shape[0]
    size = 2 * (midi_spectra.shape[-1] - 1)
    full = irfft(np.conj(midi_spectra) * _spectra(audio, n), size, axis=-1) / n
    values = np.concatenate([full[:, size - max_lag :], full[:, : max_lag + 1]], axis=1)
    return np.arange(-max_lag, max_lag + 1), values


def _peak(values: np.ndarray, lags: np.ndarray) -> tuple[float, float]:
    """Highest value and its lag in frames, refined by a parabola through the peak."""
    best = int(np.argmax(values))
    lag = float(lags[best])
    if 0 < best < len(values) - 1:
        left, mid, right = values[best - 1], values[best], values[best + 1]
        curvature = left - 2 * mid + right
        if curvature < 0:
            lag += 0.5 * (left - right) / curvature
    return float(values[best]), lag


def correlate(
    midi_envelope: np.ndarray,
    audio_envelope: np.ndarray,
    *,
    frame_rate_hz: float,
    max_lag_s: float = DEFAULT_MAX_LAG_S,
    lead_s: float = 0.0,
) -> tuple[float, float] | None:
    """Best lag of ``audio_envelope`` behind ``midi_envelope`` and the correlation there.

    Returns ``(correlation, lag_s)``, or ``None`` when either envelope is flat. Both envelopes are
    standardised over their whole length and the cross-correlation is divided by that length:
    at lag 0 this is Pearson's r, and at other lags the frames shifted out count as no evidence,
    so a chance alignment of a few onsets at a large lag cannot look like a match. The lag is
    refined by a parabola through the peak; ``lead_s`` (see :func:`onset_lead_s`) is added.
    """
    n = min(len(midi_envelope), len(audio_envelope))
    a = _standardize(midi_envelope[:n], frame_rate_hz)
    b = _standardize(audio_envelope[:n], frame_rate_hz)
    if a is None or b is None:
        return None
    max_lag = min(n - 2, int(round(max_lag_s * frame_rate_hz)))
    lags, values = _cross_correlations(_spectra(a[np.newaxis, :], n), b, max_lag)
    r, lag = _peak(values[0], lags)
    return r, lag / frame_rate_hz + lead_s


def onset_evidence(
    track_notes: Sequence[np.ndarray],
    stem_features: Sequence[FeatureData],
    *,
    max_lag_s: float = DEFAULT_MAX_LAG_S,
) -> OnsetEvidence:
    """Correlate every track (a ``midi.NOTE_DTYPE`` array) with every stem's log-mel feature.

    Same result as :func:`correlate` on every pair, computed with one FFT per envelope: the track
    envelopes are built once per stem length and frame rate, and all tracks are correlated with a
    stem in one batch.
    """
    shape = (len(track_notes), len(stem_features))
    correlation = np.full(shape, np.nan)
    lag_s = np.full(shape, np.nan)
    frame_rate_hz = 0.0
    tracks_by_grid: dict[tuple[int, float], tuple[list[int], np.ndarray]] = {}
    for j, feature in enumerate(stem_features):
        rate = feature.sample_rate_hz / feature.hop_length
        frame_rate_hz = frame_rate_hz or rate
        audio = _standardize(stem_onset_envelope(feature), rate)
        if audio is None:
            continue
        n = len(audio)
        grid = (n, rate)
        if grid not in tracks_by_grid:
            rows: list[int] = []
            envelopes: list[np.ndarray] = []
            for i, notes in enumerate(track_notes):
                if len(np.unique(np.rint(notes["start_s"] * rate))) < MIN_ONSETS:
                    continue
                midi = _standardize(
                    note_onset_envelope(
                        notes["start_s"], notes["velocity"], n_frames=n, frame_rate_hz=rate
                    ),
                    rate,
                )
                if midi is not None:
                    rows.append(i)
                    envelopes.append(midi)
            tracks_by_grid[grid] = (rows, _spectra(np.array(envelopes).reshape(len(rows), n), n))
        rows, spectra = tracks_by_grid[grid]
        if not rows:
            continue
        max_lag = min(n - 2, int(round(max_lag_s * rate)))
        lags, values = _cross_correlations(spectra, audio, max_lag)
        lead = onset_lead_s(feature)
        for row, i in enumerate(rows):
            r, lag = _peak(values[row], lags)
            correlation[i, j], lag_s[i, j] = r, lag / rate + lead
    return OnsetEvidence(correlation=correlation, lag_s=lag_s, frame_rate_hz=frame_rate_hz)


def is_verified(correlation: float | None) -> bool | None:
    """The old rhythm test (r ≥ :data:`VERIFY_THRESHOLD`); kept for comparisons in benchmarks.

    ``True`` when the audio follows the notes, ``None`` when there was nothing to compare. The
    stored ``verified`` is :mod:`kmidi_ingest.assign`'s identity rule, not this.
    """
    if correlation is None or np.isnan(correlation):
        return None
    return bool(correlation >= VERIFY_THRESHOLD)


def cue_offset(lags_s: Sequence[float]) -> float | None:
    """The constant offset of a cue's stems behind its MIDI, from the lags of verified pairs.

    The median lag, rounded to the millisecond, when every lag lies within
    :data:`OFFSET_TOLERANCE_S` of it; ``None`` when there is no verified pair or the lags
    disagree (no single offset explains them).
    """
    if not lags_s:
        return None
    median = float(np.median(lags_s))
    if any(abs(lag - median) > OFFSET_TOLERANCE_S for lag in lags_s):
        return None
    return round(median, 3) + 0.0
