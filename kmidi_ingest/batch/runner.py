"""The ingest entry: find cues, skip the ones already stored, compute the rest and write each cue
in one transaction.

Executors: ``local`` (:mod:`.pool`) computes serially or in a process pool while this process
writes (the single writer SQLite needs); ``dask`` (:mod:`.dask_executor`) runs the same per-cue
task (compute and write) on the workers of a Dask distributed cluster, all writing to one
PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine

from .. import discover, store
from ..claims import RunLock
from ..db import mask_url
from ..discover import CueSource
from ..errors import ConfigError
from ..options import (
    DEFAULT_DATABASE_URL,
    EXECUTOR_NAMES,
    MATCHER_NAMES,
    ExecutorName,
    LlmConfig,
    MatcherName,
    check_sample_rate,
)
from ..version import __version__
from .accounting import PROGRESS, account
from .compute import CueOptions, CueSpec
from .dask_executor import dask_outcomes
from .planning import Job, up_to_date
from .pool import WorkerPool, local_outcomes, most_tasks, start_pool
from .reports import CueOutcome, IngestSummary, ProgressCallback, in_cue
from .writer import llm_matcher

log = logging.getLogger(__name__)


def ingest(
    root: str | Path,
    sample_rate: int,
    *,
    database_url: str = DEFAULT_DATABASE_URL,
    matcher: MatcherName = "fuzzy",
    llm: LlmConfig | None = None,
    force: bool = False,
    workers: int | None = 1,
    writer_memory_mb: int = 256,
    executor: ExecutorName = "local",
    scheduler: str | None = None,
    options: CueOptions | None = None,
    progress: ProgressCallback | None = None,
    on_start: Callable[[int], None] | None = None,
    audio_progress: Callable[[float], None] | None = None,
    stop: threading.Event | None = None,
) -> IngestSummary:
    """Ingest every cue below ``root`` at ``sample_rate`` Hz into the database.

    Every setting is an argument: nothing is read from the environment or a ``.env`` file
    (the command line does that, see :mod:`kmidi_ingest.config`).

    Parameters
    ----------
    root : path
        Folder to walk; cues are found at any depth.
    sample_rate : int
        Rate (Hz, 8000–384000) of the composite mono signals the features are computed from.
    database_url : str
        SQLAlchemy URL, ``sqlite:///FILE`` or ``postgresql://...``; default
        ``sqlite:///kmidi.sqlite`` (in the working directory).
    matcher : {"fuzzy", "llm", "auto"}
        Track/stem matcher: ``llm`` needs ``llm``; ``auto`` uses the LLM when ``llm`` is given,
        else fuzzy.
    llm : LlmConfig, optional
        How to reach the LLM server (key, URL, model, timeout).
    force : bool
        Re-ingest cues even when their fingerprint says they are stored already.
    workers : int, optional
        Processes computing cues in parallel (``None``: CPU count; default 1). This process
        writes.
    executor : {"local", "dask"}
        ``dask`` computes and writes each cue on a worker of the Dask cluster at ``scheduler``
        (``tcp://HOST:PORT``); it needs PostgreSQL (SQLite allows one writer only).
    scheduler : str, optional
        Dask scheduler address; only with ``executor="dask"``.
    writer_memory_mb : int
        MIDI data, in MB, the writing process holds at most with a process pool: a cue whose
        MIDI arrays exceed ``writer_memory_mb / (2 × workers + 2)`` comes from its worker
        through a temporary file (:mod:`kmidi_ingest.spill`) and is written file by file. On
        SQLite (local executor, no LLM) the workers stage a cue's MIDI rows in a SQLite file
        instead (:mod:`kmidi_ingest.staging`) and the writer holds none.
    options : CueOptions, optional
        Mel analysis, channel grouping rules and match threshold (defaults: :class:`CueOptions`).
    progress : callable, optional
        Called with ``(cue_rel_path, outcome)`` after each cue; outcome is one of
        ``ingested``, ``skipped``, ``failed``.
    on_start : callable, optional
        Called once with the number of cues found, before any work.
    audio_progress : callable, optional
        Called with seconds of audio (stems and mixes) as they are decoded, block by block, from
        this process or, through a queue, from the worker processes; with the ``dask`` executor
        once per cue, when it is stored.
    stop : threading.Event, optional
        When set (e.g. by a SIGINT handler), the run finishes the cues in flight, starts no
        other and returns a summary with ``interrupted`` true.

    Raises
    ------
    ConfigError
        For a bad sample rate, matcher, executor, scheduler or worker count, ``matcher="llm"``
        without ``llm``, or SQLite with the ``dask`` executor. The messages name the
        parameters.
    DiscoverError
        When ``root`` is not a readable folder.
    """
    from ..db import make_engine, normalize_url

    started = time.perf_counter()
    check_sample_rate(sample_rate)
    used_matcher = _check_matcher(matcher, llm)
    _check_executor(executor, scheduler, normalize_url(database_url).get_backend_name())
    worker_count = _worker_count(workers)
    if writer_memory_mb < 1:
        raise ConfigError(f"writer_memory_mb must be at least 1, got {writer_memory_mb}")
    spec = CueSpec(
        sample_rate_hz=sample_rate,
        options=options or CueOptions(),
        spill_midi_bytes=spill_threshold(writer_memory_mb, worker_count),
    )
    root_path = Path(root)
    tree = discover.scan(root_path, spec.options.rules)
    cues = list(tree.cues)
    stop = stop or threading.Event()
    # The pool has no more workers than the tree has tasks (see pool.most_tasks).
    pool_size = min(worker_count, most_tasks(cues))
    pool = (
        start_pool(pool_size, audio_progress, audio=any(cue.groups for cue in cues))
        if executor == "local" and pool_size > 1
        else None
    )
    engine: Engine | None = None
    lock: RunLock | None = None
    stack = contextlib.ExitStack()
    try:
        engine = make_engine(database_url)
        _upgrade(engine)
        lock = RunLock(engine)
        aborted = store.abort_stale_runs(engine, lock)
        if aborted:
            log.warning("runs %s had died while running: marked aborted", aborted)
        summary = IngestSummary(
            database=mask_url(database_url),
            root=discover.safe_text(str(root_path)),
            sample_rate_hz=sample_rate,
            executor=executor,
            workers=worker_count,
            cues_found=len(cues),
            matcher=used_matcher,
        )
        run_id = store.start_run(
            engine,
            root=discover.safe_text(str(root_path.resolve())),
            sample_rate_hz=sample_rate,
            matcher=matcher,
            version=__version__,
            parameters={
                "force": force,
                "workers": worker_count,
                "executor": executor,
                "scheduler": scheduler,
                "mel": asdict(spec.options.mel),
                "match_threshold": spec.options.match_threshold,
                "mix_patterns": list(spec.options.rules.final_mix_patterns),
            },
            lock=lock,
        )
        summary.run_id = run_id
        tree_problems = list(tree.problems)
        summary.problems.extend(in_cue(p, None) for p in tree_problems)
        with contextlib.suppress(Exception):  # a failing database still gets a summary
            store.record_problems(engine, run_id, tree_problems)
        run_llm = llm if used_matcher == "llm" else None
        if on_start is not None:
            on_start(len(cues))
        stage_dir = stack.enter_context(staging_folder(engine, executor, run_llm))
        try:
            _run(
                engine,
                database_url,
                cues,
                dataclasses.replace(spec, stage_dir=stage_dir),
                summary,
                run_id=run_id,
                force=force,
                workers=worker_count,
                executor=executor,
                scheduler=scheduler,
                progress=progress,
                audio_progress=audio_progress,
                stop=stop,
                llm=run_llm,
                pool=pool,
            )
        except KeyboardInterrupt:
            stop.set()
        summary.interrupted = stop.is_set()
        summary.elapsed_s = time.perf_counter() - started
        store.finish_run(
            engine,
            run_id,
            status="interrupted" if summary.interrupted else ("ok" if summary.ok else "failed"),
            counts={
                "cues_found": summary.cues_found,
                "cues_ingested": summary.cues_ingested,
                "cues_skipped": summary.cues_skipped,
                "cues_failed": summary.cues_failed,
                "error_count": len(summary.errors),
                "elapsed_s": summary.elapsed_s,
            },
        )
        return summary
    finally:
        stack.close()  # the staging folder, with what a dead worker may have left in it
        if lock is not None:
            lock.close()
        if pool is not None:
            pool.close()
        if engine is not None:
            engine.dispose()


@contextlib.contextmanager
def staging_folder(engine: Engine, executor: str, llm: LlmConfig | None) -> Iterator[str | None]:
    """A temporary folder for the run's staging files (:mod:`kmidi_ingest.staging`), or None
    where the rows go to the writer as data: on PostgreSQL (its own bulk path), with the
    ``dask`` executor (each worker writes) and with the LLM matcher (the writer may change the
    parts' categories after the workers)."""
    if engine.dialect.name != "sqlite" or executor != "local" or llm is not None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="kmidi-stage-") as folder:
        yield folder


def _upgrade(engine: Engine) -> None:
    from ..schema_head import at_head, create_sqlite_head

    # One query; Alembic is loaded only when there is something to do, and not for a new
    # SQLite database either (its schema comes from the snapshot of the head).
    if at_head(engine) or create_sqlite_head(engine):
        return
    from ..migrate import upgrade

    upgrade(engine)


def spill_threshold(writer_memory_mb: int, workers: int) -> int:
    """The MIDI bytes above which a worker spills a cue, so that the results the writer holds
    (up to ``2 × workers`` waiting, plus the ones being written: two on PostgreSQL, see
    :func:`~.writer.writer_threads`) stay within ``writer_memory_mb``."""
    from .writer import WRITER_THREADS

    return writer_memory_mb * 2**20 // (2 * workers + WRITER_THREADS)


def _worker_count(workers: int | None) -> int:
    count = workers if workers is not None else (os.cpu_count() or 1)
    if count < 1:
        raise ConfigError(f"workers must be at least 1, got {count}")
    return count


def _check_matcher(matcher: str, llm: LlmConfig | None) -> Literal["fuzzy", "llm"]:
    """The matcher a run uses: ``auto`` is ``llm`` when ``llm`` is given, else ``fuzzy``."""
    if matcher not in MATCHER_NAMES:
        raise ConfigError(f"matcher={matcher!r} is not one of {', '.join(MATCHER_NAMES)}")
    if matcher == "llm" and (llm is None or not llm.api_key):
        raise ConfigError(
            'matcher="llm" needs llm=LlmConfig(api_key=...) (or use matcher="fuzzy" or "auto")'
        )
    if matcher == "auto":
        return "llm" if llm is not None and llm.api_key else "fuzzy"
    return "llm" if matcher == "llm" else "fuzzy"


def _check_executor(executor: str, scheduler: str | None, backend: str) -> None:
    if executor not in EXECUTOR_NAMES:
        raise ConfigError(f"executor={executor!r} is not one of {', '.join(EXECUTOR_NAMES)}")
    if executor != "dask":
        if scheduler is not None:
            raise ConfigError('scheduler is only used with executor="dask"')
        return
    if not scheduler:
        raise ConfigError('executor="dask" needs scheduler="tcp://HOST:PORT"')
    if backend == "sqlite":
        raise ConfigError(
            'executor="dask" needs a PostgreSQL database: every Dask worker writes its cues '
            "itself and SQLite allows one writer only; use "
            'database_url="postgresql://..." or executor="local"'
        )
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "executor=\"dask\" needs Dask distributed: pip install 'kmidi-ingest[dask]'"
        ) from exc


