"""The local executor: compute cues here or in a process pool; this process writes them.

SQLite allows one writer, so workers only compute and return a :class:`CueResult` (its MIDI
rows staged in a SQLite file on SQLite, see :mod:`kmidi_ingest.staging`); the main process
claims, writes and accounts, in job order.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from queue import Empty
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from ..claims import CueClaims
from ..discover import CueSource
from ..errors import WorkerDied
from ..match import Matcher
from ..results import CueResult
from . import compute
from .accounting import claim_job
from .compute import CueSpec
from .planning import Computed, Job, reusable_fingerprint
from .reports import CueOutcome, Elsewhere, Unchanged
from .writer import write_outcome

if TYPE_CHECKING:
    from multiprocessing.queues import Queue

    ProgressQueue = Queue[float]  # audio seconds, from the workers to this process

log = logging.getLogger(__name__)


def local_outcomes(
    engine: Engine,
    jobs: list[Job],
    spec: CueSpec,
    force: bool,
    workers: int,
    stop: threading.Event,
    audio_progress: Callable[[float], None] | None,
    *,
    run_id: int,
    llm: Matcher | None,
) -> Iterator[CueOutcome]:
    """Compute the jobs here or in a process pool and write them from this process, in order."""
    with CueClaims(engine) as claims:

        def claim(job: Job) -> Job | None:
            return claim_job(claims, engine, job, spec, force)

        for (cue, _fp, known), computed in _compute(
            jobs, spec, force, workers, stop, audio_progress, claim
        ):
            try:
                if isinstance(computed, Elsewhere):
                    yield CueOutcome(rel_path=cue.rel_path, status="elsewhere")
                else:
                    yield write_outcome(engine, cue, known, computed, run_id=run_id, llm=llm)
            finally:
                claims.release(cue.rel_path)


def _compute(
    jobs: list[Job],
    spec: CueSpec,
    force: bool,
    workers: int,
    stop: threading.Event,
    audio_progress: Callable[[float], None] | None,
    claim: Callable[[Job], Job | None],
) -> Iterator[tuple[Job, Computed]]:
    """Yield each job (as ``claim`` returned it) with its outcome, in job order; exceptions are
    yielded, not raised. ``claim`` is called just before a job starts; a job it refuses (None)
    is not computed and comes back with :class:`Elsewhere`.

    Stops early once ``stop`` is set: the cues already handed to a worker are finished and
    yielded, no other is started. At most ``2 × workers`` results wait in memory.
    """
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            if stop.is_set():
                return
            try:
                claimed = claim(job)
                if claimed is None:
                    yield job, Elsewhere()
                    continue
                cue, stat_fp, known = job = claimed
                computed = compute.process_cue(
                    cue,
                    spec,
                    stat_fingerprint=stat_fp,
                    stored_content_fingerprint=reusable_fingerprint(
                        known, spec.sample_rate_hz, force
                    ),
                    progress=audio_progress,
                )
                # Staged here too (not spilled: this process holds one cue at a time).
                yield job, compute.hand_off(computed, replace(spec, spill_midi_bytes=None))
            except Exception as exc:  # a bug or an unexpected failure fails only this cue
                yield job, exc
        return
    relays: list[threading.Thread] = []
    done = threading.Event()

    def new_queue() -> ProgressQueue | None:
        if audio_progress is None:
            return None
        queue: ProgressQueue = multiprocessing.get_context().Queue()
        relay = threading.Thread(target=_relay, args=(queue, audio_progress, done), daemon=True)
        relay.start()
        relays.append(relay)
        return queue

    try:
        yield from _compute_in_pool(jobs, spec, force, workers, stop, new_queue, claim)
    finally:
        done.set()  # the pool has shut down: its workers flushed what they put
        for relay in relays:
            relay.join(timeout=5.0)


def _compute_in_pool(
    jobs: list[Job],
    spec: CueSpec,
    force: bool,
    workers: int,
    stop: threading.Event,
    new_queue: Callable[[], ProgressQueue | None],
    claim: Callable[[Job], Job | None],
) -> Iterator[tuple[Job, Computed]]:
    """The process-pool part of :func:`_compute`.

    A worker that dies (``kill -9``, the out-of-memory killer, a crash in native code) breaks
    the whole pool. The cue it held comes back as :class:`WorkerDied`; a new pool takes over and
    computes again the other cues that were in flight (each job is yielded exactly once).
    """
    # Per job: pid of the worker computing it, negated once it is done (shared memory, so it
    # survives the worker being killed; a queue's message could be lost with it).
    slots = multiprocessing.get_context().RawArray("q", len(jobs))
    pool = _Pool(min(workers, len(jobs)), slots, new_queue)
    pending: Iterator[tuple[int, Job]] = iter(enumerate(jobs))
    # Each job (with its index) with its future, or with what it is instead (Elsewhere, the
    # claim's error, WorkerDied).
    window: deque[tuple[int, Job, Future[CueResult | Unchanged] | Computed]] = deque()

    def submit() -> bool:
        item = next(pending, None)
        if item is None:
            return False
        index, job = item
        try:
            claimed = claim(job)
        except Exception as exc:
            window.append((index, job, exc))
            return True
        if claimed is None:
            window.append((index, job, Elsewhere()))
            return True
        try:
            future = pool.submit(index, claimed, spec, force)
        except BrokenProcessPool as exc:  # a worker died since the last result: recovered below
            future = Future()
            future.set_exception(exc)
        window.append((index, claimed, future))
        return True

    try:
        while sum(isinstance(w, Future) for *_, w in window) < 2 * workers and submit():
            pass
        while window:
            if stop.is_set():
                # Keep only what a worker already holds (or a death already seen); drop the rest.
                window = deque(
                    (i, job, w)
                    for i, job, w in window
                    if (isinstance(w, Future) and not w.cancel()) or isinstance(w, WorkerDied)
                )
                pending = iter(())
                if not window:
                    return
            index, job, work = window.popleft()
            result: Computed
            if isinstance(work, Future):
                try:
                    result = work.result()
                except BrokenProcessPool:
                    window.appendleft((index, job, work))
                    window = pool.replace(window, spec, force, stop)
                    continue
                except Exception as exc:
                    result = exc
                if not stop.is_set():
                    while submit() and not isinstance(window[-1][2], Future):
                        pass  # refill the one worker slot this job freed
            else:
                result = work
            yield job, result
    finally:
        for *_, work in window:
            if isinstance(work, Future):
                work.cancel()
        pool.shutdown()


_Window = deque[tuple[int, Job, "Future[CueResult | Unchanged] | Computed"]]


class _Pool:
    """A process pool that is replaced when one of its workers dies."""

    def __init__(
        self,
        size: int,
        slots: Any,
        new_queue: Callable[[], ProgressQueue | None],
    ) -> None:
        self._size = size
        self._slots = slots
        self._new_queue = new_queue
        self._processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # A new progress queue too: a killed worker may have died holding the old one's lock.
        return ProcessPoolExecutor(
            max_workers=self._size,
            initializer=_init_worker,
            initargs=(os.getpid(), self._new_queue(), self._slots),
        )

    def submit(
        self, index: int, job: Job, spec: CueSpec, force: bool
    ) -> Future[CueResult | Unchanged]:
        cue, stat_fp, known = job
        self._slots[index] = 0
        future = self._executor.submit(
            _process_cue_in_worker,
            index,
            cue,
            spec,
            stat_fingerprint=stat_fp,
            stored_content_fingerprint=reusable_fingerprint(known, spec.sample_rate_hz, force),
        )
        # The worker processes, for their exit codes once the pool breaks. ProcessPoolExecutor
        # keeps them in a private attribute (stable since Python 3.2); without it every cue in
        # flight on a dead pool is taken for the dead worker's.
        self._processes.update(getattr(self._executor, "_processes", None) or {})
        return future

    def replace(
        self, window: _Window, spec: CueSpec, force: bool, stop: threading.Event
    ) -> _Window:
        """Fail the jobs of the dead worker(s), start a new pool and resubmit the other jobs
        the broken pool held (unless ``stop`` is set: those are dropped, as unstarted ones)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        # Exit codes only once the broken pool has shut down: a worker killed a moment ago may
        # not have been reaped yet (exit code None), which would make every cue in flight a
        # suspect. The broken pool terminates the others, so they end with -SIGTERM.
        for process in self._processes.values():
            process.join(timeout=5.0)
        dead = {
            pid: p.exitcode
            for pid, p in self._processes.items()
            # None: still alive; -SIGTERM: terminated by the broken pool, not dead on its own.
            if p.exitcode not in (None, 0, -signal.SIGTERM)
        }
        self._processes = {}
        broken = [
            (i, job, w)
            for i, job, w in window
            if isinstance(w, Future) and w.done() and isinstance(w.exception(), BrokenProcessPool)
        ]
        suspects = {i for i, *_ in broken if self._slots[i] > 0}  # started, not finished
        on_dead = {i for i in suspects if self._slots[i] in dead} if dead else suspects
        self._executor = self._start()
        renewed: _Window = deque()
        for i, job, work in window:
            if not any(i == b for b, *_ in broken):
                renewed.append((i, job, work))
            elif i in on_dead:
                exit_code = dead.get(self._slots[i])
                log.warning("worker died on %s (exit code %s)", job[0].rel_path, exit_code)
                renewed.append((i, job, WorkerDied.from_exit_code(exit_code)))
            elif not stop.is_set():
                renewed.append((i, job, self.submit(i, job, spec, force)))
        return renewed

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


