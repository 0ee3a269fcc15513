"""What a run reports: the outcome of each cue, the run's summary and the dry run's plan.

Small plain dataclasses (picklable: Dask workers return :class:`CueOutcome`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .. import discover
from ..options import ExecutorName
from ..problems import Problem


@dataclass(frozen=True, kw_only=True)
class Unchanged:
    """A cue whose content hash equals the stored one (only its stat fingerprint moved)."""

    rel_path: str
    stat_fingerprint: str


CueStatus = Literal["ingested", "unchanged", "conflict", "elsewhere", "failed"]


@dataclass(frozen=True)
class Elsewhere:
    """A job not computed: another run holds the cue's claim or has stored the cue."""


@dataclass(frozen=True, kw_only=True)
class CueOutcome:
    """What happened to one cue once written (small and picklable: Dask workers return it).

    ``status`` is ``ingested``, ``unchanged`` (content hash equal to the stored one),
    ``conflict`` (another process stored the cue first), ``elsewhere`` (another run was
    ingesting it or had just stored it, so it was not computed here) or ``failed``.
    """

    rel_path: str
    status: CueStatus
    midi_files: int = 0
    tracks: int = 0
    notes: int = 0
    stems: int = 0
    final_mixes: int = 0
    matches: int = 0
    audio_s: float = 0.0
    llm_requests: int = 0
    llm_cache_hits: int = 0
    match_fallbacks: int = 0
    midi_offset_s: float | None = None  # set when the cue's stems are offset from its MIDI
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LlmUse:
    """What the LLM match step of one cue cost: requests sent, cached answers, fallbacks."""

    requests: int = 0
    cache_hits: int = 0
    fallbacks: int = 0


@dataclass(kw_only=True)
class IngestSummary:
    """What a run did. ``ok`` is false when anything failed."""

    run_id: int | None = None
    database: str = ""
    root: str = ""
    sample_rate_hz: int = 0
    executor: ExecutorName = "local"
    workers: int = 1
    cues_found: int = 0
    cues_ingested: int = 0
    cues_skipped: int = 0
    cues_failed: int = 0
    cues_elsewhere: int = 0  # of the skipped: ingested by another run at the same time
    midi_files: int = 0
    tracks: int = 0
    notes: int = 0
    stems: int = 0
    final_mixes: int = 0
    matches: int = 0
    matcher: Literal["fuzzy", "llm"] = "fuzzy"
    llm_requests: int = 0
    llm_cache_hits: int = 0
    match_fallbacks: int = 0  # cues the LLM could not match (fuzzy used instead)
    midi_offsets: dict[str, float] = field(default_factory=dict)  # cue → stems behind MIDI, s
    audio_s: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    @property
    def ok(self) -> bool:
        return not self.errors and self.cues_failed == 0 and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["errors"] = [asdict(p) for p in self.errors]
        data["warnings"] = [asdict(p) for p in self.warnings]
        data["error_count"] = len(self.errors)
        data["warning_count"] = len(self.warnings)
        return data


@dataclass(frozen=True, kw_only=True)
class PlannedGroup:
    """A stem or final mix a dry run found: its name, channel labels and files (cue-relative)."""

    name: str
    layout: str
    files: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class PlannedCue:
    """One cue of a dry run. ``action``: ``ingest`` (new), ``update`` (stored, files changed:
    re-hashed and replaced if the content differs) or ``skip`` (stored, unchanged)."""

    rel_path: str
    action: Literal["ingest", "update", "skip"]
    midi_files: tuple[str, ...]
    stems: tuple[PlannedGroup, ...]
    final_mixes: tuple[PlannedGroup, ...]
    kind: str = "cue"  # unit of work: cue | performance | file (see discover.scan)


@dataclass(frozen=True, kw_only=True)
class DryRunReport:
    """What :func:`ingest` would do, found without writing anything."""

    root: str
    database: str
    sample_rate_hz: int
    cues: tuple[PlannedCue, ...]
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["error_count"] = len(self.errors)
        data["to_ingest"] = sum(1 for c in self.cues if c.action != "skip")
        data["to_skip"] = sum(1 for c in self.cues if c.action == "skip")
        return data


ProgressOutcome = Literal["ingested", "skipped", "failed"]
ProgressCallback = Callable[[str, ProgressOutcome], None]  # (cue rel_path, outcome) per cue


def in_cue(p: Problem, cue: str | None) -> Problem:
    """``p`` as a summary lists it: naming ``cue``, its texts display-safe."""
    return replace(
        p,
        cue=None if cue is None else discover.safe_text(cue),
        path=None if p.path is None else discover.safe_text(p.path),
        message=discover.safe_text(p.message),
    )
