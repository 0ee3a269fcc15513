"""kmidi_ingest: film/TV music cues (MIDI exports + printed stems) into a relational database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AudioError,
    ConfigError,
    DiscoverError,
    KmidiError,
    MidiError,
    StoreError,
)
from .version import __version__

__all__ = [
    "AudioError",
    "ConfigError",
    "DiscoverError",
    "DryRunReport",
    "IngestSummary",
    "KmidiError",
    "MidiError",
    "StoreError",
    "__version__",
    "ingest",
    "plan",
    "windows",
]

if TYPE_CHECKING:
    from .batch import DryRunReport, IngestSummary, ingest, plan


def __getattr__(name: str) -> Any:
    # Importing the package stays cheap: the batch code (numpy, SQLAlchemy) loads on first use.
    if name in ("ingest", "plan", "IngestSummary", "DryRunReport"):
        from . import batch

        return getattr(batch, name)
    if name == "windows":
        from .windowing import windows

        return windows
    raise AttributeError(f"module 'kmidi_ingest' has no attribute {name!r}")
