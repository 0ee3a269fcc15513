"""Store stage: write a :class:`~kmidi_ingest.results.CueResult` in one transaction.

Parent rows (cue, files, tracks, stems) go through Core ``INSERT … RETURNING`` to learn their ids;
the large event tables go in bulk: DB-API ``executemany`` on SQLite and ``COPY … FROM STDIN`` on
PostgreSQL, both inside the same transaction, never row by row through the ORM.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
from sqlalchemy import Connection, Engine, Table, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from . import features as feature_codec
from . import models as m
from . import staging
from .audio import StemData
from .claims import RunLock
from .db import DSQL_MAX_BYTES, DSQL_MAX_ROWS, is_dsql, is_retryable
from .errors import StoreError
from .options import RunStatus
from .results import CueResult, Problem
from .staging import StagedMidi

# The MIDI rows live in a module of their own; their bulk helpers stay reachable from here.
from .store_midi import NOTE_COLUMNS as NOTE_COLUMNS
from .store_midi import SQLITE_NOTE_COLUMNS as SQLITE_NOTE_COLUMNS
from .store_midi import bulk_insert as bulk_insert
from .store_midi import match_row, write_midi
from .store_midi import note_rows as note_rows


@dataclass(frozen=True, kw_only=True)
class StoredCue:
    """What the database knows of a cue (to decide skip / replace)."""

    id: int
    status: str
    stat_fingerprint: str
    content_fingerprint: str
    sample_rate_hz: int


def now() -> datetime:
    return datetime.now(UTC)


def start_run(
    engine: Engine,
    *,
    root: str,
    sample_rate_hz: int,
    matcher: str,
    version: str,
    parameters: dict[str, Any],
    lock: RunLock | None = None,
) -> int:
    """Insert a ``running`` row for a new run and return its id.

    With ``lock`` (see :class:`~kmidi_ingest.claims.RunLock`), the row is inserted on the lock's
    connection and the run's lock taken in the same transaction: no other run sees the row
    without its lock.
    """
    with contextlib.ExitStack() as stack:
        if lock is not None and lock.conn is not None:
            conn = lock.conn
            stack.enter_context(conn.begin())
        else:
            conn = stack.enter_context(engine.begin())
        run_id = int(
            conn.execute(
                insert(m.IngestRun).returning(m.IngestRun.id),
                {
                    "started_at": now(),
                    "status": "running",
                    "root": root,
                    "sample_rate_hz": sample_rate_hz,
                    "matcher": matcher,
                    "version": version,
                    "parameters_json": json.dumps(parameters, sort_keys=True, default=str),
                    "cues_found": 0,
                    "cues_ingested": 0,
                    "cues_skipped": 0,
                    "cues_failed": 0,
                    "error_count": 0,
                },
            ).scalar_one()
        )
        if lock is not None and lock.conn is not None:
            lock.hold(conn, run_id)
        return run_id


def abort_stale_runs(engine: Engine, lock: RunLock) -> list[int]:
    """Mark ``aborted`` the ``running`` rows of runs that died (their process was killed).

    The rule: on PostgreSQL a row is stale when no session holds its run's lock (see
    :class:`~kmidi_ingest.claims.RunLock`); on SQLite every ``running`` row is, as a database
    file has one writing run at a time; on Aurora DSQL (no advisory locks) none is touched.
    Returns the ids marked.
    """
    if engine.dialect.name != "sqlite" and lock.conn is None:
        return []
    with engine.connect() as conn:
        running = [
            int(i)
            for i in conn.execute(
                select(m.IngestRun.id).where(m.IngestRun.status == "running")
            ).scalars()
        ]
    stale = [i for i in running if engine.dialect.name == "sqlite" or not lock.is_alive(i)]
    if stale:
        with engine.begin() as conn:
            conn.execute(
                update(m.IngestRun)
                .where(m.IngestRun.id.in_(stale), m.IngestRun.status == "running")
                .values(status="aborted", finished_at=now())
            )
    return stale


def finish_run(engine: Engine, run_id: int, *, status: RunStatus, counts: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(m.IngestRun)
            .where(m.IngestRun.id == run_id)
            .values(finished_at=now(), status=status, **counts)
        )


_STORED_CUE = select(
    m.Cue.id,
    m.Cue.rel_path,
    m.Cue.status,
    m.Cue.stat_fingerprint,
    m.Cue.content_fingerprint,
    m.Cue.sample_rate_hz,
)


def _stored(row: Any) -> StoredCue:
    return StoredCue(
        id=row.id,
        status=row.status,
        stat_fingerprint=row.stat_fingerprint,
        content_fingerprint=row.content_fingerprint,
        sample_rate_hz=row.sample_rate_hz,
    )


def stored_cues(engine: Engine) -> dict[str, StoredCue]:
    """Every cue in the database by relative path."""
    with engine.connect() as conn:
        return {row.rel_path: _stored(row) for row in conn.execute(_STORED_CUE)}


def stored_cues_at(conn: Connection, rel_paths: Sequence[str]) -> dict[str, StoredCue]:
    """The cues stored now at ``rel_paths`` (those that are), by relative path, read on
    ``conn`` in one query."""
    if not rel_paths:
        return {}
    rows = conn.execute(_STORED_CUE.where(m.Cue.rel_path.in_(list(rel_paths))))
    return {row.rel_path: _stored(row) for row in rows}


def stored_cues_if_any(engine: Engine) -> dict[str, StoredCue]:
    """:func:`stored_cues`, or nothing when the database has no schema yet (never creates it)."""
    from sqlalchemy import inspect

    if not inspect(engine).has_table(m.Cue.__tablename__):
        return {}
    return stored_cues(engine)


def touch_cue(engine: Engine, cue_id: int, *, stat_fingerprint: str) -> None:
    """Record a new stat fingerprint for a cue whose content did not change (e.g. a copy)."""
    with engine.begin() as conn:
        conn.execute(
            update(m.Cue).where(m.Cue.id == cue_id).values(stat_fingerprint=stat_fingerprint)
        )


def record_problems(
    engine: Engine, run_id: int, problems: Iterable[Problem], *, cue_path: str | None = None
) -> None:
    """Store problems that belong to no stored cue (e.g. a cue that failed as a whole)."""
    rows = [_problem_row(p, run_id=run_id, cue_id=None, cue_path=cue_path) for p in problems]
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(m.IngestError), rows)


def _problem_row(p: Problem, *, run_id: int, cue_id: int | None, cue_path: str | None) -> dict:
    return {
        "run_id": run_id,
        "cue_id": cue_id,
        "cue_path": cue_path,
        "file_path": p.path,
        "stage": p.stage,
        "severity": p.severity,
        "error_type": p.error_type,
        "message": p.message,
        "created_at": now(),
    }


class CueConflict(StoreError):
    """Another writer stored the same cue first (its row is kept; ours is dropped)."""

    def __init__(self, rel_path: str) -> None:
        super().__init__("another writer stored this cue first", path=rel_path)


def write_cue(engine: Engine, result: CueResult, *, run_id: int, replace_id: int | None) -> int:
    """Write one cue and everything below it in one transaction; return the cue id.

    ``replace_id`` names the stored version of this cue to delete first (cascading to its rows).
    Raises :class:`CueConflict` when a concurrent writer inserted the same cue meanwhile.
    """
    staged = result.midi if isinstance(result.midi, StagedMidi) else None
    if staged is not None and engine.dialect.name != "sqlite":
        raise StoreError("staged MIDI rows are for SQLite only", path=result.source.rel_path)
    if is_dsql(engine):
        return _write_cue_in_chunks(engine, result, run_id=run_id, replace_id=replace_id)
    try:
        with (
            engine.connect() as conn,
            contextlib.nullcontext() if staged is None else staging.attached(conn, staged),
            _sqlite_foreign_keys(conn, on=replace_id is not None),
            conn.begin(),
        ):
            if replace_id is not None:
                conn.execute(delete(m.Cue).where(m.Cue.id == replace_id))
            # One transaction: no reader sees the cue before all of it, so it goes in complete
            # (the chunked DSQL path flips a pending row instead).
            cue_id = _insert_cue(conn, result, run_id, status="complete")
            _write_children(conn, cue_id, result, run_id)
            return cue_id
    except IntegrityError as exc:
        if "rel_path" in str(exc.orig) or "UNIQUE" in str(exc.orig).upper():
            raise CueConflict(result.source.rel_path) from exc
        raise


@contextmanager
def _sqlite_foreign_keys(conn: Connection, *, on: bool) -> Iterator[None]:
    """On SQLite, foreign-key checks off for the transaction run inside (when ``on`` is false),
    back on after it.

    A new cue's rows only reference rows inserted just before in the same transaction (ids from
    ``RETURNING``), so checking every note against its part costs a third of the insert time
    and finds nothing. A replacing write keeps them on: deleting the old cue cascades through
    them. (SQLite ignores the pragma inside a transaction, so it is set before it begins.)
    """
    if on or conn.dialect.name != "sqlite":
        yield
        return
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    dbapi.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        dbapi.execute("PRAGMA foreign_keys=ON")


RETRY_ATTEMPTS = 6
RETRY_BASE_S = 0.05


def _write_cue_in_chunks(
    engine: Engine, result: CueResult, *, run_id: int, replace_id: int | None
) -> int:
    """The Aurora DSQL profile of :func:`write_cue`: transactions of at most
    :data:`~kmidi_ingest.db.DSQL_MAX_ROWS` rows and :data:`~kmidi_ingest.db.DSQL_MAX_BYTES`
    bytes. The cue row is written ``pending`` first and flipped to ``complete`` last, so readers
    (the views filter on status) see all of it or nothing; on a serialization conflict the
    pending rows are removed and the whole cue is written again after a backoff."""
    if replace_id is not None:
        remove_cue(engine, replace_id)
    for attempt in range(RETRY_ATTEMPTS):
        cue_id: int | None = None
        try:
            with engine.connect() as raw:
                conn = _ChunkedConnection(raw, max_rows=DSQL_MAX_ROWS, max_bytes=DSQL_MAX_BYTES)
                cue_id = _insert_cue(cast(Connection, conn), result, run_id)
                raw.commit()
                conn.reset()
                _write_children(cast(Connection, conn), cue_id, result, run_id)
                raw.commit()
                raw.execute(update(m.Cue).where(m.Cue.id == cue_id).values(status="complete"))
                raw.commit()
            return cue_id
        except IntegrityError as exc:
            if "rel_path" in str(exc.orig) or "UNIQUE" in str(exc.orig).upper():
                raise CueConflict(result.source.rel_path) from exc
            raise
        except Exception as exc:
            if not is_retryable(exc) or attempt == RETRY_ATTEMPTS - 1:
                if cue_id is not None:
                    remove_cue(engine, cue_id)
                raise
            if cue_id is not None:
                remove_cue(engine, cue_id)
            _backoff(attempt)
    raise AssertionError("unreachable")


def _backoff(attempt: int) -> None:
    time.sleep(RETRY_BASE_S * 2**attempt * random.uniform(0.5, 1.5))


def retrying(engine: Engine, work: Any) -> Any:
    """Run ``work(conn)`` in a transaction, rerun on serialization conflicts with backoff."""
    for attempt in range(RETRY_ATTEMPTS):
        try:
            with engine.begin() as conn:
                return work(conn)
        except Exception as exc:
            if not is_retryable(exc) or attempt == RETRY_ATTEMPTS - 1:
                raise
            _backoff(attempt)
    raise AssertionError("unreachable")


def remove_cue(engine: Engine, cue_id: int, *, max_rows: int = DSQL_MAX_ROWS) -> None:
    """Delete a cue and everything below it in transactions of at most ``max_rows`` rows.

    The cue is marked ``pending`` first (so it leaves the views at once), then its rows are
    deleted leaves first, so no delete cascades beyond its own chunk.
    """
    retrying(
        engine,
        lambda conn: conn.execute(update(m.Cue).where(m.Cue.id == cue_id).values(status="pending")),
    )
    for table in reversed(m.Base.metadata.sorted_tables):
        owned = _owned_ids(table, cue_id)
        if owned is None or table.name == "cues":
            continue
        while True:
            deleted = retrying(
                engine, lambda conn, t=table, o=owned: _delete_some(conn, t, o, max_rows)
            )
            if deleted == 0:
                break
    retrying(engine, lambda conn: conn.execute(delete(m.Cue).where(m.Cue.id == cue_id)))


def _delete_some(conn: Connection, table: Table, owned: Any, limit: int) -> int:
    ids = conn.execute(owned.limit(limit)).scalars().all()
    if ids:
        conn.execute(delete(table).where(table.c.id.in_(ids)))
    return len(ids)


def _owned_ids(table: Table, cue_id: int) -> Any:
    """``SELECT id FROM table`` of the rows that are part of cue ``cue_id`` (following the
    cascading foreign keys up to ``cues``), or ``None`` if the table is not part of a cue."""
    if table.name == "cues":
        return select(table.c.id).where(table.c.id == cue_id)
    conditions = []
    for fk in table.foreign_keys:
        if fk.ondelete != "CASCADE":
            continue
        parent = _owned_ids(fk.column.table, cue_id)
        if parent is not None:
            conditions.append(fk.parent.in_(parent))
    if not conditions:
        return None
    return select(table.c.id).where(or_(*conditions)).order_by(table.c.id)


class _ChunkedConnection:
    """A connection that commits before a write would take the open transaction past
    ``max_rows`` rows or ``max_bytes`` bytes, and splits multi-row writes to fit."""

    def __init__(self, conn: Connection, *, max_rows: int, max_bytes: int) -> None:
        self._conn = conn
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._rows = 0
        self._bytes = 0

    @property
    def dialect(self) -> Any:
        return self._conn.dialect

    def get_execution_options(self) -> Any:
        return self._conn.get_execution_options()

    def reset(self) -> None:
        self._rows = self._bytes = 0

    def execute(self, statement: Any, parameters: Any = None) -> Any:
        if not isinstance(parameters, list):
            size = _size(parameters or {})
            self._make_room(1, size)
            result = self._conn.execute(statement, parameters)
            self._rows += 1
            self._bytes += size
            return result
        batch: list[Any] = []
        batch_bytes = 0
        for row in parameters:
            size = _size(row)
            if batch and (
                self._rows + len(batch) + 1 > self._max_rows
                or self._bytes + batch_bytes + size > self._max_bytes
            ):
                self._flush(statement, batch, batch_bytes)
                batch, batch_bytes = [], 0
            if not batch:
                self._make_room(1, size)
            batch.append(row)
            batch_bytes += size
        if batch:
            self._flush(statement, batch, batch_bytes)
        return None

    def _flush(self, statement: Any, batch: list[Any], batch_bytes: int) -> None:
        self._conn.execute(statement, batch)
        self._rows += len(batch)
        self._bytes += batch_bytes

    def _make_room(self, rows: int, size: int) -> None:
        if self._rows + rows > self._max_rows or self._bytes + size > self._max_bytes:
            self._conn.commit()
            self.reset()


def _size(row: dict[str, Any]) -> int:
    """Rough bytes of one row's values (text and bytes by length, anything else as 8)."""
    return sum(len(v) if isinstance(v, str | bytes) else 8 for v in row.values())


