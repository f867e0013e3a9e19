"""FHIRPath: compile once, evaluate many times.

The evaluator is ``fhirpathpy`` (see docs/adr/0003-fhirpath-engine.md) driven by the R4
model, behind this small surface so that callers never import it directly and a faster
engine can replace it without touching them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from fhirpathpy import compile as _fp_compile  # type: ignore[attr-defined]
from fhirpathpy.models import models as _fp_models

from fhirhub.errors import InvalidError

Evaluator = Callable[..., list[Any]]

_R4 = _fp_models["r4"]


class FhirPathError(InvalidError):
    """An expression that does not parse, or fails while it is evaluated."""

    issue_code = "invalid"
    spine_code = "INVALID_VALUE"


@lru_cache(maxsize=4096)
def compile_expression(expression: str) -> Evaluator:
    """A callable ``(resource, variables=None) -> list`` for ``expression``."""
    try:
        compiled = _fp_compile(expression, _R4)
    except Exception as exc:  # fhirpathpy raises bare Exceptions from its ANTLR parser
        raise FhirPathError(f"The FHIRPath expression {expression!r} is not valid: {exc}") from exc

    def evaluate(resource: Any, variables: Mapping[str, Any] | None = None) -> list[Any]:
        try:
            result = compiled(resource, dict(variables or {}))
        except Exception as exc:  # evaluation errors surface as plain Exceptions too
            raise FhirPathError(
                f"The FHIRPath expression {expression!r} could not be evaluated: {exc}"
            ) from exc
        return list(result)

    return evaluate


def evaluate(resource: Any, expression: str, variables: Mapping[str, Any] | None = None) -> list[Any]:
    return compile_expression(expression)(resource, variables)


__all__ = ["Evaluator", "FhirPathError", "compile_expression", "evaluate"]
