"""``ValueSet.compose.include.filter`` on a packaged CodeSystem.

https://hl7.org/fhir/R4/valueset-definitions.html#ValueSet.compose.include.filter and the
operators of https://hl7.org/fhir/R4/codesystem-filter-operator.html: ``=``, ``is-a``,
``descendent-of``, ``is-not-a``, ``regex``, ``in``, ``not-in``, ``generalizes``, ``exists``.
The property ``concept`` (or ``code``) names the concept itself; ``display`` its display;
``parent``/``child`` the hierarchy; any other name a concept property of the system.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhirhub.fhir.terminology._codesystems import CodeSystemIndex, Concept

Json = dict[str, Any]

_SELF = frozenset({"concept", "code"})
_MAX_REGEX = 500
# A repeated group that itself repeats or branches ("(a+)+", "(a|aa)*") can take exponential
# time in Python's backtracking engine, and a posted ValueSet is user input: such a filter is
# refused rather than run (a crude check, but it errs on the side of refusing).
_NESTED_REPEAT = re.compile(r"\([^()]*[*+}|][^()]*\)\s*[*+{]")


class FilterError(Exception):
    """A filter this server cannot apply; the message says why."""


def describe(flt: Json) -> str:
    return f"{flt.get('property')} {flt.get('op')} {flt.get('value')}"


def select(index: CodeSystemIndex, flt: Json) -> set[str]:
    """The codes of ``index`` that pass the filter ``flt``."""
    prop, op, value = flt.get("property"), flt.get("op"), flt.get("value")
    if not isinstance(prop, str) or not isinstance(op, str) or not isinstance(value, str):
        raise FilterError(f"the filter '{describe(flt)}' needs a property, an op and a value")
    handler = _OPS.get(op)
    if handler is None:
        raise FilterError(f"the filter operator '{op}' is not one this server supports")
    return handler(index, prop, value)


def _hierarchy(index: CodeSystemIndex, prop: str, value: str) -> Concept | None:
    if prop not in _SELF:
        raise FilterError(f"hierarchy filters apply to the property 'concept', not '{prop}'")
    return index.find(value)


def _is_a(index: CodeSystemIndex, prop: str, value: str) -> set[str]:
    root = _hierarchy(index, prop, value)
    return set() if root is None else {root.code, *index.descendants(root.code)}


def _descendent_of(index: CodeSystemIndex, prop: str, value: str) -> set[str]:
    root = _hierarchy(index, prop, value)
    return set() if root is None else index.descendants(root.code)


def _is_not_a(index: CodeSystemIndex, prop: str, value: str) -> set[str]:
    return set(index.concepts) - _is_a(index, prop, value)


def _generalizes(index: CodeSystemIndex, prop: str, value: str) -> set[str]:
    root = _hierarchy(index, prop, value)
    return set() if root is None else {root.code, *index.ancestors(root.code)}


def _values(index: CodeSystemIndex, concept: Concept, prop: str) -> list[str]:
    """What ``prop`` is for ``concept``: its code, display, parents, children or property."""
    if prop in _SELF:
        return [concept.code]
    if prop == "display":
        return [concept.display] if concept.display is not None else []
    if prop == "parent":
        return index.parents(concept.code) or concept.values(prop)
    if prop == "child":
        return index.children(concept.code) or concept.values(prop)
    return concept.values(prop)


def _equals(index: CodeSystemIndex, prop: str, value: str) -> set[str]:
    return _in(index, prop, value, split=False)


def _in(index: CodeSystemIndex, prop: str, value: str, *, split: bool = True) -> set[str]:
    wanted = {v.strip() for v in value.split(",")} if split else {value}
    if prop in _SELF:  # the common case, answered by lookup rather than by a scan
        found = (index.find(code) for code in wanted)
        return {c.code for c in found if c is not None}
    return {c.code for c in index.concepts.values()
            if wanted.intersection(_values(index, c, prop))}


def _not_in(index: CodeSystemIndex, prop: str, value: str) -> set[str]:
    return set(index.concepts) - _in(index, prop, value)


def _exists(index: CodeSystemIndex, prop: str, value: str) -> set[str]:
    if value not in ("true", "false"):
        raise FilterError(f"the 'exists' filter takes true or false, not '{value}'")
    having = {c.code for c in index.concepts.values() if _values(index, c, prop)}
    return having if value == "true" else set(index.concepts) - having


def _regex(index: CodeSystemIndex, prop: str, value: str) -> set[str]:
    if len(value) > _MAX_REGEX or _NESTED_REPEAT.search(value):
        raise FilterError(f"the regular expression '{value[:80]}' is too costly to run")
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise FilterError(f"'{value[:80]}' is not a valid regular expression ({exc})") from exc
    return {c.code for c in index.concepts.values()
            if any(pattern.fullmatch(v) for v in _values(index, c, prop))}


_OPS: dict[str, Callable[[CodeSystemIndex, str, str], set[str]]] = {
    "=": _equals,
    "is-a": _is_a,
    "descendent-of": _descendent_of,
    "is-not-a": _is_not_a,
    "generalizes": _generalizes,
    "in": _in,
    "not-in": _not_in,
    "exists": _exists,
    "regex": _regex,
}

__all__ = ["FilterError", "describe", "select"]
