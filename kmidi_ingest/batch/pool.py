"""The local executor: compute cues here or in a process pool; this process writes them.

SQLite allows one writer, so workers only compute and return a :class:`CueResult` (its MIDI
rows staged in a SQLite file on SQLite, see :mod:`kmidi_ingest.staging`); the main process
claims, writes and accounts, in job order.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import multiprocessing.process
import os
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import replace
from queue import Empty
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from .. import allocator
from ..claims import CueClaims
from ..discover import CueSource
from ..errors import WorkerDied
from ..match import Matcher
from ..results import CueResult
from . import compute, shipping
from .accounting import claim_job, claim_jobs
from .compute import CueSpec, StemOutcome
from .planning import Computed, Job, reusable_fingerprint
from .reports import CueOutcome, Elsewhere, Unchanged
from .shipping import Shipped
from .writer import write_all

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
    pool: WorkerPool | None = None,
) -> Iterator[CueOutcome]:
    """Compute the jobs here or in a process pool and write them from this process, in order.

    ``pool``: a pool started beforehand (:func:`start_pool`), used when there are tasks for
    two workers or more; the caller closes it. Without one, a pool is started here when needed.
    """
    with CueClaims(engine) as claims:
        claim = _ClaimAhead(claims, jobs, spec, force)
        computed_jobs = _compute(jobs, spec, force, workers, stop, audio_progress, claim, pool)
        yield from write_all(engine, computed_jobs, claims, run_id=run_id, llm=llm)


CLAIM_AHEAD = 32  # jobs claimed (and their stored rows read) in one round trip


class _ClaimAhead:
    """:func:`~.accounting.claim_job` for jobs asked for in their order, claimed
    :data:`CLAIM_AHEAD` at a time (:func:`~.accounting.claim_jobs`): with claims (a shared
    PostgreSQL database) two round trips per batch instead of four per cue. A run that stops
    early releases the claims it did not use when it closes its claims."""

    def __init__(self, claims: CueClaims, jobs: list[Job], spec: CueSpec, force: bool) -> None:
        self._claims, self._jobs = claims, jobs
        self._spec, self._force = spec, force
        self._next = 0
        self._ready: deque[Job | None] = deque()

    def __call__(self, job: Job) -> Job | None:
        if self._next >= len(self._jobs) or self._jobs[self._next] is not job:
            self._ready.clear()  # asked out of order: claim this one alone
            return claim_job(self._claims, job, self._spec, self._force)
        self._next += 1
        if not self._ready:
            batch = self._jobs[self._next - 1 : self._next - 1 + CLAIM_AHEAD]
            # a failure fails this job (the caller records it); the next batch starts after it
            self._ready.extend(claim_jobs(self._claims, batch, self._spec, self._force))
        return self._ready.popleft()


def _compute(
    jobs: list[Job],
    spec: CueSpec,
    force: bool,
    workers: int,
    stop: threading.Event,
    audio_progress: Callable[[float], None] | None,
    claim: Callable[[Job], Job | None],
    pool: WorkerPool | None = None,
) -> Iterator[tuple[Job, Computed]]:
    """Yield each job (as ``claim`` returned it) with its outcome, in job order; exceptions are
    yielded, not raised. ``claim`` is called just before a job starts; a job it refuses (None)
    is not computed and comes back with :class:`Elsewhere`.

    Stops early once ``stop`` is set: the cues already handed to a worker are finished and
    yielded, no other is started. At most ``2 × workers`` results wait in memory.
    """
    if workers <= 1 or not _parallel(jobs, spec, force):
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
    if pool is not None:
        yield from _compute_in_pool(jobs, spec, force, workers, stop, pool, claim)
        return
    own = start_pool(
        min(workers, most_tasks(cue for cue, *_ in jobs)),
        audio_progress,
        audio=any(cue.groups for cue, *_ in jobs),
    )
    try:
        yield from _compute_in_pool(jobs, spec, force, workers, stop, own, claim)
    finally:
        own.close()


def _parallel(jobs: list[Job], spec: CueSpec, force: bool) -> bool:
    """Whether the jobs have two tasks or more for a pool: two jobs, or one split in stems."""
    if len(jobs) != 1:
        return len(jobs) > 1
    cue, _stat_fp, known = jobs[0]
    stored = reusable_fingerprint(known, spec.sample_rate_hz, force)
    return compute.splits_into_stems(cue, stored)


def most_tasks(cues: Iterable[CueSource]) -> int:
    """The most pool tasks that can run at once on ``cues``: one per stem group of each cue
    (one for a cue without stems)."""
    return sum(max(1, len(cue.groups)) for cue in cues)


def _compute_in_pool(
    jobs: list[Job],
    spec: CueSpec,
    force: bool,
    workers: int,
    stop: threading.Event,
    pool: WorkerPool,
    claim: Callable[[Job], Job | None],
) -> Iterator[tuple[Job, Computed]]:
    """The process-pool part of :func:`_compute`.

    The pool's tasks are whole cues, or the stems of a cue and then its finish (MIDI, match;
    see :func:`~.compute.splits_into_stems`): the stems of one cue are computed on all workers
    at once, and the cue is assembled in a worker once they are all done. At most
    ``2 × workers`` cues are claimed and not yet yielded, and at most ``2 × workers`` tasks wait
    in the pool, the earliest cue's first (its finish before its stems, its stems before the
    next cue's).

    A worker that dies (``kill -9``, the out-of-memory killer, a crash in native code) breaks
    the whole pool. The cue whose task it held comes back as :class:`WorkerDied`; a new pool
    takes over and computes again the tasks of the other cues that were in flight (their
    finished stems are kept; each job is yielded exactly once).
    """
    pending: Iterator[Job] = iter(jobs)
    window: deque[_Cue] = deque()
    limit = 2 * min(workers, pool.size)
    # Cues come back in job order, so one long cue holds the finished ones behind it. A cue
    # without stems whose rows reach the writer as a staging file holds no data here: more of
    # them may wait, and the workers go on with the next ones meanwhile.
    wide = STAGED_WINDOW * min(workers, pool.size) if spec.stage_dir is not None else limit
    upcoming: list[Job] = []
    stopped = False

    def add_cues() -> None:
        while True:
            if not upcoming:
                job = next(pending, None)
                if job is None:
                    return
                upcoming.append(job)
            started = [c for c in window if c.started]
            heavy = wide == limit or bool(upcoming[0][0].groups)
            if len(started) >= wide or heavy and sum(c.heavy for c in started) >= limit:
                return
            job = upcoming.pop()
            try:
                claimed = claim(job)
            except Exception as exc:
                window.append(_Cue(job, pool, result=exc))
                continue
            if claimed is None:
                window.append(_Cue(job, pool, result=Elsewhere()))
                continue
            cue, _stat_fp, known = claimed
            stored = reusable_fingerprint(known, spec.sample_rate_hz, force)
            split = compute.splits_into_stems(cue, stored)
            window.append(_Cue(claimed, pool, stems=len(cue.groups) if split else 0, heavy=heavy))

    try:
        add_cues()
        while window:
            if stop.is_set() and not stopped:
                # Keep the cues a worker already holds (or a death already seen); drop the rest.
                stopped = True
                pending = iter(())
                window = deque(c for c in window if c.keep_on_stop())
            _submit_tasks(window, pool, spec, force, limit)
            if not window:
                return
            head = window[0]
            if head.result is _PENDING:
                futures = [f for c in window for *_, f in c.tasks()]
                outstanding = [f for f in futures if not f.done()]
                if not futures:
                    # Nothing of the window in the pool: every slot is held by a task of a
                    # failed cue still running; wait for one of those.
                    outstanding = pool.retired()
                    if not outstanding:
                        raise AssertionError(f"nothing to wait for on {head.job[0].rel_path}")
                if outstanding:
                    wait(outstanding, return_when=FIRST_COMPLETED)
                if _collect(window, pool, dead=None):
                    dead = pool.restart()
                    _collect(window, pool, dead=dead)
                    if stopped:  # what a worker held is done or dead; nothing more starts
                        window = deque(c for c in window if c.keep_after_restart())
                continue
            window.popleft()
            if not stopped:
                add_cues()
            result = head.result
            assert not isinstance(result, _Pending)
            yield head.job, result
    finally:
        for c in window:
            c.cancel()
            c.discard_stems()


class _Pending:
    """The result of a cue still being computed."""


_PENDING: Any = _Pending()
_WHOLE = -1  # the task key of a whole cue, and of a split cue's finish; stems are 0, 1, …


class _Cue:
    """A claimed job in the pool's window and the tasks computing it: one task for the whole
    cue (``stems == 0``), or one per stem group and then its finish (task key :data:`_WHOLE`).
    """

    def __init__(
        self,
        job: Job,
        pool: WorkerPool,
        *,
        stems: int = 0,
        result: Any = _PENDING,
        heavy: bool = True,
    ) -> None:
        self.job = job
        self.heavy = heavy  # holds its data in this process once computed (see STAGED_WINDOW)
        self._pool = pool
        self.split = stems > 0
        self.result: Computed | _Pending = result
        self.started = result is _PENDING  # counts against the window's limit
        self.stems: list[StemOutcome | Shipped | None] = [None] * stems
        # Groups of more files first (a 5.1 mix before a mono stem): the cue's last stem to
        # finish, which its finish waits for, is then a short one.
        groups = job[0].groups
        self._order = sorted(range(stems), key=lambda k: -len(groups[k].files))
        self.futures: dict[int, tuple[int, Future[Any]]] = {}  # task key → (slot, future)

    def tasks(self) -> Iterator[tuple[int, int, Future[Any]]]:
        """``(key, slot, future)`` of each task handed to the pool and not yet collected."""
        if self.result is _PENDING:
            for key, (slot, future) in list(self.futures.items()):
                yield key, slot, future

    def todo(self) -> list[int]:
        """The keys of the tasks to hand to the pool now (none while a finish waits for stems)."""
        if self.result is not _PENDING or _WHOLE in self.futures:
            return []
        if not self.split:
            return [_WHOLE]
        missing = [k for k in self._order if self.stems[k] is None and k not in self.futures]
        if not missing and all(s is not None for s in self.stems):
            return [_WHOLE]
        return missing

    def forget(self, key: int) -> None:
        """Drop the task of ``key`` (done, cancelled, or on a broken pool); its slot is free
        once its future is done."""
        slot, future = self.futures.pop(key)
        self._pool.release(slot, future)

    def done(self, key: int, value: Any) -> None:
        self.forget(key)
        if key != _WHOLE:
            self.stems[key] = value  # a stem's file stays until the cue is done
            return
        try:
            self.result = shipping.received(value)
        except OSError as exc:
            self.result = exc
        self.discard_stems()

    def cancel(self) -> None:
        for key, _slot, future in self.tasks():
            future.cancel()
            self.forget(key)

    def fail(self, exc: BaseException) -> None:
        self.cancel()
        self.result = exc
        self.discard_stems()

    def discard_stems(self) -> None:
        """Remove the files of the stems computed (once the cue needs them no more)."""
        for stem in self.stems:
            shipping.discard(stem)

    def keep_on_stop(self) -> bool:
        """Cancel the tasks no worker has started; whether this cue stays (a worker holds or
        finished part of it, or its worker died)."""
        if self.result is not _PENDING:
            return self.started  # computed, or its worker died; not an Elsewhere or claim error
        held = [not future.cancel() for *_, future in self.tasks()]  # cancel every one
        return any(held) or any(s is not None for s in self.stems)

    def keep_after_restart(self) -> bool:
        return self.result is not _PENDING or any(s is not None for s in self.stems)


# Cues waiting for their turn to be written, per worker, when they are MIDI-only cues handed
# over as staging files (a path each; cues that hold their data keep 2 per worker).
STAGED_WINDOW = 8


def _submit_tasks(
    window: deque[_Cue], pool: WorkerPool, spec: CueSpec, force: bool, limit: int
) -> None:
    """Hand tasks to the pool until ``limit`` wait or run there, the earliest cue's first."""
    busy = sum(1 for c in window for *_, f in c.tasks() if not f.done())
    for c in window:
        cue, stat_fp, known = c.job
        for key in c.todo():
            if busy >= limit:
                return
            slot = pool.acquire()
            if slot is None:  # every slot is held by a task still running: wait for one
                return
            future: Future[Any]
            if not c.split:
                stored = reusable_fingerprint(known, spec.sample_rate_hz, force)
                future = pool.submit(
                    slot,
                    _process_cue_in_worker,
                    cue,
                    spec,
                    stat_fingerprint=stat_fp,
                    stored_content_fingerprint=stored,
                )
            elif key == _WHOLE:
                outcomes = [s for s in c.stems if s is not None]
                future = pool.submit(slot, _finish_cue_in_worker, cue, spec, outcomes, stat_fp)
            else:
                future = pool.submit(slot, _stem_in_worker, cue, key, spec)
            c.futures[key] = (slot, future)
            busy += 1


