"""FHIRPath: compile once, evaluate many times.

The evaluator is ``fhirpathpy`` driven by its R4 model, behind this small surface so that
callers never import it directly and a faster engine can replace it without touching them
(docs/adr/0003-fhirpath-engine.md). What we add to the engine, and where:

* **Strict syntax** (``_syntax``): refused at the first syntax error, where the
  engine alone recovers silently (``Patient..name`` "works"); a keyword used as a member
  name after a ``.`` (``Patient.text.div``) is read as a name, as the reference engine does.
* **Environment variables** of FHIRPath and FHIR R4 (``_environment``):
  ``%sct``, ``%loinc``, ``%resource``, ``%rootResource``, ``%`vs-[name]```...
* **Functions** the engine lacks (``_functions`` lists them): FHIR R4's
  ``resolve()``, ``hasValue()``, ``getValue()`` (``_r4_functions``); FHIRPath
  2.1's ``lowBoundary()``, ``highBoundary()``, ``precision()`` (``_precision``),
  ``matchesFull()``, ``escape()``, ``unescape()`` (``_strings``) and ``sort()``
  (``_sort``), which the official R4 test suite exercises. ``trace()`` goes to
  the ``fhirhub.fhirpath`` logger instead of standard output.
* **Results are FHIR JSON values** (``_values``): computed dates, times and
  quantities come back in their FHIR JSON form, never as engine objects.
* **Locating elements** (:func:`nodes`, :func:`locate`, ``_locate``): the
  resource's own objects and where they live, for FHIRPath Patch.

All of it goes through the engine's own extension points; its code is never patched. Only
``_engine`` imports it. The official suite's failures (tests/fhir/test_fhirpath.py)
list the engine's known gaps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from fhirhub.fhir.fhirpath._environment import UCUM
from fhirhub.fhir.fhirpath._errors import FhirPathError
from fhirhub.fhir.fhirpath._fast import invariant as fast_invariant
from fhirhub.fhir.fhirpath._locate import locate
from fhirhub.fhir.fhirpath._nodes import Location, Node, Place, as_nodes
from fhirhub.fhir.fhirpath._parsed import parse
from fhirhub.fhir.fhirpath._values import json_value

Evaluator = Callable[..., list[Any]]


@lru_cache(maxsize=4096)
def compile_expression(expression: str) -> Evaluator:
    """A callable ``(resource, variables=None) -> list`` for ``expression``."""
    parsed = parse(expression)

    def evaluate(resource: Any, variables: Mapping[str, Any] | None = None) -> list[Any]:
        return [json_value(item) for item in parsed.evaluate(resource, variables)]

    return evaluate


def evaluate(
    resource: Any, expression: str, variables: Mapping[str, Any] | None = None
) -> list[Any]:
    """``expression`` evaluated on ``resource``; compiled expressions are cached."""
    return compile_expression(expression)(resource, variables)


@lru_cache(maxsize=4096)
def compile_invariant(expression: str) -> Callable[[Any, Mapping[str, Any]], bool | None]:
    """A predicate for an invariant: (element, variables) -> True/False, or None when the
    expression evaluates to empty. Uses the fast compiled form when the expression is in
    the supported subset, else the full engine (result: single boolean -> that; empty -> None;
    anything else -> bool of 'exists'). Cached per expression.

    ``variables`` holds ``resource``, ``rootResource`` and ``context`` (the element); an
    invalid expression raises :class:`FhirPathError` here, as :func:`compile_expression`
    does. See ``_fast`` for the subset and how it falls back to the engine.
    """
    return fast_invariant(expression, compile_expression(expression))


def nodes(resource: Any, expression: str,
          variables: Mapping[str, Any] | None = None) -> list[Node]:
    """Like :func:`evaluate`, but each item is the resource's own object, with its type."""
    return as_nodes(parse(expression).evaluate(resource, variables, raw=True))


__all__ = [
    "UCUM",
    "Evaluator",
    "FhirPathError",
    "Location",
    "Node",
    "Place",
    "compile_expression",
    "compile_invariant",
    "evaluate",
    "locate",
    "nodes",
]
