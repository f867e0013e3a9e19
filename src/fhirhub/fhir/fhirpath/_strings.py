"""FHIRPath 2.1 string functions: ``matchesFull()``, ``escape()``, ``unescape()``.

See https://hl7.org/fhirpath/2.1.0/. The engine lacks them, and the official R4 test suite
exercises them. ``escape``/``unescape`` know the two targets the specification names,
``html`` and ``json``; any other target answers nothing.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from fhirhub.fhir.fhirpath._errors import FhirPathError, single

_JSON_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|(.))", re.DOTALL)
_JSON_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def matches_full(inputs: list[Any], pattern: Any) -> list[Any]:
    """``matchesFull(regex)``: whether the whole input matches; ``.`` matches newlines too."""
    text = single(inputs, "matchesFull")
    if not isinstance(text, str) or not isinstance(pattern, str):
        return []
    try:
        return [re.fullmatch(pattern, text, flags=re.DOTALL) is not None]
    except re.error as exc:
        raise FhirPathError(f"matchesFull(): {pattern!r} is not a valid regex: {exc}") from exc


def _json_unescaped(match: re.Match[str]) -> str:
    if match[1]:
        return chr(int(match[1], 16))
    return _JSON_SIMPLE_ESCAPES.get(match[2], match[2])


def _translation(function: str,
                 targets: Mapping[str, Callable[[str], str]]) -> Callable[..., list[Any]]:
    """``function(target)``: the input string translated for ``target`` (html, json)."""

    def translate(inputs: list[Any], target: Any) -> list[Any]:
        text = single(inputs, function)
        convert = targets.get(target) if isinstance(target, str) else None
        return [convert(text)] if isinstance(text, str) and convert is not None else []

    return translate


escape = _translation("escape", {
    "html": lambda text: html.escape(text, quote=True),
    "json": lambda text: json.dumps(text, ensure_ascii=False)[1:-1],
})
unescape = _translation("unescape", {
    "html": html.unescape,
    "json": lambda text: _JSON_ESCAPE.sub(_json_unescaped, text),
})
