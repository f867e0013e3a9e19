"""One CodeSystem as an index: its concepts by code, their hierarchy and their properties.

https://hl7.org/fhir/R4/codesystem.html. The hierarchy comes from nested ``concept``
elements and from the ``parent``/``child``/``subsumedBy`` properties
(https://hl7.org/fhir/R4/codesystem.html#hierarchy): the v3 code systems use both, since a
concept there can have several parents.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]

# Concept status values that take a concept out of use (deprecated concepts stay active:
# https://hl7.org/fhir/R4/codesystem.html#status).
_INACTIVE_STATUS = frozenset({"retired", "inactive"})
_PARENT_PROPERTIES = frozenset({"parent", "subsumedBy"})
# Content modes whose concepts are listed in the resource (possibly not all of them).
LISTED_CONTENT = frozenset({"complete", "fragment", "example"})


def property_text(prop: Json) -> str | None:
    """A concept property's ``value[x]`` as text (codes, strings, booleans as true/false)."""
    for key, value in prop.items():
        if not key.startswith("value"):
            continue
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict):  # valueCoding
            code = value.get("code")
            return code if isinstance(code, str) else None
        return str(value)
    return None


@dataclass(frozen=True, slots=True)
class Concept:
    code: str
    display: str | None
    definition: str | None
    designations: tuple[Json, ...]
    properties: tuple[Json, ...]

    def values(self, name: str) -> list[str]:
        """The text of each value of property ``name``."""
        found = (property_text(p) for p in self.properties if p.get("code") == name)
        return [v for v in found if v is not None]

    @property
    def inactive(self) -> bool:
        return "true" in self.values("inactive") or any(
            s in _INACTIVE_STATUS for s in self.values("status"))

    @property
    def abstract(self) -> bool:
        return "true" in self.values("notSelectable") or "true" in self.values("abstract")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _concept(item: Json) -> Concept:
    designations = item.get("designation")
    properties = item.get("property")
    return Concept(
        code=str(item["code"]),
        display=_text(item.get("display")),
        definition=_text(item.get("definition")),
        designations=tuple(d for d in designations if isinstance(d, dict))
        if isinstance(designations, list) else (),
        properties=tuple(p for p in properties if isinstance(p, dict))
        if isinstance(properties, list) else (),
    )


class CodeSystemIndex:
    """The concepts of one CodeSystem resource, by code, in definition order."""

    def __init__(self, resource: Json) -> None:
        self.resource = resource
        self.url = str(resource.get("url", ""))
        self.version = _text(resource.get("version"))
        self.name = _text(resource.get("name")) or _text(resource.get("title")) or self.url
        self.content = _text(resource.get("content")) or "complete"
        # An absent caseSensitive is read as false, as the reference validator reads it: a
        # code that differs only in case is then accepted, never wrongly refused.
        self.case_sensitive = resource.get("caseSensitive") is True
        self.concepts: dict[str, Concept] = {}
        self._folded: dict[str, str] = {}
        self._parents: dict[str, list[str]] = {}
        self._children: dict[str, list[str]] = {}
        self._walk(resource.get("concept"), None)
        self._link_properties()

    @property
    def complete(self) -> bool:
        """Every concept of the system is listed here (not a fragment, example or stub)."""
        return self.content == "complete"

    @property
    def listed(self) -> bool:
        """Some concepts are listed here (false for ``not-present``, e.g. SNOMED CT)."""
        return self.content in LISTED_CONTENT

    @property
    def partial(self) -> str:
        """How much of the system is here, for messages: "only an example"."""
        article = "an" if self.content[:1] in "aeiou" else "a"
        return f"only {article} {self.content}"

    def find(self, code: str) -> Concept | None:
        """The concept with ``code``, matched as the system's case sensitivity says."""
        found = self.concepts.get(code)
        if found is None and not self.case_sensitive:
            real = self._folded.get(code.casefold())
            found = self.concepts.get(real) if real is not None else None
        return found

    def parents(self, code: str) -> list[str]:
        return self._parents.get(code, [])

    def children(self, code: str) -> list[str]:
        return self._children.get(code, [])

    def descendants(self, code: str) -> set[str]:
        """Every concept below ``code`` (not ``code`` itself)."""
        return _closure(code, self._children)

    def ancestors(self, code: str) -> set[str]:
        """Every concept above ``code`` (not ``code`` itself)."""
        return _closure(code, self._parents)

    def in_order(self, codes: Iterable[str]) -> Iterator[Concept]:
        """The concepts of ``codes`` in definition order, so expansions are stable."""
        wanted = set(codes)
        return (c for code, c in self.concepts.items() if code in wanted)

    def _walk(self, items: Any, parent: str | None) -> None:
        if not isinstance(items, list):
            return
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("code"), str):
                continue
            concept = self.concepts.setdefault(item["code"], _concept(item))
            if not self.case_sensitive:
                self._folded.setdefault(concept.code.casefold(), concept.code)
            if parent is not None:
                self._link(parent, concept.code)
            self._walk(item.get("concept"), concept.code)

    def _link_properties(self) -> None:
        for concept in list(self.concepts.values()):
            for name in _PARENT_PROPERTIES:
                for parent in concept.values(name):
                    self._link(parent, concept.code)
            for child in concept.values("child"):
                self._link(concept.code, child)

    def _link(self, parent: str, child: str) -> None:
        if parent == child:
            return
        children = self._children.setdefault(parent, [])
        if child not in children:
            children.append(child)
            self._parents.setdefault(child, []).append(parent)


def _closure(start: str, edges: dict[str, list[str]]) -> set[str]:
    """Everything reachable from ``start`` along ``edges`` (cycle-safe)."""
    seen: set[str] = set()
    todo = list(edges.get(start, []))
    while todo:
        code = todo.pop()
        if code not in seen and code != start:
            seen.add(code)
            todo.extend(edges.get(code, []))
    return seen


__all__ = ["LISTED_CONTENT", "CodeSystemIndex", "Concept", "property_text"]
