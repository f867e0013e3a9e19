"""The SQLite backend: the default, embedded, zero set-up.

Durability: WAL journal with ``synchronous=FULL``, so a transaction that has committed
(and so every 2xx) survives a crash of the server process and of the machine.
Concurrency: one writer at a time (SQLite's rule). Writers in one process queue on a lock
before ``BEGIN IMMEDIATE`` so they are served in order instead of sleeping in SQLite's
busy handler; writers in other processes wait up to the busy timeout, then get 503.
Readers never block writers and always see the last commit (no caches).
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from fhirhub.errors import BusyError, ConflictError, FaultError
from fhirhub.search.types import SearchQuery
from fhirhub.store.base import HistoryPage, SearchPage, Store, StoredVersion, Transaction
from fhirhub.store.schema import SQLITE, ddl
from fhirhub.store.search_sql import SearchCompiler
from fhirhub.store.session import SqlSession, row_to_version

T = TypeVar("T")


def path_from_url(url: str) -> str:
    """``sqlite:///rel/path`` -> ``rel/path``; ``sqlite:////abs`` -> ``/abs``;
    ``sqlite:///:memory:`` -> a private in-memory database."""
    rest = url.removeprefix("sqlite://")
    if rest.startswith("/"):
        rest = rest[1:]
    return rest or ":memory:"


class SqliteStore(Store):
    backend = "sqlite"

    def __init__(self, url: str, *, busy_timeout_ms: int = 10_000) -> None:
        path = path_from_url(url)
        self._memory = path == ":memory:"
        if self._memory:
            self._target = f"file:fhirhub-{uuid.uuid4().hex}?mode=memory&cache=shared"
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._target = path
        self._timeout = busy_timeout_ms / 1000
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._compiler = SearchCompiler()
        self._keeper = self._connect()  # keeps an in-memory database alive; runs migrations
        with self._guard():
            self._keeper.execute("BEGIN IMMEDIATE")
            try:
                for stmt in ddl(SQLITE):
                    self._keeper.execute(stmt)
                self._keeper.execute("COMMIT")
            except BaseException:
                self._keeper.execute("ROLLBACK")
                raise

    # -- connections ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._target, isolation_level=None, check_same_thread=False,
            timeout=self._timeout, uri=self._memory,
        )
        if not self._memory:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA mmap_size=268435456")
        with self._all_lock:
            self._all.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _session(self) -> SqlSession:
        return SqlSession(self._conn(), self._compiler)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Translate driver errors at the store boundary."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise BusyError(
                    "The database is busy with other writes; try again shortly"
                ) from exc
            raise FaultError("The database failed to answer") from exc
        except sqlite3.IntegrityError as exc:
            raise ConflictError(
                "The write clashed with a concurrent change; try again"
            ) from exc
        except sqlite3.Error as exc:
            raise FaultError("The database failed to answer") from exc

    @contextmanager
    def _snapshot(self) -> Iterator[SqlSession]:
        """A read transaction, so a multi-statement read sees one state of the database."""
        session = self._session()
        with self._guard():
            session.conn.execute("BEGIN")
            try:
                yield session
            finally:
                session.conn.execute("COMMIT")

    # -- the contract -------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredVersion | None:
        with self._guard():
            return self._session().read(resource_type, resource_id)

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredVersion | None:
        with self._guard():
            return self._session().vread(resource_type, resource_id, version_id)

    def search(self, query: SearchQuery) -> SearchPage:
        with self._snapshot() as session:
            return session.search(query)

    def history(self, resource_type: str | None, resource_id: str | None, **kw: Any) -> HistoryPage:
        with self._snapshot() as session:
            return session.history(resource_type, resource_id, **kw)

    @contextmanager
    def transaction(self, lock_keys: Sequence[str] = ()) -> Iterator[Transaction]:
        # BEGIN IMMEDIATE takes the database write lock: every lock key is held by it.
        session = self._session()
        with self._write_lock, self._guard():
            session.conn.execute("BEGIN IMMEDIATE")
            try:
                yield session
            except BaseException:
                session.conn.execute("ROLLBACK")
                raise
            session.conn.execute("COMMIT")

    def count(self, resource_type: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM resources WHERE deleted = 0"
        params: tuple[str, ...] = ()
        if resource_type:
            sql += " AND res_type = ?"
            params = (resource_type,)
        with self._guard():
            return int(self._conn().execute(sql, params).fetchone()[0])

    def iter_current(self, resource_type: str | None = None) -> Iterator[StoredVersion]:
        conn = self._connect()  # its own connection: the caller may write meanwhile
        try:
            sql = ("SELECT res_type, res_id, version_id, last_updated, deleted, body"
                   " FROM resources WHERE deleted = 0")
            params: tuple[str, ...] = ()
            if resource_type:
                sql += " AND res_type = ?"
                params = (resource_type,)
            for row in conn.execute(sql + " ORDER BY res_type, res_id", params):
                yield row_to_version(row)
        finally:
            conn.close()
            with self._all_lock:
                self._all.remove(conn)

    def purge_remembered(self, before: str) -> int:
        with self.transaction() as tx:
            assert isinstance(tx, SqlSession)
            cur = tx.conn.execute("DELETE FROM idempotency WHERE created < ?", (before,))
            return int(getattr(cur, "rowcount", 0))

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


__all__ = ["SqliteStore", "path_from_url"]
