"""kmidi_ingest: film/TV music cues (MIDI exports + printed stems) into a relational database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    AudioError,
    ConfigError,
    DiscoverError,
    KmidiError,
    MatchError,
    MidiError,
    StoreError,
)

__all__ = [
    "AudioError",
    "ConfigError",
    "DiscoverError",
    "IngestSummary",
    "KmidiError",
    "MatchError",
    "MidiError",
    "StoreError",
    "__version__",
    "ingest",
]

if TYPE_CHECKING:
    from .pipeline import IngestSummary, ingest


def __getattr__(name: str) -> Any:
    # Importing the package stays cheap: the pipeline (numpy, SQLAlchemy) loads on first use.
    if name in ("ingest", "IngestSummary"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'kmidi_ingest' has no attribute {name!r}")
