"""Settings, read in one place: the environment, then a ``.env`` file, then built-in defaults.

Stage functions never read the environment; they take explicit arguments built from
:class:`Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///kmidi.sqlite"
MATCHERS = ("fuzzy", "llm", "auto")
DEFAULT_LLM_MODEL = "gpt-4o-mini"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Resolved configuration of one run."""

    database_url: str = DEFAULT_DATABASE_URL
    matcher: str = "fuzzy"
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    llm_model: str = DEFAULT_LLM_MODEL
    llm_timeout_s: float = 60.0
    workers: int | None = None
    # MIDI data the writing process holds at most (see kmidi_ingest.spill), MB.
    writer_memory_mb: int = 256

    def with_overrides(self, **overrides: object) -> Settings:
        """Return a copy with every non-``None`` override applied (CLI flags beat the environment)."""
        changes = {key: value for key, value in overrides.items() if value is not None}
        settings = replace(self, **changes)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.matcher not in MATCHERS:
            raise ConfigError(f"KMIDI_MATCHER={self.matcher!r} is not one of {', '.join(MATCHERS)}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if self.writer_memory_mb < 1:
            raise ConfigError(
                f"KMIDI_WRITER_MEMORY_MB must be at least 1 (MB), got {self.writer_memory_mb}"
            )


def load_settings(
    environ: Mapping[str, str] | None = None, *, dotenv_path: str | Path | None = None
) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``) over a ``.env`` file.

    Variables already in the environment win over the ``.env`` file, as with python-dotenv's
    ``load_dotenv(override=False)``. The ``.env`` file is looked up in the working directory
    unless ``dotenv_path`` is given.
    """
    from dotenv import dotenv_values

    env: dict[str, str] = {}
    path = Path(dotenv_path) if dotenv_path is not None else Path.cwd() / ".env"
    if path.is_file():
        env.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    env.update(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value not in (None, "") else None

    workers = get("KMIDI_WORKERS")
    timeout = get("KMIDI_LLM_TIMEOUT_S")
    writer_memory = get("KMIDI_WRITER_MEMORY_MB")
    try:
        settings = Settings(
            database_url=with_iam(
                get("DATABASE_URL") or DEFAULT_DATABASE_URL,
                mode=get("KMIDI_DB_IAM"),
                region=get("AWS_REGION") or get("AWS_DEFAULT_REGION"),
            ),
            matcher=(get("KMIDI_MATCHER") or "fuzzy").lower(),
            openai_api_key=get("OPENAI_API_KEY"),
            openai_base_url=get("OPENAI_BASE_URL"),
            llm_model=get("KMIDI_LLM_MODEL") or DEFAULT_LLM_MODEL,
            llm_timeout_s=float(timeout) if timeout else 60.0,
            workers=int(workers) if workers else None,
            writer_memory_mb=int(writer_memory) if writer_memory else 256,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid number in the environment: {exc}") from exc
    settings.validate()
    return settings


def with_iam(url: str, *, mode: str | None, region: str | None) -> str:
    """Return ``url`` selecting IAM authentication ``mode`` (``rds``, ``dsql-admin``, ``dsql``)
    unless it already names one; ``aws_region`` is added from ``region`` when missing.

    See :mod:`kmidi_ingest.db` for the URL form.
    """
    if mode is None:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from .db import IAM_MODES

    if mode not in IAM_MODES:
        raise ConfigError(f"KMIDI_DB_IAM={mode!r} is not one of {', '.join(IAM_MODES)}")
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"DATABASE_URL is not a valid database URL: {exc}") from exc
    extra = {"aws_iam": mode}
    if region and "aws_region" not in parsed.query:
        extra["aws_region"] = region
    if "aws_iam" in parsed.query:
        return url
    return parsed.update_query_dict(extra).render_as_string(hide_password=False)


def mask_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***`` (safe to log or print)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"