def _insert_cue(
    conn: Connection, result: CueResult, run_id: int, *, status: str = "pending"
) -> int:
    source = result.source
    return int(
        conn.execute(
            insert(m.Cue).returning(m.Cue.id),
            {
                "name": source.name,
                "rel_path": source.rel_path,
                "abs_path": str(source.path),
                "status": status,
                "stat_fingerprint": result.stat_fingerprint,
                "content_fingerprint": result.content_fingerprint,
                "sample_rate_hz": result.sample_rate_hz,
                "run_id": run_id,
                "midi_file_count": len(result.midi),
                "stem_count": len(result.stems),
                "final_mix_count": len(result.mixes),
                "error_count": result.error_count,
                "midi_offset_s": result.midi_offset_s,
                "ingested_at": now(),
            },
        ).scalar_one()
    )


def _write_children(conn: Connection, cue_id: int, result: CueResult, run_id: int) -> None:
    if isinstance(result.midi, StagedMidi):
        track_ids = staging.copy_staged(conn, cue_id, result.midi)
    else:
        track_ids = write_midi(conn, cue_id, result)
    hashes = result.file_hashes
    stem_ids = [
        _insert_stem(conn, m.AudioFile, cue_id, stem, result.stem_categories[i], hashes)
        for i, stem in enumerate(result.stems)
    ]
    for mix in result.mixes:
        _insert_stem(conn, m.FinalMix, cue_id, mix, None, hashes)

    staged_matches = isinstance(result.midi, StagedMidi) and result.midi.holds_matches
    if result.matches and not staged_matches:
        conn.execute(
            insert(m.TrackMatch),
            [
                match_row(row, track_ids[(row.midi_index, row.track_index)], stem_ids)
                for row in result.matches
            ],
        )
    rows = [
        _problem_row(p, run_id=run_id, cue_id=cue_id, cue_path=result.source.rel_path)
        for p in result.problems
    ]
    if rows:
        conn.execute(insert(m.IngestError), rows)


