"""Every packaged conformance resource, by canonical URL: FHIR R4 and UK Core together.

Validation and terminology look definitions up by their canonical URL (``url`` or
``url|version``); this is the one place that knows which packages there are. UK Core
resources are read from their published FHIR XML with fhirhub's own reader.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from fhirhub.errors import FhirError

log = logging.getLogger("fhirhub.definitions")

Json = dict[str, Any]

CANONICAL_TYPES = ("StructureDefinition", "ValueSet", "CodeSystem", "ConceptMap", "SearchParameter")
UKCORE_FOLDERS = ("structuredefinitions", "valuesets", "codesystems", "conceptmaps")


@dataclass
class Definitions:
    """Conformance resources by type and canonical URL. Later additions win over earlier
    ones for the same URL (a deployment's own definitions over the packaged ones)."""

    by_type: dict[str, dict[str, Json]] = field(default_factory=dict)
    expansions: dict[str, Json] = field(default_factory=dict)  # ValueSet url -> expanded VS

    def add(self, resource: Json) -> None:
        url = resource.get("url")
        rtype = resource.get("resourceType")
        if not isinstance(url, str) or rtype not in CANONICAL_TYPES:
            return
        table = self.by_type.setdefault(str(rtype), {})
        table[url] = resource
        version = resource.get("version")
        if isinstance(version, str):
            table[f"{url}|{version}"] = resource

    def extended(self, extra: Iterable[Json]) -> Definitions:
        """A copy with ``extra`` added (winning over what is here for the same URL)."""
        copy = Definitions({k: dict(v) for k, v in self.by_type.items()}, self.expansions)
        for resource in extra:
            copy.add(resource)
        return copy

    def get(self, rtype: str, url: str) -> Json | None:
        """The ``rtype`` with canonical ``url`` (``url|version`` also accepted)."""
        table = self.by_type.get(rtype, {})
        found = table.get(url)
        if found is None and "|" in url:
            found = table.get(url.partition("|")[0])
        return found

    def all(self, rtype: str) -> Iterator[Json]:
        """Each resource of ``rtype`` once (not once per version key)."""
        seen: set[int] = set()
        for resource in self.by_type.get(rtype, {}).values():
            if id(resource) not in seen:
                seen.add(id(resource))
                yield resource

    def structure_definition(self, url: str) -> Json | None:
        return self.get("StructureDefinition", url)

    def value_set(self, url: str) -> Json | None:
        return self.get("ValueSet", url)

    def code_system(self, url: str) -> Json | None:
        return self.get("CodeSystem", url)

    def concept_map(self, url: str) -> Json | None:
        return self.get("ConceptMap", url)

    def expansion(self, url: str) -> Json | None:
        """The packaged pre-computed expansion of ValueSet ``url``, if there is one."""
        found = self.expansions.get(url)
        if found is None and "|" in url:
            found = self.expansions.get(url.partition("|")[0])
        return found


def ukcore_resources() -> list[Json]:
    """The UK Core package's conformance resources, read from their FHIR XML."""
    from fhirhub.fhir._xml_read import parse_resource

    root = resources.files("fhirhub.fhir.definitions").joinpath("ukcore")
    found: list[Json] = []
    for folder in UKCORE_FOLDERS:
        entries = sorted(root.joinpath(folder).iterdir(), key=lambda e: e.name)
        for entry in entries:
            if not entry.name.endswith(".xml"):
                continue
            try:
                found.append(parse_resource(entry.read_bytes()))
            except FhirError as exc:
                log.info("UK Core file %s/%s skipped: %s", folder, entry.name,
                            exc.diagnostics)
    return found


def build(extra: Iterable[Json] = ()) -> Definitions:
    """R4, then UK Core, then ``extra``, each later one winning for the same URL."""
    from fhirhub.fhir.definitions import iter_r4, search_parameters, structure_definitions

    definitions = Definitions()
    # The StructureDefinitions and SearchParameters are parsed once per process, for the
    # element model and the search registry too.
    for resource in (*structure_definitions().values(), *search_parameters()):
        definitions.add(resource)
    for rtype in CANONICAL_TYPES:
        if rtype in ("StructureDefinition", "SearchParameter"):
            continue
        for resource in iter_r4(rtype):
            definitions.add(resource)
    for resource in iter_r4("ValueSet-expansions"):
        if isinstance(resource.get("url"), str):
            definitions.expansions[resource["url"]] = resource
    for resource in ukcore_resources():
        definitions.add(resource)
    for resource in extra:
        definitions.add(resource)
    return definitions


@cache
def packaged() -> Definitions:
    """The packaged definitions (R4 and UK Core), loaded once per process."""
    return build()


__all__ = ["CANONICAL_TYPES", "Definitions", "build", "packaged", "ukcore_resources"]
