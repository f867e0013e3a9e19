"""Group commit through committer threads.

Callers hand their unit of work to a committer and wait on a future. A committer opens
one transaction (``begin``), runs every unit waiting in the queue, each in a savepoint so
that a failing unit undoes only itself, then commits once for all of them. Under load N
units cost one commit; a lone unit commits at once. No future completes before its unit
is durable.

Two ways to go faster than one commit at a time, each for one backend:

- ``threads`` > 1 (PostgreSQL): several committers take turns at the queue, so that
  several groups are committing at once and the database flushes their WAL together.
- ``sync`` (SQLite): the transaction commits without waiting for the disk, which frees
  the database's single write lock at once (the next group, or another worker process,
  can commit), and a syncer thread then makes the WAL durable (``fdatasync``) once for
  every group committed since its last sync, completing their futures only then. The
  write lock is no longer held across a disk flush, and one flush serves many groups.

SQLite runs every write this way (one writer anyway); PostgreSQL runs the units that
are too small to deserve a commit each, such as the audit records of reads.
"""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from fhirhub.store.audit import AuditAppend
from fhirhub.store.session import SqlSession

T = TypeVar("T")
_Item = tuple[Callable[[Any], Any], Future[Any]]
_Done = list[tuple[Future[Any], Any]]


class GroupCommitter:
    MAX_UNITS = 256

    def __init__(self, begin: Callable[[], AbstractContextManager[SqlSession]],
                 guard: Callable[[], AbstractContextManager[None]], name: str, *,
                 threads: int = 1, sync: Callable[[], None] | None = None) -> None:
        self._begin = begin
        self._guard = guard
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
                         for i in range(threads)]
        self._sync = sync
        self._synced: queue.SimpleQueue[_Done | None] = queue.SimpleQueue()
        self._syncer: threading.Thread | None = None
        if sync is not None:
            self._syncer = threading.Thread(target=self._sync_loop, name=f"{name}-sync",
                                            daemon=True)
            self._syncer.start()
        for thread in self._threads:
            thread.start()

    def submit(self, work: Callable[[Any], T]) -> Future[T]:
        if threading.current_thread() in self._threads:
            raise RuntimeError("a unit of work may not start another write")
        future: Future[T] = Future()
        self._queue.put((work, future))
        return future

    def run(self, work: Callable[[Any], T]) -> T:
        """Do ``work`` on a committer thread, in the caller's context (its context
        variables, such as the request's access grant, go with it), and wait."""
        context = contextvars.copy_context()
        return self.submit(lambda session: context.run(work, session)).result()

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        if self._syncer is not None:
            self._synced.put(None)
            self._syncer.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            self._batch(first)

    def _batch(self, first: _Item) -> None:
        done: _Done = []
        appends: list[_Item] = []
        try:
            with self._begin() as session:
                item: _Item | None = first
                while item is not None:
                    if isinstance(item[0], AuditAppend):
                        appends.append(item)
                    else:
                        self._unit(session, item, done)
                    taken = len(done) + len(appends)
                    item = self._next() if taken < self.MAX_UNITS else None
                if appends:
                    self._appends(session, appends, done)
        except BaseException as exc:  # the commit failed: nothing of this group was saved
            for future, _ in done:
                future.set_exception(exc)
            if not first[1].done():
                first[1].set_exception(exc)
            return
        if self._sync is None:
            _complete(done)
        elif done:
            self._synced.put(done)

    def _sync_loop(self) -> None:
        """Make committed groups durable, one disk flush for all that are waiting."""
        assert self._sync is not None
        while True:
            first = self._synced.get()
            waiting = [first]
            while True:
                try:
                    waiting.append(self._synced.get_nowait())
                except queue.Empty:
                    break
            stop = None in waiting
            groups = [g for g in waiting if g is not None]
            try:
                self._sync()
            except BaseException as exc:  # not known to be durable: say so to every caller
                for group in groups:
                    for future, _ in group:
                        future.set_exception(exc)
            else:
                for group in groups:
                    _complete(group)
            if stop:
                return

    def _appends(self, session: SqlSession, appends: list[_Item], done: _Done) -> None:
        """The audit appends of this group as one unit; if that fails, each on its own,
        so that only the one at fault fails."""
        entries = [e for work, _ in appends if isinstance(work, AuditAppend)
                   for e in work.entries]
        merged: _Done = []
        self._unit(session, (AuditAppend(entries), Future()), merged)
        if merged:
            done.extend((future, None) for _, future in appends)
            return
        for item in appends:
            self._unit(session, item, done)

    def _next(self) -> _Item | None:
        try:
            item = self._queue.get_nowait()
        except queue.Empty:
            return None
        if item is None:
            self._queue.put(None)  # stop after this group
        return item

    def _unit(self, session: SqlSession, item: _Item, done: _Done) -> None:
        work, future = item
        conn = session.conn
        conn.execute("SAVEPOINT unit")
        try:
            with self._guard():
                result = work(session)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
            future.set_exception(exc)
            return
        conn.execute("RELEASE unit")
        done.append((future, result))


def _complete(done: _Done) -> None:
    for future, result in done:
        future.set_result(result)


__all__ = ["GroupCommitter"]
