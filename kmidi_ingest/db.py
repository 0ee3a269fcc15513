"""Engines: SQLite (with the pragmas it needs) or PostgreSQL through psycopg2, optionally with
AWS IAM authentication (Aurora PostgreSQL or Aurora DSQL).

IAM is selected in the URL (``KMIDI_DB_IAM`` adds it, see :mod:`kmidi_ingest.config`)::

    postgresql://USER@HOST:5432/DB?aws_iam=rds&aws_region=eu-west-1            # Aurora PostgreSQL
    postgresql://admin@ID.dsql.eu-west-1.on.aws/postgres?aws_iam=dsql-admin    # DSQL, admin role
    postgresql://ROLE@ID.dsql.eu-west-1.on.aws/postgres?aws_iam=dsql           # DSQL, other roles

Every new connection gets a fresh token from boto3 (credentials from the usual AWS chain), so no
token is ever pasted or stored. ``sslmode`` defaults to ``require``; a weaker one is refused unless
``aws_iam_allow_plaintext=1`` is given too (for local tests only). Optional parameters:
``aws_region`` (else the AWS default region), ``aws_profile``, ``aws_token_expires_s`` (DSQL, default
900). Pooled connections are recycled after :data:`IAM_POOL_RECYCLE_S`, below the 15-minute token
and the one-hour DSQL connection lifetimes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL

from .errors import ConfigError
from .text import safe_parameters
from .urls import IAM_MODES, mask_url, parse_url


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; a bare ``postgresql://`` (or ``postgres://``) selects psycopg2.

    Kept for callers of this module; :func:`kmidi_ingest.urls.parse_url` does the work.
    """
    return parse_url(url)


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """Create an engine for ``url``.

    Every bound text is made valid Unicode on its way in (file names that are not UTF-8 are
    stored with ``\\xNN`` escapes, see :mod:`kmidi_ingest.text`). SQLite gets ``foreign_keys=ON`` (needed for ON DELETE CASCADE), WAL journaling and a busy
    timeout on every connection. A PostgreSQL URL with ``aws_iam=...`` gets a fresh IAM token per
    new connection, and ``aws_iam=dsql…`` or ``kmidi_profile=dsql`` selects the Aurora DSQL
    profile (see the module docstring and :func:`is_dsql`).
    """
    parsed = normalize_url(url)
    profile = _query(parsed).get("kmidi_profile")
    if profile is not None and profile != DSQL:
        raise ConfigError(f"kmidi_profile={profile!r} is not known (only {DSQL!r})")
    if profile is not None:
        parsed = parsed.difference_update_query(["kmidi_profile"])
    parsed, iam = iam_options(parsed)
    if parsed.get_backend_name() == "sqlite":
        if profile is not None:
            raise ConfigError("kmidi_profile=dsql needs a postgresql:// URL")
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "before_cursor_execute", safe_parameters, retval=True)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if iam is not None:
        kwargs.setdefault("pool_recycle", IAM_POOL_RECYCLE_S)
    engine = create_engine(parsed, **kwargs)
    event.listen(engine, "before_cursor_execute", safe_parameters, retval=True)
    if iam is not None:
        event.listen(engine, "do_connect", iam.connect_hook())
    if profile == DSQL or (iam is not None and iam.mode.startswith("dsql")):
        from . import dsql_ddl

        engine.update_execution_options(kmidi_profile=DSQL)
        dsql_ddl.enable(engine)
    return engine


DSQL = "dsql"


def is_dsql(bind: Engine | Connection) -> bool:
    """Whether ``bind`` follows the Aurora DSQL profile: every transaction within DSQL's limits
    (:data:`DSQL_MAX_ROWS` rows, :data:`DSQL_MAX_BYTES` bytes, one DDL statement), no COPY,
    serialization failures retried."""
    return bool(bind.get_execution_options().get("kmidi_profile") == DSQL)


DSQL_MAX_ROWS = 3000
DSQL_MAX_BYTES = 10 * 1024 * 1024
# SQLSTATEs of optimistic-concurrency conflicts: PostgreSQL's serialization failure, and DSQL's
# OC000 (data conflict) and OC001 (schema changed under the transaction).
RETRYABLE_SQLSTATES = frozenset({"40001", "OC000", "OC001"})


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is a serialization conflict that succeeds when the transaction is rerun."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "pgcode", None) in RETRYABLE_SQLSTATES


