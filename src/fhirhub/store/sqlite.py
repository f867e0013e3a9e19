"""The SQLite backend: the default, embedded, zero set-up.

Durability: WAL journal. The group-commit writer commits with ``synchronous=NORMAL`` and
then flushes the WAL itself (``fdatasync``) before any caller is told, once for every
group committed since the last flush, so the write lock is never held across a disk
flush; every answer the server gives (and every 2xx) comes after the flush that covers
everything committed before it, and survives a crash of the process and of the machine.
Other connections keep ``synchronous=FULL``.
Concurrency: one writer at a time (SQLite's rule). Writers queue on a thread lock (within a
process) and an exclusive ``flock`` on ``<db>.writelock`` (across worker processes) before
``BEGIN IMMEDIATE``: the kernel wakes the next writer the moment the lock is free, where
SQLite's own busy handler would sleep for up to 100 ms at a time and wreck latency.
Readers never block writers and always see the last commit (no caches).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from fhirhub.errors import BusyError, ConflictError, FaultError
from fhirhub.search.types import SearchQuery
from fhirhub.store import audit_sql
from fhirhub.store._group import GroupCommitter
from fhirhub.store.base import HistoryPage, SearchPage, Store, StoredVersion, Transaction
from fhirhub.store.clients import ClientRecord
from fhirhub.store.schema import SQLITE, ddl
from fhirhub.store.search_sql import SearchCompiler
from fhirhub.store.session import SessionReads, SqlSession, row_to_version

T = TypeVar("T")
log = logging.getLogger("fhirhub.store.sqlite")
CHECKPOINT_SECONDS = 0.5


def path_from_url(url: str) -> str:
    """``sqlite:///rel/path`` -> ``rel/path``; ``sqlite:////abs`` -> ``/abs``;
    ``sqlite:///:memory:`` -> a private in-memory database."""
    rest = url.removeprefix("sqlite://")
    if rest.startswith("/"):
        rest = rest[1:]
    return rest or ":memory:"


class SqliteStore(SessionReads, Store):
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
        self._all: list[_SqliteConnection] = []
        self._all_lock = threading.Lock()
        self._compiler = SearchCompiler()
        writer = self._connect()
        if not self._memory:
            # Checkpoints run in the background, not inside a commit (a request's latency).
            writer.execute("PRAGMA wal_autocheckpoint=0")
            # Once a checkpoint lets the WAL restart, trim it back instead of keeping its
            # high-water size on disk.
            writer.execute("PRAGMA journal_size_limit=67108864")
        self._writer_session = SqlSession(writer, self._compiler)
        self._wal_fd = -1
        sync = None
        if not self._memory:
            # The writer commits without flushing, so the write lock is never held across
            # a disk flush; the committer's syncer flushes the WAL before any caller hears
            # of the commit (see store/_group.py), one flush for every group since the last.
            writer.execute("PRAGMA synchronous=NORMAL")
            sync = self._sync_wal
        self._writer = GroupCommitter(self._writer_transaction, self._guard, "fhirhub-writer",
                                      sync=sync)
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if not self._memory:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="fhirhub-checkpoint", daemon=True)
            self._checkpointer.start()
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

    def _connect(self) -> _SqliteConnection:
        conn = sqlite3.connect(
            self._target, isolation_level=None, check_same_thread=False,
            timeout=self._timeout, uri=self._memory, factory=_SqliteConnection,
        )
        if not self._memory:
            conn.execute("PRAGMA page_size=1024")  # set before WAL; only a new file takes it
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA mmap_size=268435456")
        with self._all_lock:
            self._all.append(conn)
        assert isinstance(conn, _SqliteConnection)
        return conn

    def _conn(self) -> _SqliteConnection:
        conn: _SqliteConnection | None = getattr(self._local, "conn", None)
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

    def _checkpoint_loop(self) -> None:
        """Copy committed WAL pages into the database file every so often. PASSIVE never
        blocks readers or writers; it does what it can and the next round does the rest."""
        conn = self._connect()
        while not self._stop.wait(CHECKPOINT_SECONDS):
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                log.warning("WAL checkpoint failed; will retry", exc_info=True)

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

    def current_page(self, after: tuple[str, str] | None = None, *,
                     types: Sequence[str] = (), count: int = 200) -> list[StoredVersion]:
        with self._guard():
            return self._session().current_page(after, types=types, count=count)

    def client(self, client_id: str) -> ClientRecord | None:
        with self._guard():
            return self._session().client(client_id)

    def clients(self) -> list[ClientRecord]:
        with self._guard():
            return self._session().clients()

    @contextmanager
    def transaction(self, lock_keys: Sequence[str] = ()) -> Iterator[Transaction]:
        """A write transaction on the calling thread's connection. ``BEGIN IMMEDIATE``
        takes the database write lock, which covers every lock key."""
        session = self._session()
        with self._write_lock, self._process_lock(), self._guard():
            session.conn.execute("BEGIN IMMEDIATE")
            try:
                yield session
            except BaseException:
                session.conn.execute("ROLLBACK")
                raise
            session.conn.execute("COMMIT")

    def _sync_wal(self) -> None:
        """Make every commit so far durable: flush the WAL file to disk. A commit's frames
        are either still in the WAL (flushed here) or were checkpointed into the database
        file, which a checkpoint flushes before the WAL can be reused."""
        if self._wal_fd < 0:
            self._wal_fd = os.open(f"{self._target}-wal", os.O_RDONLY)
        os.fdatasync(self._wal_fd)

    @contextmanager
    def _writer_transaction(self) -> Iterator[SqlSession]:
        session = self._writer_session
        with self._write_lock, self._process_lock(), self._guard():
            session.conn.execute("BEGIN IMMEDIATE")
            try:
                yield session
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    session.conn.execute("ROLLBACK")
                raise
            session.conn.execute("COMMIT")

    def run(self, lock_keys: Sequence[str], work: Callable[[Transaction], T]) -> T:
        """Run ``work`` on the writer thread, in the group commit it joins (see
        :mod:`fhirhub.store._group`); return once that group is durably committed."""
        return self._writer.run(work)

    def submit(self, work: Callable[[Transaction], T]) -> Future[T]:
        return self._writer.submit(work)

    def purge_audit_bodies(self, before: str) -> int:
        return self.run([], lambda tx: audit_sql.purge_bodies(_conn_of(tx), before))

    def _reading(self) -> AbstractContextManager[SqlSession]:
        return self._snapshot()

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

    def purge_jtis(self, before: str) -> int:
        with self.transaction() as tx:
            assert isinstance(tx, SqlSession)
            cur = tx.conn.execute("DELETE FROM auth_jti WHERE expires < ?", (before,))
            return int(getattr(cur, "rowcount", 0))

    def close(self) -> None:
        self._writer.stop()
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=5)
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        if self._wal_fd >= 0:
            os.close(self._wal_fd)
            self._wal_fd = -1


def _conn_of(tx: Transaction) -> Any:
    assert isinstance(tx, SqlSession)
    return tx.conn


class _SqliteConnection(sqlite3.Connection):
    """sqlite3's connection with the ``batch`` the shared session asks for (a no-op: every
    statement is local and answers at once)."""

    def batch(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


__all__ = ["SqliteStore", "path_from_url"]
