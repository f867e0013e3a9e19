"""The R4 element model: for every resource, datatype and backbone element, its children.

Built once from the snapshots of the base StructureDefinitions (derivation =
specialization). Everything that walks a resource by its definitions — the XML
reader/writer, structural checks, ``_elements`` — asks this model, so they agree.

Keys: a datatype or resource name (``"HumanName"``, ``"Patient"``) or the path of a
backbone element (``"Patient.contact"``). :meth:`ElementModel.child` answers by the JSON
property name, so choice elements are found by their concrete name (``valueQuantity``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhirhub.fhir.definitions import structure_definitions

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"

PRIMITIVE_TYPES = frozenset({
    "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id",
    "instant", "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt",
    "uri", "url", "uuid", "xhtml",
})

_SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}


@dataclass(frozen=True, slots=True)
class Element:
    """One child element, as it appears under its JSON property name."""

    name: str  # JSON property name; for choices the concrete one (valueQuantity)
    path: str  # definition path (Observation.value[x])
    type: str  # concrete FHIR type code (Quantity, string, BackboneElement, Resource)
    children_key: str  # model key of its children: a type name or a backbone path
    is_array: bool
    is_primitive: bool
    is_choice: bool
    min: int
    is_summary: bool = False
    is_modifier: bool = False

    @property
    def is_resource(self) -> bool:
        return self.type == "Resource"


class ElementModel:
    """Children of every type and backbone element of FHIR R4."""

    def __init__(self, sds: list[dict[str, Any]]) -> None:
        self._children: dict[str, dict[str, Element]] = {}
        self._order: dict[str, list[str]] = {}
        self.resource_types: frozenset[str] = frozenset(
            sd["type"] for sd in sds if sd["kind"] == "resource" and not sd.get("abstract")
        )
        self.abstract_types = frozenset(sd["type"] for sd in sds if sd.get("abstract"))
        self.complex_types = frozenset(sd["type"] for sd in sds if sd["kind"] == "complex-type")
        self.primitive_regex: dict[str, re.Pattern[str]] = {}
        for sd in sds:
            self._add(sd)

    # -- building -------------------------------------------------------------------------

    def _add(self, sd: dict[str, Any]) -> None:
        elements = sd["snapshot"]["element"]
        root = elements[0]["path"]
        for el in elements[1:]:
            path: str = el["path"]
            parent, _, leaf = path.rpartition(".")
            parent_key = root if parent == root else parent
            if sd["kind"] == "primitive-type" and leaf == "value":
                self._primitive_regex(sd["type"], el)
                continue
            self._add_element(parent_key, path, leaf, el)

    def _primitive_regex(self, type_name: str, el: dict[str, Any]) -> None:
        for t in el.get("type", []):
            for ext in t.get("extension", []):
                if ext["url"] == REGEX_EXT:
                    self.primitive_regex[type_name] = re.compile(ext["valueString"])

    def _add_element(self, parent_key: str, path: str, leaf: str, el: dict[str, Any]) -> None:
        children = self._children.setdefault(parent_key, {})
        order = self._order.setdefault(parent_key, [])
        is_array = el.get("max") == "*" or (el.get("max", "1").isdigit() and int(el["max"]) > 1)
        minimum = int(el.get("min", 0))
        flags = {"is_summary": bool(el.get("isSummary")), "is_modifier": bool(el.get("isModifier"))}
        if "contentReference" in el:
            target = el["contentReference"].lstrip("#")
            children[leaf] = Element(leaf, path, "BackboneElement", target, is_array, False,
                                     False, minimum, **flags)
            order.append(leaf)
            return
        types = [type_code(t) for t in el.get("type", [])]
        if leaf.endswith("[x]"):
            base = leaf[:-3]
            for code in types:
                name = base + code[0].upper() + code[1:]
                children[name] = Element(name, path, code, code, is_array,
                                         code in PRIMITIVE_TYPES, True, minimum, **flags)
                order.append(name)
            return
        code = types[0] if types else "Element"
        # Backbone (and inline Element) children are defined under this very path.
        key = path if code in ("BackboneElement", "Element") else code
        children[leaf] = Element(leaf, path, code, key, is_array, code in PRIMITIVE_TYPES,
                                 False, minimum, **flags)
        order.append(leaf)

    # -- queries --------------------------------------------------------------------------

    def child(self, key: str, name: str) -> Element | None:
        """The child called ``name`` (JSON name) of the type or backbone at ``key``."""
        found = self._children.get(key)
        return None if found is None else found.get(name)

    def children(self, key: str) -> dict[str, Element]:
        return self._children.get(key, {})

    def order(self, key: str) -> list[str]:
        """Child names in definition order (the order XML must use)."""
        return self._order.get(key, [])

    def is_resource_type(self, name: str) -> bool:
        return name in self.resource_types


def type_code(t: dict[str, Any]) -> str:
    """An ElementDefinition.type's FHIR type code (``id`` for Resource.id's System.String)."""
    code: str = t["code"]
    if code in _SYSTEM_TYPES:
        for ext in t.get("extension", []):
            if ext["url"] == FHIR_TYPE_EXT:
                return str(ext["valueUrl"])
        return _SYSTEM_TYPES[code]
    return code


@cache
def element_model() -> ElementModel:
    """The R4 element model, built once per process."""
    sds = [
        sd for sd in structure_definitions().values()
        if (sd.get("derivation") == "specialization" and sd["kind"] != "logical")
        or (sd["type"] in ("Element", "BackboneElement", "Resource", "DomainResource")
        and sd.get("kind") != "logical" and "snapshot" in sd and sd.get("derivation") != "constraint")
    ]
    return ElementModel(sds)


__all__ = ["PRIMITIVE_TYPES", "Element", "ElementModel", "element_model", "type_code"]
