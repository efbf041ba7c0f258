"""The store suite's fixtures: one ``store`` per test, on every implementation.

Each test that takes ``store`` (or ``store_url``) runs once on SQLite (a file under the test's
tmp_path) and once on PostgreSQL (a fresh database on the session's real server). The
PostgreSQL database is given a session time zone far from UTC, so that the suite's
"timestamps are UTC" assertions cannot pass by accident of the server's settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from lumiflow.store import ResourceStore, SQLStore

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]

#: A session time zone for the PostgreSQL test databases (+05:30, no daylight saving).
PG_TIME_ZONE = "Asia/Kolkata"


def _set_database_time_zone(url: str, zone: str) -> None:
    database = sa.make_url(url).database
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET timezone TO '{zone}'")
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of a fresh, empty database (no schema yet)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'lumiflow.db'}"
    postgres = request.getfixturevalue("postgres")
    url = str(postgres.create_database())
    _set_database_time_zone(url, PG_TIME_ZONE)
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[ResourceStore]:
    opened = SQLStore(store_url)
    try:
        yield opened
    finally:
        opened.close()
