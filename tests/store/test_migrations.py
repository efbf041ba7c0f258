"""Schema versions (store/migrate.py): a new database is created at head, an old one is
refused with the command that upgrades it, and `lumi db upgrade` / `lumi db current` do what
they say. On SQLite and PostgreSQL (``store_url`` is a fresh, empty database of each)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from lumiflow.common.errors import SchemaOutdated
from lumiflow.common.timeutil import utcnow
from lumiflow.store import SQLStore, migrate, schema
from lumiflow.store.sql import make_engine
from tests.helpers import lumi
from tests.store.factory import KIND, new_object

pytestmark = pytest.mark.timeout(60)

OLD = "0001"


def schema_differences(engine: sa.Engine) -> list[object]:
    """What Alembic's autogenerate would change to make the database match schema.py."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, schema.metadata))


def table_names(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def make_old_database(url: str) -> None:
    """A database at revision 0001 holding one resource, as an older lumiflow left it."""
    engine = make_engine(url)
    try:
        assert migrate.upgrade(engine, OLD) == OLD
        now = utcnow()
        with engine.begin() as conn:
            conn.execute(
                schema.resources.insert().values(
                    uid="00000000-0000-4000-8000-000000000001",
                    kind=KIND,
                    api_version="lumiflow.io/v1",
                    profile="team-a",
                    name="from-0001",
                    labels={},
                    annotations={},
                    owner_references=[],
                    owner_uid=None,
                    finalizers=[],
                    spec={"replicas": 2},
                    status={"phase": "Succeeded"},
                    phase="Succeeded",
                    resource_version=5,
                    generation=2,
                    created_at=now,
                    updated_at=now,
                    deletion_timestamp=None,
                )
            )
    finally:
        engine.dispose()


def test_a_new_database_is_created_at_head_matching_the_schema(store_url: str) -> None:
    store = SQLStore(store_url)
    try:
        assert migrate.current_revision(store.engine) == migrate.head_revision()
        assert {"resources", "events", "users", "tokens"} <= table_names(store.engine)
        assert schema_differences(store.engine) == [], "schema.py and the migrations disagree"
    finally:
        store.close()


def test_an_empty_database_is_refused_when_creating_the_schema_is_not_allowed(store_url: str) -> None:
    with pytest.raises(SchemaOutdated, match="lumi db upgrade"):
        SQLStore(store_url, create_schema=False)
    engine = make_engine(store_url)
    try:
        assert migrate.is_empty(engine)
    finally:
        engine.dispose()


def test_an_old_schema_is_refused_until_upgraded_and_keeps_its_data(store_url: str) -> None:
    make_old_database(store_url)

    with pytest.raises(SchemaOutdated) as refused:
        SQLStore(store_url)
    assert "lumi db upgrade" in refused.value.message
    assert OLD in refused.value.message
    assert migrate.head_revision() in refused.value.message

    engine = make_engine(store_url)
    try:
        assert migrate.current_revision(engine) == OLD, "opening the store must not upgrade it"
        assert "users" not in table_names(engine)
        assert migrate.upgrade(engine) == migrate.head_revision()
        assert schema_differences(engine) == []
    finally:
        engine.dispose()

    store = SQLStore(store_url)
    try:
        kept = store.get(KIND, "team-a", "from-0001")
        assert (kept.spec, kept.resource_version, kept.generation) == ({"replicas": 2}, 5, 2)
        assert [o.name for o in store.list(KIND, phases=["Succeeded"]).items] == ["from-0001"]
        store.create_user("alice", ["ml"])
        assert store.get_user("alice").groups == ["ml"]
        updated = store.update(kept.copy(spec={"replicas": 3}))
        assert (updated.resource_version, updated.generation) == (6, 3)
    finally:
        store.close()


def test_a_newer_schema_is_refused(store_url: str) -> None:
    SQLStore(store_url).close()
    engine = make_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    with pytest.raises(SchemaOutdated, match="newer than this lumiflow knows"):
        SQLStore(store_url)


def test_a_database_of_another_application_is_refused(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    finally:
        engine.dispose()
    with pytest.raises(SchemaOutdated, match="not a lumiflow database"):
        SQLStore(store_url)
    engine = make_engine(store_url)
    try:
        assert table_names(engine) == {"invoices"}, "a foreign database must be left alone"
    finally:
        engine.dispose()


def test_lumi_db_current_and_upgrade_on_an_old_database(store_url: str, backend: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    if backend == "sqlite":
        url = f"sqlite:///{home / 'lumiflow.db'}"  # the default database of a home
    else:
        url = store_url
        (home / "lumiflow.yaml").write_text(yaml.safe_dump({"database": {"url": url}}))
    make_old_database(url)
    head = migrate.head_revision()

    current = lumi("db", "current", "--home", str(home), home=home)
    assert f"database: {OLD}; this lumiflow needs: {head}" in current.stdout

    upgraded = lumi("db", "upgrade", "--home", str(home), home=home)
    assert f"schema: {OLD} -> {head}" in upgraded.stdout

    engine = make_engine(url)
    try:
        assert migrate.current_revision(engine) == head
    finally:
        engine.dispose()
    store = SQLStore(url)
    try:
        assert store.get(KIND, "team-a", "from-0001").spec == {"replicas": 2}
        store.create(new_object("after-upgrade"))
    finally:
        store.close()

    again = lumi("db", "current", "--home", str(home), home=home)
    assert f"database: {head}; this lumiflow needs: {head}" in again.stdout
