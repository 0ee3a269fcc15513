"""Helpers to read a database back in a backend-neutral form for comparisons."""

from __future__ import annotations

from sqlalchemy import create_engine, func, select, text

from kmidi_ingest.db import make_engine
from kmidi_ingest.models import Base

VOLATILE = {
    "id",
    "started_at",
    "finished_at",
    "ingested_at",
    "created_at",
    "elapsed_s",
    "abs_path",
    "root",
    "parameters_json",
    "run_id",
}


# Tables holding what a cue is made of (not the runs, their problem rows or the LLM cache).
CUE_TABLES = [
    name
    for name in Base.metadata.tables
    if name not in ("ingest_runs", "ingest_errors", "llm_cache")
]


def counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        result = {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in Base.metadata.tables.items()
        }
    engine.dispose()
    return result


def content(url: str, tables: list[str]) -> dict[str, list[tuple]]:
    """Rows of ``tables`` without ids and timestamps, floats rounded to 9 digits, sorted."""
    engine = make_engine(url)
    out = {}
    with engine.connect() as conn:
        for name in tables:
            table = Base.metadata.tables[name]
            cols = [c for c in table.columns if c.name not in VOLATILE and not c.foreign_keys]
            rows = conn.execute(select(*cols)).all()
            out[name] = sorted(
                (tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows),
                key=repr,
            )
    engine.dispose()
    return out


def scalar(url: str, sql: str):
    engine = make_engine(url)
    with engine.connect() as conn:
        value = conn.execute(text(sql)).scalar()
    engine.dispose()
    return value


__all__ = ["CUE_TABLES", "content", "counts", "create_engine", "scalar"]