def _insert_stem(
    conn: Connection,
    model: type[m.AudioFile] | type[m.FinalMix],
    cue_id: int,
    stem: StemData,
    guess: Any,
    hashes: dict[str, str],
) -> int:
    values: dict[str, Any] = {
        "cue_id": cue_id,
        "name": stem.name,
        "group_key": stem.key,
        "channel_count": len(stem.channels),
        "channel_layout": stem.layout,
        "source_sample_rate_hz": stem.source_sample_rate_hz,
        "duration_s": stem.duration_s,
        "peak": stem.peak,
        "rms": stem.rms,
    }
    if model is m.AudioFile:
        values["category"] = None if guess is None else guess.category
        values["category_source"] = None if guess is None else guess.source
    stem_id = int(conn.execute(insert(model).returning(model.id), values).scalar_one())
    owner = "audio_file_id" if model is m.AudioFile else "final_mix_id"
    other = "final_mix_id" if model is m.AudioFile else "audio_file_id"
    conn.execute(
        insert(m.AudioChannel),
        [
            {
                owner: stem_id,
                other: None,
                "channel_order": c.order,
                "label": c.label,
                "rel_path": c.rel_path,
                "file_name": c.path.name,
                "file_channel": c.file_channel,
                "file_channels": c.file_channels,
                "size_bytes": c.size_bytes,
                "sha256": hashes.get(c.rel_path, ""),
                "audio_format": c.audio_format,
                "subtype": c.subtype,
                "sample_rate_hz": c.sample_rate_hz,
                "frames": c.frames,
                "duration_s": c.duration_s,
                "peak": c.peak,
                "rms": c.rms,
                "in_mono": c.in_mono,
            }
            for c in stem.channels
        ],
    )
    feature = stem.feature
    codec = feature_codec.DEFAULT_CODEC
    done = feature.encoded
    if done is None or done.codec != codec:
        done = feature_codec.encoded(feature.values, codec=codec)
    chunks, digest = done.chunks, done.sha256
    feature_id = int(
        conn.execute(
            insert(m.AudioFeature).returning(m.AudioFeature.id),
            {
                owner: stem_id,
                other: None,
                "kind": feature.kind,
                "sample_rate_hz": feature.sample_rate_hz,
                "n_fft": feature.n_fft,
                "hop_length": feature.hop_length,
                "n_mels": feature.n_mels,
                "fmin_hz": feature.fmin_hz,
                "fmax_hz": feature.fmax_hz,
                "db_ref": feature.db_ref,
                "db_amin": feature.db_amin,
                "centered": feature.centered,
                "dtype": str(feature.values.dtype),
                "encoding": "npy",
                "codec": codec,
                "n_frames": int(feature.values.shape[1]),
                "byte_count": sum(len(c) for c in chunks),
                "chunk_count": len(chunks),
                "sha256": digest,
            },
        ).scalar_one()
    )
    conn.execute(
        insert(m.AudioFeatureChunk),
        [{"feature_id": feature_id, "chunk_index": i, "data": c} for i, c in enumerate(chunks)],
    )
    return stem_id


