"""The PostgreSQL backend, for scale.

Durability: PostgreSQL's defaults (``synchronous_commit=on``, fsync): a 2xx means the
transaction is in the WAL on disk. Concurrency: many writers at once; writers that must
not interleave (same resource, same conditional-create criteria, same X-Request-ID) take
transaction-scoped advisory locks on their keys, in sorted order so they cannot deadlock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from fhirhub.errors import BusyError, ConflictError, FaultError
from fhirhub.search.types import SearchQuery
from fhirhub.store import audit_sql
from fhirhub.store._group import GroupCommitter
from fhirhub.store.base import HistoryPage, SearchPage, Store, StoredVersion, Transaction
from fhirhub.store.clients import ClientRecord
from fhirhub.store.schema import POSTGRES, ddl
from fhirhub.store.search_sql import SearchCompiler
from fhirhub.store.session import SessionReads, SqlSession, row_to_version

T = TypeVar("T")
# Group-commit threads per process: several groups commit at once and PostgreSQL flushes
# their WAL together, so small units (audit records of reads) are not capped at one
# commit round trip at a time.
COMMITTERS = 4
_MIGRATION_LOCK = 0x46484952  # "FHIR": serialises schema creation between processes


class _PgConnection:
    """Gives a psycopg connection the ``?``-placeholder surface :class:`SqlSession` uses."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self.conn.execute(sql.replace("?", "%s"), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])

    def batch(self) -> AbstractContextManager[Any]:
        return self.conn.pipeline()


class PostgresStore(SessionReads, Store):
    backend = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 16) -> None:
        self._compiler = SearchCompiler("postgresql")
        try:
            self._pool = ConnectionPool(
                url, min_size=1, max_size=pool_size, open=True, timeout=30,
                kwargs={"autocommit": True},
            )
            self._pool.wait(timeout=30)
        except (psycopg.Error, Exception) as exc:
            raise FaultError(f"Cannot connect to PostgreSQL: {exc}") from exc
        with self._pool.connection() as conn, self._guard(), conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            for stmt in ddl(POSTGRES):
                conn.execute(stmt)
        self._committer: GroupCommitter | None = None
        self._committer_lock = threading.Lock()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except psycopg.errors.UniqueViolation as exc:
            raise ConflictError("The write clashed with a concurrent change; try again") from exc
        except (psycopg.errors.LockNotAvailable, psycopg.errors.SerializationFailure,
                psycopg.errors.DeadlockDetected) as exc:
            raise BusyError("The database is busy with other writes; try again shortly") from exc
        except psycopg.OperationalError as exc:
            raise BusyError("The database is unavailable; try again shortly") from exc
        except psycopg.Error as exc:
            raise FaultError("The database failed to answer") from exc

    @contextmanager
    def _session(self, *, snapshot: bool = False) -> Iterator[SqlSession]:
        with self._pool.connection() as conn, self._guard():
            if snapshot:
                with conn.transaction():
                    yield SqlSession(_PgConnection(conn), self._compiler)
            else:
                yield SqlSession(_PgConnection(conn), self._compiler)

    def read(self, resource_type: str, resource_id: str) -> StoredVersion | None:
        with self._session() as s:
            return s.read(resource_type, resource_id)

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredVersion | None:
        with self._session() as s:
            return s.vread(resource_type, resource_id, version_id)

    def search(self, query: SearchQuery) -> SearchPage:
        if not query.includes and query.total == "none":
            # One statement: its own consistent snapshot, without BEGIN and COMMIT.
            with self._session() as s:
                return s.search(query)
        with self._session(snapshot=True) as s:
            s.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return s.search(query)

    def history(self, resource_type: str | None, resource_id: str | None, **kw: Any) -> HistoryPage:
        with self._session(snapshot=True) as s:
            s.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return s.history(resource_type, resource_id, **kw)

    def current_page(self, after: tuple[str, str] | None = None, *,
                     types: Sequence[str] = (), count: int = 200) -> list[StoredVersion]:
        with self._session() as s:
            return s.current_page(after, types=types, count=count)

    def client(self, client_id: str) -> ClientRecord | None:
        with self._session() as s:
            return s.client(client_id)

    def clients(self) -> list[ClientRecord]:
        with self._session() as s:
            return s.clients()

    @contextmanager
    def transaction(self, lock_keys: Sequence[str] = ()) -> Iterator[Transaction]:
        with self._pool.connection() as conn, self._guard(), conn.transaction():
            for key in sorted(set(lock_keys)):
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
            yield SqlSession(_PgConnection(conn), self._compiler)

    @contextmanager
    def _group_transaction(self) -> Iterator[SqlSession]:
        with self._pool.connection() as conn, self._guard(), conn.transaction():
            yield SqlSession(_PgConnection(conn), self._compiler)

    def submit(self, work: Callable[[Transaction], T]) -> Future[T]:
        """Group commit (see :mod:`fhirhub.store._group`) for small units: one committer
        thread per process, started on first use."""
        with self._committer_lock:
            if self._committer is None:
                self._committer = GroupCommitter(self._group_transaction, self._guard,
                                                 "fhirhub-pg-committer", threads=COMMITTERS)
        return self._committer.submit(work)

    def purge_audit_bodies(self, before: str) -> int:
        with self._session() as s:
            return audit_sql.purge_bodies(s.conn, before)

    def _reading(self) -> AbstractContextManager[SqlSession]:
        return self._session(snapshot=True)

    def count(self, resource_type: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM resources WHERE deleted = 0"
        params: tuple[str, ...] = ()
        if resource_type:
            sql += " AND res_type = %s"
            params = (resource_type,)
        with self._pool.connection() as conn, self._guard():
            row = conn.execute(sql, params).fetchone()
            return int(row[0]) if row else 0

    def iter_current(self, resource_type: str | None = None) -> Iterator[StoredVersion]:
        sql = ("SELECT res_type, res_id, version_id, last_updated, deleted, body FROM resources"
               " WHERE deleted = 0")
        params: tuple[str, ...] = ()
        if resource_type:
            sql += " AND res_type = %s"
            params = (resource_type,)
        with self._pool.connection() as conn, self._guard(), conn.transaction(), \
                conn.cursor(name="fhirhub_iter") as cur:
            cur.execute(sql + " ORDER BY res_type, res_id", params)
            for row in cur:
                yield row_to_version(row)

    def purge_remembered(self, before: str) -> int:
        with self._pool.connection() as conn, self._guard():
            cur = conn.execute("DELETE FROM idempotency WHERE created < %s", (before,))
            return cur.rowcount

    def purge_jtis(self, before: str) -> int:
        with self._pool.connection() as conn, self._guard():
            cur = conn.execute("DELETE FROM auth_jti WHERE expires < %s", (before,))
            return cur.rowcount

    def close(self) -> None:
        if self._committer is not None:
            self._committer.stop()
        self._pool.close()


__all__ = ["PostgresStore"]
