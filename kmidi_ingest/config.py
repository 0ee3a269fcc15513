"""Settings, read in one place: the environment, then a ``.env`` file, then built-in defaults.

Stage functions never read the environment; they take explicit arguments built from
:class:`Settings`. Each value is parsed only when a command asks for it, and a value given on the
command line replaces the variable before it is parsed, so a bad ``KMIDI_WORKERS`` troubles
neither ``stats`` nor ``ingest --workers 2``. An invalid value is a :class:`ConfigError` naming
the variable and where it came from (the environment, or the ``.env`` file's path).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .discover import DEFAULT_FINAL_MIX_PATTERNS
from .errors import ConfigError
from .options import DEFAULT_DATABASE_URL, DEFAULT_LLM_MODEL
from .options import MATCHER_NAMES as MATCHERS
from .urls import IAM_MODES, mask_url, with_iam

DEFAULT_LLM_TIMEOUT_S = 60.0

# Every variable the CLI reads: (name, meaning, default). The CLI's --help and the README list
# them; a test keeps the three in step.
ENVIRONMENT: tuple[tuple[str, str, str], ...] = (
    ("DATABASE_URL", "SQLAlchemy URL of the database", DEFAULT_DATABASE_URL),
    ("KMIDI_MATCHER", "track/stem matcher: " + ", ".join(MATCHERS), "fuzzy"),
    ("KMIDI_WORKERS", "processes computing cues in parallel", "the CPU count"),
    ("OPENAI_API_KEY", "key for the llm matcher", "-"),
    ("OPENAI_BASE_URL", "OpenAI-compatible server for the llm matcher", "-"),
    ("KMIDI_LLM_MODEL", "model asked by the llm matcher", DEFAULT_LLM_MODEL),
    ("KMIDI_LLM_TIMEOUT_S", "seconds to wait for one LLM answer", "60"),
    ("KMIDI_DB_IAM", "AWS IAM authentication: " + ", ".join(IAM_MODES), "-"),
    ("AWS_REGION", "region for IAM tokens (or AWS_DEFAULT_REGION)", "-"),
    (
        "KMIDI_MIX_PATTERNS",
        "final-mix name patterns, ';'-separated ('default': the built-ins)",
        "the built-ins",
    ),
    ("KMIDI_WRITER_MEMORY_MB", "MIDI data the writing process holds at most, MB", "256"),
)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Resolved configuration of one run."""

    database_url: str = DEFAULT_DATABASE_URL
    matcher: str = "fuzzy"
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    llm_model: str = DEFAULT_LLM_MODEL
    llm_timeout_s: float = DEFAULT_LLM_TIMEOUT_S
    workers: int | None = None
    mix_patterns: tuple[str, ...] = DEFAULT_FINAL_MIX_PATTERNS  # final-mix name regexes
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
            raise ConfigError(f"matcher {self.matcher!r} is not one of {', '.join(MATCHERS)}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        for pattern in self.mix_patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(
                    f"mix pattern {pattern!r} is not a valid regular expression ({exc})"
                ) from None
        if self.writer_memory_mb < 1:
            raise ConfigError(
                f"KMIDI_WRITER_MEMORY_MB must be at least 1 (MB), got {self.writer_memory_mb}"
            )


def mix_patterns_from(values: Iterable[str]) -> tuple[str, ...]:
    """Final-mix patterns from ``--mix-pattern`` / ``KMIDI_MIX_PATTERNS`` entries.

    The entry ``default`` stands for :data:`~kmidi_ingest.discover.DEFAULT_FINAL_MIX_PATTERNS`,
    so ``default`` plus an entry extends the defaults and entries alone replace them.
    """
    patterns: list[str] = []
    for value in values:
        value = value.strip()
        if value.lower() == "default":
            patterns.extend(DEFAULT_FINAL_MIX_PATTERNS)
        elif value:
            patterns.append(value)
    return tuple(patterns)


class SettingError(ConfigError):
    """An environment variable (or ``.env`` entry) holds an invalid value."""

    def __init__(self, message: str, *, variable: str) -> None:
        super().__init__(message)
        self.variable = variable


@dataclass(frozen=True)
class Environment:
    """The variables in force: the process environment over a ``.env`` file.

    ``sources`` maps each variable that came from the ``.env`` file to that file's path.
    """

    values: Mapping[str, str]
    sources: Mapping[str, Path] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        """The variable's value; ``None`` when unset or empty."""
        value = self.values.get(name)
        return value if value else None

    def where(self, name: str) -> str:
        """Where ``name`` was set: ``"in the environment"`` or ``"in /path/.env"``."""
        source = self.sources.get(name)
        return "in the environment" if source is None else f"in {source}"

    def invalid(self, name: str, reason: str) -> SettingError:
        """The error for a bad value of ``name``, saying where it was set."""
        return SettingError(
            f"{name}={self.values.get(name)!r} {self.where(name)}: {reason}", variable=name
        )

    def integer(self, name: str, *, minimum: int) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            raise self.invalid(name, f"expected a whole number of {minimum} or more") from None
        if number < minimum:
            raise self.invalid(name, f"expected a whole number of {minimum} or more")
        return number

    def seconds(self, name: str) -> float | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            raise self.invalid(name, "expected a number of seconds above 0") from None
        if not number > 0 or number == float("inf"):
            raise self.invalid(name, "expected a number of seconds above 0")
        return number

    def choice(self, name: str, allowed: tuple[str, ...]) -> str | None:
        value = self.get(name)
        if value is None:
            return None
        if value.lower() not in allowed:
            raise self.invalid(name, f"expected one of {', '.join(allowed)}")
        return value.lower()