_worker_progress: ProgressQueue | None = None  # in a pool worker: where audio seconds go
_worker_slots: Any = None  # in a pool worker: the job slots (see _compute_in_pool)


def _init_worker(parent_pid: int, progress: ProgressQueue | None, slots: Any) -> None:
    global _worker_progress, _worker_slots
    # Ctrl-C reaches the whole process group; the main process decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    _worker_progress = progress
    _worker_slots = slots


def _process_cue_in_worker(
    index: int,
    cue: CueSource,
    spec: CueSpec,
    *,
    stat_fingerprint: str,
    stored_content_fingerprint: str | None,
) -> CueResult | Unchanged:
    pid = os.getpid()
    _worker_slots[index] = pid
    try:
        result = compute.process_cue(
            cue,
            spec,
            stat_fingerprint=stat_fingerprint,
            stored_content_fingerprint=stored_content_fingerprint,
            progress=None if _worker_progress is None else _worker_progress.put,
        )
        return compute.hand_off(result, spec)
    finally:
        _worker_slots[index] = -pid


def _relay(queue: ProgressQueue, callback: Callable[[float], None], done: threading.Event) -> None:
    """Pass the workers' audio seconds to ``callback`` until ``done`` is set and all is read.

    This process only reads the queue: were a worker killed while writing to it, the main
    process could not be left waiting for the queue's lock.
    """
    while True:
        try:
            seconds = queue.get(timeout=0.1)
        except Empty:
            if done.is_set():
                return
            continue
        callback(seconds)


def _exit_with_parent(parent_pid: int) -> None:
    # A worker blocked on the task queue would wait forever for a parent killed with -9.
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)
