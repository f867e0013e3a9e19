"""Finding what a FHIRPath Patch path names, inside the resource being patched.

https://hl7.org/fhir/R4/fhirpatch.html: the ``path`` of an operation is a FHIRPath
expression, evaluated on the resource (:func:`fhirhub.fhir.fhirpath.nodes` and
:func:`~fhirhub.fhir.fhirpath.locate`). A path that does not evaluate is a malformed
patch (400); one that selects the wrong thing, or something outside this resource, is a
patch that cannot apply (422). The walk from the resource down to an element is kept, so
that ``delete`` can remove the objects it leaves empty above it.
"""

from __future__ import annotations

from typing import Any

from fhirhub.errors import InvalidError
from fhirhub.fhir.fhirpath import FhirPathError, Node, Place, locate, nodes
from fhirhub.fhir.model import Element, element_model
from fhirhub.fhir.patch._operations import Operation


def find_nodes(resource: dict[str, Any], op: Operation) -> list[Node]:
    """The elements the path selects, with their types (``add`` adds under one of them)."""
    try:
        return nodes(resource, op.path)
    except FhirPathError as exc:
        raise InvalidError(f"{op.where}: {exc.diagnostics}", expression=op.expression) from None


def find_place(resource: dict[str, Any], op: Operation) -> Place:
    """Where in the JSON the path's elements are, so that they can be removed or replaced."""
    try:
        return locate(resource, op.path)
    except FhirPathError as exc:
        raise InvalidError(f"{op.where}: {exc.diagnostics}", expression=op.expression) from None


def container_of(resource: dict[str, Any], node: Node, op: Operation) -> dict[str, Any]:
    """The JSON object ``node`` is, to put children in; it must be part of the resource."""
    if not isinstance(node.value, dict):
        raise op.unprocessable(f"the path selects a {node.type or 'computed'} value; add "
                               "needs an element that has children")
    ancestry_of(resource, node.value, op)
    return node.value


def list_of(resource: dict[str, Any], op: Operation) -> tuple[dict[str, Any], str, Element]:
    """The one list a path names, for insert and move: its parent, property and element."""
    place = find_place(resource, op)
    if not place.whole:
        raise InvalidError(f"{op.where}: the path must name the list itself (such as "
                           "Patient.identifier), not select items of it",
                           expression=op.expression)
    if len(place.parents) != 1:
        raise op.unprocessable(f"the path must name one list; {len(place.parents)} elements "
                               f"have a {place.name!r}")
    parent = container_of(resource, place.parents[0], op)
    element = element_model().child(place.parents[0].type or "", place.name)
    if element is None or not element.is_array:
        raise op.unprocessable(f"{place.name!r} does not repeat; {op.type} works on lists")
    return parent, element.name, element


def ancestry_of(resource: dict[str, Any], target: dict[str, Any],
                op: Operation) -> list[tuple[Any, Any]]:
    """The (holder, key) steps from the resource down to ``target``, found by identity.

    Refuses a target outside the resource: FHIRPath Patch must not cross into other
    resources (``resolve()`` answers with stand-ins, not with parts of this resource).
    """
    found = _path_to(resource, target)
    if found is None:
        raise op.unprocessable("the path leads outside the resource being patched")
    return found


def _path_to(holder: Any, target: dict[str, Any]) -> list[tuple[Any, Any]] | None:
    if holder is target:
        return []
    steps: Any = holder.items() if isinstance(holder, dict) else enumerate(holder)
    for key, child in steps:
        if isinstance(child, dict | list):
            below = _path_to(child, target)
            if below is not None:
                return [(holder, key), *below]
    return None


def prune(ancestry: list[tuple[Any, Any]]) -> None:
    """Remove the objects a delete left empty: FHIR JSON has no empty objects or arrays."""
    for holder, key in reversed(ancestry):
        child = holder[key]
        if child not in ({}, []):
            return
        del holder[key]


__all__ = ["ancestry_of", "container_of", "find_nodes", "find_place", "list_of", "prune"]
