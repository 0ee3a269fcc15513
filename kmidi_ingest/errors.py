"""One error family for the whole library.

Every error carries the pipeline stage and, where there is one, the offending path, so that a
message can always say *which* file failed and *why*.
"""

from __future__ import annotations

from pathlib import Path


class KmidiError(Exception):
    """Root of every error raised by kmidi_ingest."""

    stage = "ingest"

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ConfigError(KmidiError):
    """A setting or command-line value is invalid."""

    stage = "config"


class DiscoverError(KmidiError):
    """The cue tree cannot be walked (missing root, unreadable folder, ...)."""

    stage = "discover"


class MidiError(KmidiError):
    """A MIDI file cannot be read."""

    stage = "midi"


class AudioError(KmidiError):
    """An audio file or stem cannot be read or processed."""

    stage = "audio"


class StoreError(KmidiError):
    """The database rejected a write or is at the wrong schema revision."""

    stage = "store"


class WorkerDied(KmidiError):
    """A pool worker process died (killed, out of memory, a crash in native code) on a cue."""

    stage = "ingest"

    @classmethod
    def from_exit_code(cls, exit_code: int | None) -> WorkerDied:
        """The error for a worker that ended with ``exit_code`` (negative: killed by a signal)."""
        if exit_code is None:
            return cls("worker process died")
        if exit_code < 0:
            hint = "out of memory?" if -exit_code == 9 else "a crash in a native library?"
            return cls(f"worker process died (signal {-exit_code}) — {hint}")
        return cls(f"worker process died (exit code {exit_code})")
