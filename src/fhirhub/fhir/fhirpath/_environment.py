"""The environment variables an expression sees (https://hl7.org/fhir/R4/fhirpath.html#vars).

The engine knows only ``%ucum`` and ``%context``. FHIR adds code systems (``%sct``,
``%loinc``), the resource being evaluated (``%resource``, ``%rootResource``, ``%context``)
and the ``%`vs-[name]``` / ``%`ext-[name]``` shorthands for value set and extension URLs.
Caller-supplied variables win over all of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

UCUM = "http://unitsofmeasure.org"
_CONSTANTS = {"ucum": UCUM, "sct": "http://snomed.info/sct", "loinc": "http://loinc.org"}
_CONSTANT_PREFIXES = {
    "vs-": "http://hl7.org/fhir/ValueSet/",
    "ext-": "http://hl7.org/fhir/StructureDefinition/",
}


def constants_used(tree: dict[str, Any]) -> dict[str, str]:
    """The ``%`vs-*``` / ``%`ext-*``` names an engine tree uses, with the URLs they stand for.

    Found once at parse time, because their names are open-ended: they cannot all be put
    in every environment up front.
    """
    return {
        name: url + name[len(prefix):]
        for name in _external_constants(tree)
        for prefix, url in _CONSTANT_PREFIXES.items()
        if name.startswith(prefix)
    }


def environment(resource: Any, constants: Mapping[str, str],
                variables: Mapping[str, Any] | None) -> dict[str, Any]:
    """The variables for evaluating an expression that uses ``constants`` on ``resource``."""
    return {
        **_CONSTANTS,
        **constants,
        "resource": resource,
        "rootResource": resource,
        "context": resource,
        **(variables or {}),
    }


def _external_constants(node: Any) -> Iterator[str]:
    """Names of the ``%constants`` an expression uses, as the engine will look them up."""
    if isinstance(node, dict):
        if node.get("type") == "ExternalConstant":
            for child in node.get("children", []):
                yield str(child.get("text", "")).strip('`"')
        for child in node.get("children") or []:
            yield from _external_constants(child)
