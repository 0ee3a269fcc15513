"""Content evidence: how much of a stem's stored log-mel spectrogram a MIDI track's notes explain.

For every track × stem pair of a cue, up to four *evidence curves* are computed over every
circular lag of the track's notes against the stem's frames (one FFT per track and per stem, on a
time grid pooled to about :data:`CURVE_RATE_HZ`; the stem's observations are projected on the
pitch templates, so a curve is a sum over the pitches the track plays, never over all bands):

``spectral`` (pitched tracks)
    Each note's fundamental and :data:`N_HARMONICS` harmonics are mapped to the mel bands they
    light (:func:`harmonic_templates`, the project's own Slaney mel filters), held for the
    note's duration (at most :data:`MAX_NOTE_S`), and correlated with the stem's log-mel after the
    per-band and per-frame means are removed (what stands out of the stem's average spectrum).
    The notes are also tried an octave lower and higher (published MIDI sits an octave off its
    audio, e.g. Slakh's bass); the best of the three counts.
``band onset``
    The same templates at the note starts only, against the stem's per-band spectral rise
    (positive frame-to-frame difference of the dB values): which bands start sounding when a
    note starts. Drum notes (channel 10) use frequency regions of the GM kit instead of
    harmonics (kick low, snare middle, hats and cymbals high; :data:`DRUM_REGIONS_HZ`).
``onset``
    Note starts (velocity weighted) against the stem's broadband spectral rise: the rhythm.
``ownership`` (pitched tracks, two stems or more)
    The held notes against the stem's share of the cue's power in each band and frame (minus
    its per-band mean): where the track's notes sound, does this stem, rather than another one,
    carry the energy.

Each curve is a Pearson correlation at every circular lag. The lags within ±:data:`MAX_LAG_S`
are where the stem may sit (a constant print offset); the lags beyond ±:data:`NULL_GUARD_S` form
the *null distribution*: the same notes circularly shifted in time, i.e. the same rhythm density,
register and note count, but out of place. Every curve is turned into z-scores against its own
null, the curves are summed and the sum is standardised against its null again (the curves follow
one another), and the best lag in the window gives the pair's ``z``, ``score`` (the mean
correlation there) and ``lag_s``. A stem in the
same song but not holding the notes (a backing band) matches a shifted copy of the notes about
as well as the notes themselves, so its ``z`` stays low; the stem that holds the notes is
explained only at its own lag.

Tracks of one song also share beats and chords, so every stem of the song follows every track
somewhat. :func:`_unique_shares` therefore fits all tracks' predictions jointly to each stem
(non-negative least squares, at the stem's lag) and credits each track with the variance only it
explains (``unique``), which is what tells which stem holds which track.

Everything is computed from the stored features (float16 log-mel, any rate and hop), nothing from
audio. Pure numpy/scipy: no librosa.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .audio import FeatureData, mel_filter_bank
from .mel import curve_pool, pool_frames, widen

MAX_LAG_S = 0.5  # a stem may sit this far from its MIDI (constant print offsets)
NULL_GUARD_S = 1.0  # lags nearer than this to 0 are neither the window nor the null
MIN_NULL_S = 1.5  # fewer seconds of null lags: no z (the audio is too short to judge)
N_HARMONICS = 8
MAX_NOTE_S = 4.0  # a held note's template stops here (real notes decay)
MIN_NOTES = 4  # fewer distinct note starts inside the audio: no evidence
SILENT_DB = -80.0  # a stem whose loudest band stays below this is silent
DYNAMIC_RANGE_DB = 80.0
OCTAVE_SHIFTS = (0, -12, 12)
# GM percussion key → frequency region (Hz) that the hit lights.
DRUM_REGIONS_HZ: dict[str, tuple[tuple[int, ...], float, float]] = {
    "kick": ((35, 36), 30.0, 150.0),
    "snare": ((37, 38, 39, 40), 150.0, 5000.0),
    "tom": ((41, 43, 45, 47, 48, 50), 70.0, 600.0),
    "hat": ((42, 44, 46), 5000.0, 16000.0),
    "cymbal": ((49, 51, 52, 53, 55, 57, 59), 3000.0, 16000.0),
    "hand": ((54, 56, 58, *range(60, 82)), 300.0, 8000.0),
}
DRUM_DEFAULT_HZ = (100.0, 10000.0)
CURVES = ("spectral", "band_onset", "onset", "ownership")
OCTAVE_PENALTY_Z = 1.0  # an octave-shifted reading must beat the written pitches by this much


@dataclass(frozen=True, kw_only=True)
class TrackNotes:
    """The notes of one track as the content evidence sees them.

    ``notes`` is a ``midi.NOTE_DTYPE`` array (``start_s``, ``end_s``, ``pitch``, ``velocity``
    are used); ``is_drum`` selects the drum regions instead of harmonic templates.
    """

    notes: np.ndarray
    is_drum: bool = False


@dataclass(frozen=True, kw_only=True)
class ContentEvidence:
    """Content evidence of every track × stem pair; arrays of shape ``(n_tracks, n_stems)``.

    ``z`` is the combined z-score at the best lag (NaN where there is no evidence, see
    ``reason``), ``score`` the mean correlation of the curves there, ``lag_s`` the lag (> 0: the
    audio comes later), ``z_curves`` the z of each of :data:`CURVES` at that lag (shape
    ``(n_tracks, n_stems, 4)``, NaN for a curve not used), ``notes_in_audio`` the distinct note
    starts inside the stem's duration, ``unique`` the track's unique share of the stem's
    variance in the joint fit (R², 0..1). ``reason[i][j]`` says why a pair has no ``z``;
    ``compute_s`` is the wall time spent and ``compute_cpu_s`` this process's CPU time (for the
    cost figure; on a shared machine the CPU time is the steadier of the two).
    """

    z: np.ndarray
    score: np.ndarray
    lag_s: np.ndarray
    z_curves: np.ndarray
    notes_in_audio: np.ndarray
    unique: np.ndarray
    reason: tuple[tuple[str | None, ...], ...]
    compute_s: float = 0.0
    compute_cpu_s: float = 0.0

    @classmethod
    def empty(cls, n_tracks: int, n_stems: int, reason: str | None = None) -> ContentEvidence:
        nan = np.full((n_tracks, n_stems), np.nan)
        return cls(
            z=nan,
            score=nan.copy(),
            lag_s=nan.copy(),
            z_curves=np.full((n_tracks, n_stems, len(CURVES)), np.nan),
            notes_in_audio=np.zeros((n_tracks, n_stems), dtype=np.int64),
            unique=nan.copy(),
            reason=tuple((reason,) * n_stems for _ in range(n_tracks)),
        )


def _band_response(
    freqs_hz: np.ndarray, *, sample_rate_hz: int, n_mels: int, fmin_hz: float, fmax_hz: float
) -> np.ndarray:
    """Response (peak 1) of each mel filter at each frequency, shape ``(*freqs.shape, n_mels)``."""
    n_fft = 16384  # a fine frequency grid: 1.3–2.9 Hz per bin at 22–48 kHz
    bank = mel_filter_bank(
        sample_rate_hz=sample_rate_hz, n_fft=n_fft, n_mels=n_mels, fmin_hz=fmin_hz, fmax_hz=fmax_hz
    )
    peak = bank.max(axis=1, keepdims=True)
    bank = np.divide(bank, peak, out=np.zeros_like(bank), where=peak > 0)
    bins = np.rint(np.asarray(freqs_hz) / (sample_rate_hz / n_fft)).astype(np.int64)
    inside = (bins >= 0) & (bins < bank.shape[1])
    out = np.zeros((*bins.shape, n_mels))
    out[inside] = bank[:, bins[inside]].T
    return out


@lru_cache(maxsize=8)
def harmonic_templates(
    *, sample_rate_hz: int, n_mels: int, fmin_hz: float, fmax_hz: float
) -> np.ndarray:
    """Mel bands lit by each MIDI pitch, shape ``(128, n_mels)``, each row scaled to unit norm.

    Row ``p`` sums the band responses at the fundamental ``440·2^((p−69)/12)`` Hz and its
    harmonics ``h = 2..N_HARMONICS``, weighted ``1/h``.
    """
    f0 = 440.0 * 2.0 ** ((np.arange(128) - 69) / 12.0)
    harmonics = np.arange(1, N_HARMONICS + 1)
    response = _band_response(
        np.outer(f0, harmonics),
        sample_rate_hz=sample_rate_hz,
        n_mels=n_mels,
        fmin_hz=fmin_hz,
        fmax_hz=fmax_hz,
    )  # (128, harmonics, n_mels)
    out = np.einsum("phb,h->pb", response, 1.0 / harmonics)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norm, out=np.zeros_like(out), where=norm > 0)


@lru_cache(maxsize=8)
def drum_templates(
    *, sample_rate_hz: int, n_mels: int, fmin_hz: float, fmax_hz: float
) -> np.ndarray:
    """Mel bands lit by each GM percussion key, shape ``(128, n_mels)``, rows of unit norm."""
    from .mel import band_centres_hz

    centres = band_centres_hz(n_mels=n_mels, fmin_hz=fmin_hz, fmax_hz=fmax_hz)
    out = np.zeros((128, n_mels))
    regions = {k: (lo, hi) for keys, lo, hi in DRUM_REGIONS_HZ.values() for k in keys}
    for key in range(128):
        lo, hi = regions.get(key, DRUM_DEFAULT_HZ)
        out[key] = (centres >= lo) & (centres <= hi)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norm, out=np.zeros_like(out), where=norm > 0)


@dataclass(frozen=True, kw_only=True)
class _Grid:
    rate_hz: float
    pool: int
    n_frames: int
    sample_rate_hz: int
    n_mels: int
    fmin_hz: float
    fmax_hz: float

    @property
    def template_key(self) -> dict[str, float]:
        return {
            "sample_rate_hz": self.sample_rate_hz,
            "n_mels": self.n_mels,
            "fmin_hz": self.fmin_hz,
            "fmax_hz": self.fmax_hz,
        }


def _grid(feature: FeatureData) -> _Grid:
    rate = feature.sample_rate_hz / feature.hop_length
    pool = curve_pool(feature.sample_rate_hz, feature.hop_length)
    return _Grid(
        rate_hz=rate / pool,
        pool=pool,
        n_frames=feature.values.shape[1] // pool,
        sample_rate_hz=feature.sample_rate_hz,
        n_mels=feature.n_mels,
        fmin_hz=feature.fmin_hz,
        fmax_hz=feature.fmax_hz,
    )


def _mean(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """``values.mean(axis)`` of a 1-D or 2-D array (keeping dimensions), through ``einsum``:
    numpy's pairwise reductions run about 3x slower on these shapes."""
    if axis is None:
        flat = values.reshape(-1)
        return np.asarray(np.einsum("i->", flat) / flat.size)
    spec = "ij->i" if axis == 1 else "ij->j"
    out = np.einsum(spec, values) / values.shape[axis]
    return out[:, None] if axis == 1 else out[None, :]


