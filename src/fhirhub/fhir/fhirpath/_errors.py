"""The one error FHIRPath raises, and the input rule several of our functions enforce with it.

Kept apart from everything else so that every private module of the package can raise it without
importing the public :mod:`fhirhub.fhir.fhirpath`, which imports them all.
"""

from __future__ import annotations

from typing import Any

from fhirhub.errors import InvalidError


class FhirPathError(InvalidError):
    """An expression that does not parse, or fails while it is evaluated."""

    issue_code = "invalid"
    spine_code = "INVALID_VALUE"


def single(inputs: list[Any], function: str) -> Any:
    """The input item of a function defined on one item: ``None`` for none, an error for more."""
    if len(inputs) > 1:
        raise FhirPathError(f"{function}() needs a single input item, got {len(inputs)}")
    return inputs[0] if inputs else None
