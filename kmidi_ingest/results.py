"""Plain data passed from the compute stages to the store: one :class:`CueResult` per cue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .audio import StemData
from .categories import CategoryGuess
from .discover import CueSource
from .midi import MidiData
from .problems import Problem
from .verify import OnsetEvidence

__all__ = ["CueResult", "Problem", "TrackMatchRow"]


@dataclass(frozen=True, kw_only=True)
class TrackMatchRow:
    """The match of one instrument part; ``stem_index`` indexes :attr:`CueResult.stems`."""

    midi_index: int
    track_index: int  # the part's Track.part_index (unique within its file)
    stem_index: int | None
    score: float
    method: str
    fallback_reason: str | None = None
    onset_correlation: float | None = None
    lag_s: float | None = None
    verified: bool | None = None
    name_score: float | None = None
    content_score: float | None = None
    content_z: float | None = None
    content_p: float | None = None
    content_lag_s: float | None = None
    runner_up_stem_index: int | None = None
    margin_z: float | None = None
    decided_by: str | None = None
    evidence: str | None = None
    verify_reason: str | None = None
    # 0: the part's primary pair; 1, 2, …: further stems it owns (desk stems, kmidi_ingest.pairing)
    stem_rank: int = 0


@dataclass(frozen=True, kw_only=True)
class CueResult:
    """Everything computed for one cue, ready to be written in one transaction."""

    source: CueSource
    stat_fingerprint: str
    content_fingerprint: str
    sample_rate_hz: int
    # A tuple, or a kmidi_ingest.spill.SpilledMidi that reads each file back when asked.
    midi: Sequence[MidiData]
    stems: tuple[StemData, ...]
    mixes: tuple[StemData, ...]
    track_categories: dict[tuple[int, int], CategoryGuess]  # (midi_index, part_index) →
    stem_categories: tuple[CategoryGuess, ...]
    matches: tuple[TrackMatchRow, ...]
    file_hashes: dict[str, str] = field(default_factory=dict)  # rel_path → sha256
    problems: tuple[Problem, ...] = field(default=())
    midi_offset_s: float | None = None
    onset_evidence: OnsetEvidence | None = None  # rows: instrument tracks in file order
    elapsed_s: float = 0.0

    @property
    def error_count(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")
