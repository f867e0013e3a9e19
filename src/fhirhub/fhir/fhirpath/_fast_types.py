"""What the fast path knows of FHIR R4 types, without knowing the type of its input.

An invariant gets bare JSON, so the fast path cannot ask the model what an element is. Two
things still tell a type: a resource says it (``resourceType``), and a choice element's
JSON name carries it (``valueQuantity`` is a Quantity). This module holds what those need,
built once from the R4 definitions: the base names of choice elements with the type
suffixes each may take, and every type's ancestors (``Age`` is a ``Quantity``, ``code``
is a ``string``, ``Patient`` is a ``DomainResource``).

A JSON name made of a choice's base name and one of its suffixes is read as that choice
wherever it appears. A few ordinary elements look like one (``ActivityDefinition.
effectivePeriod``, ``Device.property.valueQuantity``); no invariant reaches them by the
base name, and an element's own name (``value`` of a Quantity) always comes first.
"""

from __future__ import annotations

from functools import cache

from fhirhub.fhir.definitions import structure_definitions
from fhirhub.fhir.model import PRIMITIVE_TYPES, element_model

_ROOT_TYPES = ("Element", "BackboneElement", "Resource", "DomainResource")


@cache
def choice_suffixes() -> dict[str, frozenset[str]]:
    """Each choice element's base name (``value``), with the JSON suffixes it takes anywhere
    in R4 (``Quantity``, ``String``...)."""
    model = element_model()
    found: dict[str, set[str]] = {}
    for key in _model_keys():
        for name, element in model.children(key).items():
            if element.is_choice:
                base = element.path.rpartition(".")[2][:-3]
                found.setdefault(base, set()).add(name[len(base):])
    return {base: frozenset(suffixes) for base, suffixes in found.items()}


def type_of_suffix(suffix: str) -> str:
    """The FHIR type a choice suffix stands for: ``DateTime`` -> ``dateTime``."""
    lowered = suffix[:1].lower() + suffix[1:]
    return lowered if lowered in PRIMITIVE_TYPES else suffix


@cache
def ancestors() -> dict[str, frozenset[str]]:
    """Every R4 type (resource, datatype, primitive) with itself and all its base types."""
    parent: dict[str, str] = {}
    for sd in structure_definitions().values():
        if sd.get("derivation") == "specialization" or sd["type"] in _ROOT_TYPES:
            base = str(sd.get("baseDefinition", "")).rpartition("/")[2]
            if sd["url"].endswith("/" + sd["type"]) and base:
                parent[sd["type"]] = base
    lines: dict[str, frozenset[str]] = {}
    for name in {*parent, *parent.values()}:
        line, at = [name], name
        while at in parent and parent[at] not in line:
            at = parent[at]
            line.append(at)
        lines[name] = frozenset(line)
    return lines


def is_resource_type(name: str) -> bool:
    """``Patient``, ``Resource``, ``DomainResource``... (not a datatype)."""
    return "Resource" in ancestors().get(name, ()) or name == "Resource"


def is_type(actual: str, wanted: str) -> bool:
    """Whether a value of type ``actual`` is a ``wanted`` (itself or a subtype)."""
    return wanted in ancestors().get(actual, (actual,))


def _model_keys() -> list[str]:
    model = element_model()
    keys = set(model.resource_types) | set(model.complex_types) | set(model.abstract_types)
    # Backbone elements are keyed by their path; collect them by walking every type.
    pending = list(keys)
    while pending:
        for element in model.children(pending.pop()).values():
            if element.children_key not in keys:
                keys.add(element.children_key)
                pending.append(element.children_key)
    return sorted(keys)