def _standardize(
    values: np.ndarray, *, overwrite: bool = False, centred_rows: bool = False
) -> np.ndarray | None:
    """``(values − mean) / std`` (None when constant); ``overwrite``: in ``values``' own memory;
    ``centred_rows``: each row of ``values`` already has zero mean (so has the whole), and only
    the scale is applied."""
    if overwrite and centred_rows:
        centred = values
    elif overwrite:
        values -= _mean(values)
        centred = values
    else:
        centred = values - _mean(values)
    flat = centred.reshape(-1)
    # the centred values' own mean is zero up to rounding: two passes fewer than .std()
    std = np.sqrt(np.einsum("i,i->", flat, flat) / flat.size)
    if not np.isfinite(std) or std < 1e-9:
        return None
    centred /= std
    return centred


@dataclass(frozen=True, kw_only=True)
class _Stem:
    """A stem's standardised observations on its grid, projected on the pitch templates.

    ``pitch_*`` have shape ``(128, bins)``: the rfft over time of ``templates @ observation``
    (what each MIDI pitch would see); ``drum_band`` likewise through the drum regions; ``onset``
    is the rfft of the broadband rise, shape ``(bins,)``.

    ``spectral`` is projected on every row a track may read (any octave reading); the other
    pitch observations only on the rows asked for (:func:`_need_rows`: once the spectral curve
    has chosen a track's octave, its other curves read that octave only). A row's projection
    does not depend on which other rows are projected with it.
    """

    pitch: dict[str, np.ndarray]
    drum_band: np.ndarray
    onset: np.ndarray
    observed: dict[str, np.ndarray]  # the standardised observations (n_mels, n)
    projected: dict[str, np.ndarray]  # (128,) bool: rows of ``pitch[kind]`` filled in
    templates: np.ndarray
    n_frames: int


