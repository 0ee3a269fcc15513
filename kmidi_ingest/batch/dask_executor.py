"""The Dask executor: each cue is computed and written by a task on a Dask distributed worker,
all writing to one PostgreSQL database."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

from sqlalchemy import Engine

from .. import store
from ..claims import CueClaims
from ..discover import CueSource
from ..errors import ConfigError
from ..options import LlmConfig
from ..results import CueResult
from . import compute
from .accounting import claim_job
from .compute import CueSpec
from .planning import Job, reusable_fingerprint
from .reports import CueOutcome, Unchanged
from .writer import fail_cue, llm_matcher, write_outcome

_ENGINES: dict[str, Engine] = {}


_ENGINES_LOCK = threading.Lock()


def _worker_engine(url: str) -> Engine:
    """One engine per worker process and URL, reused across tasks (threads share it)."""
    from ..db import make_engine

    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = make_engine(url)
        return engine


def run_cue_task(
    cue: CueSource,
    spec: CueSpec,
    *,
    stat_fingerprint: str,
    known: store.StoredCue | None,
    force: bool,
    database_url: str,
    run_id: int,
    llm: LlmConfig | None = None,
) -> CueOutcome:
    """Compute one cue and write it to ``database_url`` (the task a Dask worker runs).

    With ``llm`` the worker runs the LLM match step itself, caching answers in the shared
    database like the local executor does.
    """
    engine = _worker_engine(database_url)
    matcher = None if llm is None else llm_matcher(llm, engine, spec)
    with CueClaims(engine) as claims:
        try:
            claimed = claim_job(claims, (cue, stat_fingerprint, known), spec, force)
        except Exception as exc:
            return fail_cue(engine, cue, exc, run_id=run_id, stage="ingest")
        if claimed is None:
            return CueOutcome(rel_path=cue.rel_path, status="elsewhere")
        known = claimed[2]
        try:
            computed: CueResult | Unchanged | BaseException = compute.process_cue(
                cue,
                spec,
                stat_fingerprint=stat_fingerprint,
                stored_content_fingerprint=reusable_fingerprint(known, spec.sample_rate_hz, force),
            )
        except Exception as exc:
            computed = exc
        return write_outcome(engine, cue, known, computed, run_id=run_id, llm=matcher)


def dask_outcomes(
    engine: Engine,
    jobs: list[Job],
    spec: CueSpec,
    force: bool,
    url: str,
    run_id: int,
    scheduler: str,
    stop: threading.Event,
    llm: LlmConfig | None = None,
) -> Iterator[CueOutcome]:
    """Run every job as a task on the cluster; yield the outcomes in job order.

    Once ``stop`` is set, unfinished tasks are cancelled: a task already running on a worker
    cannot be interrupted and still commits its cue (whole, in one transaction).
    """
    from distributed import Client

    try:
        client = Client(scheduler, timeout="30s", set_as_default=False)
    except OSError as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    with client:
        futures = [
            client.submit(
                run_cue_task,
                cue,
                spec,
                stat_fingerprint=stat_fp,
                known=known,
                force=force,
                database_url=url,
                run_id=run_id,
                llm=llm,
                key=f"kmidi-cue-{uuid.uuid4().hex}",
            )
            for cue, stat_fp, known in jobs
        ]
        by_key = {f.key: job for f, job in zip(futures, jobs, strict=True)}
        try:
            for future in futures:  # in job order; the cluster runs them in any order
                try:
                    yield future.result()
                except Exception as exc:  # the worker died or the task could not run
                    yield fail_cue(
                        engine, by_key[future.key][0], exc, run_id=run_id, stage="ingest"
                    )
                if stop.is_set():
                    return
        finally:
            client.cancel([f for f in futures if not f.done()])
