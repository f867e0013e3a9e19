"""``CodeSystem/$lookup``'s answer for one concept, as a Parameters resource.

https://hl7.org/fhir/R4/codesystem-operation-lookup.html: ``name``, ``version``,
``display``, then ``designation`` and ``property`` parameters. The properties every code
system has (https://hl7.org/fhir/R4/codesystem.html#defined-props) are added from what is
known: ``definition``, ``parent`` and ``child`` (from the hierarchy, nested concepts and
properties alike) and ``inactive``. When ``property`` inputs are given, only those are
returned.
"""

from __future__ import annotations

from typing import Any

from fhirhub.fhir.terminology._codesystems import CodeSystemIndex, Concept

Json = dict[str, Any]

_HIERARCHY = frozenset({"parent", "child"})


def _property(code: str, value: Json) -> Json:
    return {"name": "property", "part": [{"name": "code", "valueCode": code}, value]}


def _designation(designation: Json) -> Json:
    parts: list[Json] = []
    if isinstance(designation.get("language"), str):
        parts.append({"name": "language", "valueCode": designation["language"]})
    if isinstance(designation.get("use"), dict):
        parts.append({"name": "use", "valueCoding": designation["use"]})
    parts.append({"name": "value", "valueString": str(designation.get("value", ""))})
    return {"name": "designation", "part": parts}


def _own_properties(concept: Concept) -> list[Json]:
    """The concept's own properties, except parent/child, which come from the hierarchy."""
    found: list[Json] = []
    for prop in concept.properties:
        code = prop.get("code")
        if not isinstance(code, str) or code in _HIERARCHY:
            continue
        for key, value in prop.items():
            if key.startswith("value"):
                found.append(_property(code, {"name": "value", key: value}))
    return found


def lookup_parameters(index: CodeSystemIndex, concept: Concept,
                      properties: list[str] | None = None) -> Json:
    """The $lookup Parameters for ``concept`` of ``index``."""
    wanted = set(properties) if properties else None

    def want(name: str) -> bool:
        return wanted is None or name in wanted

    params: list[Json] = [{"name": "name", "valueString": index.name}]
    if index.version:
        params.append({"name": "version", "valueString": index.version})
    params.append({"name": "display", "valueString": concept.display or concept.code})
    if want("designation"):
        params += [_designation(d) for d in concept.designations]
    if want("definition") and concept.definition:
        params.append(_property("definition", {"name": "value", "valueString": concept.definition}))
    params += [p for p in _own_properties(concept) if want(p["part"][0]["valueCode"])]
    if want("inactive") and (wanted is not None or concept.inactive):
        params.append(_property("inactive", {"name": "value", "valueBoolean": concept.inactive}))
    for name, codes in (("parent", index.parents(concept.code)),
                        ("child", index.children(concept.code))):
        if want(name):
            params += [_property(name, {"name": "value", "valueCode": c}) for c in codes]
    return {"resourceType": "Parameters", "parameter": params}


__all__ = ["lookup_parameters"]
