"""The SQL store's foundation: the engine, one helper for every transaction, notifications.

SQLite notes: write transactions start with ``BEGIN IMMEDIATE`` so that two writers queue
on the busy timeout instead of failing on a lock upgrade; reads run in autocommit, one
consistent WAL snapshot per statement, beside a writer. Driver errors never leave this
module: they become AlreadyExists or StoreUnavailable.
"""

from __future__ import annotations

import builtins
import collections
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from lumiflow.common.errors import AlreadyExists, StoreUnavailable
from lumiflow.store.base import Subscriber
from lumiflow.store.migrate import ensure_schema
from lumiflow.store.model import Change

log = logging.getLogger(__name__)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


#: Set on every SQLite connection, SQLAlchemy's and the plain ones (WAL is the file's own mode,
#: set once by SQLAlchemy's connections).
_SQLITE_PRAGMAS = ("synchronous=NORMAL", "busy_timeout=30000", "foreign_keys=ON")


def make_engine(url: str, *, pool_size: int = 8) -> sa.Engine:
    """An engine configured for lumiflow's access pattern (many short transactions)."""
    json_args: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size * 2,
            **json_args,
        )

        @sa_event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            for pragma in _SQLITE_PRAGMAS:
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        @sa_event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            # Writers queue on BEGIN IMMEDIATE. Reads run in autocommit: each statement sees
            # one consistent WAL snapshot, and an explicit BEGIN would cost a statement.
            if conn.get_execution_options().get("lumiflow_write", False):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(
        url, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True, **json_args
    )


_WRITER_LOCKS: dict[str, Any] = {}
_WRITER_LOCKS_GUARD = threading.Lock()


def _sqlite_writers(url: str) -> Any:
    """One lock per database file for every store object of this process (see ``_write``)."""
    key = url
    if url.startswith("sqlite:///") and ":memory:" not in url:
        key = str(Path(url[len("sqlite:///") :]).resolve())
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(key, threading.RLock())


class SQLBase:
    """Engine, transactions and change notifications, shared by the store's parts."""

    def __init__(self, url: str, *, pool_size: int = 8, create_schema: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        #: Reads take microseconds (a local SQLite file): callers may run them inline.
        self.inline_reads = url.startswith("sqlite")
        self._subscribers: builtins.list[Subscriber] = []
        self._lock = threading.Lock()
        self._writers: AbstractContextManager[Any] = (
            _sqlite_writers(url) if url.startswith("sqlite") else nullcontext()
        )
        database = self.engine.url.database
        #: A file database's own path: the hot reads and writes go through plain DB-API
        #: connections (``_raw_read``, ``_raw_write``, ``sqlite_fast``); None elsewhere.
        self._raw_path: str | None = (
            database if url.startswith("sqlite") and database and database != ":memory:" else None
        )
        self._raw_conn: sqlite3.Connection | None = None
        self._raw_idle: collections.deque[sqlite3.Connection] = collections.deque()
        self._raw_closed = False
        try:
            ensure_schema(self.engine, create_if_empty=create_schema)
        except OperationalError as exc:
            raise StoreUnavailable(f"cannot reach the database: {exc.orig}") from exc
        except Exception:
            self.engine.dispose()
            raise

    # --- sessions ----------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[tuple[sa.Connection, list[Change]]]:
        """One write transaction; changes are announced after a successful commit only.

        On SQLite the writers of this process take turns on a lock of their own first: SQLite
        makes a writer that finds the database locked sleep and retry (1, 2, 5, 10 ... ms),
        while a thread waiting on a lock runs as soon as the other commits. (Other processes
        still queue on SQLite's own lock.)"""
        changes: builtins.list[Change] = []
        with self._writers:
            try:
                with self.engine.connect().execution_options(lumiflow_write=True) as conn, conn.begin():
                    yield conn, changes
            except IntegrityError as exc:
                raise AlreadyExists(f"already exists: {exc.orig}") from exc
            except OperationalError as exc:
                raise StoreUnavailable(f"database error: {exc.orig}") from exc
            except DBAPIError as exc:
                raise StoreUnavailable(f"database error: {exc.orig}") from exc
        self._announce(changes)

    def _raw_connect(self) -> sqlite3.Connection:
        assert self._raw_path is not None
        conn = sqlite3.connect(self._raw_path, timeout=30, isolation_level=None, check_same_thread=False)
        for pragma in _SQLITE_PRAGMAS:
            conn.execute(f"PRAGMA {pragma}")
        return conn

    @contextmanager
    def _raw_read(self) -> Iterator[sqlite3.Connection]:
        """A plain DB-API connection for the hot reads (SQLite files only; see sqlite_fast).

        Autocommit, like ``_read``: each statement one WAL snapshot. Connections are pooled
        (as many as ever read at once), not kept per thread: the API's worker threads come
        and go."""
        try:
            conn = self._raw_idle.pop()
        except IndexError:
            try:
                conn = self._raw_connect()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot open the database: {exc}") from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"database error: {exc}") from exc
        finally:
            if self._raw_closed:
                conn.close()
            else:
                self._raw_idle.append(conn)

    @contextmanager
    def _raw_write(self) -> Iterator[tuple[sqlite3.Connection, list[Change]]]:
        """One write transaction on the store's own DB-API connection (SQLite files only);
        its changes are announced after the commit, as ``_write``'s.

        For the hot writes (status writes, a replica's metric points): SQLAlchemy's statement
        building, pooling and events cost ~10× the statement itself there. The connection is
        used only under the process's writer lock, so one is enough. Not to be entered inside
        a ``_write`` of the same thread (SQLite would make it wait for its own lock)."""
        changes: builtins.list[Change] = []
        with self._writers:
            try:
                conn = self._raw_conn
                if conn is None:
                    conn = self._raw_conn = self._raw_connect()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn, changes
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"already exists: {exc}") from exc
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"database error: {exc}") from exc
        self._announce(changes)

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except OperationalError as exc:
            raise StoreUnavailable(f"database error: {exc.orig}") from exc
        except DBAPIError as exc:
            raise StoreUnavailable(f"database error: {exc.orig}") from exc

    def _announce(self, changes: builtins.list[Change]) -> None:
        if not changes:
            return
        for change in changes:
            for callback in list(self._subscribers):
                try:
                    callback(change)
                except Exception:  # pragma: no cover - subscribers must not raise
                    log.exception("store subscriber failed")

    def subscribe(self, callback: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def close(self) -> None:
        self._raw_closed = True
        with self._writers:
            if self._raw_conn is not None:
                self._raw_conn.close()
                self._raw_conn = None
        while self._raw_idle:
            self._raw_idle.pop().close()
        self.engine.dispose()
