"""FHIRPath 2.1 ``sort([criterion, ...])``, which the engine lacks.

See https://hl7.org/fhirpath/2.1.0/; the official R4 test suite exercises it. Descending
order by ``-criterion`` works where the engine can negate (numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhirhub.fhir.fhirpath._engine import FP_DateTime, FP_Time, ResourceNode
from fhirhub.fhir.fhirpath._errors import FhirPathError
from fhirhub.fhir.fhirpath._values import lexical


def sort(inputs: list[Any], *criteria: Callable[[Any], list[Any]]) -> list[Any]:
    """The inputs ascending by each criterion in turn (by themselves without one), empty first."""

    def key(item: Any) -> tuple[tuple[int, Any], ...]:
        values = [criterion(item) for criterion in criteria] if criteria else [[item]]
        return tuple(_sort_key(v) for v in values)

    try:
        return sorted(inputs, key=key)
    except TypeError as exc:
        raise FhirPathError(f"sort() cannot order these values: {exc}") from exc


def _sort_key(result: Any) -> tuple[int, Any]:
    # The criterion's result is a collection: empty sorts first, else its first item.
    items = result if isinstance(result, list) else [result]
    if not items:
        return (0, 0)
    value = items[0].data if isinstance(items[0], ResourceNode) else items[0]
    if isinstance(value, FP_DateTime | FP_Time):
        value = lexical(value)
    return (1, value)
