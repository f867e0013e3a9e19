"""FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html): its five operations.

``add``, ``insert``, ``delete``, ``replace`` and ``move``, each applied in turn to one copy
of the resource. The parts of every operation are read and checked before any is applied
(:mod:`fhirhub.fhir.patch._operations`); each path is evaluated when its operation runs,
on the resource as the operations before it left it (:mod:`~fhirhub.fhir.patch._locate`).
What a value becomes is :mod:`~fhirhub.fhir.patch._values`; where its JSON goes,
:mod:`~fhirhub.fhir.patch._shapes`.
"""

from __future__ import annotations

import copy
from typing import Any

from fhirhub.fhir.patch._locate import (
    ancestry_of,
    container_of,
    find_nodes,
    find_place,
    list_of,
    prune,
)
from fhirhub.fhir.patch._operations import Operation, read_operations
from fhirhub.fhir.patch._shapes import list_insert, list_pop, set_single
from fhirhub.fhir.patch._values import build_value, replacement_target, target, variants


def apply_fhirpath_patch(resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """``resource`` with the FHIRPath Patch ``parameters`` applied, in order."""
    operations = read_operations(parameters)
    patched = copy.deepcopy(resource)
    for operation in operations:
        _APPLY[operation.type](patched, operation)
    return patched


def _add(resource: dict[str, Any], op: Operation) -> None:
    found = find_nodes(resource, op)
    if not found:
        raise op.unprocessable("the path matches nothing; add needs the element to add to")
    if len(found) > 1:
        raise op.unprocessable(f"the path matches {len(found)} elements; add needs exactly one")
    container = container_of(resource, found[0], op)
    assert op.name is not None and op.value is not None  # required parts, checked on reading
    key, element = target(found[0].type, op.name, op.value, op)
    value, extension = build_value(op.value, element, op)
    if element.is_array:
        list_insert(container, key, len(container.get(key) or []), value, extension)
        return
    present = [k for k in container if k.removeprefix("_") in variants(found[0].type, element)]
    if present:
        raise op.unprocessable(f"{element.path} already has a value and does not repeat; "
                               "use replace to change it")
    set_single(container, key, value, extension)


def _insert(resource: dict[str, Any], op: Operation) -> None:
    parent, key, element = list_of(resource, op)
    assert op.value is not None and op.index is not None  # required parts
    items = parent.get(key) or []
    if not 0 <= op.index <= len(items):
        raise op.unprocessable(f"index {op.index} is out of range: the list has "
                               f"{len(items)} item(s), so it must be 0 to {len(items)}")
    value, extension = build_value(op.value, element, op)
    list_insert(parent, key, op.index, value, extension)


def _delete(resource: dict[str, Any], op: Operation) -> None:
    found = find_place(resource, op).locations
    if not found:
        return  # deleting what is not there changes nothing
    if len(found) > 1:
        raise op.unprocessable(f"the path matches {len(found)} elements; only a single "
                               "element can be deleted")
    location = found[0]
    ancestry = ancestry_of(resource, location.parent, op)
    if location.index is None:
        location.parent.pop(location.key, None)
        location.parent.pop("_" + location.key, None)
    else:
        list_pop(location.parent, location.key, location.index)
    prune(ancestry)


def _replace(resource: dict[str, Any], op: Operation) -> None:
    found = find_place(resource, op).locations
    if not found:
        raise op.unprocessable("the path matches nothing; replace needs an element to replace")
    if len(found) > 1:
        raise op.unprocessable(f"the path matches {len(found)} elements; replace needs "
                               "exactly one")
    location = found[0]
    ancestry_of(resource, location.parent, op)
    assert op.value is not None  # required part
    key, element = replacement_target(location, op.value, op)
    value, extension = build_value(op.value, element, op)
    if location.index is None:
        location.parent.pop(location.key, None)
        location.parent.pop("_" + location.key, None)
        set_single(location.parent, key, value, extension)
    else:
        list_pop(location.parent, location.key, location.index)
        list_insert(location.parent, key, location.index, value, extension)


def _move(resource: dict[str, Any], op: Operation) -> None:
    parent, key, _ = list_of(resource, op)
    assert op.source is not None and op.destination is not None  # required parts
    size = max(len(parent.get(key) or []), len(parent.get("_" + key) or []))
    for role, index in (("source", op.source), ("destination", op.destination)):
        if not 0 <= index < size:
            raise op.unprocessable(f"{role} {index} is out of range: the list has {size} "
                                   f"item(s), so it must be 0 to {size - 1}")
    value, extension = list_pop(parent, key, op.source)
    list_insert(parent, key, op.destination, value, extension)


_APPLY = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace,
          "move": _move}


__all__ = ["apply_fhirpath_patch"]
