"""Engine results as the FHIR JSON values they stand for.

Navigating a resource yields its own JSON values (``str``, ``bool``, ``int``, ``Decimal``,
``dict``...), but dates, times and quantities an expression computes come back as engine
objects. Callers get the same FHIR JSON shapes either way and never see an engine type.
"""

from __future__ import annotations

from typing import Any

from fhirhub.fhir.fhirpath._engine import FP_DateTime, FP_Quantity, FP_Time
from fhirhub.fhir.fhirpath._environment import UCUM


def json_value(item: Any) -> Any:
    """An engine result as the FHIR JSON value it stands for."""
    if isinstance(item, FP_DateTime | FP_Time):
        return lexical(item)
    if isinstance(item, FP_Quantity):
        return _quantity_json(item)
    return item


def lexical(item: FP_DateTime | FP_Time) -> str:
    """A date, dateTime or time as written: ``2014-01``, ``10:30``."""
    # The engine keeps the literal as written; its str() re-renders (UTC, no millis).
    text = getattr(item, "asStr", None)
    return text if isinstance(text, str) else str(item)


def _quantity_json(quantity: FP_Quantity) -> dict[str, Any]:
    value = quantity.value
    unit = str(quantity.unit or "")
    if unit.startswith("'") and unit.endswith("'"):
        code = unit[1:-1]
        return {"value": value, "unit": code, "system": UCUM, "code": code}
    # A calendar duration keyword (days, months...): not a UCUM unit, so no system/code.
    return {"value": value, "unit": unit} if unit else {"value": value}