def _need_rows(stem: _Stem, kind: str, rows: np.ndarray) -> None:
    """Fill in ``stem.pitch[kind]`` at ``rows`` (in place)."""
    from scipy.fft import rfft

    rows = rows[(rows >= 0) & (rows < 128)]
    missing = np.unique(rows[~stem.projected[kind][rows]])
    if not len(missing):
        return
    stem.pitch[kind][missing] = rfft(
        _sparse_rows(stem.templates, missing) @ stem.observed[kind], n=stem.n_frames, axis=1
    )
    stem.projected[kind][missing] = True


def _peak(values: np.ndarray) -> float:
    """``float(values.max())``; of float16 values through their bits (a SIMD integer max, where
    numpy's float16 max is emulated): above zero the bits order like the values, below zero
    (sign bit set, read as int16) the other way round."""
    if values.dtype != np.float16 or not values.size:
        return float(values.max())
    bits = values.view(np.int16)
    top = int(bits.max())
    best = top if top >= 0 else int(bits.min())
    return float(np.array([best], dtype=np.int16).view(np.float16)[0])


def _observations(feature: FeatureData, grid: _Grid) -> tuple[np.ndarray, np.ndarray] | str:
    """Pooled dB values ``(n_mels, n)`` and pooled per-band rise, or why there are none."""
    if grid.n_frames < 4:
        return "stem shorter than 4 feature frames"
    curve = feature.curve
    if curve is not None and curve.pool == grid.pool and curve.values.shape[1] >= grid.n_frames:
        peak = curve.peak_db  # pooled while the audio streamed: the same numbers, already there
        pooled = curve.values[:, : grid.n_frames]
    else:
        # float16 arithmetic is emulated (slow): widen each value once, exactly, before reducing
        values = np.asarray(feature.values)
        n = grid.n_frames * grid.pool
        pooled = pool_frames(widen(values[:, :n]).reshape(values.shape[0], grid.n_frames, -1))
        peak = _peak(values)
    if peak < SILENT_DB:
        return f"stem silent (loudest band {peak:.0f} dB)"
    pooled = np.maximum(pooled, np.float32(peak - DYNAMIC_RANGE_DB))
    # the rise between pooled frames: on the curves' grid, an onset is a rise like any other
    rise = np.empty_like(pooled)
    rise[:, 0] = 0.0
    np.subtract(pooled[:, 1:], pooled[:, :-1], out=rise[:, 1:])
    np.maximum(rise, 0.0, out=rise)
    return pooled, rise


# (id of the templates, rows) → (the templates themselves, held so that the id stays theirs; CSR)
_SPARSE_ROWS: dict[tuple[int, bytes], tuple[np.ndarray, Any]] = {}


def _sparse_rows(templates: np.ndarray, rows: np.ndarray) -> Any:
    """``templates[rows]`` as float32 CSR, built once per template set and rows (every stem
    of a cue reads the same rows)."""
    from scipy.sparse import csr_matrix

    key = (id(templates), rows.tobytes())
    cached = _SPARSE_ROWS.get(key)
    if cached is None or cached[0] is not templates:
        if len(_SPARSE_ROWS) >= 32:
            _SPARSE_ROWS.clear()
        cached = (templates, csr_matrix(templates[rows].astype(np.float32)))
        _SPARSE_ROWS[key] = cached
    return cached[1]