def read_feature(conn: Connection, feature_id: int) -> np.ndarray:
    """Return a stored feature matrix, bit-exact as stored, verified against its sha256.

    The row's ``codec`` says how its chunks were compressed (``NULL``: raw ``.npy`` bytes, rows
    written before codecs existed); see :mod:`kmidi_ingest.features`.

    Raises
    ------
    FeatureCodecError
        When the codec is unknown or the bytes do not decode to the stored sha256.
    """
    digest, codec = conn.execute(
        select(m.AudioFeature.sha256, m.AudioFeature.codec).where(m.AudioFeature.id == feature_id)
    ).one()
    chunks = conn.execute(
        select(m.AudioFeatureChunk.data)
        .where(m.AudioFeatureChunk.feature_id == feature_id)
        .order_by(m.AudioFeatureChunk.chunk_index)
    ).scalars()
    try:
        return feature_codec.decode(chunks, codec=codec, sha256=digest)
    except feature_codec.FeatureCodecError as exc:
        raise feature_codec.FeatureCodecError(f"audio_features id {feature_id}: {exc}") from exc


class DbAnswerCache:
    """The ``llm_cache`` table as a :class:`kmidi_ingest.match.AnswerCache`.

    Each call is its own short transaction; two processes storing the same key keep the first.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(m.LlmCache.response_json).where(m.LlmCache.cache_key == key)
            ).scalar_one_or_none()

    def put(self, key: str, *, model: str, request_json: str, response_json: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(m.LlmCache),
                    {
                        "cache_key": key,
                        "model": model,
                        "request_json": request_json,
                        "response_json": response_json,
                        "created_at": now(),
                    },
                )
        except IntegrityError:
            pass  # stored meanwhile by another run: same key, same question
