"""What a profile says about one element, compiled from its ElementDefinition.

A :class:`Rule` is one ElementDefinition of a StructureDefinition's snapshot (or of the
snapshot a differential implies), with its children by element name and its slices by slice
name. Children are ``None`` where the definition says nothing below the element: the walk
then uses the compiled definition of the element's type (``HumanName``, ``Reference``...),
so a datatype is compiled once, not once per place it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class _Missing:
    """"No fixed / pattern value" (None could be a JSON value). One instance, which copies
    of compiled rules (profiles start as deep copies of their base) must keep."""

    def __copy__(self) -> _Missing:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Missing:
        return self

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class TypeRef:
    code: str  # FHIR type code (Quantity, string, Reference, Extension, Resource)
    profiles: tuple[str, ...] = ()  # the value must conform to one of these
    target_profiles: tuple[str, ...] = ()  # Reference/canonical targets


@dataclass(frozen=True, slots=True)
class Binding:
    strength: str  # required | extensible | preferred | example
    value_set: str


@dataclass(frozen=True, slots=True)
class Constraint:
    key: str
    severity: str  # error | warning
    human: str
    expression: str
    source: str  # the StructureDefinition that defines it


@dataclass(frozen=True, slots=True)
class Discriminator:
    type: str  # value | pattern | type | profile | exists
    path: str


@dataclass(frozen=True, slots=True)
class Slicing:
    discriminators: tuple[Discriminator, ...]
    rules: str  # open | closed | openAtEnd
    ordered: bool


@dataclass(slots=True)
class Rule:
    """One element's constraints; ``children`` and ``slices`` make the tree."""

    id: str
    path: str
    name: str  # last path segment: "identifier", "value[x]"
    min: int = 0
    max: int | None = None  # None: unbounded
    types: tuple[TypeRef, ...] = ()
    fixed: Any = MISSING
    pattern: Any = MISSING
    binding: Binding | None = None
    constraints: tuple[Constraint, ...] = ()
    max_length: int | None = None
    slicing: Slicing | None = None
    slices: dict[str, Rule] = field(default_factory=dict)
    slice_name: str | None = None
    children: dict[str, Rule] | None = None
    content_reference: str | None = None  # "#Questionnaire.item": children of that element
    base_max: int | None = None  # the max of the R4 base element (what the JSON shape allows)
    expected: dict[str, Any] = field(default_factory=dict)  # slicing: path -> required value

    @property
    def is_choice(self) -> bool:
        return self.name.endswith("[x]")

    @property
    def type_codes(self) -> tuple[str, ...]:
        return tuple(t.code for t in self.types)

    def type_ref(self, code: str) -> TypeRef | None:
        for t in self.types:
            if t.code == code:
                return t
        return None


__all__ = ["MISSING", "Binding", "Constraint", "Discriminator", "Rule", "Slicing", "TypeRef"]
