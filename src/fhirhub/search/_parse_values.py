"""One search parameter value → its place in the query tree: https://hl7.org/fhir/R4/search.html#ptypes

Every function here takes the text of one value (one of the comma-separated alternatives,
still escaped) and returns a value of ``types.py``, or raises :class:`BadValue` saying what
is wrong with it. Escapes (https://hl7.org/fhir/R4/search.html#escaping): ``\\,`` ``\\|``
``\\$`` and ``\\\\`` stand for the character itself; they are undone after splitting.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import cast

from fhirhub.search._values import (
    date_range,
    decimal_range,
    instant_text,
    split_reference,
    without_version,
)
from fhirhub.search.types import Prefix, RangeValue, ReferenceValue, TokenValue

PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
_ESCAPED = re.compile(r"\\([\\,|$])")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d+)?|\.\d+)([eE][+-]?\d+)?")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


class BadValue(ValueError):
    """A value that does not fit its parameter; the message says why, for a person."""


def split(text: str, separator: str) -> list[str]:
    """``text`` cut at each ``separator`` that is not escaped; escapes are kept."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            current.append(ch)
            current.append(next(chars, ""))
        elif ch == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def is_id(text: str) -> bool:
    """A FHIR logical id: 1 to 64 letters, digits, '-' and '.'."""
    return _ID.fullmatch(text) is not None


def unescape(text: str) -> str:
    return _ESCAPED.sub(r"\1", text) if "\\" in text else text


def escape(text: str) -> str:
    """The inverse of :func:`unescape`, for writing a value back into a query string."""
    return re.sub(r"([\\,|$])", r"\\\1", text)


def token(text: str) -> TokenValue:
    """``system|code``, ``|code`` (no system), ``code`` (any system) or ``system|`` (any code)."""
    parts = split(text, "|")
    if len(parts) == 1:
        return TokenValue(None, unescape(parts[0]))
    if len(parts) > 2:
        raise BadValue("a token is [system|]code, with any '|' in either escaped as '\\|'")
    system, code = unescape(parts[0]), unescape(parts[1])
    if not system and not code:
        raise BadValue("a token needs a system or a code")
    return TokenValue(system, code or None)


def of_type(text: str) -> TokenValue:
    """``:of-type``: ``system|code|value`` of an Identifier's type and its value.

    Kept as ``TokenValue(system, "code|value")``: the shape of the ``param:of-type`` rows the
    indexer writes (see ``index.py``).
    """
    parts = [unescape(p) for p in split(text, "|")]
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise BadValue("':of-type' takes [type system]|[type code]|[identifier value]")
    return TokenValue(parts[0] or None, f"{parts[1]}|{parts[2]}")


def reference(text: str, target: str | None, targets: tuple[str, ...]) -> ReferenceValue:
    """``Type/id``, ``id``, an absolute URL or a canonical URL (``|version`` is dropped).

    ``target`` is the ``:Type`` modifier. A bare id takes the type from it, or from the
    parameter when the parameter can point to one type only.
    """
    value = unescape(text)
    if _ID.fullmatch(value):
        implied = target or (targets[0] if len(targets) == 1 else None)
        return ReferenceValue(implied, value)
    ref_type, ref_id, url = split_reference(value)
    if ref_type is None:
        if "://" not in value and not value.startswith(("urn:", "#")):
            raise BadValue("a reference is [type]/[id], [id] or an absolute URL")
        return ReferenceValue(None, None, without_version(value))
    if target is not None and ref_type != target:
        raise BadValue(f"it points to a {ref_type}, but the modifier asks for a {target}")
    if targets and ref_type not in targets:
        raise BadValue(f"the parameter cannot point to a {ref_type} (only {', '.join(targets)})")
    return ReferenceValue(ref_type, ref_id, url)


def _prefixed(text: str) -> tuple[Prefix, str]:
    if len(text) > 2 and text[:2] in PREFIXES:
        return cast(Prefix, text[:2]), text[2:]
    return "eq", text


def date(text: str) -> RangeValue:
    """``[prefix]YYYY[-MM[-DD[Thh:mm[:ss[.f]][zone]]]]`` as the range it covers, in UTC."""
    prefix, rest = _prefixed(unescape(text))
    span = date_range(rest)
    if span is None:
        raise BadValue("a date is [prefix]YYYY[-MM[-DD[Thh:mm[:ss][Z|+hh:mm]]]]")
    if prefix == "ap":
        low, high = _approximate_dates(*span)
        return RangeValue(prefix, low, high, written=rest)
    return RangeValue(prefix, span[0], span[1])


_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def _approximate_dates(lo: str, hi: str) -> tuple[str, str]:
    """``ap`` on a date: the value's range widened by 10% of the gap between now and it
    (search.html#prefix), never by less than a day."""
    start, end = datetime.strptime(lo, _FORMAT), datetime.strptime(hi, _FORMAT)
    now = datetime.now(UTC).replace(tzinfo=None)
    gap = max(abs(now - start), abs(now - end)) / 10
    gap = max(gap, timedelta(days=1))
    low = start - gap if start - datetime.min > gap else datetime.min
    high = end + gap if datetime.max - end > gap else datetime.max
    return instant_text(low), instant_text(high)


def _approximate(lo: Decimal, hi: Decimal, value: Decimal) -> tuple[Decimal, Decimal]:
    """``ap`` on a number: within 10% of the value (search.html#prefix), and never
    narrower than the value's own precision."""
    margin = abs(value) / 10
    return min(lo, value - margin), max(hi, value + margin)


def _decimal(text: str) -> Decimal:
    if not _NUMBER.fullmatch(text):
        raise BadValue("a number is [prefix]digits[.digits][e[+|-]digits]")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern lets only numbers through
        raise BadValue("not a number") from None


def number(text: str) -> RangeValue:
    """``[prefix]number`` as the range its precision implies (``100`` → 99.5..100.5)."""
    prefix, rest = _prefixed(unescape(text))
    value = _decimal(rest)
    lo, hi = decimal_range(value)
    if prefix == "ap":
        lo, hi = _approximate(lo, hi, value)
        return RangeValue(prefix, lo, hi, written=rest)
    return RangeValue(prefix, lo, hi)


def quantity(text: str) -> RangeValue:
    """``[prefix]number[|system|code]``; ``number||code`` matches the code or the unit."""
    parts = split(text, "|")
    if len(parts) not in (1, 3):
        raise BadValue("a quantity is [prefix]number[|system|code]")
    prefix, rest = _prefixed(unescape(parts[0]))
    value = _decimal(rest)
    lo, hi = decimal_range(value)
    written = None
    if prefix == "ap":
        lo, hi = _approximate(lo, hi, value)
        written = rest
    if len(parts) == 1:
        return RangeValue(prefix, lo, hi, written=written)
    system, code = unescape(parts[1]), unescape(parts[2])
    if system and not code:
        raise BadValue("a quantity with a system needs a code: number|system|code")
    return RangeValue(prefix, lo, hi, system or None, code or None, written)


def composite(text: str, arity: int) -> str:
    """A composite value, checked for its number of ``$``-separated parts, kept as written.

    Its parts keep their escapes, so that each can be split and parsed by its component's
    type when the composite is matched through its components.
    """
    if len(split(text, "$")) != arity:
        raise BadValue(f"a value of this composite parameter has {arity} parts separated by '$'")
    return text


__all__ = [
    "PREFIXES",
    "BadValue",
    "composite",
    "date",
    "escape",
    "is_id",
    "number",
    "of_type",
    "quantity",
    "reference",
    "split",
    "token",
    "unescape",
]
