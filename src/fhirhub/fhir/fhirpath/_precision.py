"""FHIRPath 2.1 precision functions: ``lowBoundary()``, ``highBoundary()``, ``precision()``.

See https://hl7.org/fhirpath/2.1.0/. The engine lacks them, and the official R4 test suite
exercises them. A value stands for every value its precision cannot tell apart (``1.587``
for ``[1.5865, 1.5875)``, ``@2014`` for the whole year); the boundaries are the least and
greatest of those.
"""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation, localcontext
from typing import Any

from fhirhub.fhir.fhirpath._engine import FP_DateTime, FP_Quantity, FP_Time, date_time, quantity, time
from fhirhub.fhir.fhirpath._errors import single
from fhirhub.fhir.fhirpath._values import lexical

# The most decimal places we answer for: the default precision of Python's decimal context.
_MAX_DECIMAL_PLACES = 28
_DATE_TIME = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2}))?)?"
    r"(?:T(?:(?P<hour>\d{2})(?::(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?$"
)
_TIME = re.compile(
    r"^T?(?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?)?$"
)
# Precision (in digits) reached by each component of a date/time, as FHIRPath counts them.
_DATE_TIME_PRECISIONS = {"year": 4, "month": 6, "day": 8, "hour": 10, "minute": 12,
                         "second": 14, "fraction": 17}
_TIME_PRECISIONS = {"hour": 2, "minute": 4, "second": 6, "fraction": 9}
# The greatest value of each clock component; its least is all zeros.
_LATEST = {"hour": "23", "minute": "59", "second": "59", "fraction": "999"}


def boundary(high: bool) -> Callable[..., list[Any]]:
    """``highBoundary([precision])`` when ``high``, else ``lowBoundary([precision])``."""
    name = "highBoundary" if high else "lowBoundary"

    def function(inputs: list[Any], precision: Any = None) -> list[Any]:
        value = single(inputs, name)
        found = _boundary_of(value, _optional_int(precision), high)
        return [] if found is None else [found]

    return function


def precision(inputs: list[Any]) -> list[Any]:
    """``precision()``: decimal places of a decimal, digits of a date, dateTime or time."""
    value = single(inputs, "precision")
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, int | Decimal):
        return [_decimal_places(Decimal(value))]
    text = lexical(value) if isinstance(value, FP_DateTime | FP_Time) else value
    if not isinstance(text, str):
        return []
    is_time = isinstance(value, FP_Time)
    match = (_TIME if is_time else _DATE_TIME).match(text)
    if match is None:
        return []
    table = _TIME_PRECISIONS if is_time else _DATE_TIME_PRECISIONS
    return [max(digits for part, digits in table.items() if match[part] is not None)]


def _optional_int(value: Any) -> int | None:
    return None if value is None or value == [] else int(value)


def _boundary_of(value: Any, places: int | None, high: bool) -> Any:
    """The boundary of one value of any type, or ``None`` where it has none."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return _decimal_boundary(Decimal(value), places, high)
    if isinstance(value, FP_Quantity):
        bound = _decimal_boundary(Decimal(value.value), places, high)
        return None if bound is None else quantity(bound, value.unit)
    if isinstance(value, FP_Time):
        return _time_boundary(lexical(value), places, high)
    if isinstance(value, FP_DateTime):
        return _date_time_boundary(lexical(value), places, high)
    if isinstance(value, str):  # a date, dateTime or time read from a resource
        found = _date_time_boundary(value, places, high)
        return found if found is not None else _time_boundary(value, places, high)
    return None


def _decimal_places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return max(-exponent, 0) if isinstance(exponent, int) else 0


def _decimal_boundary(value: Decimal, places: int | None, high: bool) -> Decimal | None:
    """The least/greatest value ``value`` may stand for, given its own precision, to
    ``places`` decimal places (8 by default): ``1.587`` is ``[1.5865, 1.5875)``."""
    places = 8 if places is None else places
    if not 0 <= places <= _MAX_DECIMAL_PLACES:
        return None
    with localcontext() as ctx:
        ctx.prec = 2 * _MAX_DECIMAL_PLACES + 10
        half_unit = Decimal(5).scaleb(-(_decimal_places(value) + 1))
        edge = value + half_unit if high else value - half_unit
        try:
            return edge.quantize(Decimal(1).scaleb(-places),
                                 rounding=ROUND_CEILING if high else ROUND_FLOOR)
        except InvalidOperation:
            return None


def _date_time_boundary(text: str, places: int | None, high: bool) -> FP_DateTime | None:
    match = _DATE_TIME.match(text.removeprefix("@"))
    if match is None:
        return None
    is_date = match["hour"] is None and "T" not in text
    places = (8 if is_date else 17) if places is None else places
    if places not in ((4, 6, 8) if is_date else _DATE_TIME_PRECISIONS.values()):
        return None
    text = _date(match, places, high)
    if places > 8:
        # Without a zone, the instant may be anywhere from UTC+14:00 to UTC-12:00.
        zone = match["tz"] or ("-12:00" if high else "+14:00")
        text += "T" + _clock(match, places - 8, high) + zone
    return date_time(text)


def _time_boundary(text: str, places: int | None, high: bool) -> FP_Time | None:
    match = _TIME.match(text.removeprefix("@"))
    if match is None:
        return None
    places = 9 if places is None else places
    if places not in _TIME_PRECISIONS.values():
        return None
    return time(_clock(match, places, high))


def _date(match: re.Match[str], places: int, high: bool) -> str:
    """``YYYY-MM-DD`` cut to ``places`` digits (4, 6 or 8 and more), missing parts filled."""
    year = int(match["year"])
    month = int(match["month"] or (12 if high else 1))
    day = int(match["day"] or (monthrange(year, month)[1] if high else 1))
    return f"{year:04d}-{month:02d}-{day:02d}"[: {4: 4, 6: 7}.get(places, 10)]


def _clock(match: re.Match[str], digits: int, high: bool) -> str:
    """``hh:mm:ss.fff`` cut to ``digits`` (2, 4, 6 or 9), missing parts filled."""
    hour, minute, second, fraction = (
        match[part] or (latest if high else "0" * len(latest)) for part, latest in _LATEST.items()
    )
    clock = f"{hour}:{minute}:{second}.{fraction[:3].ljust(3, '0')}"
    return clock[: {2: 2, 4: 5, 6: 8}.get(digits, 12)]
