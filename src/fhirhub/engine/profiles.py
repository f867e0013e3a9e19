"""StructureDefinitions written to this server, so that a deployment's own profiles and
extensions are used for validation like the packaged ones (kept in memory and refreshed as
``_stored.py`` describes)."""

from __future__ import annotations

from typing import Any

from fhirhub.engine._stored import StoredDefinitions
from fhirhub.fhir.definitions import packaged

Json = dict[str, Any]


class StoredProfiles(StoredDefinitions):
    """The StructureDefinitions in the store whose URLs are not packaged ones."""

    resource_type = "StructureDefinition"

    def keeps(self, resource: Json) -> bool:
        # The installed copy of a packaged definition (same URL and version) adds nothing.
        known = packaged().structure_definition(str(resource.get("url")))
        return known is None or known.get("version") != resource.get("version")


__all__ = ["StoredProfiles"]
