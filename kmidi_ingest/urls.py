"""Database URLs, parsed and checked in one place: the IAM modes, masking, SQLite paths.

Both :mod:`kmidi_ingest.config` (building ``DATABASE_URL`` from the environment) and
:mod:`kmidi_ingest.db` (making engines) go through here, so a bad URL gives one message whatever
reads it. SQLAlchemy is imported on first use, so that ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

IAM_MODES = ("rds", "dsql-admin", "dsql")
BACKENDS = ("sqlite", "postgresql")


def parse_url(url: str | URL) -> URL:
    """Parse ``url``; a bare ``postgresql://`` (or ``postgres://``) selects psycopg2.

    Raises
    ------
    ConfigError
        When ``url`` is no database URL, or names a database other than SQLite or PostgreSQL.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"{mask_url(str(url))!r} is not a valid database URL: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    try:
        backend = parsed.get_backend_name()
    except Exception:  # noqa: BLE001 - SQLAlchemy raises various errors for odd driver names
        backend = ""
    if backend not in BACKENDS:
        raise ConfigError(
            f"unsupported database {mask_url(str(url))!r}: use sqlite:///FILE or postgresql://..."
        )
    return parsed


def mask_url(url: str | URL) -> str:
    """Return ``url`` with its password replaced by ``***`` (safe to log or print)."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable database URL>"


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite ``url``; ``None`` for an in-memory database or another backend."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def with_iam(url: str, *, mode: str | None, region: str | None) -> str:
    """Return ``url`` selecting IAM authentication ``mode`` (one of :data:`IAM_MODES`) unless it
    already names one; ``aws_region`` is added from ``region`` when missing.

    See :mod:`kmidi_ingest.db` for the URL form.

    Raises
    ------
    ConfigError
        For an unknown ``mode`` or an unparseable ``url``.
    """
    if mode is None:
        return url
    if mode not in IAM_MODES:
        raise ConfigError(f"IAM mode {mode!r} is not one of {', '.join(IAM_MODES)}")
    parsed = parse_url(url)
    if "aws_iam" in parsed.query:
        return url
    extra = {"aws_iam": mode}
    if region and "aws_region" not in parsed.query:
        extra["aws_region"] = region
    from sqlalchemy.engine import make_url

    return make_url(url).update_query_dict(extra).render_as_string(hide_password=False)
