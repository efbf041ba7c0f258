"""Schema versions: the migrations ship in the package; the server refuses an old schema.

A brand-new, empty database is brought to the head revision on first start (that is the
zero-setup promise). A database at an older revision is never upgraded implicitly: the
server refuses to start and names ``lumi db upgrade``, so that an operator decides when a
production database changes.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from lumiflow.common.errors import SchemaOutdated

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> str:
    """Applies migrations up to ``revision``; returns the revision reached."""
    with engine.begin() as conn:
        command.upgrade(_config(conn), revision)
    reached = current_revision(engine)
    assert reached is not None
    return reached


def is_empty(engine: sa.Engine) -> bool:
    return not sa.inspect(engine).get_table_names()


def ensure_schema(engine: sa.Engine, *, create_if_empty: bool = True) -> None:
    """Creates the schema of an empty database; refuses an outdated one.

    Raises :class:`SchemaOutdated` with the command that upgrades it.
    """
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return
    if current is None and is_empty(engine):
        if create_if_empty:
            upgrade(engine)
            return
        raise SchemaOutdated("the database is empty: run `lumi db upgrade` to create the schema")
    script = ScriptDirectory.from_config(_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if current is None:
        raise SchemaOutdated(
            "the database holds tables but no lumiflow schema version; it is not a lumiflow database"
        )
    if current not in known:
        raise SchemaOutdated(
            f"the database schema is at revision {current}, newer than this lumiflow knows "
            f"(head {head}); upgrade lumiflow"
        )
    raise SchemaOutdated(
        f"the database schema is at revision {current} but this lumiflow needs {head}: "
        "run `lumi db upgrade` (with the same --home/--config) to upgrade it"
    )
