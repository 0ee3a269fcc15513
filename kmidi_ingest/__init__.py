"""kmidi_ingest: film/TV music cues (MIDI exports + printed stems) into a relational database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AudioError,
    ConfigError,
    DiscoverError,
    KmidiError,
    MatchError,
    MidiError,
    StoreError,
)

__version__ = "0.1.0"

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
    "windows",
]

if TYPE_CHECKING:
    from .pipeline import IngestSummary, ingest


def __getattr__(name: str) -> Any:
    # Importing the package stays cheap: the pipeline (numpy, SQLAlchemy) loads on first use.
    if name in ("ingest", "IngestSummary"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "windows":
        from .windowing import windows

        return windows
    raise AttributeError(f"module 'kmidi_ingest' has no attribute {name!r}")
