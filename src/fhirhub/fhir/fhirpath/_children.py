"""Where the items of one named element of a resource's element live, by the R4 model.

An element may be absent, repeat (a JSON array), be a primitive with only extensions
(``_name``), or be a choice whose JSON name carries its type (``value`` is stored as
``valueQuantity``); :func:`children` answers a :class:`Location` for each item either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhirhub.fhir.fhirpath._errors import FhirPathError
from fhirhub.fhir.fhirpath._nodes import Location, Node
from fhirhub.fhir.model import element_model


def children(parent: Node, name: str, expression: str) -> list[Location]:
    """The items of ``parent``'s element ``name``, in order; an unknown name is an error."""
    container = parent.value
    if not isinstance(container, dict):
        return []
    key = _json_key(container, parent.type, name, expression)
    if key is None:
        return []
    found, extension = container.get(key), container.get("_" + key)
    element = element_model().child(parent.type, key) if parent.type else None
    declared = element.children_key if element else None

    def location(index: int | None, value: Any) -> Location:
        return Location(container, parent.type, key, index, _type_of(value, declared))

    if isinstance(found, list) or isinstance(extension, list):
        count = max(len(found or []), len(extension or []))
        items = found if isinstance(found, list) else []
        return [location(i, items[i] if i < len(items) else None) for i in range(count)]
    if found is None and extension is None:
        return []
    return [location(None, found)]


def _type_of(value: Any, declared: str | None) -> str | None:
    # A contained resource says what it is; the model only says "Resource".
    if isinstance(value, dict) and "resourceType" in value:
        return str(value["resourceType"])
    return declared


def _json_key(container: dict[str, Any], type_key: str | None, name: str,
              expression: str) -> str | None:
    """The property holding element ``name``: itself, or a choice's concrete name."""
    model = element_model()
    # Without a model of the parent (a computed value, a primitive), go by the JSON alone.
    if type_key is None or not model.children(type_key):
        return name if name in container or "_" + name in container else _choice_key(
            container, name, lambda key: True)
    element = model.child(type_key, name)
    if element is not None and not element.is_choice:
        return name
    choices = [e for e in model.children(type_key).values()
               if e.is_choice and e.path.endswith(f".{name}[x]")]
    if element is None and not choices:
        raise FhirPathError(f"The path {expression!r}: {type_key} has no element {name!r}")
    names = {e.name for e in choices} | ({name} if element is not None else set())
    return _choice_key(container, name, names.__contains__)


def _choice_key(container: dict[str, Any], name: str,
                allowed: Callable[[str], bool]) -> str | None:
    for key in container:
        bare = key.removeprefix("_")
        typed = bare.startswith(name) and bare[len(name):][:1].isupper()
        if (bare == name or typed) and allowed(bare):
            return bare
    return None
