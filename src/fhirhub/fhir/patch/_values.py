"""What a FHIRPath Patch value must be, and the JSON it becomes, by the R4 element model.

https://hl7.org/fhir/R4/fhirpatch.html: ``add`` names the new element and ``replace``
takes the type of the element it replaces; for a choice (``value[x]``) the type of the
``value`` part picks the property (``valueQuantity``). A value with nested parts is an
anonymous complex value: each part is placed, by the same rules, under the element's type.
"""

from __future__ import annotations

import copy
from typing import Any

from fhirhub.fhir.fhirpath import Location
from fhirhub.fhir.model import Element, element_model
from fhirhub.fhir.patch._operations import Operation, Value, value_part
from fhirhub.fhir.patch._shapes import list_insert, set_single


def target(container_type: str | None, name: str, value: Value,
           op: Operation) -> tuple[str, Element]:
    """The property ``name`` names under ``container_type`` for ``value`` (choices typed)."""
    model = element_model()
    if container_type is None or not model.children(container_type):
        raise op.unprocessable("the path does not select an element of the resource")
    element = model.child(container_type, name)
    if element is None and _choice_base(container_type, name):
        if value.type in (None, "Resource"):
            raise op.unprocessable(f"{name}[x] of {container_type} needs a value[x] that "
                                   "says which type it is")
        element = model.child(container_type, name + _capital(value.type))
        if element is None:
            raise op.unprocessable(f"{name}[x] of {container_type} cannot be a {value.type}")
    if element is None:
        raise op.unprocessable(f"{container_type} has no element {name!r}")
    _check_type(element, value, op)
    return element.name, element


def replacement_target(location: Location, value: Value,
                       op: Operation) -> tuple[str, Element]:
    """The property ``replace`` writes: the one it replaces, or the choice ``value`` picks."""
    element = element_model().child(location.parent_type or "", location.key)
    if element is None:
        raise op.unprocessable("the path does not select an element of the resource")
    if element.is_choice:
        base = element.path.rpartition(".")[2].removesuffix("[x]")
        return target(location.parent_type, base, value, op)
    _check_type(element, value, op)
    return element.name, element


def _check_type(element: Element, value: Value, op: Operation) -> None:
    if value.type is None:  # nested parts: an anonymous (complex) value
        if element.is_primitive:
            raise op.unprocessable(f"{element.path} is a {element.type}; it needs a "
                                   f"value{_capital(element.type)}, not nested parts")
        return
    fits = value.type == element.type or (
        # Parameters has no valueXhtml: a narrative div comes as a string.
        element.type == "xhtml" and value.type == "string"
    ) or (element.is_resource and value.type == "Resource")
    if not fits:
        expected = "resource" if element.is_resource else f"value{_capital(element.type)}"
        raise op.unprocessable(f"{element.path} is a {element.type}, so the value must be a "
                               f"{expected}, not a value{_capital(value.type)}")


def variants(container_type: str | None, element: Element) -> set[str]:
    """Every property the element may appear as (all the types of a choice)."""
    if not element.is_choice:
        return {element.name}
    return {e.name for e in element_model().children(container_type or "").values()
            if e.path == element.path}


def _choice_base(container_type: str, name: str) -> bool:
    return any(e.is_choice and e.path.endswith(f".{name}[x]")
               for e in element_model().children(container_type).values())


def build_value(value: Value, element: Element, op: Operation) -> tuple[Any, Any]:
    """The JSON for ``value`` placed as ``element``, and its primitive extension if any."""
    if value.type is not None:
        return copy.deepcopy(value.json), copy.deepcopy(value.extension)
    built: dict[str, Any] = {}
    for part in value.parts:
        child_value = value_part(part, f"{op.expression[0]}: part {part['name']!r}")
        key, child = target(element.children_key, part["name"], child_value, op)
        json_value, extension = build_value(child_value, child, op)
        if child.is_array:
            list_insert(built, key, len(built.get(key) or []), json_value, extension)
        elif key in built or "_" + key in built:
            raise op.unprocessable(f"{child.path} does not repeat, but the value has it twice")
        else:
            set_single(built, key, json_value, extension)
    return built, None


def _capital(type_name: str) -> str:
    return type_name[0].upper() + type_name[1:]


__all__ = ["build_value", "replacement_target", "target", "variants"]
