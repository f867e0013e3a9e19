"""StructureDefinitions written to this server, so that a deployment's own profiles and
extensions are used for validation like the packaged ones.

The engine keeps them in memory, never reading the database while it validates (validation
can run inside a write transaction): they are loaded at start-up, reloaded after any write
of this process that may have changed one, and every few seconds for writes made by the
other worker processes. What changed is found from the StructureDefinition history since the
last look, so a reload that finds nothing costs one small query.
"""

from __future__ import annotations

import threading
from typing import Any

from fhirhub.fhir import json as fjson
from fhirhub.fhir.definitions import packaged
from fhirhub.store import Store

Json = dict[str, Any]
PAGE = 200


class StoredProfiles:
    """The StructureDefinitions in the store whose URLs are not packaged ones."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_id: dict[str, Json] = {}
        self._since: str | None = None
        self._lock = threading.Lock()

    def resources(self) -> list[Json]:
        return list(self._by_id.values())

    def refresh(self) -> bool:
        """Catch up with the store; True when a definition was added, changed or removed."""
        with self._lock:
            versions = self._changes()
            changed = False
            for version in sorted(versions, key=lambda v: (v.last_updated, v.version_id)):
                changed |= self._apply(version.id, None if version.deleted else version.body)
                if self._since is None or version.last_updated > self._since:
                    self._since = version.last_updated
            return changed

    def _changes(self) -> list[Any]:
        found: list[Any] = []
        cursor: str | None = None
        while True:
            page = self.store.history("StructureDefinition", None, since=self._since,
                                      count=PAGE, cursor=cursor)
            found += page.versions
            cursor = page.next_cursor
            if cursor is None:
                return found

    def _apply(self, rid: str, body: bytes | None) -> bool:
        resource: Json | None = fjson.loads(body) if body is not None else None
        url = resource.get("url") if resource is not None else None
        if resource is None or not isinstance(url, str) or _is_packaged(resource):
            return self._by_id.pop(rid, None) is not None
        if self._by_id.get(rid) == resource:
            return False
        self._by_id[rid] = resource
        return True


def _is_packaged(resource: Json) -> bool:
    """The installed copy of a packaged definition (same URL and version) adds nothing."""
    known = packaged().structure_definition(str(resource.get("url")))
    return known is not None and known.get("version") == resource.get("version")


__all__ = ["StoredProfiles"]
