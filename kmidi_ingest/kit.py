"""Kit evidence: does a stem hold a drum track's *hats and cymbals*?

The content evidence (:mod:`kmidi_ingest.content`) reads a drum track through the frequency
regions of the GM kit, the kick's low region included, and a pitched stem whose bass or left hand
plays on the kick's beats follows that evidence too. What sets a drum kit apart from pitched
instruments is its noisy, broadband hits at the very top: hats and cymbals (and the snare's
rattle) light the bands above :data:`HIGH_HZ` at the kit's hits, while a pitched note's energy
sits at its harmonics, mostly far below.

:func:`kit_evidence` therefore correlates the drum track's hits with each stem's spectral rise
in the bands from :data:`HIGH_HZ` up, minus :data:`LOW_WEIGHT` times its rise in the bands below
(a pitched onset lights its body more than its top; a hat only the top), at every circular lag.
As in the content evidence, the lags within ±:data:`~kmidi_ingest.content.MAX_LAG_S` are where
the stem may sit and the lags beyond ±:data:`~kmidi_ingest.content.NULL_GUARD_S` form the null
distribution (the same hits shifted out of place); the best lag in the window gives the pair's
``z``. How :func:`kmidi_ingest.assign.decide` uses it: see there (``KIT_MARGIN``).

``HIGH_HZ`` and ``LOW_WEIGHT`` were chosen on the dev renders only (issue 15). Computed from the
stored log-mel features only, a few milliseconds per stem.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .audio import FeatureData
from .content import MAX_LAG_S, MIN_NOTES, MIN_NULL_S, NULL_GUARD_S, _Grid, _grid, _observations
from .mel import band_centres_hz

HIGH_HZ = 7000.0  # hats and cymbals: the bands from here up
LOW_WEIGHT = 0.5  # share of the rise below HIGH_HZ taken off the rise above it


def _high_rise(feature: FeatureData, grid: _Grid) -> np.ndarray | None:
    """Standardised (high-band rise − ``LOW_WEIGHT`` × low-band rise) per pooled frame, or ``None``.

    The rise is the content evidence's own (:func:`~kmidi_ingest.content._observations`: the
    same pooled frames, floor and silence rule)."""
    centres = band_centres_hz(
        n_mels=feature.n_mels, fmin_hz=feature.fmin_hz, fmax_hz=feature.fmax_hz
    )
    high = centres >= HIGH_HZ
    if high.sum() < 2 or (~high).sum() < 2:
        return None
    observed = _observations(feature, grid)
    if isinstance(observed, str):  # silent or too short
        return None
    _pooled, rise = observed
    curve = rise[high].mean(axis=0) - LOW_WEIGHT * rise[~high].mean(axis=0)
    centred = curve - curve.mean()
    std = float(centred.std())
    return centred / std if std > 1e-9 else None


def kit_evidence(
    tracks: Sequence[tuple[np.ndarray, bool]], features: Sequence[FeatureData]
) -> np.ndarray:
    """The kit ``z`` of every drum track × stem, shape ``(n_tracks, n_stems)``.

    Parameters
    ----------
    tracks : sequence of (notes, is_drum)
        Each track's ``midi.NOTE_DTYPE`` notes (``start_s`` in seconds, ``pitch`` the GM key)
        and whether it is a drum track.
    features : sequence of FeatureData
        The stems' stored log-mel features (dB, any rate and hop).

    Returns
    -------
    numpy.ndarray
        The z (standard deviations of the circular-shift null) at the best lag within
        ±``MAX_LAG_S``; NaN for pitched tracks, for fewer than ``MIN_NOTES`` hits
        inside the audio, and for a silent, short or band-limited stem.
    """
    out = np.full((len(tracks), len(features)), np.nan)
    drums = [i for i, (_, is_drum) in enumerate(tracks) if is_drum]
    if not drums:
        return out
    for j, feature in enumerate(features):
        grid = _grid(feature)  # the content evidence's pooled frames
        n, grid_hz = grid.n_frames, grid.rate_hz
        lags = np.arange(n)
        signed = np.where(lags > n // 2, lags - n, lags) / grid_hz
        window = np.abs(signed) <= MAX_LAG_S
        null = np.abs(signed) >= NULL_GUARD_S
        if n < 4 or null.sum() / grid_hz < MIN_NULL_S:
            continue
        observed = _high_rise(feature, grid)
        if observed is None:
            continue
        spectrum = np.fft.rfft(observed)
        for i in drums:
            notes = tracks[i][0]
            frames = np.round(notes["start_s"] * grid_hz).astype(np.int64)
            frames = frames[(frames >= 0) & (frames < n)]
            if len(np.unique(frames)) < MIN_NOTES:
                continue
            train = np.bincount(frames, minlength=n).astype(np.float64)
            train -= train.mean()
            norm = float(np.linalg.norm(train))
            if norm < 1e-9:
                continue
            # correlation at lag k: the stem k frames after the hits (k > 0: audio comes later)
            curve = np.fft.irfft(spectrum * np.conj(np.fft.rfft(train)), n=n) / (norm * np.sqrt(n))
            base = curve[null]
            spread = float(base.std())
            if spread < 1e-12:
                continue
            out[i, j] = float((curve[window].max() - base.mean()) / spread)
    return out