def _collect(window: deque[_Cue], pool: WorkerPool, *, dead: dict[int, int | None] | None) -> bool:
    """Take the finished tasks' results into their cues; whether a task found the pool broken.

    ``dead``: None before the broken pool is replaced (its tasks are left as they are), else
    the dead workers' exit codes by pid (from :meth:`WorkerPool.restart`): a task a dead worker
    had started fails its cue with :class:`WorkerDied`, the other broken tasks are handed out
    again (an empty ``dead``, exit codes unknown: every started one is taken for the dead
    worker's).
    """
    broken = False
    for c in window:
        for key, slot, future in c.tasks():
            if not future.done():
                continue
            if future.cancelled():
                c.forget(key)
                continue
            exc = future.exception()
            if isinstance(exc, BrokenProcessPool):
                if dead is None:
                    broken = True
                    continue
                holder = pool.holder(slot)
                if holder > 0 and (not dead or holder in dead):
                    exit_code = dead.get(holder)
                    log.warning("worker died on %s (exit code %s)", c.job[0].rel_path, exit_code)
                    c.fail(WorkerDied.from_exit_code(exit_code))
                    break
                c.forget(key)
            elif exc is not None:  # a bug or an unexpected failure fails only this cue
                c.fail(exc)
                break
            else:
                c.done(key, future.result())
    return broken


