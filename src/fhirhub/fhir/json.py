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


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return orjson.Fragment(_decimal_text(obj))
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _decimal_text(value: Decimal) -> str:
    text = str(value)
    if "E" in text or "e" in text:
        # JSON allows exponents, but keep them in the canonical lower-case form.
        return text.replace("E", "e").replace("e+", "e")
    return text


def dumps(obj: Any, *, pretty: bool = False) -> bytes:
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(obj, default=_default, option=option)


def decimal_text(value: Decimal) -> str:
    """The lexical form of a decimal, as FHIR XML and JSON write it."""
    return _decimal_text(value)


__all__ = ["Json", "decimal_text", "dumps", "loads"]
