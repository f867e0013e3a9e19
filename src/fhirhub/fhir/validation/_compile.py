"""StructureDefinitions compiled into :class:`~fhirhub.fhir.validation._rules.Rule` trees.

Base definitions (R4 resources, datatypes, and the R4 profiles that carry snapshots) are
compiled from their snapshots. A profile published with a differential only (all of UK Core)
is compiled the way a snapshot generator would: a copy of its base's tree, then each
differential element applied in order at the place its ``id`` names
(``Patient.identifier:nhsNumber.system``), creating slices as they are named and unfolding a
datatype's children (from that type's own compiled definition, or from the profile the type
names, e.g. an extension's) where the differential reaches below an element the base left
to its type. https://hl7.org/fhir/R4/profiling.html#snapshot
"""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any

from fhirhub.fhir.definitions import Definitions
from fhirhub.fhir.model import type_code
from fhirhub.fhir.validation._rules import (
    MISSING,
    Binding,
    Constraint,
    Discriminator,
    Rule,
    Slicing,
    TypeRef,
)

log = logging.getLogger("fhirhub.validation")

Json = dict[str, Any]
CORE = "http://hl7.org/fhir/StructureDefinition/"


class Compiler:
    """Compiled definitions by canonical URL, built on first use and kept. Thread-safe."""

    def __init__(self, definitions: Definitions) -> None:
        self.definitions = definitions
        self._compiled: dict[str, Rule | None] = {}
        self._lock = threading.RLock()
        self._building: set[str] = set()

    def profile(self, url: str) -> Rule | None:
        """The root rule of the StructureDefinition at ``url`` (None: unknown)."""
        found = self._compiled.get(url, MISSING)
        if found is not MISSING:
            return found  # type: ignore[no-any-return]
        with self._lock:
            if url in self._compiled:
                return self._compiled[url]
            if url in self._building:  # a definition whose base is itself: refuse quietly
                return None
            self._building.add(url)
            try:
                sd = self.definitions.structure_definition(url)
                rule = None if sd is None else self._compile(sd)
            finally:
                self._building.discard(url)
            self._compiled[url] = rule
            return rule

    def base(self, type_code: str) -> Rule | None:
        """The compiled base definition of a FHIR type (``HumanName``, ``Patient``)."""
        return self.profile(type_code if "/" in type_code else CORE + type_code)

    def differential_problems(self, sd: Json) -> list[tuple[int, str]]:
        """The differential elements of ``sd`` that name no element of its base, with their
        index (a profile under validation, not one this compiler keeps)."""
        base_url = sd.get("baseDefinition")
        if "snapshot" in sd or not isinstance(base_url, str):
            return []
        base = self.profile(base_url)
        differential = sd.get("differential", {}).get("element", [])
        if base is None or not isinstance(differential, list):
            return []
        root = copy.deepcopy(base)
        problems: list[tuple[int, str]] = []
        for index, el in enumerate(differential):
            if not isinstance(el, dict):
                continue
            for key in ("id", "path"):
                name = el.get(key)
                if not isinstance(name, str):
                    continue
                try:
                    self._navigate(root, name, unfold=True)
                except _Unplaced as exc:
                    problems.append((index, f"The differential element's {key} '{name}' names "
                                     f"no element of {base_url}: {exc}"))
                    break
        return problems

    def structure(self, url: str) -> Json | None:
        return self.definitions.structure_definition(url)

    # -- compiling ----------------------------------------------------------------------------

    def _compile(self, sd: Json) -> Rule | None:
        if "snapshot" in sd:
            return self._from_snapshot(sd)
        base_url = sd.get("baseDefinition")
        base = self.profile(base_url) if isinstance(base_url, str) else None
        if base is None:
            log.warning("StructureDefinition %s: its base %s is unknown; not compiled",
                        sd.get("url"), base_url)
            return None
        root = copy.deepcopy(base)
        for el in sd.get("differential", {}).get("element", []):
            try:
                target = self._navigate(root, el["id"], unfold=True)
            except _Unplaced as exc:
                log.info("StructureDefinition %s: element %s skipped: %s",
                         sd.get("url"), el.get("id"), exc)
                continue
            _apply(target, el, sd["url"], snapshot=False)
        return root

    def _from_snapshot(self, sd: Json) -> Rule:
        elements = sd["snapshot"]["element"]
        first = elements[0]
        root = Rule(id=first.get("id", first["path"]), path=first["path"], name=first["path"])
        _apply(root, first, sd["url"], snapshot=True)
        references: list[Rule] = []
        for el in elements[1:]:
            try:
                rule = self._navigate(root, el.get("id") or el["path"], unfold=False)
            except _Unplaced as exc:
                log.info("StructureDefinition %s: element %s skipped: %s",
                         sd.get("url"), el.get("id"), exc)
                continue
            _apply(rule, el, sd["url"], snapshot=True)
            if rule.content_reference:
                references.append(rule)
        for rule in references:
            assert rule.content_reference is not None
            target = _find_path(root, rule.content_reference.partition("#")[2])
            if target is not None:
                rule.children = target.children
        return root

    # -- finding the place of an element id -------------------------------------------------------

    def _navigate(self, root: Rule, element_id: str, *, unfold: bool) -> Rule:
        segments = _segments(element_id)
        node = root
        last = len(segments) - 2
        for index, (name, named_slice) in enumerate(segments[1:]):
            children = self._children(node, unfold=unfold)
            child = children.get(name)
            slice_name = named_slice
            if child is None and not unfold and index == last and not slice_name:
                child = children[name] = Rule(id=element_id, path=f"{node.path}.{name}",
                                              name=name)
            elif child is None:
                child, slice_name = _renamed_choice(children, name, slice_name)
            if slice_name:
                found = child.slices.get(slice_name)
                if found is None:
                    found = child.slices[slice_name] = _new_slice(child, slice_name)
                child = found
            node = child
        return node

    def _children(self, node: Rule, *, unfold: bool) -> dict[str, Rule]:
        if node.children is None:
            node.children = {}
            if unfold:
                source = self._type_source(node)
                if source is not None and source.children:
                    node.children = copy.deepcopy(source.children)
        elif unfold and node.content_reference:
            node.children = copy.deepcopy(node.children)  # shared with its target; copy first
            node.content_reference = None
        return node.children

    def _type_source(self, node: Rule) -> Rule | None:
        """Where the children of an element that its definition leaves to its type come
        from: the profile the type names (an extension's definition), else the type."""
        if not node.types:
            return None
        ref = node.types[0]
        for profile in ref.profiles:
            found = self.profile(profile)
            if found is not None:
                return found
        return self.base(ref.code)