def _projections(templates: np.ndarray, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The rfft over time of ``templates[rows] @ values``, scattered into 128 rows."""
    from scipy.fft import rfft

    n = values.shape[1]
    out = np.zeros((128, n // 2 + 1), dtype=np.complex64)
    if len(rows):
        # a template lights a few bands per harmonic: sparse, 5-10x fewer products than dense
        sparse = _sparse_rows(templates, rows)
        out[rows] = rfft(sparse @ values.astype(np.float32, copy=False), axis=1)
    return out


def _stem(
    pooled: np.ndarray,
    rise: np.ndarray,
    share: np.ndarray | None,
    grid: _Grid,
    *,
    pitched_rows: np.ndarray,
    drum_rows: np.ndarray,
) -> _Stem | str:
    """The stem's observations, projected only on the pitch rows some track of the cue uses.

    ``rise`` and ``share`` are standardised in place (they are the caller's scratch).
    """
    from scipy.fft import rfft

    onset = _standardize(_mean(rise, axis=0)[0])
    spectral = pooled - _mean(pooled, axis=1)
    spectral -= _mean(spectral, axis=0)
    observed = {
        "spectral": _standardize(spectral, overwrite=True, centred_rows=True),
        "band_onset": _standardize(rise, overwrite=True),
    }
    if share is not None:
        share -= _mean(share, axis=1)
        observed["ownership"] = _standardize(share, overwrite=True, centred_rows=True)
    if onset is None or any(v is None for v in observed.values()):
        return "stem has no variation (constant spectrum)"
    templates = harmonic_templates(**grid.template_key)
    spectral_obs = observed["spectral"]
    band = observed["band_onset"]
    assert spectral_obs is not None and band is not None
    n = grid.n_frames
    pitch = {
        k: (
            _projections(templates, spectral_obs, pitched_rows)
            if k == "spectral"
            else np.zeros((128, n // 2 + 1), dtype=np.complex64)
        )
        for k in observed
    }
    done = np.zeros(128, dtype=bool)
    done[pitched_rows] = True
    return _Stem(
        pitch=pitch,
        drum_band=_projections(drum_templates(**grid.template_key), band, drum_rows),
        onset=np.asarray(rfft(onset.astype(np.float32))),
        observed={
            k: v.astype(np.float32, copy=False) for k, v in observed.items() if v is not None
        },
        projected={
            k: done.copy() if k == "spectral" else np.zeros(128, dtype=bool) for k in observed
        },
        templates=templates,
        n_frames=n,
    )


@dataclass(frozen=True, kw_only=True)
class _Track:
    """A track's rolls on a grid: rfft over time of the used pitches' rows, and their norms."""

    pitches: np.ndarray  # (k,) MIDI pitches used
    held: np.ndarray  # (k, bins), conjugated (ready for the correlation)
    onsets: np.ndarray  # (k, bins), conjugated
    onset: np.ndarray  # (bins,) broadband
    held_norm: dict[int, float]  # std of templates @ roll (per octave shift), for Pearson's r
    onsets_norm: dict[int, float]
    distinct: int
    held_roll: Any  # scipy.sparse csr (k, n) float32: the used pitches' rows (notes are sparse)
    onsets_roll: Any
    held_sums: np.ndarray  # (k,) row sums of the rolls
    onsets_sums: np.ndarray


def _rolls(notes: np.ndarray, grid: _Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Piano rolls on ``grid`` of the pitches used: held ``(k, n)`` (float32) and starts
    ``(k, n)`` (float64), the pitches ``(k,)`` and the number of distinct starts."""
    n = grid.n_frames
    start = np.floor(notes["start_s"] * grid.rate_hz).astype(np.int64)
    inside = (start >= 0) & (start < n)
    notes, start = notes[inside], start[inside]
    held_s = np.clip(notes["end_s"] - notes["start_s"], 0.0, MAX_NOTE_S)
    stop = np.minimum(n, np.maximum(start + 1, np.ceil((notes["start_s"] + held_s) * grid.rate_hz)))
    pitch = np.clip(notes["pitch"], 0, 127).astype(np.int64)
    used, row = np.unique(pitch, return_inverse=True)  # every note inside starts a used row
    k = len(used)
    weight = np.clip(notes["velocity"], 1, 127) / 127.0
    # bincount sums in the notes' order, as np.add.at does, and much faster
    onsets = np.bincount(row * n + start, weights=weight, minlength=k * n).reshape(k, n)
    cells = k * (n + 1)
    delta = np.bincount(row * (n + 1) + start, minlength=cells) - np.bincount(
        row * (n + 1) + stop.astype(np.int64), minlength=cells
    )
    # every note's stop lies after its start: the running counts never drop below zero
    held = np.cumsum(delta.reshape(k, n + 1), axis=1)[:, :n] > 0
    return held.astype(np.float32), onsets, used, int(len(np.unique(start)))


@lru_cache(maxsize=16)
def _template_gram(kind: str, **key: float) -> tuple[np.ndarray, np.ndarray]:
    """``T·Tᵀ`` (128, 128) and the row sums of ``T`` (128,) of the harmonic or drum templates."""
    templates = drum_templates(**key) if kind == "drum" else harmonic_templates(**key)
    return templates @ templates.T, templates.sum(axis=1)


def _projected_std(
    gram: tuple[np.ndarray, np.ndarray],
    products: np.ndarray,
    row_sums: np.ndarray,
    used: np.ndarray,
    shift: int,
    size: int,
) -> float:
    """Standard deviation of ``templates[used + shift].T @ roll`` without forming it.

    ``products`` is ``roll·rollᵀ`` and ``row_sums`` the roll's row sums (rows: ``used``).
    """
    rows = used + shift
    ok = (rows >= 0) & (rows < 128)
    if not ok.any():
        return 0.0
    tt, sums = gram
    square = float(np.sum(tt[np.ix_(rows[ok], rows[ok])] * products[np.ix_(ok, ok)])) / size
    mean = float(sums[rows[ok]] @ row_sums[ok]) / size
    return float(np.sqrt(max(square - mean * mean, 0.0)))


def _csr(dense: np.ndarray) -> Any:
    """``scipy.sparse.csr_matrix(dense)`` of a 2-D array, built from its flat nonzeros (the
    same matrix, without the COO detour)."""
    from scipy.sparse import csr_matrix

    flat = np.flatnonzero(dense)
    indptr = np.zeros(dense.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(dense, axis=1), out=indptr[1:])
    return csr_matrix((dense.ravel()[flat], flat % dense.shape[1], indptr), shape=dense.shape)


def _track(track: TrackNotes, grid: _Grid) -> _Track | int:
    """The track's rolls on ``grid``, or its number of distinct starts when too few."""
    from scipy.fft import rfft

    held, onsets64, used, distinct = _rolls(track.notes, grid)
    broadband = _standardize(onsets64.sum(axis=0))
    if distinct < MIN_NOTES or broadband is None:
        return distinct
    onsets = onsets64.astype(np.float32)
    shifts = (0,) if track.is_drum else OCTAVE_SHIFTS
    gram = _template_gram("drum" if track.is_drum else "harmonic", **grid.template_key)
    size = grid.n_mels * grid.n_frames
    held_roll = _csr(held)
    onsets_roll = _csr(onsets)
    held_products = (held_roll @ held_roll.T).toarray()
    onset_products = (onsets_roll @ onsets_roll.T).toarray()
    held_sums = np.asarray(held_roll.sum(axis=1)).ravel()
    onset_sums = np.asarray(onsets_roll.sum(axis=1)).ravel()
    return _Track(
        pitches=used,
        held=np.conj(rfft(held, axis=1)),
        onsets=np.conj(rfft(onsets, axis=1)),
        onset=np.asarray(rfft(broadband.astype(np.float32))),
        held_norm={
            s: _projected_std(gram, held_products, held_sums, used, s, size) for s in shifts
        },
        onsets_norm={
            s: _projected_std(gram, onset_products, onset_sums, used, s, size) for s in shifts
        },
        distinct=distinct,
        held_roll=held_roll,
        onsets_roll=onsets_roll,
        held_sums=held_sums,
        onsets_sums=onset_sums,
    )


def _lag_masks(grid: _Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = grid.n_frames
    lags = np.arange(n)
    lags = np.where(lags > n // 2, lags - n, lags)
    window = np.abs(lags) <= int(round(MAX_LAG_S * grid.rate_hz))
    null = np.abs(lags) >= int(round(NULL_GUARD_S * grid.rate_hz))
    return lags, window, null


def _z_rows(curves: np.ndarray, null: slice) -> np.ndarray:
    """Each row of ``curves`` ``(m, n)`` in z-scores against its own null lags."""
    values = curves[:, null]
    count = values.shape[1]
    mean = np.einsum("ij->i", values)[:, None] / count  # einsum: ~3x numpy's pairwise sums
    centred = values - mean
    std = np.sqrt(np.einsum("ij,ij->i", centred, centred)[:, None] / count)
    return (curves - mean) / np.maximum(std, 1e-12)


def _z_curve(curve: np.ndarray, null: slice) -> np.ndarray:
    """``curve`` in z-scores against its null lags."""
    return _z_rows(curve[None, :], null)[0]


def _lag_spectrum(
    roll: np.ndarray, pitches: np.ndarray, observed: np.ndarray, shift: int
) -> np.ndarray | None:
    """The rfft of :func:`_lag_products` (None: no row inside)."""
    rows = pitches + shift
    ok = (rows >= 0) & (rows < 128)
    if not ok.any():
        return None
    if not ok.all():
        roll, rows = roll[ok], rows[ok]
    if rows[-1] - rows[0] + 1 == len(rows):  # consecutive pitches: a view, no gathered copy
        product = roll * observed[rows[0] : rows[-1] + 1]
    else:
        product = roll * observed[rows]
    return np.asarray(product.sum(axis=0))


def _lag_products(
    roll: np.ndarray, pitches: np.ndarray, observed: np.ndarray, shift: int, n: int
) -> np.ndarray | None:
    """``Σ_t (templates @ roll)[t] · x[t + lag]`` at every circular lag (None: no row inside).

    ``roll`` is the conjugated rfft of the track's rows (pitches ``pitches``, read ``shift``
    semitones off); ``observed`` holds the rfft of ``templates @ x``, 128 rows. Since every
    circular lag of a standardised ``x`` sums to zero, the mean of the prediction drops out:
    divided by ``size · std(prediction)`` this is Pearson's r at every lag.
    """
    from scipy.fft import irfft

    spectrum = _lag_spectrum(roll, pitches, observed, shift)
    return None if spectrum is None else np.asarray(irfft(spectrum, n))


def _rows_needed(
    prepared: Sequence[_Track | int], tracks: Sequence[TrackNotes]
) -> tuple[np.ndarray, np.ndarray]:
    """Pitch rows the pitched tracks read (with octave shifts) and keys the drum tracks use."""
    pitched: set[int] = set()
    drums: set[int] = set()
    for track, notes in zip(prepared, tracks, strict=True):
        if isinstance(track, int):
            continue
        if notes.is_drum:
            drums.update(int(p) for p in track.pitches)
        else:
            rows = (track.pitches[:, None] + np.array(OCTAVE_SHIFTS)).ravel()
            pitched.update(rows[(rows >= 0) & (rows < 128)].tolist())
    return np.array(sorted(pitched), dtype=np.int64), np.array(sorted(drums), dtype=np.int64)


def _nnls_r2(gram: np.ndarray, cross: np.ndarray, norm2: float) -> float:
    from scipy.optimize import nnls

    if gram.shape[0] == 0:
        return 0.0
    try:
        factor = np.linalg.cholesky(gram + 1e-6 * np.eye(gram.shape[0]) * np.trace(gram))
    except np.linalg.LinAlgError:
        return 0.0
    target = np.linalg.solve(factor, cross)
    coef, _ = nnls(factor.T, target)
    return float((2 * coef @ cross - coef @ gram @ coef) / norm2)


@lru_cache(maxsize=16)
def _cross_gram(kinds: tuple[str, str], **key: float) -> np.ndarray:
    """``T_a·T_bᵀ`` (128, 128) of the harmonic (``"h"``) or drum (``"d"``) templates."""
    pick = {"h": harmonic_templates, "d": drum_templates}
    a, b = (pick[k](**key) for k in kinds)
    return a @ b.T


def _roll_products(
    prepared: Sequence[_Track | int],
) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """``held_a·held_bᵀ`` and ``onsets_a·onsets_bᵀ`` of every pair of prepared tracks (a ≤ b)."""
    out = {}
    for a, ta in enumerate(prepared):
        for b in range(a, len(prepared)):
            tb = prepared[b]
            if isinstance(ta, int) or isinstance(tb, int):
                continue
            out[(a, b)] = (
                (ta.held_roll @ tb.held_roll.T).toarray(),
                (ta.onsets_roll @ tb.onsets_roll.T).toarray(),
            )
    return out


def _unique_shares(
    cross: np.ndarray,
    fitted: list[tuple[int, _Track]],
    grid: _Grid,
    shift_of: dict[int, int],
    is_drum: list[bool],
    products: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]],
    gram_cache: dict[tuple[Any, ...], float],
) -> list[float]:
    """Variance of the stem each track explains that no other track of the cue explains.

    All tracks' predictions (held notes against the spectrum, note starts against the per-band
    rise) are fitted jointly to the stem (non-negative least squares); a track's unique share is
    the drop in R² when it is left out. Tracks in one song share chords and beats, so each alone
    explains some of every stem; jointly, the stem is credited to the tracks it holds.

    Computed in pitch space: a prediction is ``templatesᵀ @ roll``, so its inner products with
    another prediction or with the stem go through ``T·Tᵀ`` and the stem's template projections,
    never forming the ``(n_mels, n)`` predictions; ``cross`` holds each prediction's inner
    product with the stem's observations at the stem's lag (read off the tracks' lag products,
    :func:`_lag_products`). The predictions' inner products depend on
    the tracks and their octave readings only, not on the stem: ``gram_cache`` keeps them for
    the cue's other stems.
    """
    if not fitted:
        return []
    key = grid.template_key
    size = 2 * grid.n_mels * grid.n_frames
    sums = {"h": harmonic_templates(**key).sum(axis=1), "d": drum_templates(**key).sum(axis=1)}

    parts = []
    totals = np.zeros(len(fitted))
    for m, ((i, track), drum) in enumerate(zip(fitted, is_drum, strict=True)):
        rows = track.pitches + (0 if drum else shift_of.get(i, 0))
        ok = (rows >= 0) & (rows < 128)
        r = rows[ok]
        if drum:
            totals[m] = float(sums["d"][r] @ track.onsets_sums[ok])
        else:
            totals[m] = float(sums["h"][r] @ (track.onsets_sums[ok] + track.held_sums[ok]))
        parts.append(("d" if drum else "h", r, ok, i))
    gram = np.zeros((len(fitted), len(fitted)))
    for a, (kind_a, rows_a, ok_a, i_a) in enumerate(parts):
        for b in range(a, len(parts)):
            kind_b, rows_b, ok_b, i_b = parts[b]
            cache_key = (i_a, i_b, kind_a, kind_b, rows_a.tobytes(), rows_b.tobytes())
            if cache_key in gram_cache:
                gram[a, b] = gram[b, a] = gram_cache[cache_key]
                continue
            flip = i_a > i_b
            held_ab, onsets_ab = products[(i_b, i_a) if flip else (i_a, i_b)]
            if flip:
                held_ab, onsets_ab = held_ab.T, onsets_ab.T
            tt = _cross_gram((kind_a, kind_b), **key)[np.ix_(rows_a, rows_b)]
            value = float(np.sum(tt * onsets_ab[np.ix_(ok_a, ok_b)]))
            if kind_a == "h" and kind_b == "h":
                value += float(np.sum(tt * held_ab[np.ix_(ok_a, ok_b)]))
            gram[a, b] = gram[b, a] = gram_cache[cache_key] = value
    mean = totals / size
    std = np.sqrt(np.maximum(np.diag(gram) / size - mean**2, 1e-12))
    gram = (gram - size * np.outer(mean, mean)) / np.outer(std, std)
    cross = cross / std  # the stem's observations have zero mean: centring drops out
    full = _nnls_r2(gram, cross, float(size))
    out = []
    for k in range(len(fitted)):
        keep = [m for m in range(len(fitted)) if m != k]
        out.append(full - _nnls_r2(gram[np.ix_(keep, keep)], cross[keep], float(size)))
    return out


def _best_readings(
    name: str,
    requests: list[tuple[int, np.ndarray, np.ndarray, dict[int, float], np.ndarray]],
    *,
    n: int,
    size: int,
    null: slice,
    window: np.ndarray,
    curves_of: dict[int, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]],
    shift_of: dict[int, int],
    lag_products: dict[tuple[int, str, int], np.ndarray],
) -> None:
    """The curve ``name`` of each requested track at its best octave reading, into
    ``curves_of[i]`` (z, raw r); all the readings of one stem go through one inverse FFT.

    A request is ``(track, roll, observed, norms by octave shift, pitches)``. The spectral
    curve records each track's reading in ``shift_of``; the lag products of every reading are
    kept in ``lag_products`` (the joint fit reads them at the stem's lag).
    """
    from scipy.fft import irfft

    spectra, owners, shifts, scale = [], [], [], []
    for i, roll, observed, norms, pitches in requests:
        for shift, norm in norms.items():
            spectrum = _lag_spectrum(roll, pitches, observed, shift) if norm > 0 else None
            if spectrum is not None:
                spectra.append(spectrum)
                owners.append(i)
                shifts.append(shift)
                scale.append(size * norm)
    if not spectra:
        return
    products = np.asarray(irfft(np.array(spectra), n, axis=1))
    r = products / np.array(scale, dtype=np.float32)[:, None]
    zc = _z_rows(r, null)
    zc[np.array(shifts) != 0] -= OCTAVE_PENALTY_Z
    peaks = zc[:, window].max(axis=1)
    best: dict[int, int] = {}
    for row, (i, shift) in enumerate(zip(owners, shifts, strict=True)):
        lag_products[(i, name, shift)] = products[row]
        if i not in best or peaks[row] > peaks[best[i]]:  # the first of equal peaks
            best[i] = row
    for i, row in best.items():
        if name == "spectral":
            shift_of[i] = shifts[row]
        curves, raw = curves_of[i]
        curves[name], raw[name] = zc[row], r[row]


def content_evidence(
    tracks: Sequence[TrackNotes],
    stem_features: Sequence[FeatureData],
    *,
    weights: dict[str, float] | None = None,
) -> ContentEvidence:
    """Content evidence of every track × stem (see the module docstring).

    ``weights`` (for evaluation) weighs each curve's z in the combination (default 1 each).
    """
    import time

    started = time.perf_counter()
    started_cpu = time.process_time()
    weights = weights or {}
    n_tracks, n_stems = len(tracks), len(stem_features)
    z = np.full((n_tracks, n_stems), np.nan)
    score = np.full((n_tracks, n_stems), np.nan)
    lag_s = np.full((n_tracks, n_stems), np.nan)
    z_curves = np.full((n_tracks, n_stems, len(CURVES)), np.nan)
    notes_in_audio = np.zeros((n_tracks, n_stems), dtype=np.int64)
    unique = np.full((n_tracks, n_stems), np.nan)
    reason: list[list[str | None]] = [[None] * n_stems for _ in range(n_tracks)]

    grids = [_grid(f) for f in stem_features]
    observations = [_observations(f, g) for f, g in zip(stem_features, grids, strict=True)]
    # Each stem's share of the cue's power per band and frame (stems on one grid only).
    shares: list[np.ndarray | None] = [None] * n_stems
    by_grid: dict[_Grid, list[int]] = {}
    for j, obs in enumerate(observations):
        if not isinstance(obs, str):
            by_grid.setdefault(grids[j], []).append(j)
    for members in by_grid.values():
        if len(members) < 2:
            continue
        power = {}
        for j in members:
            obs_j = observations[j]
            assert not isinstance(obs_j, str)
            power[j] = np.exp(obs_j[0] * np.float32(np.log(10.0) / 10.0))  # 10^(dB/10)
        total = np.full_like(power[members[0]], 1e-12)
        for j in members:
            total += power[j]
        for j in members:
            shares[j] = power[j] / total

    track_cache: dict[_Grid, list[_Track | int]] = {}
    products: dict[_Grid, dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]] = {}
    gram_cache: dict[_Grid, dict[tuple[Any, ...], float]] = {}
    for j in range(n_stems):
        grid, obs = grids[j], observations[j]
        if isinstance(obs, str):
            for i in range(n_tracks):
                reason[i][j] = obs
            continue
        lags, window_mask, null_mask = _lag_masks(grid)
        if null_mask.sum() < MIN_NULL_S * grid.rate_hz:
            for i in range(n_tracks):
                reason[i][j] = (
                    f"audio too short for a null distribution ({grid.n_frames / grid.rate_hz:.1f} s)"
                )
            continue
        # the null lags are one run of the circle (|lag| ≥ the guard): a slice reads them in place
        null_at = np.flatnonzero(null_mask)
        null = slice(int(null_at[0]), int(null_at[-1]) + 1)
        assert len(null_at) == null.stop - null.start
        window = np.flatnonzero(window_mask)
        if grid not in track_cache:
            track_cache[grid] = [_track(t, grid) for t in tracks]
        pitched_rows, drum_rows = _rows_needed(track_cache[grid], tracks)
        stem = _stem(
            obs[0], obs[1], shares[j], grid, pitched_rows=pitched_rows, drum_rows=drum_rows
        )
        if isinstance(stem, str):
            for i in range(n_tracks):
                reason[i][j] = stem
            continue
        n = grid.n_frames
        size = grid.n_mels * n
        from scipy.fft import irfft

        prepared = track_cache[grid]
        shift_of: dict[int, int] = {}
        # (track, curve, octave reading) → unnormalised lag products
        lag_products: dict[tuple[int, str, int], np.ndarray] = {}
        curves_of: dict[int, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
        for i, track in enumerate(prepared):
            if isinstance(track, int):
                notes_in_audio[i, j] = track
                reason[i][j] = f"{track} distinct note start(s) inside the audio (< {MIN_NOTES})"
                continue
            notes_in_audio[i, j] = track.distinct
            curves_of[i] = ({}, {})
        if curves_of:
            onsets = np.asarray(
                irfft(
                    np.array([np.conj(t.onset) for t in prepared if not isinstance(t, int)])
                    * stem.onset,
                    n,
                    axis=1,
                )
            )
            onsets /= n
            onset_z = _z_rows(onsets, null)
            for row, (curves, raw) in enumerate(curves_of.values()):
                raw["onset"], curves["onset"] = onsets[row], onset_z[row]
        # the spectral curve chooses each track's octave reading for the other curves
        _best_readings(
            "spectral",
            [
                (i, t.held, stem.pitch["spectral"], t.held_norm, t.pitches)
                for i, t in enumerate(prepared)
                if i in curves_of and not isinstance(t, int) and not tracks[i].is_drum
            ],
            n=n,
            size=size,
            null=null,
            window=window,
            curves_of=curves_of,
            shift_of=shift_of,
            lag_products=lag_products,
        )
        # the other pitch observations are projected once per stem, on the rows read
        for name in ("band_onset", "ownership"):
            if name not in stem.pitch:
                continue
            wanted = [
                track.pitches + s
                for i, track in enumerate(prepared)
                if not isinstance(track, int) and not tracks[i].is_drum
                for s in ((shift_of[i],) if i in shift_of else OCTAVE_SHIFTS)
            ]
            if wanted:
                _need_rows(stem, name, np.concatenate(wanted))
        for name in ("band_onset", "ownership"):
            requests = []
            for i in curves_of:
                track = prepared[i]
                assert not isinstance(track, int)
                if tracks[i].is_drum:
                    if name == "band_onset":
                        requests.append(
                            (i, track.onsets, stem.drum_band, track.onsets_norm, track.pitches)
                        )
                    continue
                if name not in stem.pitch:
                    continue
                roll, norms = (
                    (track.onsets, track.onsets_norm)
                    if name == "band_onset"
                    else (track.held, track.held_norm)
                )
                if i in shift_of:  # one octave reading per pair
                    norms = {shift_of[i]: norms[shift_of[i]]}
                requests.append((i, roll, stem.pitch[name], norms, track.pitches))
            _best_readings(
                name,
                requests,
                n=n,
                size=size,
                null=null,
                window=window,
                curves_of=curves_of,
                shift_of=shift_of,
                lag_products=lag_products,
            )
        for i, (curves, raw) in curves_of.items():
            names = [c for c in CURVES if c in curves and weights.get(c, 1.0) > 0]
            names = names or [c for c in CURVES if c in curves]
            w = np.array([weights.get(c, 1.0) or 1.0 for c in names])
            combined = np.tensordot(w, np.array([curves[c] for c in names]), axes=1)
            # the curves follow one another (the same note times), so their sum is standardised
            # against its own null again rather than divided by sqrt(k)
            combined = _z_curve(combined, null)
            pick = window[int(np.argmax(combined[window]))]
            z[i, j] = float(combined[pick])
            score[i, j] = float(np.mean([raw[c][pick] for c in names]))
            lag_s[i, j] = float(lags[pick]) / grid.rate_hz
            for c, name in enumerate(CURVES):
                if name in curves:
                    z_curves[i, j, c] = float(curves[name][pick])
        column = z[:, j]
        if np.isfinite(column).any():
            lead = int(np.nanargmax(column))
            shift_frames = int(round(lag_s[lead, j] * grid.rate_hz))
            fitted = [(i, t) for i, t in enumerate(prepared) if not isinstance(t, int)]
            cross = np.zeros(len(fitted))
            for m, (i, t) in enumerate(fitted):
                kinds = ("band_onset",) if tracks[i].is_drum else ("band_onset", "spectral")
                shift = 0 if tracks[i].is_drum else shift_of.get(i, 0)
                for name in kinds:
                    product = lag_products.get((i, name, shift))
                    if product is None:  # a curve without variance: not among the lag products
                        observed = stem.drum_band if tracks[i].is_drum else stem.pitch[name]
                        roll = t.onsets if name == "band_onset" else t.held
                        if name == "band_onset" and not tracks[i].is_drum:
                            _need_rows(stem, name, t.pitches + shift)
                        product = _lag_products(roll, t.pitches, observed, shift, n)
                    if product is not None:
                        # the prediction at the stem's lag: Σ roll[t]·x[t + shift_frames]
                        cross[m] += float(product[shift_frames % n])
            if grid not in products:
                products[grid] = _roll_products(prepared)
                gram_cache[grid] = {}
            shares_ij = _unique_shares(
                cross,
                fitted,
                grid,
                shift_of,
                [tracks[i].is_drum for i, _ in fitted],
                products[grid],
                gram_cache[grid],
            )
            for (i, _), value in zip(fitted, shares_ij, strict=True):
                unique[i, j] = value
    return ContentEvidence(
        z=z,
        score=score,
        lag_s=lag_s,
        z_curves=z_curves,
        notes_in_audio=notes_in_audio,
        unique=unique,
        reason=tuple(tuple(row) for row in reason),
        compute_s=time.perf_counter() - started,
        compute_cpu_s=time.process_time() - started_cpu,
    )
