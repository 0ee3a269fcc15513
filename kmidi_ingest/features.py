"""Compact binary encoding of feature matrices, split into chunks that fit any target database.

A matrix is serialised as the bytes of a ``.npy`` file (dtype and shape in its header); a *codec*
then compresses those bytes, and the result is cut into chunks of at most :data:`CHUNK_BYTES`.
The row's ``sha256`` is always that of the ``.npy`` bytes, so :func:`decode` checks what it
returns, whatever the codec.

Codecs (the name is stored in ``audio_features.codec``):

``None``
    The ``.npy`` bytes as they are: rows written before codecs existed.
:data:`LOSSLESS` (``blosc2-zstd1-shuffle-bytedelta``)
    blosc2 (a C-Blosc2 frame-less chunk): byte shuffle by item size, then byte delta along each
    shuffled stream (along time, the matrix being C-order ``(n_mels, n_frames)``), then zstd
    level 1. Decodes bit-exact, NaN payloads and signed zeros included.
:data:`QUANTISED` (``blosc2-zstd1-shuffle-bytedelta-q1/16dB``)
    The same after rounding every value to the nearest multiple of :data:`QUANTISED_STEP_DB`
    (1/16 dB, ties to even). A float16 already has that spacing between 64 and 128 dB (and a
    coarser one above), so values of magnitude 64 dB or more are unchanged; smaller ones move by at
    most 1/32 dB, the rounding float16 itself applies to every value of -64 to -128 dB. NaN,
    infinities and the sign of zero are kept (NaN payload bits are not). No lossless codec
    measured reaches 0.9 MB per stem-minute (48 kHz) on dense bands and mixes (0.94-1.07, zstd
    level 9 included); this one stores 0.70-0.84 (benchmarks/bench_features.py). It is
    :data:`DEFAULT_CODEC`; :func:`decode` returns the rounded matrix bit-exact.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .errors import StoreError

CHUNK_BYTES = 1 << 20  # Aurora DSQL caps a column value at 1 MiB
LOSSLESS = "blosc2-zstd1-shuffle-bytedelta"
QUANTISED = "blosc2-zstd1-shuffle-bytedelta-q1/16dB"
QUANTISED_STEP_DB = 1.0 / 16
CODECS: tuple[str | None, ...] = (None, LOSSLESS, QUANTISED)
DEFAULT_CODEC = QUANTISED
MAX_BLOSC2_BYTES = (1 << 31) - 1 - 32  # one blosc2 chunk holds < 2 GiB (minus its header)


class FeatureCodecError(StoreError, ValueError):
    """Feature bytes cannot be encoded or decoded (unknown codec, corrupt or incomplete)."""


def quantise_db(values: np.ndarray, *, step_db: float = QUANTISED_STEP_DB) -> np.ndarray:
    """Round dB values to the nearest multiple of ``step_db`` (ties to even), same dtype.

    ``step_db`` must be a power of two (``1/16`` by default), so that every multiple of it within
    the dtype's range near zero is representable and the rounding is exact; values already on the
    grid (for float16 and 1/16 dB: every value of magnitude >= 64) come back unchanged, as do
    ±inf and ±0.0; NaN stays NaN (its payload bits may not). Non-float arrays are returned as they are.

    Parameters
    ----------
    values : np.ndarray
        Any shape, dB.
    step_db : float
        Grid step, dB; a power of two.

    Returns
    -------
    np.ndarray
        Same shape and dtype; ``|result - values| <= step_db / 2`` elementwise.
    """
    if not np.issubdtype(values.dtype, np.floating):
        return values
    mantissa, _ = np.frexp(step_db)
    if step_db <= 0 or mantissa != 0.5:
        raise ValueError(f"quantisation step must be a positive power of two, got {step_db} dB")
    if values.dtype.itemsize > 4:  # x * scale could overflow: round only what is off the grid
        on_grid = ~(np.abs(values) < np.ldexp(1.0, 53) * step_db)
        with np.errstate(over="ignore", invalid="ignore"):
            return np.where(on_grid, values, np.rint(values / step_db) * step_db)
    # float16/32 in float32/64: scaling by a power of two and rint are exact there, and every
    # multiple of the step below the grid's limit is representable in the original dtype.
    wide = np.dtype(np.float32 if values.dtype.itemsize < 4 else np.float64)
    scale = 1.0 / step_db
    with np.errstate(invalid="ignore"):  # signalling NaNs stay NaN
        scaled: np.ndarray = values.astype(wide)
        scaled *= scale
        np.rint(scaled, out=scaled)
        scaled /= scale
        return scaled.astype(values.dtype)


def _npy_bytes(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(values), allow_pickle=False)
    return buffer.getvalue()


def _blosc2_params(typesize: int) -> dict[str, object]:
    import blosc2  # imported on use: nothing heavy at import time

    return {
        "codec": blosc2.Codec.ZSTD,
        "clevel": 1,
        "typesize": typesize,
        "nthreads": 1,  # ingest already runs one worker per core
        "filters": [blosc2.Filter.SHUFFLE, blosc2.Filter.BYTEDELTA],
        "filters_meta": [0, 0],
    }


def compress(data: bytes, *, codec: str | None, typesize: int = 2) -> bytes:
    """Return ``data`` (``.npy`` bytes of items of ``typesize`` bytes) compressed by ``codec``.

    ``codec`` is one of :data:`CODECS`; quantisation is not done here (see :func:`encode`), so
    :data:`LOSSLESS` and :data:`QUANTISED` compress the same way.
    """
    if codec is None:
        return data
    if codec not in CODECS:
        raise FeatureCodecError(f"unknown feature codec {codec!r}; known: {CODECS}")
    if len(data) > MAX_BLOSC2_BYTES:
        raise FeatureCodecError(
            f"feature of {len(data)} bytes exceeds one blosc2 chunk ({MAX_BLOSC2_BYTES} bytes)"
        )
    import blosc2

    return bytes(blosc2.compress2(data, **_blosc2_params(typesize)))


def decompress(data: bytes, *, codec: str | None) -> bytes:
    """Inverse of :func:`compress`: the ``.npy`` bytes."""
    if codec is None:
        return data
    if codec not in CODECS:
        raise FeatureCodecError(f"unknown feature codec {codec!r}; known: {CODECS}")
    import blosc2

    try:
        return bytes(blosc2.decompress2(data))
    except (RuntimeError, ValueError) as exc:
        raise FeatureCodecError(f"{codec} bytes do not decompress ({exc})") from exc


def encode(
    values: np.ndarray,
    *,
    codec: str | None = DEFAULT_CODEC,
    chunk_bytes: int = CHUNK_BYTES,
) -> tuple[list[bytes], str]:
    """Return ``(chunks, sha256)``: ``values`` encoded by ``codec``, cut into chunks.

    Parameters
    ----------
    values : np.ndarray
        The matrix, e.g. float16 of shape ``(n_mels, n_frames)``, dB.
    codec : str or None
        One of :data:`CODECS`; :data:`QUANTISED` first rounds ``values`` (:func:`quantise_db`).
    chunk_bytes : int
        Largest chunk, bytes.

    Returns
    -------
    tuple[list[bytes], str]
        At least one chunk (in ``chunk_index`` order), and the hex SHA-256 of the ``.npy`` bytes
        of the matrix :func:`decode` will return.
    """
    if codec == QUANTISED:
        values = quantise_db(values)
    npy = _npy_bytes(values)
    data = compress(npy, codec=codec, typesize=max(1, values.dtype.itemsize))
    chunks = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
    return chunks, hashlib.sha256(npy).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Encoded:
    """A feature matrix already encoded for storage (see :func:`encode`): what a worker hands the
    writer, so that compressing runs beside the other workers rather than in the one writing
    process."""

    codec: str | None
    chunks: tuple[bytes, ...]
    sha256: str  # of the ``.npy`` bytes :func:`decode` returns

    @property
    def byte_count(self) -> int:
        return sum(len(c) for c in self.chunks)


def encoded(
    values: np.ndarray, *, codec: str | None = DEFAULT_CODEC, chunk_bytes: int = CHUNK_BYTES
) -> Encoded:
    """:func:`encode` as an :class:`Encoded`."""
    chunks, digest = encode(values, codec=codec, chunk_bytes=chunk_bytes)
    return Encoded(codec=codec, chunks=tuple(chunks), sha256=digest)


def decode(chunks: Iterable[bytes], *, codec: str | None, sha256: str | None = None) -> np.ndarray:
    """Join chunks (in ``chunk_index`` order), decompress by ``codec`` and load the matrix.

    Raises
    ------
    FeatureCodecError
        When ``codec`` is unknown, the bytes do not decompress, or the ``.npy`` bytes do not
        match ``sha256`` (if given).
    """
    npy = decompress(b"".join(bytes(c) for c in chunks), codec=codec)
    if sha256 is not None and hashlib.sha256(npy).hexdigest() != sha256:
        raise FeatureCodecError(
            "feature bytes do not match their stored sha256 (corrupt or incomplete)"
        )
    return np.load(io.BytesIO(npy), allow_pickle=False)
