"""Claims on cues, so that runs sharing one PostgreSQL database do not compute a cue twice.

A run claims a cue before computing it and releases it once the cue is written. A claim is a
session-level advisory lock on a connection the run keeps for its claims: another run's
``pg_try_advisory_lock`` on the same key fails at once (that run skips the cue), and a run that
dies loses its connection and with it every claim, so nothing is left locked. Storing a cue stays
safe without claims (the ``cues.rel_path`` unique constraint keeps one copy); claims only spare
the work. SQLite has a single writer and Aurora DSQL no advisory locks: there, every claim is
granted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from .db import is_dsql

log = logging.getLogger(__name__)

_NAMESPACE = b"kmidi-cue\0"
RELEASE_BATCH = 32  # claims released together (cues written or skipped), one round trip


def claim_key(rel_path: str) -> int:
    """The advisory-lock key of a cue: 64 bits of the SHA-256 of its path, as a signed bigint."""
    digest = hashlib.sha256(_NAMESPACE + rel_path.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class CueClaims:
    """The claims one run (or one Dask task) holds; use as a context manager."""

    def __init__(self, engine: Engine) -> None:
        self._conn: Connection | None = None
        if engine.dialect.name == "postgresql" and not is_dsql(engine):
            self._conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._held: set[int] = set()
        self._releasing: list[int] = []  # released by the run, not yet unlocked on the server

    def claim(self, rel_path: str) -> bool:
        """Claim the cue at ``rel_path``; false when another run holds it."""
        return self.claim_many([rel_path])[0]

    def claim_many(self, rel_paths: Sequence[str]) -> list[bool]:
        """:meth:`claim` each of ``rel_paths`` in one round trip; whether each was granted."""
        if self._conn is None:
            return [True] * len(rel_paths)
        keys = [claim_key(p) for p in rel_paths]
        wanted = sorted({k for k in keys if k not in self._held})
        if wanted:
            rows = self._conn.execute(
                text("SELECT k, pg_try_advisory_lock(k) FROM unnest(CAST(:keys AS bigint[])) k"),
                {"keys": wanted},
            ).all()
            self._held.update(int(k) for k, granted in rows if granted)
        return [k in self._held for k in keys]

    def release(self, rel_path: str) -> None:
        """Release the claim on ``rel_path`` now."""
        key = claim_key(rel_path)
        if self._conn is not None and key in self._held:
            self._held.discard(key)
            self._unlock([key], rel_path)

    def release_later(self, rel_path: str) -> None:
        """Release the claim on ``rel_path`` with the next ones, in one round trip per
        :data:`RELEASE_BATCH` (a cue already written or skipped: holding its claim a little
        longer only makes another run skip it a little longer)."""
        key = claim_key(rel_path)
        if self._conn is not None and key in self._held:
            self._held.discard(key)
            self._releasing.append(key)
            if len(self._releasing) >= RELEASE_BATCH:
                self._flush_releases()

    def _flush_releases(self) -> None:
        keys, self._releasing = self._releasing, []
        if keys:
            self._unlock(keys, f"{len(keys)} cues")

    def _unlock(self, keys: list[int], what: str) -> None:
        assert self._conn is not None
        try:
            self._conn.execute(
                text("SELECT pg_advisory_unlock(k) FROM unnest(CAST(:keys AS bigint[])) k"),
                {"keys": keys},
            )
        except SQLAlchemyError as exc:  # the session is gone, and its claims with it
            log.warning("could not release the claim on %s: %s", what, exc)

    @property
    def connection(self) -> Connection | None:
        """The claims' own connection (autocommit), for reads next to a claim; None without
        claims."""
        return self._conn

    @property
    def shared(self) -> bool:
        """Whether other runs can be writing this database now (claims are real)."""
        return self._conn is not None

    def close(self) -> None:
        """Release every claim (closing the session would too) and the connection."""
        if self._conn is not None:
            try:
                if self._held or self._releasing:
                    self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
            except SQLAlchemyError as exc:
                log.warning("could not release claims: %s", exc)
            finally:
                self._held.clear()
                self._releasing.clear()
                self._conn.close()
                self._conn = None

    def __enter__(self) -> CueClaims:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_RUN_NAMESPACE = b"kmidi-run\0"


def run_key(run_id: int) -> int:
    """The advisory-lock key a live run holds (a namespace apart from the cue claims)."""
    digest = hashlib.sha256(_RUN_NAMESPACE + str(run_id).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class RunLock:
    """Proof that a run is alive, for the runs that share its database.

    On PostgreSQL the run inserts its ``ingest_runs`` row on :attr:`conn` and takes a
    session-level advisory lock on :func:`run_key` in the same transaction, then keeps the
    connection until it ends: a run killed as a whole loses its session and the lock with it.
    Another run can then tell a dead ``running`` row from a live one (:meth:`is_alive`). SQLite
    and Aurora DSQL get no connection (:attr:`conn` is None).
    """

    def __init__(self, engine: Engine) -> None:
        self.conn: Connection | None = None
        if engine.dialect.name == "postgresql" and not is_dsql(engine):
            self.conn = engine.connect()

    def hold(self, conn: Connection, run_id: int) -> None:
        """Take run ``run_id``'s lock on ``conn`` (:attr:`conn`, inside the row's transaction)."""
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": run_key(run_id)})

    def is_alive(self, run_id: int) -> bool:
        """Whether run ``run_id`` still holds its lock (always true without :attr:`conn`)."""
        if self.conn is None:
            return True
        with self.conn.begin():
            free = bool(
                self.conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": run_key(run_id)}
                ).scalar()
            )
            if free:
                self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": run_key(run_id)})
        return not free

    def close(self) -> None:
        if self.conn is not None:
            # Closed for real, not returned to the pool: the session ends, and the lock with it.
            self.conn.invalidate()
            self.conn.close()
            self.conn = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
