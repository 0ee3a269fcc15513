"""Batch ingest: the orchestration around the stages.

=================  ===========================================================================
``runner``         :func:`ingest`, the entry: options checked, run recorded, jobs dispatched
``planning``       which cues are computed or skipped; the dry run :func:`plan`
``compute``        per-cue compute (:func:`process_cue`, pure, no database)
``pool``           the local executor: serial or a process pool, this process writes
``dask_executor``  the Dask executor: compute and write on cluster workers
``writer``         the write step (LLM match step, one transaction per cue)
``accounting``     claims before compute, outcomes into the summary
``reports``        outcome, summary and dry-run dataclasses
=================  ===========================================================================
"""

from __future__ import annotations

from .compute import CueOptions, process_cue
from .planning import plan
from .reports import CueOutcome, DryRunReport, IngestSummary, PlannedCue, PlannedGroup
from .runner import ingest

__all__ = [
    "CueOptions",
    "CueOutcome",
    "DryRunReport",
    "IngestSummary",
    "PlannedCue",
    "PlannedGroup",
    "ingest",
    "plan",
    "process_cue",
]
