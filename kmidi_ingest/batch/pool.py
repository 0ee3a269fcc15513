"""The local executor: compute cues here or in a process pool; this process writes them.

SQLite allows one writer, so workers only compute and return a :class:`CueResult`; the main
process claims, writes and accounts, in job order.
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
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from itertools import accumulate
from queue import Empty
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from .. import spill
from ..claims import CueClaims
from ..discover import CueSource
from ..errors import WorkerDied
from ..match import Matcher
from ..results import CueResult
from . import compute
from .accounting import claim_job
from .compute import CueSpec, StemOutcome
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
                yield (
                    job,
                    compute.process_cue(
                        cue,
                        spec,
                        stat_fingerprint=stat_fp,
                        stored_content_fingerprint=reusable_fingerprint(
                            known, spec.sample_rate_hz, force
                        ),
                        progress=audio_progress,
                    ),
                )
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


def _parallel(jobs: list[Job], spec: CueSpec, force: bool) -> bool:
    """Whether the jobs have two tasks or more for a pool: two jobs, or one split in stems."""
    if len(jobs) != 1:
        return len(jobs) > 1
    cue, _stat_fp, known = jobs[0]
    stored = reusable_fingerprint(known, spec.sample_rate_hz, force)
    return compute.splits_into_stems(cue, stored)


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
    # Task slots: per job, one per stem group and one more (its finish, or the whole cue). Each
    # holds the pid of the worker running the task, negated once it is done (shared memory, so
    # it survives the worker being killed; a queue's message could be lost with it).
    first_slot = list(accumulate((len(cue.groups) + 1 for cue, *_ in jobs), initial=0))
    slots = multiprocessing.get_context().RawArray("q", first_slot[-1])
    most_tasks = sum(max(1, len(cue.groups)) for cue, *_ in jobs)
    pool = _Pool(min(workers, most_tasks), slots, new_queue)
    pending: Iterator[tuple[int, Job]] = iter(enumerate(jobs))
    window: deque[_Cue] = deque()
    limit = 2 * workers
    stopped = False

    def add_cues() -> None:
        while sum(c.started for c in window) < limit:
            item = next(pending, None)
            if item is None:
                return
            index, job = item
            try:
                claimed = claim(job)
            except Exception as exc:
                window.append(_Cue(job, first_slot[index], result=exc))
                continue
            if claimed is None:
                window.append(_Cue(job, first_slot[index], result=Elsewhere()))
                continue
            cue, _stat_fp, known = claimed
            stored = reusable_fingerprint(known, spec.sample_rate_hz, force)
            split = compute.splits_into_stems(cue, stored)
            window.append(_Cue(claimed, first_slot[index], stems=len(cue.groups) if split else 0))

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
                outstanding = [f for c in window for _, f in c.tasks() if not f.done()]
                if outstanding:
                    wait(outstanding, return_when=FIRST_COMPLETED)
                if _collect(window, slots, dead=None):
                    dead = pool.restart()
                    _collect(window, slots, dead=dead)
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
            for _, future in c.tasks():
                future.cancel()
        pool.shutdown()


class _Pending:
    """The result of a cue still being computed."""


_PENDING: Any = _Pending()


class _Cue:
    """A claimed job in the pool's window and the tasks computing it: one task for the whole
    cue (``stems == 0``), or one per stem group and then its finish."""

    def __init__(self, job: Job, slot: int, *, stems: int = 0, result: Any = _PENDING) -> None:
        self.job = job
        self.slot = slot  # the job's first task slot: stem k's is slot + k, the last its finish
        self.split = stems > 0
        self.result: Computed | _Pending = result
        self.started = result is _PENDING  # counts against the window's limit
        self.whole: Future[CueResult | Unchanged] | None = None
        self.stems: list[Future[StemOutcome] | StemOutcome | None] = [None] * stems
        self.finish: Future[CueResult] | None = None

    @property
    def finish_slot(self) -> int:
        return self.slot + len(self.job[0].groups)

    def tasks(self) -> Iterator[tuple[int, Future[Any]]]:
        """``(slot, future)`` of each task handed to the pool and not yet collected."""
        if self.result is not _PENDING:
            return
        if self.whole is not None:
            yield self.slot, self.whole
        for k, stem in enumerate(self.stems):
            if isinstance(stem, Future):
                yield self.slot + k, stem
        if self.finish is not None:
            yield self.finish_slot, self.finish

    def keep_on_stop(self) -> bool:
        """Cancel the tasks no worker has started; whether this cue stays (a worker holds or
        finished part of it, or its worker died)."""
        if self.result is not _PENDING:
            return self.started  # computed, or its worker died; not an Elsewhere or claim error
        held = [not future.cancel() for _, future in self.tasks()]  # cancel every one
        return any(held) or any(isinstance(s, StemOutcome) for s in self.stems)

    def keep_after_restart(self) -> bool:
        return self.result is not _PENDING or any(isinstance(s, StemOutcome) for s in self.stems)

    def reset(self, slot: int) -> None:
        """Forget the task of ``slot`` (cancelled or on a broken pool): it is handed out again."""
        if not self.split:
            self.whole = None
        elif slot == self.finish_slot:
            self.finish = None
        else:
            self.stems[slot - self.slot] = None

    def done(self, slot: int, value: Any) -> None:
        if not self.split or slot == self.finish_slot:
            self.result = value
        else:
            self.stems[slot - self.slot] = value

    def fail(self, exc: BaseException) -> None:
        for _, future in self.tasks():
            future.cancel()
        self.result = exc


def _submit_tasks(window: deque[_Cue], pool: _Pool, spec: CueSpec, force: bool, limit: int) -> None:
    """Hand tasks to the pool until ``limit`` wait or run there, the earliest cue's first."""
    busy = sum(1 for c in window for _, f in c.tasks() if not f.done())
    for c in window:
        if busy >= limit:
            return
        if c.result is not _PENDING:
            continue
        cue, stat_fp, known = c.job
        if not c.split:
            if c.whole is None:
                stored = reusable_fingerprint(known, spec.sample_rate_hz, force)
                c.whole = pool.submit(
                    c.slot,
                    _process_cue_in_worker,
                    cue,
                    spec,
                    stat_fingerprint=stat_fp,
                    stored_content_fingerprint=stored,
                )
                busy += 1
            continue
        outcomes = [s for s in c.stems if isinstance(s, StemOutcome)]
        if len(outcomes) == len(c.stems):
            if c.finish is None:
                c.finish = pool.submit(
                    c.finish_slot, _finish_cue_in_worker, cue, spec, outcomes, stat_fp
                )
                busy += 1
            continue
        for k, stem in enumerate(c.stems):
            if busy >= limit:
                return
            if stem is None:
                c.stems[k] = pool.submit(c.slot + k, _stem_in_worker, cue, k, spec)
                busy += 1


