"""FHIR JSON in and out.

Decimals are parsed as :class:`decimal.Decimal` so that their precision survives
(``1.50`` stays ``1.50``, as FHIR requires); they are written back with their own digits.
Duplicate keys, ``NaN`` and ``Infinity`` are refused: they are not FHIR JSON.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

from fhirhub.errors import InvalidError

Json = dict[str, Any]


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(f"the property {key!r} appears twice in one object")
            seen.add(key)
    return out


def _bad_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number in FHIR")


def loads(data: bytes | str) -> Any:
    """Parse FHIR JSON; raise :class:`InvalidError` saying where it is broken."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError as exc:
        raise InvalidError(
            f"The body is not valid UTF-8 (byte {exc.start}); FHIR JSON must be UTF-8",
            spine_code="INVALID_REQUEST",
            issue_code="structure",
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(
            text,
            parse_float=Decimal,
            parse_constant=_bad_constant,
            object_pairs_hook=_no_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise InvalidError(
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            spine_code="INVALID_REQUEST",
            issue_code="structure",
        ) from None
    except (_DuplicateKeyError, ValueError) as exc:
        raise InvalidError(
            f"The body is not valid FHIR JSON: {exc}",
            spine_code="INVALID_REQUEST",
            issue_code="structure",
        ) from None


class RawJson:
    """A resource kept as the FHIR JSON it was stored as, written out as it is.

    A searchset of twenty resources would otherwise parse each stored body (with the
    Decimal-keeping parser above) only to serialise it again. :func:`dumps` embeds the bytes;
    whatever needs the values (XML, pretty printing, code that inspects a response) calls
    :func:`materialize` first.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def load(self) -> Any:
        return loads(self.raw)


def materialize(obj: Any) -> Any:
    """``obj`` with every :class:`RawJson` inside it parsed (dicts and lists are copied
    only where one is found)."""
    if isinstance(obj, RawJson):
        return obj.load()
    if isinstance(obj, dict):
        if any(isinstance(v, RawJson | dict | list) for v in obj.values()):
            return {k: materialize(v) for k, v in obj.items()}
        return obj
    if isinstance(obj, list):
        return [materialize(v) for v in obj]
    return obj


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return orjson.Fragment(_decimal_text(obj))
    if isinstance(obj, RawJson):
        return orjson.Fragment(obj.raw)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _decimal_text(value: Decimal) -> str:
    text = str(value)
    if "E" in text or "e" in text:
        # JSON allows exponents, but keep them in the canonical lower-case form.
        return text.replace("E", "e").replace("e+", "e")
    return text


def dumps(obj: Any, *, pretty: bool = False) -> bytes:
    if pretty:
        return orjson.dumps(materialize(obj), default=_default, option=orjson.OPT_INDENT_2)
    return orjson.dumps(obj, default=_default)


def decimal_text(value: Decimal) -> str:
    """The lexical form of a decimal, as FHIR XML and JSON write it."""
    return _decimal_text(value)


__all__ = ["Json", "RawJson", "decimal_text", "dumps", "loads", "materialize"]
