"""Doubled parts: which tracks of a cue play the same notes as another (read from the MIDI alone).

A part doubled in unison or at the octave (the same line given to two instruments, or one MIDI
track copied to two channels) has the same content evidence as its twin at every stem: the
audio cannot tell the two apart by where their notes sound, only by timbre. The decision
(:mod:`kmidi_ingest.assign`) therefore needs to know, from the notes themselves, which tracks are
doubled and by which instrument family.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOLERANCE_S = 0.02  # note starts this close (and of one pitch class) count as the same note


def _unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (by sorting: numpy's hashed ``unique`` is slower on these)."""
    ordered = np.sort(values)
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def _keys(notes: np.ndarray, until_s: float | None, tolerance_s: float) -> np.ndarray:
    starts = np.asarray(notes["start_s"], dtype=np.float64)
    pitch = np.asarray(notes["pitch"], dtype=np.int64)
    if until_s is not None:
        keep = starts < until_s
        starts, pitch = starts[keep], pitch[keep]
    slot = np.rint(starts / tolerance_s).astype(np.int64)
    return _unique(slot * 12 + pitch % 12)


def doubled_shares(
    notes: Sequence[np.ndarray], *, until_s: float | None = None, tolerance_s: float = TOLERANCE_S
) -> np.ndarray:
    """Share of each track's distinct note starts that another track also plays.

    Parameters
    ----------
    notes : sequence of numpy.ndarray
        One ``midi.NOTE_DTYPE`` array per track (``start_s`` in s and ``pitch`` are read).
    until_s : float, optional
        Only note starts before this time (s) count: the span the audio covers.
    tolerance_s : float
        Two starts within about this many seconds (one grid step either way) of one pitch
        class (unison or any octave) are the same note.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, n)``: entry ``[i, k]`` is the share (0..1) of track ``i``'s distinct
        (pitch class, start) pairs that track ``k`` plays too; 0 on the diagonal and for a track
        without notes.
    """
    from scipy.sparse import csr_matrix

    keys = [_keys(n, until_s, tolerance_s) for n in notes]
    n = len(keys)
    out = np.zeros((n, n))
    if not n or not any(len(k) for k in keys):
        return out
    every = np.concatenate(keys)
    vocabulary = _unique(np.concatenate([every - 12, every, every + 12]))
    rows = np.concatenate([np.full(len(k), i) for i, k in enumerate(keys)])
    ones = np.ones(len(every))
    mine = csr_matrix(
        (ones, (rows, np.searchsorted(vocabulary, every))), shape=(n, len(vocabulary))
    )
    # a start one slot early or late is the same note (rounding at a slot's edge)
    near = sum(
        csr_matrix(
            (ones, (rows, np.searchsorted(vocabulary, every + d))), shape=(n, len(vocabulary))
        )
        for d in (-12, 0, 12)
    )
    near.data[:] = 1.0  # a key and its neighbour may both be there: count the note once
    shared = (mine @ near.T).toarray()
    counts = np.array([len(k) for k in keys], dtype=np.float64)
    np.divide(shared, counts[:, None], out=out, where=counts[:, None] > 0)
    np.fill_diagonal(out, 0.0)
    return out
