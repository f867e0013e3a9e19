"""Rules of whole resources of some types that their definitions state in prose, not as
data: what the reference validator checks beyond the StructureDefinitions, and we with it.

* Bundle (https://hl7.org/fhir/R4/bundle.html): ``fullUrl`` is absolute; a RESTful
  ``fullUrl`` (``.../Patient/1``) ends with the entry resource's own type and id; each link
  relation occurs once; in a searchset, ``outcome`` entries are OperationOutcomes and
  ``match`` entries have ids and are of a searched type.
* Questionnaire: an item's ``enableWhen`` cannot depend on a question inside that item
  (it could never be answered while the item is disabled).
* SearchParameter: a parameter ``derivedFrom`` another keeps its type and its bases.
* StructureDefinition: every differential element names an element of its base.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from fhirhub.fhir.definitions import search_parameters

if TYPE_CHECKING:
    from fhirhub.fhir.validation._walk import Walk

Json = dict[str, Any]
_RESTFUL = re.compile(r"https?://.+/(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})")


def resource_rules(walk: Walk, resource: Json, path: str) -> None:
    check = _RULES.get(resource["resourceType"])
    if check is not None:
        check(walk, resource, path)


def _bundle(walk: Walk, bundle: Json, path: str) -> None:
    entries = [e for e in bundle.get("entry", ()) if isinstance(e, dict)]
    for index, entry in enumerate(entries):
        _entry(walk, entry, f"{path}.entry[{index}]")
    relations = [link.get("relation") for link in bundle.get("link", ()) if isinstance(link, dict)]
    for relation in sorted({r for r in relations if relations.count(r) > 1 and r}):
        walk.add("error", "invariant", f"The link relation '{relation}' occurs more than once; "
                 "each relation may appear only once in a Bundle", f"{path}.link")
    if bundle.get("type") == "searchset":
        _searchset(walk, bundle, entries, path)


def _entry(walk: Walk, entry: Json, path: str) -> None:
    full_url = entry.get("fullUrl")
    resource = entry.get("resource")
    if not isinstance(full_url, str):
        return
    if ":" not in full_url:
        walk.add("error", "value", f"The fullUrl must be an absolute URL (not '{full_url}')",
                 f"{path}.fullUrl")
        return
    match = _RESTFUL.fullmatch(full_url)
    if match is None or not isinstance(resource, dict):
        return
    rid = resource.get("id")
    if rid is None:
        walk.add("error", "value", f"The fullUrl '{full_url}' looks like a RESTful server URL, "
                 "but the resource has no id", f"{path}.fullUrl")
    elif rid != match["id"] or resource.get("resourceType") != match["type"]:
        walk.add("error", "value", f"The fullUrl '{full_url}' looks like a RESTful server URL, "
                 f"so it must end with the resource's type and id "
                 f"(/{resource.get('resourceType')}/{rid})", f"{path}.fullUrl")


def _searchset(walk: Walk, bundle: Json, entries: list[Json], path: str) -> None:
    searched = _searched_types(bundle)
    for index, entry in enumerate(entries):
        resource = entry.get("resource")
        search = entry.get("search")
        mode = search.get("mode") if isinstance(search, dict) else None
        if not isinstance(resource, dict):
            continue
        here = f"{path}.entry[{index}].resource"
        rtype = resource.get("resourceType")
        if mode == "outcome" and rtype != "OperationOutcome":
            walk.add("error", "invalid", f"An entry with search.mode 'outcome' must be an "
                     f"OperationOutcome, not a {rtype}", here)
        elif mode == "match":
            if "id" not in resource:
                walk.add("error", "required", "Search results (search.mode 'match') must "
                         "have ids", here)
            if searched and rtype not in searched:
                walk.add("error", "invalid", f"A {rtype} is not a result of this search, "
                         f"which is for {', '.join(sorted(searched))}", here)


def _searched_types(bundle: Json) -> set[str]:
    for link in bundle.get("link", ()):
        if isinstance(link, dict) and link.get("relation") == "self" and \
                isinstance(link.get("url"), str):
            try:
                url = urlsplit(link["url"])
            except ValueError:  # "https://[base]/..." reads as a bad IPv6 host
                return set()
            types = [v for k, v in parse_qsl(url.query) if k == "_type"]
            if types:
                return {t for value in types for t in value.split(",")}
            last = url.path.rstrip("/").rpartition("/")[2]
            return {last} if re.fullmatch(r"[A-Z][A-Za-z]+", last) else set()
    return set()


def _questionnaire(walk: Walk, questionnaire: Json, path: str) -> None:
    for item, where in _items(questionnaire.get("item"), f"{path}.item"):
        inner = {i.get("linkId") for i, _ in _items(item.get("item"), "")}
        for condition in item.get("enableWhen", ()):
            if isinstance(condition, dict) and condition.get("question") in inner:
                walk.add("error", "business-rule", f"Item '{item.get('linkId')}' is enabled by "
                         f"question '{condition['question']}', which is inside it: questions "
                         "with an enableWhen cannot depend on their own inner questions", where)


def _items(items: Any, path: str) -> Iterator[tuple[Json, str]]:
    if not isinstance(items, list):
        return
    for index, item in enumerate(items):
        if isinstance(item, dict):
            where = f"{path}[{index}]"
            yield item, where
            yield from _items(item.get("item"), f"{where}.item")


def _search_parameter(walk: Walk, parameter: Json, path: str) -> None:
    parent_url = parameter.get("derivedFrom")
    if not isinstance(parent_url, str):
        return
    parent = next((p for p in search_parameters() if p.get("url") == parent_url), None)
    if parent is None:
        return
    if parameter.get("type") != parent.get("type"):
        walk.add("error", "business-rule", f"The type {parameter.get('type')} is different to "
                 f"the type {parent.get('type')} of {parent_url}, which this is derived from",
                 f"{path}.type")
    for base in parameter.get("base", ()):
        if base not in parent.get("base", ()):
            walk.add("error", "business-rule", f"{base} is not a base of {parent_url}, which "
                     "this SearchParameter is derived from", f"{path}.base")


def _structure_definition(walk: Walk, definition: Json, path: str) -> None:
    for index, problem in walk.compiler.differential_problems(definition):
        walk.add("error", "structure", problem, f"{path}.differential.element[{index}]")


_RULES: dict[str, Callable[[Walk, Json, str], None]] = {
    "Bundle": _bundle,
    "Questionnaire": _questionnaire,
    "SearchParameter": _search_parameter,
    "StructureDefinition": _structure_definition,
}

__all__ = ["resource_rules"]