def _query(url: URL) -> dict[str, str]:
    return {k: v if isinstance(v, str) else v[-1] for k, v in url.query.items()}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "memory":
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


IAM_POOL_RECYCLE_S = 600
_IAM_PARAMS = (
    "aws_iam",
    "aws_region",
    "aws_profile",
    "aws_token_expires_s",
    "aws_iam_allow_plaintext",
)
_SAFE_SSLMODES = ("require", "verify-ca", "verify-full")


@dataclass(frozen=True, kw_only=True)
class IamAuth:
    """How to make an IAM token for one database endpoint."""

    mode: str  # one of IAM_MODES
    host: str
    port: int
    user: str
    region: str
    profile: str | None = None
    expires_s: int = 900

    def token(self, client: Any) -> str:
        """A fresh presigned token (signed locally by boto3; no network call)."""
        if self.mode == "rds":
            return str(
                client.generate_db_auth_token(
                    DBHostname=self.host, Port=self.port, DBUsername=self.user, Region=self.region
                )
            )
        generate = (
            client.generate_db_connect_admin_auth_token
            if self.mode == "dsql-admin"
            else client.generate_db_connect_auth_token
        )
        return str(generate(Hostname=self.host, Region=self.region, ExpiresIn=self.expires_s))

    def connect_hook(self) -> Any:
        """A ``do_connect`` listener that puts a fresh token in the password of each connection."""
        client = _boto3_client(self)

        def do_connect(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
            cparams["password"] = self.token(client)

        return do_connect


def iam_options(url: URL) -> tuple[URL, IamAuth | None]:
    """Split the ``aws_*`` parameters off ``url``; return the URL to connect with and the IAM
    settings (``None`` without ``aws_iam``)."""
    query = _query(url)
    mode = query.get("aws_iam")
    if mode is None:
        return url, None
    shown = mask_url(url.render_as_string(hide_password=False))
    if url.get_backend_name() != "postgresql":
        raise ConfigError(f"aws_iam needs a postgresql:// URL, got {shown!r}")
    if mode not in IAM_MODES:
        raise ConfigError(f"aws_iam={mode!r} is not one of {', '.join(IAM_MODES)} in {shown!r}")
    if not url.host or not url.username:
        raise ConfigError(f"IAM authentication needs a user and a host in the URL: {shown!r}")
    if url.password:
        raise ConfigError(f"IAM authentication generates the password; remove it from {shown!r}")
    sslmode = query.get("sslmode", "require")
    plaintext_ok = query.get("aws_iam_allow_plaintext", "0").lower() in ("1", "true", "yes")
    if sslmode not in _SAFE_SSLMODES and not plaintext_ok:
        raise ConfigError(
            f"sslmode={sslmode!r} would send the IAM token unencrypted; use require, verify-ca or "
            f"verify-full (or aws_iam_allow_plaintext=1 for a local test server): {shown!r}"
        )
    try:
        expires_s = int(query.get("aws_token_expires_s", "900"))
    except ValueError as exc:
        raise ConfigError(f"aws_token_expires_s must be whole seconds: {shown!r}") from exc
    region = query.get("aws_region") or _default_region(query.get("aws_profile"))
    if not region:
        raise ConfigError(
            f"no AWS region for IAM authentication: add aws_region=... to the URL or set "
            f"AWS_REGION: {shown!r}"
        )
    auth = IamAuth(
        mode=mode,
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        region=region,
        profile=query.get("aws_profile"),
        expires_s=expires_s,
    )
    rest = {k: v for k, v in query.items() if k not in _IAM_PARAMS}
    rest["sslmode"] = sslmode
    return url.set(query=rest), auth


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise ConfigError(
            "IAM authentication needs boto3: pip install 'kmidi-ingest[aws]'"
        ) from exc
    return boto3


def _default_region(profile: str | None) -> str | None:
    region = _boto3().session.Session(profile_name=profile).region_name
    return None if region is None else str(region)


def _boto3_client(auth: IamAuth) -> Any:
    session = _boto3().session.Session(profile_name=auth.profile, region_name=auth.region)
    return session.client("rds" if auth.mode == "rds" else "dsql")
