"""Large task results between the pool's processes through shared memory, not the pool's pipes.

A stem's outcome is ~4.4 MB (its float16 log-mel, the encoded bytes, the pooled curve) and an
audio cue's result ~27 MB. Through the process pool's pipe such an object is pickled, written
64 KiB at a time, read back into a new buffer and unpickled: ~150 ms for 35 MB on this
project's 2-core machines (~250 MB/s), and a split cue's stems cross twice (worker → main
process → the worker that finishes the cue) before the cue crosses once more. :func:`ship`
instead writes the object to a file in a RAM-backed folder (``/dev/shm``), its numpy arrays as
pickle protocol 5 out-of-band buffers, and only the file's name crosses the pipe;
:func:`unship` maps the file (copy-on-write) and loads the arrays straight from the mapping:
~30 ms for the same 35 MB, there and back.

The main process owns the folder (:func:`ship_folder`) and every file in it: it removes a file
once nothing needs it (:func:`discard`) and the folder when the pool closes; a folder left by a
process that died is removed by the next pool. Where there is no ``/dev/shm`` the system's
temporary folder is used; where a file cannot be written (e.g. a container's small
``/dev/shm`` is full) the object goes through the pipe as before.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHARED_MEMORY = Path("/dev/shm")
PREFIX = "kmidi-ship-"
_WORD = 8  # bytes of each length in a file's header


@dataclass(frozen=True)
class Shipped:
    """An object written by :func:`ship`: the file holding it and its size in bytes."""

    path: str
    nbytes: int


def ship_folder(base: Path | None = None) -> str:
    """A new folder for this process's shipped objects, in ``base`` (default ``/dev/shm`` where
    it is a writable folder, else the system's temporary folder); the folders of processes that
    no longer run are removed first."""
    if base is None:
        base = SHARED_MEMORY
        if not (base.is_dir() and os.access(base, os.W_OK | os.X_OK)):
            base = Path(tempfile.gettempdir())
    remove_stale(base)
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base)


def remove_stale(base: Path) -> list[Path]:
    """Remove the ship folders in ``base`` whose process is gone; the folders removed."""
    removed = []
    for folder in base.glob(f"{PREFIX}*"):
        pid = folder.name[len(PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def ship(value: Any, folder: str) -> Shipped | Any:
    """``value`` written to a new file in ``folder``, as a :class:`Shipped`; ``value`` itself
    when the file cannot be written (nothing is left behind then)."""
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    views: list[bytes | memoryview] = [b.raw() for b in buffers]
    lengths = [len(head), *(memoryview(v).nbytes for v in views)]
    header = len(lengths).to_bytes(_WORD, "little") + b"".join(
        n.to_bytes(_WORD, "little") for n in lengths
    )
    path = None
    try:
        fd, path = tempfile.mkstemp(dir=folder, suffix=".pickle")
        with os.fdopen(fd, "wb") as handle:
            for part in (header, head, *views):  # no joined copy
                handle.write(part)
    except OSError:
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
        return value
    return Shipped(path=path, nbytes=len(header) + sum(lengths))


def unship(shipped: Shipped) -> Any:
    """The object of ``shipped``; its arrays are views of a private (copy-on-write) mapping of
    the file, so the file may be removed at once."""
    with open(shipped.path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size != shipped.nbytes:
            raise OSError(f"{shipped.path}: {size} bytes, {shipped.nbytes} were written")
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    view = memoryview(mapped)
    count = int.from_bytes(view[:_WORD], "little")
    lengths = [
        int.from_bytes(view[_WORD * (i + 1) : _WORD * (i + 2)], "little") for i in range(count)
    ]
    offset = _WORD * (count + 1)
    parts = []
    for length in lengths:
        parts.append(view[offset : offset + length])
        offset += length
    return pickle.loads(parts[0], buffers=parts[1:])


def discard(shipped: Any) -> None:
    """Remove the file of ``shipped`` (nothing for an object that is no :class:`Shipped`)."""
    if isinstance(shipped, Shipped):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(shipped.path)


def received(value: Any) -> Any:
    """``value`` as the receiving process uses it: a :class:`Shipped` loaded and its file
    removed, anything else as it is."""
    if not isinstance(value, Shipped):
        return value
    try:
        return unship(value)
    finally:
        discard(value)
