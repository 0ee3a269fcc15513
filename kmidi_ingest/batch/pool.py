"""The local executor: compute cues here or in a process pool; this process writes them.

SQLite allows one writer, so workers only compute and return a :class:`CueResult`; the main
process claims, writes and accounts, in job order.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from queue import Empty
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from ..claims import CueClaims
from ..discover import CueSource
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
    queue = None
    relay = None
    done = threading.Event()
    if audio_progress is not None:
        queue = multiprocessing.get_context().Queue()
        relay = threading.Thread(target=_relay, args=(queue, audio_progress, done), daemon=True)
        relay.start()
    try:
        yield from _compute_in_pool(jobs, spec, force, workers, stop, queue, claim)
    finally:
        done.set()  # the pool has shut down: its workers flushed what they put
        if relay is not None:
            relay.join(timeout=5.0)


def _compute_in_pool(
    jobs: list[Job],
    spec: CueSpec,
    force: bool,
    workers: int,
    stop: threading.Event,
    progress_queue: ProgressQueue | None,
    claim: Callable[[Job], Job | None],
) -> Iterator[tuple[Job, Computed]]:
    pending = iter(jobs)
    # Each job with its future, or with what it is instead (Elsewhere, or the claim's error).
    window: deque[tuple[Job, Future[CueResult | Unchanged] | Computed]] = deque()
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        initializer=_init_worker,
        initargs=(os.getpid(), progress_queue),
    ) as pool:

        def submit() -> bool:
            job = next(pending, None)
            if job is None:
                return False
            try:
                claimed = claim(job)
            except Exception as exc:
                window.append((job, exc))
                return True
            if claimed is None:
                window.append((job, Elsewhere()))
                return True
            cue, stat_fp, known = claimed
            future = pool.submit(
                _process_cue_in_worker,
                cue,
                spec,
                stat_fingerprint=stat_fp,
                stored_content_fingerprint=reusable_fingerprint(known, spec.sample_rate_hz, force),
            )
            window.append((claimed, future))
            return True

        while sum(isinstance(w, Future) for _, w in window) < 2 * workers and submit():
            pass
        try:
            while window:
                if stop.is_set():
                    # Keep only what a worker already holds; drop the rest.
                    window = deque(
                        (job, w) for job, w in window if isinstance(w, Future) and not w.cancel()
                    )
                    pending = iter(())
                    if not window:
                        return
                job, work = window.popleft()
                result: Computed
                if isinstance(work, Future):
                    try:
                        result = work.result()
                    except Exception as exc:
                        result = exc
                    if not stop.is_set():
                        while submit() and not isinstance(window[-1][1], Future):
                            pass  # refill the one worker slot this job freed
                else:
                    result = work
                yield job, result
        finally:
            for _, work in window:
                if isinstance(work, Future):
                    work.cancel()


_worker_progress: ProgressQueue | None = (
    None  # in a pool worker: the queue audio seconds are reported to
)


def _init_worker(parent_pid: int, progress: ProgressQueue | None = None) -> None:
    global _worker_progress
    # Ctrl-C reaches the whole process group; the main process decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    _worker_progress = progress


def _process_cue_in_worker(
    cue: CueSource,
    spec: CueSpec,
    *,
    stat_fingerprint: str,
    stored_content_fingerprint: str | None,
) -> CueResult | Unchanged:
    return compute.process_cue(
        cue,
        spec,
        stat_fingerprint=stat_fingerprint,
        stored_content_fingerprint=stored_content_fingerprint,
        progress=None if _worker_progress is None else _worker_progress.put,
    )


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
