"""Group commit through one committer thread.

Callers hand their unit of work to the committer and wait on a future. The committer
opens one transaction (``begin``), runs every unit waiting in the queue, each in a
savepoint so that a failing unit undoes only itself, then commits once for all of them
and completes their futures. Under load N units cost one commit (one fsync); a lone unit
commits at once. No future completes before its unit is durable.

SQLite runs every write this way (one writer anyway); PostgreSQL runs the units that
are too small to deserve a commit each, such as the audit records of reads.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from fhirhub.store.session import SqlSession

T = TypeVar("T")
_Item = tuple[Callable[[Any], Any], Future[Any]]


class GroupCommitter:
    MAX_UNITS = 128

    def __init__(self, begin: Callable[[], AbstractContextManager[SqlSession]],
                 guard: Callable[[], AbstractContextManager[None]], name: str) -> None:
        self._begin = begin
        self._guard = guard
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[Any], T]) -> Future[T]:
        if threading.current_thread() is self._thread:
            raise RuntimeError("a unit of work may not start another write")
        future: Future[T] = Future()
        self._queue.put((work, future))
        return future

    def run(self, work: Callable[[Any], T]) -> T:
        return self.submit(work).result()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            self._batch(first)

    def _batch(self, first: _Item) -> None:
        done: list[tuple[Future[Any], Any]] = []
        try:
            with self._begin() as session:
                item: _Item | None = first
                while item is not None:
                    self._unit(session, item, done)
                    item = self._next() if len(done) < self.MAX_UNITS else None
        except BaseException as exc:  # the commit failed: nothing of this group was saved
            for future, _ in done:
                future.set_exception(exc)
            if not first[1].done():
                first[1].set_exception(exc)
            return
        for future, result in done:
            future.set_result(result)

    def _next(self) -> _Item | None:
        try:
            item = self._queue.get_nowait()
        except queue.Empty:
            return None
        if item is None:
            self._queue.put(None)  # stop after this group
        return item

    def _unit(self, session: SqlSession, item: _Item,
              done: list[tuple[Future[Any], Any]]) -> None:
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


__all__ = ["GroupCommitter"]
