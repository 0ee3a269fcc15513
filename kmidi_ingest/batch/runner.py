"""The ingest entry: find cues, skip the ones already stored, compute the rest and write each cue
in one transaction.

Executors: ``local`` (:mod:`.pool`) computes serially or in a process pool while this process
writes (the single writer SQLite needs); ``dask`` (:mod:`.dask_executor`) runs the same per-cue
task (compute and write) on the workers of a Dask distributed cluster, all writing to one
PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import __version__, discover, store
from ..config import Settings, load_settings, mask_url
from ..discover import CueSource
from ..errors import ConfigError
from ..match import Matcher, resolve_matcher
from .accounting import PROGRESS, account
from .compute import CueOptions
from .dask_executor import dask_outcomes
from .planning import Job, up_to_date
from .pool import local_outcomes
from .reports import CueOutcome, IngestSummary, ProgressCallback, report_problem, tree_problem
from .writer import llm_matcher

log = logging.getLogger(__name__)


EXECUTORS = ("local", "dask")


def ingest(
    root: str | Path,
    sample_rate: int,
    *,
    database_url: str | None = None,
    settings: Settings | None = None,
    force: bool = False,
    workers: int | None = 1,
    progress: ProgressCallback | None = None,
    on_start: Callable[[int], None] | None = None,
    options: CueOptions | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    stop: threading.Event | None = None,
    audio_progress: Callable[[float], None] | None = None,
) -> IngestSummary:
    """Ingest every cue below ``root`` at ``sample_rate`` Hz into the database.

    Parameters
    ----------
    root : path
        Folder to walk; cues are found at any depth.
    sample_rate : int
        Rate (Hz) of the composite mono signals the features are computed from.
    database_url : str, optional
        SQLAlchemy URL; default from ``settings`` (``DATABASE_URL`` or ``sqlite:///kmidi.sqlite``).
    force : bool
        Re-ingest cues even when their fingerprint says they are stored already.
    workers : int, optional
        Processes computing cues in parallel (``None``: CPU count). This process writes.
    progress : callable, optional
        Called with ``(cue_rel_path, outcome)`` after each cue; outcome is one of
        ``ingested``, ``skipped``, ``failed``.
    on_start : callable, optional
        Called once with the number of cues found, before any work.
    executor : {"local", "dask"}
        ``dask`` computes and writes each cue on a worker of the Dask cluster at ``scheduler``
        (``tcp://HOST:PORT``); it needs PostgreSQL (SQLite allows one writer only).
    stop : threading.Event, optional
        When set (e.g. by a SIGINT handler), the run finishes the cues in flight, starts no
        other and returns a summary with ``interrupted`` true.
    audio_progress : callable, optional
        Called with seconds of audio (stems and mixes) as they are decoded, block by block, from
        this process or, through a queue, from the worker processes; with the ``dask`` executor
        once per cue, when it is stored.

    Raises
    ------
    ConfigError
        For a bad sample rate, executor or scheduler, or SQLite with the ``dask`` executor.
    DiscoverError
        When ``root`` is not a readable folder.
    """
    from ..db import make_engine, normalize_url

    started = time.perf_counter()
    settings = settings or load_settings()
    url = str(database_url or settings.database_url)
    if sample_rate <= 0:
        raise ConfigError(f"SAMPLE_RATE must be a positive number of Hz, got {sample_rate}")
    if settings.matcher == "llm" and not settings.openai_api_key:
        raise ConfigError(
            "KMIDI_MATCHER=llm needs OPENAI_API_KEY (or use the fuzzy or auto matcher)"
        )
    _check_executor(executor, scheduler, normalize_url(url).get_backend_name())
    options = options or CueOptions(sample_rate_hz=sample_rate)
    worker_count = _worker_count(workers)
    root_path = Path(root)
    tree = discover.scan(root_path)
    cues = list(tree.cues)
    stop = stop or threading.Event()

    engine = make_engine(url)
    try:
        _upgrade(engine)
        summary = IngestSummary(
            database=mask_url(url),
            root=discover.safe_text(str(root_path)),
            sample_rate_hz=sample_rate,
            executor=executor,
            workers=worker_count,
            cues_found=len(cues),
        )
        run_id = store.start_run(
            engine,
            root=discover.safe_text(str(root_path.resolve())),
            sample_rate_hz=sample_rate,
            matcher=settings.matcher,
            version=__version__,
            parameters={
                "force": force,
                "workers": worker_count,
                "executor": executor,
                "scheduler": scheduler,
                "mel": asdict(options.mel),
                "match_threshold": options.match_threshold,
            },
        )
        summary.run_id = run_id
        tree_problems = [tree_problem(p) for p in tree.problems]
        summary.problems.extend(report_problem(p, None) for p in tree_problems)
        with contextlib.suppress(Exception):  # a failing database still gets a summary
            store.record_problems(engine, run_id, tree_problems)
        summary.matcher = resolve_matcher(settings.matcher, api_key=settings.openai_api_key)
        llm = llm_matcher(settings, engine, options) if summary.matcher == "llm" else None
        if on_start is not None:
            on_start(len(cues))
        try:
            _run(
                engine,
                url,
                cues,
                options,
                summary,
                run_id=run_id,
                force=force,
                workers=worker_count,
                executor=executor,
                scheduler=scheduler,
                progress=progress,
                audio_progress=audio_progress,
                stop=stop,
                llm=llm,
                llm_settings=settings if summary.matcher == "llm" else None,
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
        engine.dispose()


def _upgrade(engine: Any) -> None:
    from ..migrate import upgrade

    upgrade(engine)


def _worker_count(workers: int | None) -> int:
    count = workers if workers is not None else (os.cpu_count() or 1)
    if count < 1:
        raise ConfigError(f"workers must be at least 1, got {count}")
    return count


def _check_executor(executor: str, scheduler: str | None, backend: str) -> None:
    if executor not in EXECUTORS:
        raise ConfigError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    if executor != "dask":
        if scheduler is not None:
            raise ConfigError("--scheduler is only used with --executor dask")
        return
    if not scheduler:
        raise ConfigError("--executor dask needs --scheduler tcp://HOST:PORT")
    if backend == "sqlite":
        raise ConfigError(
            "--executor dask needs a PostgreSQL database: every Dask worker writes its cues "
            "itself and SQLite allows one writer only; use --database-url postgresql://... "
            "or the local executor"
        )
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "--executor dask needs Dask distributed: pip install 'kmidi-ingest[dask]'"
        ) from exc


def _run(
    engine: Any,
    url: str,
    cues: list[CueSource],
    options: CueOptions,
    summary: IngestSummary,
    *,
    run_id: int,
    force: bool,
    workers: int,
    executor: str,
    scheduler: str | None,
    progress: ProgressCallback | None,
    audio_progress: Callable[[float], None] | None,
    stop: threading.Event,
    llm: Matcher | None = None,
    llm_settings: Settings | None = None,
) -> None:
    stored = store.stored_cues(engine)
    jobs: list[Job] = []
    for cue in cues:
        stat_fp = discover.stat_fingerprint(cue)
        known = stored.get(discover.safe_text(cue.rel_path))
        if up_to_date(known, stat_fp, options, force):
            summary.cues_skipped += 1
            if progress:
                progress(cue.rel_path, "skipped")
            continue
        jobs.append((cue, stat_fp, known))

    outcomes: Iterable[CueOutcome]
    if executor == "dask":
        assert scheduler is not None
        outcomes = dask_outcomes(
            engine, jobs, options, force, url, run_id, scheduler, stop, llm_settings
        )
    else:
        outcomes = local_outcomes(
            engine, jobs, options, force, workers, stop, audio_progress, run_id=run_id, llm=llm
        )
    for outcome in outcomes:
        account(summary, outcome)
        log.info("%s: %s", outcome.status, discover.safe_text(outcome.rel_path))
        if executor == "dask" and audio_progress and outcome.audio_s:
            audio_progress(outcome.audio_s)
        if progress:
            progress(outcome.rel_path, PROGRESS[outcome.status])