class _Unplaced(Exception):
    """A differential element names a place its base does not have."""


def _segments(element_id: str) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for part in element_id.split("."):
        name, colon, slice_name = part.partition(":")
        found.append((name, slice_name if colon else None))
    return found


def _renamed_choice(children: dict[str, Rule], name: str,
                    slice_name: str | None) -> tuple[Rule, str | None]:
    """``Observation.valueQuantity`` is ``Observation.value[x]:valueQuantity``."""
    for key, child in children.items():
        if key.endswith("[x]") and name.startswith(key[:-3]):
            type_name = name[len(key) - 3:]
            if any(_type_name(t.code) == type_name for t in child.types):
                return child, slice_name or name
    raise _Unplaced(f"no element '{name}' there")


def _type_name(code: str) -> str:
    return code[:1].upper() + code[1:]


def _new_slice(base: Rule, slice_name: str) -> Rule:
    types = base.types
    if base.is_choice:  # a type slice (value[x]:valueQuantity) allows only its type
        stem = base.name[:-3]
        chosen = tuple(t for t in base.types if stem + _type_name(t.code) == slice_name)
        types = chosen or types
    return Rule(
        id=f"{base.id}:{slice_name}", path=base.path, name=base.name, min=0, max=base.max,
        types=types, fixed=base.fixed, pattern=base.pattern, binding=base.binding,
        constraints=base.constraints, max_length=base.max_length, slice_name=slice_name,
        children=copy.deepcopy(base.children) if base.children is not None else None,
        content_reference=base.content_reference, base_max=base.base_max,
    )


def _find_path(root: Rule, path: str) -> Rule | None:
    node: Rule | None = root
    for name in path.split(".")[1:]:
        if node is None or node.children is None:
            return None
        node = node.children.get(name)
    return node


# -- one ElementDefinition onto its rule ---------------------------------------------------------

def _apply(rule: Rule, el: Json, source: str, *, snapshot: bool) -> None:
    if "min" in el:
        rule.min = int(el["min"])
    if "max" in el:
        rule.max = _max(el["max"])
    if snapshot:
        base = el.get("base")
        rule.base_max = _max(base["max"]) if isinstance(base, dict) and "max" in base else rule.max
    if "type" in el:
        rule.types = tuple(_type_ref(t) for t in el["type"])
    for key, value in el.items():
        if key.startswith("fixed"):
            rule.fixed = value
        elif key.startswith("pattern"):
            rule.pattern = value
    binding = el.get("binding")
    if isinstance(binding, dict) and isinstance(binding.get("valueSet"), str):
        rule.binding = Binding(binding.get("strength", "example"), binding["valueSet"])
    if "constraint" in el:
        new = tuple(_constraint(c, source) for c in el["constraint"] if c.get("expression"))
        if snapshot:
            rule.constraints = new
        else:
            keys = {c.key for c in rule.constraints}
            rule.constraints += tuple(c for c in new if c.key not in keys)
    if "maxLength" in el:
        rule.max_length = int(el["maxLength"])
    if "slicing" in el:
        rule.slicing = _slicing(el["slicing"], rule.slicing)
    if "contentReference" in el:
        rule.content_reference = el["contentReference"]
    if el.get("sliceName") and rule.slice_name is None:
        rule.slice_name = el["sliceName"]


def _max(text: str) -> int | None:
    return None if text == "*" else int(text)


def _type_ref(t: Json) -> TypeRef:
    return TypeRef(type_code(t), tuple(t.get("profile", ())), tuple(t.get("targetProfile", ())))


def _constraint(c: Json, source: str) -> Constraint:
    return Constraint(c.get("key", "?"), c.get("severity", "error"), c.get("human", ""),
                      c["expression"], c.get("source", source))


def _slicing(s: Json, previous: Slicing | None) -> Slicing:
    discriminators = tuple(Discriminator(d["type"], d["path"]) for d in s.get("discriminator", ()))
    if not discriminators and previous is not None:
        discriminators = previous.discriminators
    return Slicing(discriminators, s.get("rules", "open"), bool(s.get("ordered", False)))


__all__ = ["CORE", "Compiler"]