def _collect(window: deque[_Cue], slots: Any, *, dead: dict[int, int | None] | None) -> bool:
    """Take the finished tasks' results into their cues; whether a task found the pool broken.

    ``dead``: None before the broken pool is replaced (its tasks are left as they are), else
    the dead workers' exit codes by pid (from :meth:`_Pool.restart`): a task a dead worker had
    started fails its cue with :class:`WorkerDied`, the other broken tasks are handed out again
    (an empty ``dead``, exit codes unknown: every started one is taken for the dead worker's).
    """
    broken = False
    for c in window:
        for slot, future in list(c.tasks()):
            if not future.done():
                continue
            if future.cancelled():
                c.reset(slot)
                continue
            exc = future.exception()
            if isinstance(exc, BrokenProcessPool):
                if dead is None:
                    broken = True
                elif slots[slot] > 0 and (not dead or slots[slot] in dead):
                    exit_code = dead.get(slots[slot])
                    log.warning("worker died on %s (exit code %s)", c.job[0].rel_path, exit_code)
                    c.fail(WorkerDied.from_exit_code(exit_code))
                    break
                else:
                    c.reset(slot)
                continue
            if exc is not None:  # a bug or an unexpected failure fails only this cue
                c.fail(exc)
                break
            c.done(slot, future.result())
    return broken


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

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


_worker_progress: ProgressQueue | None = None  # in a pool worker: where audio seconds go
_worker_slots: Any = None  # in a pool worker: the task slots (see _compute_in_pool)


def _init_worker(parent_pid: int, progress: ProgressQueue | None, slots: Any) -> None:
    global _worker_progress, _worker_slots
    # Ctrl-C reaches the whole process group; the main process decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    _worker_progress = progress
    _worker_slots = slots


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
        return _spilled(result, spec) if isinstance(result, CueResult) else result


def _stem_in_worker(slot: int, cue: CueSource, index: int, spec: CueSpec) -> StemOutcome:
    with _in_slot(slot):
        return compute.compute_stem(
            cue, index, spec, progress=None if _worker_progress is None else _worker_progress.put
        )


def _finish_cue_in_worker(
    slot: int, cue: CueSource, spec: CueSpec, stems: list[StemOutcome], stat_fingerprint: str
) -> CueResult:
    with _in_slot(slot):
        result = compute.finish_cue(cue, spec, stems, stat_fingerprint=stat_fingerprint)
        return _spilled(result, spec)


def _spilled(result: CueResult, spec: CueSpec) -> CueResult:
    """``result``, its MIDI arrays in a temporary file when they exceed the spec's limit (the
    writer reads it back file by file, then removes it)."""
    limit = spec.spill_midi_bytes
    if limit is not None and spill.midi_nbytes(result) > limit:
        return spill.spill(result)
    return result


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
