"""Whether this process runs the numba kernels or their pure-Python references: rent, then buy.

Two steps have both: the MIDI track scan (:mod:`kmidi_ingest.smf_scan` against
:func:`kmidi_ingest.smf._parse_track_py`) and the binding of a staged cue's rows
(:mod:`kmidi_ingest.sqlite_bulk` against ``executemany``). Loading numba and a first cached
kernel costs a process about 0.7–1 s of CPU; once one kernel runs, the other costs ~0.01 s
more. So a process runs the references until they have cost it :data:`COMPILE_AFTER_S` of CPU
time together (process time: wall time on a loaded machine would switch too early), then the
kernels (never more than about twice the better choice; a short run or a test process never
pays the load).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

COMPILE_AFTER_S = 1.0
_python_s = 0.0  # CPU time this process has spent in the references while renting
_loaded = False  # a kernel has run in this process


def use_compiled() -> bool:
    """Whether the steps should run their kernels now."""
    return _loaded or _python_s >= COMPILE_AFTER_S


def loaded() -> None:
    """Record that a kernel is running in this process (numba is paid for)."""
    global _loaded
    _loaded = True


@contextlib.contextmanager
def renting() -> Iterator[None]:
    """Charge the CPU time of the block (a reference run while renting) to the budget."""
    global _python_s
    started = time.process_time()
    try:
        yield
    finally:
        _python_s += time.process_time() - started
