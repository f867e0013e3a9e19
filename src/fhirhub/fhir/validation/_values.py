"""Comparing instance values with a profile's fixed and pattern values, and reading the
values a slicing discriminator's path names. https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.fixed_x_"""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def same(value: Any, fixed: Any) -> bool:
    """``fixed[x]``: exactly the same value (every property, nothing more)."""
    if isinstance(fixed, dict):
        if not isinstance(value, dict):
            return False
        keys = {k for k in value if k not in ("id", "extension") or k in fixed}
        return keys == set(fixed) and all(same(value[k], fixed[k]) for k in fixed)
    if isinstance(fixed, list):
        return (isinstance(value, list) and len(value) == len(fixed)
                and all(same(v, f) for v, f in zip(value, fixed, strict=True)))
    return _primitive_equal(value, fixed)


def matches(value: Any, pattern: Any) -> bool:
    """``pattern[x]``: every property of the pattern is in the value with that value; each
    item of a pattern array matches some item of the value's array."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and matches(value[k], p) for k, p in pattern.items())
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else [value]
        return all(any(matches(v, p) for v in items) for p in pattern)
    if isinstance(value, list):
        return any(_primitive_equal(v, pattern) for v in value)
    return _primitive_equal(value, pattern)


def _primitive_equal(value: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected
    if isinstance(expected, (int, float, Decimal)) and isinstance(value, (int, float, Decimal)):
        return Decimal(str(value)) == Decimal(str(expected))
    return bool(value == expected)


def at_path(value: Any, path: str) -> list[Any]:
    """The values at a simple discriminator path (``system``, ``coding.code``, ``$this``,
    ``url``, ``extension('url').value``), arrays flattened. ``resolve()`` and other
    functions are not followed: they give no values."""
    items = [value]
    if path in ("", "$this"):
        return items
    for step in _steps(path):
        found: list[Any] = []
        for item in items:
            if not isinstance(item, dict):
                continue
            if step.startswith("extension('"):
                url = step[len("extension('"):-2]
                found += [e for e in item.get("extension", []) if isinstance(e, dict)
                          and e.get("url") == url]
                continue
            if step.endswith(")"):
                return []
            got = item.get(step)
            if got is None and step == "value":
                got = next((v for k, v in item.items() if k.startswith("value")), None)
            if isinstance(got, list):
                found += got
            elif got is not None:
                found.append(got)
        items = found
    return items


def _steps(path: str) -> list[str]:
    steps: list[str] = []
    depth = 0
    current = ""
    for char in path:
        if char == "." and depth == 0:
            steps.append(current)
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    steps.append(current)
    return [s for s in steps if s and s != "$this"]


__all__ = ["at_path", "matches", "same"]
