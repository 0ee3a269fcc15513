"""Names and small value types shared by the library's entry points (no heavy imports).

The library takes these as explicit arguments; only the CLI reads the environment
(:mod:`kmidi_ingest.config`) and turns it into them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .errors import ConfigError

MatcherName = Literal["fuzzy", "llm", "auto"]
ExecutorName = Literal["local", "dask"]
# ``ingest_runs.status``: ``running`` while a run works, then one of the others.
RunStatus = Literal["running", "ok", "failed", "interrupted", "aborted"]

MATCHER_NAMES: tuple[MatcherName, ...] = ("fuzzy", "llm", "auto")
EXECUTOR_NAMES: tuple[ExecutorName, ...] = ("local", "dask")
DEFAULT_DATABASE_URL = "sqlite:///kmidi.sqlite"
DEFAULT_LLM_MODEL = "gpt-4o-mini"

MIN_SAMPLE_RATE_HZ = 8_000
MAX_SAMPLE_RATE_HZ = 384_000


def check_sample_rate(sample_rate_hz: int) -> int:
    """Return ``sample_rate_hz`` if it is a whole number of Hz in 8000–384000.

    Below 8 kHz the mel bands above 4 kHz are empty; above 384 kHz (the highest rate audio
    interfaces record) a cue's composite mono no longer fits in memory.

    Raises
    ------
    ConfigError
        For any other value.
    """
    if (
        isinstance(sample_rate_hz, bool)
        or not isinstance(sample_rate_hz, int)
        or not MIN_SAMPLE_RATE_HZ <= sample_rate_hz <= MAX_SAMPLE_RATE_HZ
    ):
        raise ConfigError(
            f"sample rate must be a whole number of Hz from {MIN_SAMPLE_RATE_HZ} to "
            f"{MAX_SAMPLE_RATE_HZ}, got {sample_rate_hz!r}"
        )
    return sample_rate_hz


@dataclass(frozen=True, kw_only=True)
class LlmConfig:
    """How to reach the LLM matcher's OpenAI-compatible server.

    Parameters
    ----------
    api_key : str
        Key sent with every request.
    base_url : str, optional
        Server URL; ``None``: OpenAI's.
    model : str
        Chat model asked to match tracks to stems.
    timeout_s : float
        Seconds to wait for one answer.
    """

    api_key: str = field(repr=False)
    base_url: str | None = None
    model: str = DEFAULT_LLM_MODEL
    timeout_s: float = 60.0
