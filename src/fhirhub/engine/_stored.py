"""Conformance resources written to this server, kept in memory by the engine: the shared
part of :class:`~fhirhub.engine.profiles.StoredProfiles` (StructureDefinitions) and
:class:`~fhirhub.engine.search_params.StoredSearchParameters` (SearchParameters).

The engine never reads the database for them while it handles a request (validation and
indexing can run inside a write transaction): they are loaded at start-up, reloaded after
any write of this process that may have changed one, and every few seconds for writes made
by the other worker processes. What changed is found from the type's history since the
last look, so a reload that finds nothing costs one small query.
"""

from __future__ import annotations

import threading
from typing import Any

from fhirhub.fhir import json as fjson
from fhirhub.store import Store

Json = dict[str, Any]
PAGE = 200


class StoredDefinitions:
    """The resources of :attr:`resource_type` in the store that :meth:`keeps`, by id."""

    resource_type = ""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_id: dict[str, Json] = {}
        self._since: str | None = None
        self._lock = threading.Lock()

    def resources(self) -> list[Json]:
        return list(self._by_id.values())

    def keeps(self, resource: Json) -> bool:
        """Whether a stored resource counts (not, e.g., the installed copy of a packaged one)."""
        raise NotImplementedError

    def changed(self) -> None:
        """Called (holding the lock) after a refresh that added, changed or removed one."""

    def refresh(self) -> bool:
        """Catch up with the store; True when a resource was added, changed or removed."""
        with self._lock:
            versions = self._changes()
            changed = False
            for version in sorted(versions, key=lambda v: (v.last_updated, v.version_id)):
                changed |= self._apply(version.id, None if version.deleted else version.body)
                if self._since is None or version.last_updated > self._since:
                    self._since = version.last_updated
            if changed:
                self.changed()
            return changed

    def _changes(self) -> list[Any]:
        found: list[Any] = []
        cursor: str | None = None
        while True:
            page = self.store.history(self.resource_type, None, since=self._since,
                                      count=PAGE, cursor=cursor)
            found += page.versions
            cursor = page.next_cursor
            if cursor is None:
                return found

    def _apply(self, rid: str, body: bytes | None) -> bool:
        resource: Json | None = fjson.loads(body) if body is not None else None
        if resource is None or not isinstance(resource.get("url"), str) or not self.keeps(resource):
            return self._by_id.pop(rid, None) is not None
        if self._by_id.get(rid) == resource:
            return False
        self._by_id[rid] = resource
        return True


__all__ = ["StoredDefinitions"]
