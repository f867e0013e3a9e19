"""What an expression selects inside a resource, and where it lives: for FHIRPath Patch.

:func:`evaluate <fhirhub.fhir.fhirpath.evaluate>` answers copies of values; a patch must
act on the resource's own objects, so these types carry those objects (not copies) and
the model keys that tell what they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhirhub.fhir.fhirpath._engine import ResourceNode


@dataclass(frozen=True, slots=True)
class Node:
    """An item an expression selected: the resource's own object, and its model key."""

    value: Any  # the very object inside the resource (a dict is not a copy)
    type: str | None  # element model key ("HumanName", "Patient.contact", "Patient"...)


@dataclass(frozen=True, slots=True)
class Location:
    """Where an element lives: ``parent[key]``, or ``parent[key][index]`` when it repeats."""

    parent: dict[str, Any]
    parent_type: str | None  # model key of the parent
    key: str  # JSON property name; for a choice the concrete one (valueQuantity)
    index: int | None
    type: str | None  # model key of the element itself

    @property
    def value(self) -> Any:
        """The element's value (``None`` for a primitive that has only extensions)."""
        found = self.parent.get(self.key)
        if self.index is None:
            return found
        return found[self.index] if isinstance(found, list) and self.index < len(found) else None


@dataclass(frozen=True)
class Place:
    """What a path ending in an element name points at (see :func:`locate`)."""

    parents: list[Node]  # the elements whose child it names
    name: str  # that child's name as written (a choice's base name: ``value``)
    locations: list[Location]  # the elements the whole path selects, in order
    whole: bool  # True when the path ends at the name: the locations are all its items


def as_nodes(raw: list[Any]) -> list[Node]:
    """Results evaluated with ``raw=True`` as :class:`Node`; a computed value has no type."""
    return [Node(item.data, item.path) if isinstance(item, ResourceNode) else Node(item, None)
            for item in raw]
