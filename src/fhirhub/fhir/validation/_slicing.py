"""Which slice an item belongs to, by the slicing's discriminators.

https://hl7.org/fhir/R4/profiling.html#discriminator: ``value`` and ``pattern`` compare the
item's values at the discriminator's path with the slice's fixed or pattern value there;
``type`` compares types; ``exists`` presence; ``profile`` conformance to the slice's profile
(the caller decides that by validating, so it is passed in as a callback).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhirhub.fhir.validation._rules import MISSING, Discriminator, Rule
from fhirhub.fhir.validation._values import at_path, matches, same

# The slicing every extension element has, whether its definition says so or not.
EXTENSION_DISCRIMINATOR = (Discriminator("value", "url"),)

Conforms = Callable[[Rule, Any, str], bool]


def slice_matches(slice_rule: Rule, discriminators: tuple[Discriminator, ...], item: Any,
                  type_code: str, conforms: Conforms) -> bool:
    """Does ``item`` (of ``type_code``) belong to ``slice_rule``?"""
    if not discriminators:
        return False
    return all(_one(slice_rule, d, item, type_code, conforms) for d in discriminators)


def _one(slice_rule: Rule, d: Discriminator, item: Any, type_code: str,
         conforms: Conforms) -> bool:
    if d.type in ("value", "pattern"):
        expected = expected_value(slice_rule, d.path)
        if expected is MISSING:
            return False
        actual = at_path(item, d.path)
        if d.type == "value" and not isinstance(expected, (dict, list)):
            return any(same(a, expected) for a in actual)
        return any(matches(a, expected) for a in actual)
    if d.type == "type":
        target = _rule_at(slice_rule, d.path)
        if target is None:
            return False
        if d.path in ("", "$this"):
            return type_code in target.type_codes
        return any(isinstance(v, dict) and v.get("resourceType", "") in target.type_codes
                   for v in at_path(item, d.path))
    if d.type == "exists":
        target = _rule_at(slice_rule, d.path)
        if target is None:
            return False
        present = bool(at_path(item, d.path))
        return present == (target.min > 0) if target.max != 0 else not present
    if d.type == "profile":
        return conforms(slice_rule, item, type_code)
    return False


def expected_value(slice_rule: Rule, path: str) -> Any:
    """The fixed or pattern value the slice requires at ``path`` (MISSING: none); kept on
    the rule, as slicing asks it for every item."""
    found = slice_rule.expected.get(path, _UNSET)
    if found is _UNSET:
        found = slice_rule.expected[path] = _expected(slice_rule, path)
    return found


_UNSET: Any = object()


def _expected(slice_rule: Rule, path: str) -> Any:
    steps = [s for s in path.split(".") if s and s != "$this"]
    url = slice_rule.children.get("url") if slice_rule.children is not None else None
    if steps == ["url"] and (url is None or url.fixed is MISSING) and slice_rule.types:
        # an extension slice that names its definition: the url is the definition's
        return next(iter(slice_rule.types[0].profiles), MISSING)
    implied = _implied(slice_rule)
    if implied is MISSING:
        return MISSING
    values = at_path(implied, ".".join(steps))
    return values[0] if len(values) == 1 else MISSING


def _implied(node: Rule, depth: int = 0) -> Any:
    """What ``node`` requires of a value, as a pattern: its fixed or pattern value, else the
    fixed values its children (and their required slices) require, e.g. a ``code`` whose
    ``coding:SBPCode`` slice fixes system and code (the R4 blood-pressure profile)."""
    own = node.fixed if node.fixed is not MISSING else node.pattern
    if own is not MISSING or node.children is None or depth > 4:
        return own
    pattern: dict[str, Any] = {}
    for name, child in node.children.items():
        if name in ("id", "extension", "modifierExtension") or child.is_choice:
            continue
        items = [p for s in child.slices.values() if s.min > 0
                 if (p := _implied(s, depth + 1)) is not MISSING]
        if items:
            pattern[name] = items
            continue
        value = _implied(child, depth + 1)
        if value is not MISSING:
            pattern[name] = [value] if child.max != 1 and child.base_max != 1 else value
    return pattern or MISSING


def _rule_at(rule: Rule, path: str) -> Rule | None:
    node: Rule | None = rule
    for step in (s for s in path.split(".") if s and s != "$this"):
        if node is None:
            return None
        node = _child(node, step)
    return node


def _child(node: Rule, step: str) -> Rule | None:
    """The child a discriminator path step names (``value`` is ``value[x]``)."""
    if node.children is None:
        return None
    return node.children.get(step) or node.children.get(step + "[x]")


__all__ = ["EXTENSION_DISCRIMINATOR", "expected_value", "slice_matches"]
