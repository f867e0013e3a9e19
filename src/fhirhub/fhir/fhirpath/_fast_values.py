"""FHIR JSON as FHIRPath collections, for the fast path (see ``_fast``).

Items are the resource's own JSON values: ``dict``, ``str``, ``bool``, ``int``,
``Decimal`` (``float`` is accepted too). A repeating element is flattened. A primitive
that has only extensions (``"_birthDate": {...}`` with no ``birthDate``) is one item: its
``_`` object, which has no value, as the validator passes it. When the value decides
something the fast path cannot decide the way the engine would, it raises
:class:`Deferred` and the whole expression goes to the engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

Items = list[Any]

_NUMBER = (int, Decimal, float)


class Deferred(Exception):  # a signal to fall back, not an error
    """This evaluation needs the engine: a type only the model knows, an error case..."""


# -- navigation ------------------------------------------------------------------------------


def member(name: str, suffixes: frozenset[str] | None) -> Callable[[Items], Items]:
    """Navigation to child ``name``; ``suffixes`` when ``name`` may be a choice element."""
    extension_key = "_" + name

    def navigate(items: Items) -> Items:
        out: Items = []
        for item in items:
            if type(item) is dict:
                if name in item or extension_key in item:
                    _add(out, item.get(name), item.get(extension_key))
                elif suffixes is not None:
                    for _, value, extension in _choices(item, name, suffixes):
                        _add(out, value, extension)
        return out

    return navigate


def presence(name: str, suffixes: frozenset[str] | None) -> Callable[[Items], bool]:
    """Whether :func:`member` would find anything, without building the collection: most
    invariants only ask ``x.exists()`` or ``x.empty()``."""
    navigate = member(name, suffixes)
    extension_key = "_" + name

    def present(items: Items) -> bool:
        for item in items:
            if type(item) is dict and (name in item or extension_key in item or suffixes) \
                    and navigate([item]):
                return True
        return False

    return present


def typed_member(name: str, suffixes: frozenset[str] | None
                 ) -> Callable[[Items], list[tuple[Any, str | None]]]:
    """Like :func:`member`, each item with its type when the JSON name tells it."""

    def navigate(items: Items) -> list[tuple[Any, str | None]]:
        out: list[tuple[Any, str | None]] = []
        for item in items:
            if type(item) is not dict:
                continue
            found: Items = []
            if name in item or "_" + name in item:
                _add(found, item.get(name), item.get("_" + name))
                out += [(value, None) for value in found]
            elif suffixes is not None:
                for suffix, value, extension in _choices(item, name, suffixes):
                    _add(found, value, extension)
                    out += [(value, suffix) for value in found]
                    found = []
        return out

    return navigate


def _choices(item: dict[str, Any], name: str, suffixes: frozenset[str]
             ) -> Iterator[tuple[str, Any, Any]]:
    """The concrete properties of choice ``name``: (type suffix, value, its ``_`` object)."""
    seen: set[str] = set()
    for key in item:
        bare = key[1:] if key[:1] == "_" else key
        suffix = bare[len(name):]
        if bare.startswith(name) and suffix in suffixes and suffix not in seen:
            seen.add(suffix)
            yield suffix, item.get(bare), item.get("_" + bare)


def _add(out: Items, value: Any, extension: Any) -> None:
    """The items of one property: its value(s), with ``_`` objects standing for missing ones."""
    if type(value) is list or type(extension) is list:
        values = value if type(value) is list else []
        extensions = extension if type(extension) is list else []
        for index in range(max(len(values), len(extensions))):
            found = values[index] if index < len(values) else None
            if found is None and index < len(extensions):
                found = extensions[index]
            if found is not None:
                out.append(found)
    elif value is not None:
        out.append(value)
    elif extension is not None:
        out.append(extension)


def children(items: Items) -> Items:
    """``children()``: every child element, in JSON order (``resourceType`` is not one)."""
    out: Items = []
    for item in items:
        if type(item) is dict:
            for key, value in item.items():
                if key[:1] == "_":
                    if key[1:] not in item:  # a primitive with extensions only
                        _add(out, None, value)
                elif key != "resourceType":
                    _add(out, value, item.get("_" + key))
    return out


def descendants(items: Items) -> Items:
    """``descendants()``: children, their children... level by level."""
    out: Items = []
    level = children(items)
    while level:
        out += level
        level = children(level)
    return out


def resource_type(item: Any) -> str | None:
    return item.get("resourceType") if type(item) is dict else None


# -- values ----------------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


def has_value(items: Items) -> bool:
    """``hasValue()``: a single primitive that has a value."""
    return len(items) == 1 and isinstance(items[0], str | bool | int | Decimal | float)


def truth(items: Items) -> bool | None:
    """A collection used as a Boolean: empty is unknown; one Boolean is itself. The engine
    refuses anything else (spec: a single non-Boolean is true), so it decides those."""
    if not items:
        return None
    if len(items) == 1 and type(items[0]) is bool:
        return bool(items[0])
    raise Deferred


def single(items: Items) -> Any:
    """The one item of a collection a function needs one of; the engine reports the rest."""
    if len(items) != 1:
        raise Deferred
    return items[0]


def text(items: Items) -> str | None:
    """The string a string function works on: None when empty."""
    if not items:
        return None
    value = single(items)
    if not isinstance(value, str):
        raise Deferred
    return value


def equal(left: Items, right: Items) -> bool | None:
    """``=``: empty if either side is; else same size and item by item equal."""
    if not left or not right:
        return None
    if len(left) != len(right):
        return False
    return all(same(a, b) for a, b in zip(left, right, strict=True))


def same(a: Any, b: Any) -> bool:
    """Whether two items are equal: numbers by value, Booleans only to Booleans."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and bool(a == b)
    if type(a) is dict and type(b) is dict:
        return bool(key(a) == key(b))
    return bool(a == b) if is_number(a) == is_number(b) else False


