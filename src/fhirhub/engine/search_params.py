"""SearchParameters written to this server (https://hl7.org/fhir/R4/searchparameter.html),
so that a deployment's own search parameters are searched and indexed like the official ones.

A stored SearchParameter is *custom* when its ``url`` is not one of the packaged
definitions (``fhirhub serve`` installs the 1,384 official R4 ones into the database: those
add nothing) and its ``status`` is not ``retired``. The engine searches and indexes with
:attr:`StoredSearchParameters.registry`: the official registry with the custom ones added
(the official registry object itself when there are none). They are kept in memory and
refreshed as ``_stored.py`` describes: after a write of this process, at once; written by
another worker process, within a few seconds.

Resources written before a parameter existed are not in its index until ``fhirhub
reindex`` has run (``fhirhub.bulk.reindex``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fhirhub.engine._stored import StoredDefinitions
from fhirhub.errors import InvalidError, UnprocessableError
from fhirhub.fhir.definitions import packaged
from fhirhub.search.registry import Registry, registry
from fhirhub.store import Store

log = logging.getLogger("fhirhub.engine.search_params")

Json = dict[str, Any]
DOCUMENTATION_CHARS = 200


def is_custom(resource: Json) -> bool:
    """A SearchParameter this server must add to the official ones."""
    url = resource.get("url")
    return (isinstance(url, str) and resource.get("status") != "retired"
            and packaged().get("SearchParameter", url) is None)


def check_search_parameter(resource: Any) -> None:
    """Refuse a custom SearchParameter that could not be searched or indexed with (an
    expression that does not compile, say): 422, before anything is written."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "SearchParameter" \
            or not is_custom(resource):
        return
    try:
        registry().with_custom([resource])
    except InvalidError as exc:
        raise UnprocessableError(exc.diagnostics, expression=exc.expression) from exc


class StoredSearchParameters(StoredDefinitions):
    """The custom SearchParameters in the store, and the registry they make."""

    resource_type = "SearchParameter"

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        # One attribute, so that a reader never sees a registry with another's documentation.
        self._current: tuple[Registry, dict[str, str]] = (registry(), {})

    @property
    def registry(self) -> Registry:
        """The official registry plus the custom parameters."""
        return self._current[0]

    def documentation(self) -> Mapping[str, str]:
        """A short text for each custom parameter, by its canonical URL."""
        return self._current[1]

    def current(self) -> tuple[Registry, Mapping[str, str]]:
        """The registry and the documentation of its custom parameters, as one pair."""
        return self._current

    def keeps(self, resource: Json) -> bool:
        return is_custom(resource)

    def changed(self) -> None:
        resources = self.resources()
        self._current = (_registry_of(resources), {
            str(r["url"]): _documentation(r) for r in resources})


def _registry_of(resources: list[Json]) -> Registry:
    """The official registry with ``resources`` added, leaving out (and logging) any it
    cannot use: one may have been written before its expression was checked, or by a
    version of fhirhub that accepted more."""
    if not resources:
        return registry()
    try:
        return registry().with_custom(resources)
    except InvalidError:
        usable = _usable(resources)
        return registry().with_custom(usable) if usable else registry()


def _usable(resources: Iterable[Json]) -> list[Json]:
    usable = []
    for resource in resources:
        try:
            registry().with_custom([resource])
        except InvalidError as exc:
            log.warning("SearchParameter/%s (%s) is not used for search: %s",
                        resource.get("id"), resource.get("url"), exc.diagnostics)
        else:
            usable.append(resource)
    return usable


def _documentation(resource: Json) -> str:
    text = f"Defined on this server (SearchParameter/{resource.get('id')})"
    description = resource.get("description")
    if isinstance(description, str) and description.strip():
        line = " ".join(description.split())
        if len(line) > DOCUMENTATION_CHARS:
            line = line[:DOCUMENTATION_CHARS - 1].rstrip() + "…"
        text += f": {line}"
    return text


__all__ = ["StoredSearchParameters", "check_search_parameter", "is_custom"]
