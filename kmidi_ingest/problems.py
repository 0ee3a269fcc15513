"""The one problem type: a failure or a survivable oddity met in a tree, a cue or a file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, kw_only=True)
class Problem:
    """A failure (``severity="error"``) or a survivable oddity (``"warning"``).

    Found by the tree walk (``stage="discover"``), a stage computing a cue, or the write step;
    stored as an ``ingest_errors`` row and listed in a run's summary, where ``cue`` names the
    cue (its path relative to the root; ``None`` for a problem of the tree).
    """

    cue: str | None = None
    stage: str
    path: str | None = None
    error_type: str
    message: str
    severity: Severity = "error"
