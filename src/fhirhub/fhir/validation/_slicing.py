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
    """The fixed or pattern value the slice requires at ``path`` (MISSING: none)."""
    node: Rule | None = slice_rule
    steps = [s for s in path.split(".") if s and s != "$this"]
    for index, step in enumerate(steps):
        assert node is not None
        own = node.fixed if node.fixed is not MISSING else node.pattern
        if own is not MISSING:
            found = at_path(own, ".".join(steps[index:]))
            return found[0] if len(found) == 1 else MISSING
        if step == "url" and node.children is None and node.types:
            # an extension slice that names its definition: the url is the definition's
            return next(iter(node.types[0].profiles), MISSING)
        node = _child(node, step)
        if node is None:
            return MISSING
    assert node is not None
    return node.fixed if node.fixed is not MISSING else node.pattern


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