def key(value: Any) -> Any:
    """A hashable stand-in, equal exactly when the values are equal (``distinct()``...)."""
    if type(value) is dict:
        return ("{", tuple(sorted((k, key(v)) for k, v in value.items())))
    if type(value) is list:
        return ("[", tuple(key(v) for v in value))
    if type(value) is bool:
        return ("b", value)
    if is_number(value):
        return ("n", Decimal(str(value)).normalize() if isinstance(value, float) else value)
    return ("s", value)


def distinct(items: Items) -> Items:
    seen: dict[Any, Any] = {}
    for item in items:
        seen.setdefault(key(item), item)
    return list(seen.values())


def equivalent(left: Items, right: Items) -> bool:
    """``~``: strings ignoring case and spacing, decimals to the lesser precision."""
    if not left or not right:
        return not left and not right
    if len(left) != 1 or len(right) != 1:
        raise Deferred
    a, b = left[0], right[0]
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.lower().split()) == " ".join(b.lower().split())
    if is_number(a) and is_number(b):
        places = min(_places(a), _places(b))
        step = Decimal(1).scaleb(-places)
        return Decimal(str(a)).quantize(step) == Decimal(str(b)).quantize(step)
    if type(a) is bool and type(b) is bool:
        return a == b
    raise Deferred  # elements: the engine's deep comparison


def _places(number: Any) -> int:
    exponent = Decimal(str(number)).normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


# -- ordering --------------------------------------------------------------------------------


def compare(left: Items, right: Items) -> int | None:
    """The order of two single items (-1, 0, 1), None when it is unknown (dates of
    different precision, equal as far as both go)."""
    if not left or not right:
        return None
    a, b = single(left), single(right)
    if is_number(a) and is_number(b):
        return int((a > b) - (a < b))
    if isinstance(a, str) and isinstance(b, str):
        return _compare_text(a, b)
    if type(a) is dict and type(b) is dict:
        return _compare_quantities(a, b)
    raise Deferred


def _compare_quantities(a: dict[str, Any], b: dict[str, Any]) -> int | None:
    """Quantities in the same UCUM unit. Others would need unit conversion: the engine."""
    same_unit = a.get("system") == b.get("system") and a.get("code") == b.get("code")
    if not same_unit or a.get("code") is None:
        raise Deferred
    return compare([a.get("value")], [b.get("value")]) if "value" in a and "value" in b else None


_DATE = re.compile(r"(\d{4})(?:-(\d\d)(?:-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d(?:\.\d+)?))?"
                   r"(Z|[+-]\d\d:\d\d)?)?)?)?")
_LOOKS_TEMPORAL = re.compile(r"\d{4}-|\d\d:\d\d")
_UTC = ("Z", "+00:00", "-00:00")


def _compare_text(a: str, b: str) -> int | None:
    """Dates and dateTimes by FHIRPath's rules; other strings by code point."""
    date_a, date_b = _DATE.fullmatch(a), _DATE.fullmatch(b)
    if date_a and date_b:
        return _compare_dates(date_a, date_b)
    if _LOOKS_TEMPORAL.match(a) or _LOOKS_TEMPORAL.match(b):
        raise Deferred  # a time, or a date against a string
    return (a > b) - (a < b)


def _compare_dates(a: re.Match[str], b: re.Match[str]) -> int | None:
    """Field by field to the precision both have (seconds with their fraction as one), in UTC
    when both have a time. Unknown (None) when they agree as far as the less precise goes."""
    if a[7] == b[7] and len(a[0]) == len(b[0]):
        # Same precision and offset: the text sorts as the moments do (the usual case).
        return (a[0] > b[0]) - (a[0] < b[0])
    timed_a, timed_b = a[4] is not None, b[4] is not None
    if timed_a and timed_b and (a[7] is None) != (b[7] is None):
        raise Deferred  # one has a timezone, the other does not: an implementation choice
    if timed_a != timed_b and (a[7] or b[7] or "Z") not in _UTC:
        raise Deferred  # a date against a time away from UTC: which day is it?
    fields_a, fields_b = _fields(a, timed_a and timed_b), _fields(b, timed_a and timed_b)
    for x, y in zip(fields_a, fields_b, strict=False):
        if x != y:
            return -1 if x < y else 1
    return 0 if len(fields_a) == len(fields_b) else None


def _fields(match: re.Match[str], to_utc: bool) -> list[Any]:
    present = [group for group in match.groups()[:6] if group is not None]
    fields: list[Any] = [int(group) for group in present[:5]]
    if len(present) == 6:
        fields.append(Decimal(present[5]))
    offset = match[7]
    if to_utc and offset not in (None, *_UTC):
        sign = 1 if offset[0] == "+" else -1
        try:
            moment = datetime(*fields[:5]) - sign * timedelta(hours=int(offset[1:3]),
                                                             minutes=int(offset[4:6]))
        except ValueError as exc:  # not a real date: the engine reports it
            raise Deferred from exc
        fields[:5] = [moment.year, moment.month, moment.day, moment.hour, moment.minute]
    return fields
