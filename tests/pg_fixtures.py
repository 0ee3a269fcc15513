"""pytest plugin: PostgreSQL (and SQLite) database fixtures.

Enable it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.pg_fixtures"]``.

Fixtures
--------
``pg_server`` (session)
    A ``tests.pgserver.PostgresServer`` started on first use, or an
    ``ExistingServer`` when ``KMIDI_TEST_PG_URL`` points at a running server.
    Without PostgreSQL binaries the requesting test is skipped, or fails when
    ``CI`` is true.
``pg_url`` (function)
    SQLAlchemy URL of a fresh, empty PostgreSQL database, dropped afterwards.
``db_url`` (function, parametrized ``sqlite`` / ``postgresql``)
    A fresh database URL for each backend; PostgreSQL is only started for the
    ``postgresql`` case.

Every test that uses ``pg_server`` (directly or not) carries the marker
``postgresql``, so ``pytest -m "not postgresql"`` runs without a server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgserver import ExistingServer, PostgresServer, _DatabaseAdmin, find_pg_bindir


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgresql: test needs a PostgreSQL server (started on demand)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "pg_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgresql)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[_DatabaseAdmin]:
    if external := os.environ.get("KMIDI_TEST_PG_URL"):
        yield ExistingServer(external)
        return
    bindir = find_pg_bindir()
    if bindir is None:
        if _env_true("CI"):
            pytest.fail(
                "PostgreSQL server binaries not found; .ci/run must install Debian's postgresql",
                pytrace=False,
            )
        pytest.skip(
            "PostgreSQL server binaries not found (install Debian package postgresql) — PostgreSQL tests skipped"
        )
    with PostgresServer(bindir) as server:
        yield server


@pytest.fixture
def pg_url(pg_server: _DatabaseAdmin) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
    ids=["sqlite", "postgresql"],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/test.sqlite"
    return str(request.getfixturevalue("pg_url"))
