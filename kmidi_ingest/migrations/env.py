"""Alembic environment: uses a connection handed in by kmidi_ingest (``config.attributes``), or
builds one from ``sqlalchemy.url`` / ``DATABASE_URL`` when run through the ``alembic`` command."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alembic import context
from alembic.ddl.postgresql import PostgresqlImpl
from sqlalchemy import Connection

from kmidi_ingest.db import is_dsql
from kmidi_ingest.models import STORED_LENGTHS, Base

config = context.config
target_metadata = Base.metadata

# Tables the migrations own that are no ORM model (``alembic check`` would call them removed).
NOT_MODELS = {"kmidi_database"}


def _include_name(name: str | None, type_: str, parents: Mapping[Any, str | None]) -> bool:
    if type_ == "column" and parents.get("table_name") == "midi_notes":
        return name not in STORED_LENGTHS  # SQLite's storage of end times the model maps
    return not (type_ == "table" and name in NOT_MODELS)


class AuroraDsqlImpl(PostgresqlImpl):
    """Alembic support for the ``auroradsql`` SQLAlchemy dialect (PostgreSQL DDL, but DSQL runs
    one DDL statement per transaction, so none is wrapped in a transaction block)."""

    __dialect__ = "auroradsql"
    transactional_ddl = False


def _configure(connection: Connection) -> None:
    dsql = is_dsql(connection) or connection.dialect.name == "auroradsql"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=_include_name,
        transactional_ddl=False if dsql else None,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from kmidi_ingest.config import database_url_setting, read_environment
    from kmidi_ingest.db import make_engine

    # Only the URL: a setting this never uses (KMIDI_WORKERS, ...) must not stop a migration.
    url = config.get_main_option("sqlalchemy.url") or database_url_setting(read_environment())
    engine = make_engine(url)
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
