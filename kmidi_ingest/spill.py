"""Hand a cue's MIDI data from a worker to the writing process through a temporary file.

A cue folder of a MIDI collection can hold hundreds of files (Lakh's layout: 10,000 files in 16
folders). Returned whole from a worker, such a cue sits in the writer's memory as one object
(about 1 GB for a 600-file folder, times the results waiting to be written). A worker instead
writes each file's :class:`~kmidi_ingest.midi.MidiData` to a temporary file and returns a
:class:`SpilledMidi` in its place: a sequence that reads one file's data back when it is asked
for it. The writer then holds one file (plus a batch of rows) at a time, so its peak memory is
bounded by the spill threshold, not by the size of a folder.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import overload

from .midi import MidiData
from .results import CueResult
from .staging import StagedMidi


@dataclass(frozen=True)
class SpilledMidi(Sequence[MidiData]):
    """The MIDI files of one cue, stored one after the other (pickled) in the file ``path``.

    ``offsets`` has one more entry than there are files: file ``i`` is the bytes
    ``offsets[i]:offsets[i + 1]``. Each access reads and decodes that file again (nothing is
    kept), so iterate once where possible.
    """

    path: str
    offsets: tuple[int, ...]
    # What the writer reports without reading the files back.
    paths: tuple[str, ...] = ()
    instrument_tracks: int = 0
    notes_total: int = 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, index: int) -> MidiData: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[MidiData]: ...

    def __getitem__(self, index: int | slice) -> MidiData | Sequence[MidiData]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        with open(self.path, "rb") as f:
            f.seek(self.offsets[index])
            return self._load(f.read(self.offsets[index + 1] - self.offsets[index]))

    def __iter__(self) -> Iterator[MidiData]:
        with open(self.path, "rb") as f:
            for start, end in zip(self.offsets, self.offsets[1:], strict=False):
                yield self._load(f.read(end - start))

    @staticmethod
    def _load(raw: bytes) -> MidiData:
        data = pickle.loads(raw)
        assert isinstance(data, MidiData)
        return data

    def remove(self) -> None:
        """Delete the file (once the cue is written, or given up)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def midi_nbytes(result: CueResult) -> int:
    """Bytes of the event arrays of ``result``'s MIDI files (what spilling takes off the writer)."""
    return sum(
        array.nbytes
        for data in result.midi
        for track in data.tracks
        for array in (
            track.notes,
            track.cc,
            track.program_changes,
            track.pitch_bends,
            track.aftertouch,
        )
    )


def spill(result: CueResult, *, directory: str | None = None) -> CueResult:
    """``result`` with its MIDI data moved to a temporary file in ``directory`` (default: the
    system's temporary folder); the caller of the returned result removes it (:func:`discard`)."""
    fd, path = tempfile.mkstemp(prefix="kmidi-midi-", suffix=".pickle", dir=directory)
    offsets = [0]
    try:
        with os.fdopen(fd, "wb") as f:
            for data in result.midi:
                offsets.append(offsets[-1] + f.write(pickle.dumps(data, pickle.HIGHEST_PROTOCOL)))
    except BaseException:
        os.unlink(path)
        raise
    return replace(
        result,
        midi=SpilledMidi(
            path,
            tuple(offsets),
            paths=tuple(str(d.path) for d in result.midi),
            instrument_tracks=sum(len(d.instrument_tracks) for d in result.midi),
            notes_total=sum(d.notes_total for d in result.midi),
        ),
    )


def totals(midi: Sequence[MidiData]) -> tuple[int, int, tuple[str, ...]]:
    """``(instrument parts, notes, file paths)`` of a cue's MIDI files (a spilled cue's without
    reading its files back, a staged cue's without its rows)."""
    if isinstance(midi, SpilledMidi | StagedMidi):
        return midi.instrument_tracks, midi.notes_total, midi.paths
    return (
        sum(len(d.instrument_tracks) for d in midi),
        sum(d.notes_total for d in midi),
        tuple(str(d.path) for d in midi),
    )


def discard(result: object) -> None:
    """Remove the temporary file of a spilled or staged result (nothing for any other value)."""
    midi = getattr(result, "midi", None)
    if isinstance(midi, SpilledMidi | StagedMidi):
        midi.remove()
