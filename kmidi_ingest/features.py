"""Compact binary encoding of feature matrices, split into chunks that fit any target database.

A matrix is stored as the bytes of a ``.npy`` file (dtype and shape in its header), cut into
chunks of at most :data:`CHUNK_BYTES`; :func:`decode` returns it bit-exact.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable

import numpy as np

CHUNK_BYTES = 1 << 20  # Aurora DSQL caps a column value at 1 MiB


def encode(values: np.ndarray, *, chunk_bytes: int = CHUNK_BYTES) -> tuple[list[bytes], str]:
    """Return ``(chunks, sha256)`` of the ``.npy`` encoding of ``values``."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(values), allow_pickle=False)
    data = buffer.getvalue()
    chunks = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
    return chunks, hashlib.sha256(data).hexdigest()


def decode(chunks: Iterable[bytes], *, sha256: str | None = None) -> np.ndarray:
    """Join chunks (in ``chunk_index`` order) and load the matrix; verify ``sha256`` if given."""
    data = b"".join(bytes(c) for c in chunks)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError("feature bytes do not match their stored sha256 (corrupt or incomplete)")
    return np.load(io.BytesIO(data), allow_pickle=False)