def start_pool(
    size: int, audio_progress: Callable[[float], None] | None = None, *, audio: bool = True
) -> WorkerPool:
    """A pool of ``size`` worker processes. With ``audio`` (cues with stems to compute) this
    process first loads the libraries the audio compute needs (scipy's FFT, sparse, optimize;
    soxr, blosc2), once, and the workers forked from it share them: loaded in each worker
    instead, they cost ~0.5 s of CPU per worker, and no wall time less (measured on 2 workers,
    5 cues of 90 s: 8.4 against 9.2 s of CPU, the same wall clock). A MIDI-only collection
    never loads them. ``audio_progress`` receives the seconds of audio the workers decode
    (through a queue; see :meth:`WorkerPool.close`)."""
    return WorkerPool(size, audio_progress, audio=audio)


class WorkerPool:
    """The local executor's process pool, replaced when one of its workers dies.

    Each task runs in a slot of shared memory that holds the pid of the worker running it,
    negated once it is done: it survives the worker being killed (a queue's message could be
    lost with it), and tells which task a dead worker held.
    """

    def __init__(
        self, size: int, audio_progress: Callable[[float], None] | None, *, audio: bool = True
    ) -> None:
        self.size = size
        self._audio_progress = audio_progress
        self._relays: list[threading.Thread] = []
        self._relays_done = threading.Event()
        capacity = 4 * size + 4  # tasks in flight: at most 2 × size, plus as many retired ones
        self._slots = multiprocessing.get_context().RawArray("q", capacity)
        self._free = list(range(capacity - 1, -1, -1))
        self._retired: list[tuple[int, Future[Any]]] = []
        self._processes: dict[int, multiprocessing.process.BaseProcess] = {}
        if audio:
            _warm_up()  # here, once: every worker forked from this process shares it
        # Where the workers put stems and audio cues for this process (see shipping).
        self.ship_dir = shipping.ship_folder() if audio else None
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # A new progress queue too: a killed worker may have died holding the old one's lock.
        executor = ProcessPoolExecutor(
            max_workers=self.size,
            initializer=_init_worker,
            initargs=(os.getpid(), self._new_queue(), self._slots, self.ship_dir),
        )
        return executor

    def _new_queue(self) -> ProgressQueue | None:
        if self._audio_progress is None:
            return None
        queue: ProgressQueue = multiprocessing.get_context().Queue()
        relay = threading.Thread(
            target=_relay, args=(queue, self._audio_progress, self._relays_done), daemon=True
        )
        relay.start()
        self._relays.append(relay)
        return queue

    def acquire(self) -> int | None:
        """A free task slot, or None when every one is held by a task not yet done."""
        still = []
        for slot, future in self._retired:
            (still.append((slot, future)) if not future.done() else self._free.append(slot))
        self._retired = still
        return self._free.pop() if self._free else None

    def release(self, slot: int, future: Future[Any]) -> None:
        """Give ``slot`` back once ``future`` is done (a running task still writes to it)."""
        self._retired.append((slot, future))

    def retired(self) -> list[Future[Any]]:
        """The futures of released slots whose tasks are still running."""
        return [future for _slot, future in self._retired if not future.done()]

    def holder(self, slot: int) -> int:
        """The pid of the worker running the task of ``slot``; 0 before it starts, negative
        once it is done."""
        return int(self._slots[slot])

    def submit(self, slot: int, task: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``task(slot, *args, **kwargs)`` in a worker; a broken pool gives a future that
        holds the :class:`BrokenProcessPool` (recovered from by the caller)."""
        self._slots[slot] = 0
        try:
            future = self._executor.submit(task, slot, *args, **kwargs)
        except BrokenProcessPool as exc:  # a worker died since the last result
            future = Future()
            future.set_exception(exc)
        # The worker processes, for their exit codes once the pool breaks. ProcessPoolExecutor
        # keeps them in a private attribute (stable since Python 3.2); without it every task in
        # flight on a dead pool is taken for the dead worker's.
        self._processes.update(getattr(self._executor, "_processes", None) or {})
        return future

    def restart(self) -> dict[int, int | None]:
        """Shut the broken pool down and start a new one; the exit codes of the workers that
        died on their own, by pid (empty when none could be told apart)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        # Exit codes only once the broken pool has shut down: a worker killed a moment ago may
        # not have been reaped yet (exit code None), which would make every task in flight a
        # suspect. The broken pool terminates the others, so they end with -SIGTERM.
        for process in self._processes.values():
            process.join(timeout=5.0)
        dead: dict[int, int | None] = {
            pid: p.exitcode
            for pid, p in self._processes.items()
            # None: still alive; -SIGTERM: terminated by the broken pool, not dead on its own.
            if p.exitcode not in (None, 0, -signal.SIGTERM)
        }
        self._processes = {}
        self._executor = self._start()
        return dead

    def close(self) -> None:
        """Shut the pool down (tasks not started are cancelled) and pass on the last progress."""
        try:
            self._executor.shutdown(wait=True, cancel_futures=True)
        finally:
            self._relays_done.set()  # the workers have exited: they flushed what they put
            for relay in self._relays:
                relay.join(timeout=5.0)
            if self.ship_dir is not None:
                shutil.rmtree(self.ship_dir, ignore_errors=True)


def _warm_up() -> None:
    """Load what the audio compute loads on first use (before the workers are forked)."""
    for name in _WARM_MODULES:
        importlib.import_module(name)


# Loaded by the compute on first use (each costs tenths of a second of CPU in a worker).
_WARM_MODULES = (
    "scipy.fft",
    "scipy.sparse",
    "scipy.optimize",
    "scipy.special",
    "scipy.ndimage",
    "soxr",
    "blosc2",
)


_worker_progress: ProgressQueue | None = None  # in a pool worker: where audio seconds go
_worker_slots: Any = None  # in a pool worker: the task slots (see _compute_in_pool)
_worker_ship_dir: str | None = None  # in a pool worker: where large results go (see shipping)


def _init_worker(
    parent_pid: int, progress: ProgressQueue | None, slots: Any, ship_dir: str | None
) -> None:
    global _worker_progress, _worker_slots, _worker_ship_dir
    # Ctrl-C reaches the whole process group; the main process decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One core per worker: numpy's BLAS (OpenBLAS) would run a thread per core in every worker,
    # N workers × cores threads on N cores, whose spinning takes CPU from the other workers.
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    allocator.keep_freed_memory()  # numpy's large temporaries without a page fault each
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    _worker_progress = progress
    _worker_slots = slots
    _worker_ship_dir = ship_dir


@contextmanager
def _in_slot(slot: int) -> Iterator[None]:
    pid = os.getpid()
    _worker_slots[slot] = pid
    try:
        yield
    finally:
        _worker_slots[slot] = -pid


def _process_cue_in_worker(
    slot: int,
    cue: CueSource,
    spec: CueSpec,
    *,
    stat_fingerprint: str,
    stored_content_fingerprint: str | None,
) -> CueResult | Unchanged:
    with _in_slot(slot):
        result = compute.process_cue(
            cue,
            spec,
            stat_fingerprint=stat_fingerprint,
            stored_content_fingerprint=stored_content_fingerprint,
            progress=None if _worker_progress is None else _worker_progress.put,
        )
        return _shipped(compute.hand_off(result, spec))


def _stem_in_worker(slot: int, cue: CueSource, index: int, spec: CueSpec) -> StemOutcome | Shipped:
    with _in_slot(slot):
        return _shipped(
            compute.compute_stem(
                cue,
                index,
                spec,
                progress=None if _worker_progress is None else _worker_progress.put,
            )
        )


def _finish_cue_in_worker(
    slot: int,
    cue: CueSource,
    spec: CueSpec,
    stems: list[StemOutcome | Shipped],
    stat_fingerprint: str,
) -> CueResult | Unchanged | Shipped:
    with _in_slot(slot):
        # The main process owns the stems' files: it removes them once the cue is done.
        outcomes = [shipping.unship(s) if isinstance(s, Shipped) else s for s in stems]
        result = compute.finish_cue(cue, spec, outcomes, stat_fingerprint=stat_fingerprint)
        return _shipped(compute.hand_off(result, spec))


def _shipped(value: Any) -> Any:
    """``value`` through shared memory when it holds audio features (see shipping)."""
    audio = (isinstance(value, StemOutcome) and value.data is not None) or (
        isinstance(value, CueResult) and bool(value.stems or value.mixes)
    )
    if _worker_ship_dir is None or not audio:
        return value
    return shipping.ship(value, _worker_ship_dir)


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
