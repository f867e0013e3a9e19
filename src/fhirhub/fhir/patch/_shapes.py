"""Where a value goes in FHIR JSON, for FHIRPath Patch: a primitive's id and extensions.

FHIR JSON keeps the id and extensions of a primitive ``name`` in ``_name``
(https://hl7.org/fhir/R4/json.html#primitive); in a list, ``_name`` runs alongside
``name``, ``null`` where an item has none. FHIRPath Patch
(https://hl7.org/fhir/R4/fhirpatch.html) acts on whole elements, so every insert or
removal here moves both lists together, and drops a list left with only nulls in it.
"""

from __future__ import annotations

from typing import Any


def set_single(container: dict[str, Any], key: str, value: Any, extension: Any) -> None:
    if value is not None:
        container[key] = value
    if extension is not None:
        container["_" + key] = extension


def list_insert(container: dict[str, Any], key: str, index: int, value: Any,
                extension: Any) -> None:
    items = container.setdefault(key, [])
    extensions = container.get("_" + key)
    if extensions is not None or extension is not None:
        extensions = container.setdefault("_" + key, [])
        extensions.extend([None] * (len(items) - len(extensions)))
        extensions.insert(index, extension)
    items.insert(index, value)


def list_pop(container: dict[str, Any], key: str, index: int) -> tuple[Any, Any]:
    items = container.get(key) or []
    extensions = container.get("_" + key) or []
    value = items.pop(index) if index < len(items) else None
    extension = extensions.pop(index) if index < len(extensions) else None
    for name in (key, "_" + key):
        _drop_empty_list(container, name)
    return value, extension


def _drop_empty_list(container: dict[str, Any], name: str) -> None:
    found = container.get(name)
    if isinstance(found, list) and all(item is None for item in found):
        del container[name]


__all__ = ["list_insert", "list_pop", "set_single"]