def read_environment(
    environ: Mapping[str, str] | None = None, *, dotenv_path: str | Path | None = None
) -> Environment:
    """The variables of ``environ`` (default ``os.environ``) over those of a ``.env`` file.

    Variables already in the environment win over the ``.env`` file, as with python-dotenv's
    ``load_dotenv(override=False)``. The ``.env`` file is looked up in the working directory
    unless ``dotenv_path`` is given; a missing one is no error.

    Raises
    ------
    ConfigError
        When the ``.env`` file exists but cannot be read (permissions, not UTF-8).
    """
    from dotenv import dotenv_values

    if dotenv_path is not None:
        path: Path | None = Path(dotenv_path)
    else:
        try:
            path = Path.cwd() / ".env"
        except OSError:  # the working directory was deleted
            path = None
    process = dict(os.environ if environ is None else environ)
    from_file: dict[str, str] = {}
    sources: dict[str, Path] = {}
    if path is not None and path.is_file():
        try:
            from_file = {k: v for k, v in dotenv_values(path).items() if v is not None}
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"cannot read the settings file: {reason}", path=path) from exc
        sources = {name: path for name in from_file if name not in process}
    return Environment({**from_file, **process}, sources)


def database_url_setting(env: Environment, flag: str | None = None) -> str:
    """The database URL: ``flag`` as given, else ``DATABASE_URL`` (with ``KMIDI_DB_IAM``
    applied), else :data:`DEFAULT_DATABASE_URL`.

    Raises
    ------
    ConfigError
        For a bad ``KMIDI_DB_IAM`` or an unparseable ``DATABASE_URL`` (with ``KMIDI_DB_IAM``).
    """
    if flag is not None:
        return flag
    url = env.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    mode = env.choice("KMIDI_DB_IAM", IAM_MODES)
    try:
        return with_iam(
            url, mode=mode, region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        )
    except ConfigError as exc:
        raise SettingError(
            f"DATABASE_URL {env.where('DATABASE_URL')}: {exc}", variable="DATABASE_URL"
        ) from exc


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    dotenv_path: str | Path | None = None,
    database_url: str | None = None,
    matcher: str | None = None,
    workers: int | None = None,
    mix_patterns: tuple[str, ...] | None = None,
) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``) over a ``.env`` file
    (see :func:`read_environment`).

    ``database_url``, ``matcher``, ``workers`` and ``mix_patterns`` (command-line values) replace
    their variables, which are then not read at all.

    Raises
    ------
    ConfigError
        Naming the variable and where it was set, for the first invalid value.
    """
    env = read_environment(environ, dotenv_path=dotenv_path)
    settings = Settings(
        database_url=database_url_setting(env, database_url),
        matcher=matcher or env.choice("KMIDI_MATCHER", MATCHERS) or "fuzzy",
        openai_api_key=env.get("OPENAI_API_KEY"),
        openai_base_url=env.get("OPENAI_BASE_URL"),
        llm_model=env.get("KMIDI_LLM_MODEL") or DEFAULT_LLM_MODEL,
        llm_timeout_s=env.seconds("KMIDI_LLM_TIMEOUT_S") or DEFAULT_LLM_TIMEOUT_S,
        workers=workers if workers is not None else env.integer("KMIDI_WORKERS", minimum=1),
        mix_patterns=mix_patterns_setting(env, mix_patterns),
        writer_memory_mb=env.integer("KMIDI_WRITER_MEMORY_MB", minimum=1) or 256,
    )
    settings.validate()
    return settings


def mix_patterns_setting(env: Environment, flag: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The final-mix patterns: ``flag`` (from ``--mix-pattern``) when given, else
    ``KMIDI_MIX_PATTERNS`` (``;``-separated), else the defaults."""
    if flag is not None:
        return flag
    value = env.get("KMIDI_MIX_PATTERNS")
    if value is None:
        return DEFAULT_FINAL_MIX_PATTERNS
    patterns = mix_patterns_from(value.split(";"))
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise env.invalid(
                "KMIDI_MIX_PATTERNS", f"{pattern!r} is not a valid regular expression ({exc})"
            ) from None
    return patterns


__all__ = [
    "DEFAULT_DATABASE_URL",
    "ENVIRONMENT",
    "Environment",
    "MATCHERS",
    "SettingError",
    "Settings",
    "database_url_setting",
    "load_settings",
    "mask_url",
    "mix_patterns_from",
    "mix_patterns_setting",
    "read_environment",
    "with_iam",
]