def _run(
    engine: Engine,
    url: str,
    cues: list[CueSource],
    spec: CueSpec,
    summary: IngestSummary,
    *,
    run_id: int,
    force: bool,
    workers: int,
    executor: ExecutorName,
    scheduler: str | None,
    progress: ProgressCallback | None,
    audio_progress: Callable[[float], None] | None,
    stop: threading.Event,
    llm: LlmConfig | None = None,
    pool: WorkerPool | None = None,
) -> None:
    stored = store.stored_cues(engine)
    jobs: list[Job] = []
    for cue in cues:
        stat_fp = discover.stat_fingerprint(cue)
        known = stored.get(discover.safe_text(cue.rel_path))
        if up_to_date(known, stat_fp, spec.sample_rate_hz, force):
            summary.cues_skipped += 1
            if progress:
                progress(cue.rel_path, "skipped")
            continue
        jobs.append((cue, stat_fp, known))

    outcomes: Iterable[CueOutcome]
    if executor == "dask":
        assert scheduler is not None
        outcomes = dask_outcomes(engine, jobs, spec, force, url, run_id, scheduler, stop, llm)
    else:
        matcher = None if llm is None else llm_matcher(llm, engine, spec)
        outcomes = local_outcomes(
            engine,
            jobs,
            spec,
            force,
            workers,
            stop,
            audio_progress,
            run_id=run_id,
            llm=matcher,
            pool=pool,
        )
    for outcome in outcomes:
        account(summary, outcome)
        log.info("%s: %s", outcome.status, discover.safe_text(outcome.rel_path))
        if executor == "dask" and audio_progress and outcome.audio_s:
            audio_progress(outcome.audio_s)
        if progress:
            progress(outcome.rel_path, PROGRESS[outcome.status])
