"""The SQLite backend: the default, embedded, zero set-up.

Durability: WAL journal with ``synchronous=FULL``, so a transaction that has committed
(and so every 2xx) survives a crash of the server process and of the machine.
Concurrency: one writer at a time (SQLite's rule). Writers queue on a thread lock (within a
process) and an exclusive ``flock`` on ``<db>.writelock`` (across worker processes) before
``BEGIN IMMEDIATE``: the kernel wakes the next writer the moment the lock is free, where
SQLite's own busy handler would sleep for up to 100 ms at a time and wreck latency.
Readers never block writers and always see the last commit (no caches).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
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
        self._lock_fd = -1 if self._memory else os.open(f"{path}.writelock",
                                                         os.O_RDWR | os.O_CREAT, 0o600)
        self._timeout = busy_timeout_ms / 1000
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._compiler = SearchCompiler()
        self._groups = _GroupCommit(self._connect(), self._write_lock, self._process_lock,
                                    self._guard)
        self._keeper = self._connect()  # keeps an in-memory database alive; runs migrations
        with self._write_lock, self._process_lock(), self._guard():
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
    def _process_lock(self) -> Iterator[None]:
        """Exclusive across worker processes; the kernel hands it on in order."""
        if self._lock_fd < 0:
            yield
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

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
        """A unit of work inside the current group commit (see :class:`_GroupCommit`).

        The database write lock (``BEGIN IMMEDIATE``) covers every lock key. The block runs
        in a savepoint, so its failure undoes only its own writes; the ``with`` exits only
        once the group it joined is durably committed."""
        group = self._groups
        batch = group.join()
        try:
            session = SqlSession(group.conn, self._compiler)
            with self._guard():
                group.conn.execute("SAVEPOINT unit")
                try:
                    yield session
                except BaseException:
                    group.conn.execute("ROLLBACK TO unit")
                    group.conn.execute("RELEASE unit")
                    group.leave(batch, committed=False)
                    raise
                group.conn.execute("RELEASE unit")
        except BaseException:
            if not batch.left:
                group.leave(batch, committed=False)
            raise
        group.leave(batch, committed=True)
        group.wait(batch)

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
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


class _Batch:
    """Units of work that commit together."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.members = 0
        self.left = False


class _GroupCommit:
    """Group commit on one writer connection.

    Writers take turns on the connection (a thread lock). The first opens a transaction
    (``BEGIN IMMEDIATE`` under the cross-process file lock); each runs its unit in a
    savepoint; a writer that finds others queued behind it leaves the transaction open for
    them, and the last of the queue commits for all. So N concurrent writes cost one fsync,
    and each caller still returns only after its write is durable. Throughput under load
    rises with concurrency while a lone writer commits at once.
    """

    MAX_MEMBERS = 64

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock,
                 process_lock: Any, guard: Any) -> None:
        self.conn = conn
        self._lock = lock
        self._process_lock = process_lock
        self._guard = guard
        self._waiting = 0
        self._count_lock = threading.Lock()
        self._batch: _Batch | None = None
        self._file_lock: Any = None

    def join(self) -> _Batch:
        with self._count_lock:
            self._waiting += 1
        self._lock.acquire()
        with self._count_lock:
            self._waiting -= 1
        try:
            if self._batch is None:
                file_lock = self._process_lock()
                file_lock.__enter__()
                try:
                    with self._guard():
                        self.conn.execute("BEGIN IMMEDIATE")
                except BaseException:
                    file_lock.__exit__(None, None, None)
                    raise
                self._file_lock = file_lock
                self._batch = _Batch()
        except BaseException:
            self._lock.release()
            raise
        return self._batch

    def leave(self, batch: _Batch, *, committed: bool) -> None:
        """Called with the connection lock held; releases it."""
        batch.left = True
        try:
            if committed:
                batch.members += 1
            with self._count_lock:
                others_queued = self._waiting > 0
            if others_queued and batch.members < self.MAX_MEMBERS:
                return  # the next writer joins this transaction and commits it
            self._finish(batch)
        finally:
            self._lock.release()

    def _finish(self, batch: _Batch) -> None:
        self._batch = None
        try:
            self.conn.execute("COMMIT" if batch.members else "ROLLBACK")
        except sqlite3.Error as exc:
            batch.error = exc
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
        finally:
            self._file_lock.__exit__(None, None, None)
            self._file_lock = None
            batch.done.set()

    def wait(self, batch: _Batch) -> None:
        batch.done.wait()
        if batch.error is not None:
            with self._guard():
                raise batch.error


__all__ = ["SqliteStore", "path_from_url"]
