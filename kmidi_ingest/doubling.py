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


def _keys(notes: np.ndarray, until_s: float | None, tolerance_s: float) -> np.ndarray:
    starts = np.asarray(notes["start_s"], dtype=np.float64)
    pitch = np.asarray(notes["pitch"], dtype=np.int64)
    if until_s is not None:
        keep = starts < until_s
        starts, pitch = starts[keep], pitch[keep]
    slot = np.rint(starts / tolerance_s).astype(np.int64)
    return np.unique(slot * 12 + pitch % 12)


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
    keys = [_keys(n, until_s, tolerance_s) for n in notes]
    out = np.zeros((len(keys), len(keys)))
    for k, theirs in enumerate(keys):
        if not len(theirs):
            continue
        # a start one slot early or late is the same note (rounding at a slot's edge)
        near = np.unique(np.concatenate([theirs - 12, theirs, theirs + 12]))
        for i, mine in enumerate(keys):
            if i != k and len(mine):
                out[i, k] = np.isin(mine, near, assume_unique=True).mean()
    return out
