"""The terminology service over a set of definitions: what the validator and the terminology
operations call. Everything is computed on first use and cached per code system and per
value set, so start-up costs nothing and a repeated ``validate_code`` is a few dict lookups.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from fhirhub.errors import InvalidError, NotFoundError
from fhirhub.fhir.definitions import Definitions, packaged
from fhirhub.fhir.terminology import _expand
from fhirhub.fhir.terminology._codesystems import CodeSystemIndex
from fhirhub.fhir.terminology._compose import (
    add_packaged,
    compile_value_set,
    unavailable,
    whole_system,
)
from fhirhub.fhir.terminology._lookup import lookup_parameters
from fhirhub.fhir.terminology._members import Membership
from fhirhub.fhir.terminology._translate import (
    Translation,
    has_group,
    map_applies,
    translate_parameters,
)
from fhirhub.fhir.terminology._validate import (
    CodeCheck,
    check_in_system,
    check_membership,
    unknown_value_set,
)

Json = dict[str, Any]

_KNOWN_CONTENT = frozenset({"complete", "fragment"})


def _split(url: str, version: str | None) -> tuple[str, str | None]:
    base, _, in_url = url.partition("|")
    return base, version or in_url or None


class Terminology:
    """Code systems, value sets and concept maps of ``definitions``, as a service."""

    def __init__(self, definitions: Definitions) -> None:
        self._definitions = definitions
        # Keyed by canonical url (and url|version): never by whatever a client sent, so that
        # unknown urls cannot grow them.
        self._indexes: dict[str, CodeSystemIndex] = {}
        self._memberships: dict[str, Membership] = {}
        self._implicit: dict[str, str] | None = None

    # -- what validation needs ---------------------------------------------------------------

    def validate_code(self, value_set: str | Json, system: str | None, code: str,
                      display: str | None = None) -> CodeCheck:
        """Is ``code`` of ``system`` (any system when None) in ``value_set``?"""
        if isinstance(value_set, str):
            membership = self._memberships.get(value_set) or self.membership_of(value_set)
            if membership is None:
                return unknown_value_set(value_set, system, code)
            label = value_set
        else:
            membership = self._compile(value_set)
            label = str(value_set.get("url") or "given in the request")
        return check_membership(membership, label, system, code, display, self.code_system_index)

    def in_code_system(self, system: str | Json, code: str, display: str | None = None) -> CodeCheck:
        """Is ``code`` a code of ``system`` (a url, or a CodeSystem resource)?"""
        if isinstance(system, dict):
            index = CodeSystemIndex(system)
            return check_in_system(index, index.url, code, display)
        return check_in_system(self.code_system_index(system), system, code, display)

    def is_known_system(self, system: str) -> bool:
        """Is ``system`` packaged here with its codes (content complete or fragment)?"""
        index = self.code_system_index(system)
        return index is not None and index.content in _KNOWN_CONTENT

    # -- the operations ------------------------------------------------------------------------

    def expand(self, value_set: str | Json, *, filter: str | None = None, count: int | None = None,
               offset: int = 0, active_only: bool = False,
               include_designations: bool = False) -> Json:
        """``value_set`` (a url, or a ValueSet) with its ``expansion``."""
        if isinstance(value_set, str):
            vs = self.value_set(value_set)
            membership = self.membership_of(value_set)
        else:
            vs = value_set
            membership = self._compile(vs)
        assert membership is not None  # value_set() found it
        paging = _expand.Paging(filter, count, offset, active_only, include_designations)
        packaged_one = self._definitions.expansion(str(vs.get("url"))) if self._is_packaged(vs) else None
        return _expand.expansion(vs, _expand.source_of(vs, membership, packaged_one), paging)

    def lookup(self, system: str, code: str, version: str | None = None,
               properties: list[str] | None = None) -> Json:
        """The $lookup Parameters for ``code`` of ``system``."""
        index = self._index(self.code_system(system, version))
        if not index.listed:
            raise NotFoundError(f"The code '{code}' cannot be looked up: "
                                f"{unavailable(index.url, index)}", issue_code="not-supported")
        concept = index.find(code)
        if concept is None:
            partial = "" if index.complete else f", which is {index.partial} here"
            raise NotFoundError(f"The code '{code}' is not a code of {index.url}{partial}",
                                expression=("code",))
        return lookup_parameters(index, concept, properties)

    def translate(self, code: str, system: str | None = None, *,
                  concept_map: str | Json | None = None, source: str | None = None,
                  target: str | None = None, target_system: str | None = None,
                  reverse: bool = False) -> Json:
        """The $translate Parameters for ``code`` of ``system``: through ``concept_map`` (a
        url or a ConceptMap), or every packaged map that fits ``source``/``target``."""
        request = Translation(code, system, source, target, target_system, reverse)
        if isinstance(concept_map, str):
            maps = [self.concept_map(concept_map)]
        elif concept_map is not None:
            maps = [concept_map]
        elif system is None:
            raise InvalidError("Translating without a ConceptMap needs the code's system",
                               issue_code="required", spine_code="MISSING_VALUE",
                               expression=("system",))
        else:
            maps = [cm for cm in self._definitions.all("ConceptMap")
                    if map_applies(cm, request) and has_group(cm, request)]
        return translate_parameters(maps, request, self._same_code, self._definitions.concept_map)

    # -- definitions by canonical url, or a clear 404 --------------------------------------------

    def code_system(self, url: str, version: str | None = None) -> Json:
        return self._resolve("CodeSystem", url, version)

    def value_set(self, url: str, version: str | None = None) -> Json:
        if self._definitions.value_set(url) is None and self.membership_of(url) is not None:
            return {"resourceType": "ValueSet", "url": url, "status": "active"}  # implicit
        return self._resolve("ValueSet", url, version)

    def concept_map(self, url: str, version: str | None = None) -> Json:
        return self._resolve("ConceptMap", url, version)

    def _resolve(self, rtype: str, url: str, version: str | None) -> Json:
        base, version = _split(url, version)
        found = self._definitions.get(rtype, base)
        what = {"CodeSystem": "code system", "ValueSet": "value set", "ConceptMap": "concept map"}[rtype]
        if found is None:
            raise NotFoundError(f"The {what} {base} is not known to this server")
        if version is not None and found.get("version") != version:
            raise NotFoundError(f"Version {version} of the {what} {base} is not available on this "
                                f"server; it has version {found.get('version', '(none)')}")
        return found

    # -- caches (also the Source that compilation reads) ---------------------------------------

    def code_system_index(self, url: str) -> CodeSystemIndex | None:
        found = self._indexes.get(url)
        if found is None:
            resource = self._definitions.code_system(url)
            if resource is None:
                return None
            found = _cached(self._indexes, resource, lambda: CodeSystemIndex(resource))
        return found

    def membership_of(self, url: str, chain: tuple[str, ...] = ()) -> Membership | None:
        """The compiled value set ``url`` (None if unknown), compiled once."""
        found = self._memberships.get(url)
        if found is None:
            vs = self._definitions.value_set(url)
            if vs is None:
                return self._implicit_membership(url)
            found = _cached(self._memberships, vs, lambda: self._compile(vs, chain))
        return found

    def _index(self, resource: Json) -> CodeSystemIndex:
        url = str(resource.get("url", ""))
        index = self.code_system_index(url)
        return index if index is not None and index.resource is resource else CodeSystemIndex(resource)

    def _compile(self, vs: Json, chain: tuple[str, ...] = ()) -> Membership:
        url = str(vs.get("url", ""))
        membership = compile_value_set(vs, self, (*chain, url))
        expansion = self._definitions.expansion(url) if self._is_packaged(vs) else None
        if membership.unlisted and expansion is not None:
            add_packaged(membership, expansion)
        return membership.freeze()

    def _is_packaged(self, vs: Json) -> bool:
        return self._definitions.value_set(str(vs.get("url", ""))) is vs

    def _implicit_membership(self, url: str) -> Membership | None:
        """``http://snomed.info/sct?fhir_vs``, or the value set a CodeSystem says is all of it."""
        if self._implicit is None:
            self._implicit = {cs["valueSet"]: cs["url"] for cs in self._definitions.all("CodeSystem")
                              if isinstance(cs.get("valueSet"), str)}
        base, _, query = url.partition("?")
        system = self._implicit.get(url)
        if system is None and query.startswith("fhir_vs"):
            index = self.code_system_index(base)
            if index is None or not index.listed:  # cheap (all open), so not cached
                return whole_system(base, self).freeze()
            system = base if query == "fhir_vs" else None
        if system is None:
            return None
        key = f"{system}?fhir_vs"  # one entry per packaged code system, whatever url led here
        found = self._memberships.get(key)
        if found is None:
            found = self._memberships[key] = whole_system(system, self).freeze()
        return found

    def _same_code(self, system: str | None, listed: str, asked: str) -> bool:
        if listed == asked:
            return True
        index = self.code_system_index(system) if system else None
        return index is not None and not index.case_sensitive and listed.casefold() == asked.casefold()


T = TypeVar("T")


def _cached(table: dict[str, T], resource: Json, make: Callable[[], T]) -> T:
    """``table``'s entry for ``resource``, made once, under its url and its url|version."""
    key = str(resource.get("url", ""))
    found = table.get(key)
    if found is None:
        found = table[key] = make()
        if isinstance(resource.get("version"), str):
            table[f"{key}|{resource['version']}"] = found
    return found


@cache
def terminology() -> Terminology:
    """The terminology service over the packaged definitions (one per process)."""
    return Terminology(packaged())


__all__ = ["Terminology", "terminology"]
