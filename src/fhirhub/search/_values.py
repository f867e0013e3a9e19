"""Value arithmetic shared by the indexer and the query parser, so both sides agree.

* :func:`normalize` — what string search compares: case-folded, accents removed
  (``text.py`` defines it; re-exported here for the indexer).
* :func:`date_range` — a FHIR date/dateTime/instant (or search date) as the closed UTC range
  ``[lo, hi]`` its precision covers, in the fixed-width text form of ``types.py``.
* :func:`decimal_range` — a number as the range its precision implies (``1.5`` → 1.45..1.55).
* :func:`split_reference` — ``Patient/1``, ``http://x/fhir/Patient/1/_history/2``, ``urn:uuid:…``.

Timezones: a time without a zone is taken as UTC. R4 says such a time is in the server's
local zone, but a server spread over hosts has no single local zone, and taking UTC on both
the indexing and the searching side keeps the two consistent. Dates without a time are
whole days in UTC for the same reason.
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta
from decimal import Context, Decimal

from fhirhub.fhir.model import element_model
from fhirhub.search.text import normalize

MIN_INSTANT = "0001-01-01T00:00:00.000000"
MAX_INSTANT = "9999-12-31T23:59:59.999999"

_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+\- ]\d{2}:\d{2})?)?)?)?"
)
_MICRO = timedelta(microseconds=1)
# Enough digits that adding half a unit of the last place never rounds.
_WIDE = Context(prec=80)


def instant_text(moment: datetime) -> str:
    """``moment`` in the fixed-width form of ``types.py`` (``0001-01-01T00:00:00.000000``)."""
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}"
    )


def date_range(value: str) -> tuple[str, str] | None:
    """The UTC range ``value`` covers, or ``None`` when it is not a FHIR date/time.

    ``2020`` → the whole year; ``2020-03-01T10:00:00+01:00`` → that second, moved to UTC.
    A ``' '`` where the zone sign should be is read as ``'+'`` (an unencoded ``+`` in a
    query string arrives as a space).
    """
    m = _DATE.fullmatch(value)
    if m is None:
        return None
    year_s, month_s, day_s, hour_s, minute_s, second_s, fraction, zone = m.groups()
    year = int(year_s)
    try:
        if month_s is None:
            return _span(datetime(year, 1, 1), datetime(year, 12, 31, 23, 59, 59, 999999))
        month = int(month_s)
        if day_s is None:
            last = calendar.monthrange(year, month)[1] if 1 <= month <= 12 else 0
            return _span(datetime(year, month, 1), datetime(year, month, last, 23, 59, 59, 999999))
        day = int(day_s)
        if hour_s is None:
            return _span(datetime(year, month, day), datetime(year, month, day, 23, 59, 59, 999999))
        second = int(second_s or 0)
        # A leap second (allowed by the FHIR regex) cannot be represented: it is the end of :59.
        leap = second == 60
        lo = datetime(year, month, day, int(hour_s), int(minute_s), min(second, 59))
    except ValueError:
        return None
    if second_s is None:
        width = timedelta(minutes=1)
    elif fraction:
        digits = fraction[:6]
        lo = lo.replace(microsecond=int(digits.ljust(6, "0")))
        width = timedelta(microseconds=10 ** (6 - len(digits)))
    else:
        width = timedelta(seconds=1)
    if leap:
        lo = lo.replace(microsecond=999999)
        width = _MICRO
    offset = _zone_offset(zone)
    return _shift(lo, offset), _shift(lo + width - _MICRO, offset)


def _zone_offset(zone: str | None) -> timedelta:
    if zone is None or zone == "Z":
        return timedelta(0)
    sign = -1 if zone[0] == "-" else 1
    return sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))


def _span(lo: datetime, hi: datetime) -> tuple[str, str]:
    return instant_text(lo), instant_text(hi)


def _shift(moment: datetime, offset: timedelta) -> str:
    try:
        return instant_text(moment - offset)
    except OverflowError:  # a zone that moves year 1 or year 9999 off the calendar: clamp
        return MIN_INSTANT if offset > timedelta(0) else MAX_INSTANT


def decimal_range(value: Decimal | int) -> tuple[Decimal, Decimal]:
    """The range a number's precision implies: ``100`` → [99.5, 100.5], ``1.50`` → [1.495, 1.505]."""
    number = Decimal(value) if isinstance(value, int) else value
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int):  # NaN / Infinity: no precision to speak of
        return number, number
    half = Decimal((0, (5,), exponent - 1))
    return _WIDE.subtract(number, half), _WIDE.add(number, half)


def decimal_from_range(lo: Decimal, hi: Decimal) -> Decimal:
    """The inverse of :func:`decimal_range`: [99.5, 100.5] → ``100``, [1.495, 1.505] → ``1.50``."""
    width = _WIDE.subtract(hi, lo)
    middle = _WIDE.divide(_WIDE.add(lo, hi), 2)
    return _WIDE.quantize(middle, Decimal(1).scaleb(width.adjusted()))


def as_decimal(value: object) -> Decimal | None:
    """A JSON number as a Decimal (never a bool, which Python counts as an int)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return None


_REFERENCE = re.compile(
    r"(?:(?P<base>[a-zA-Z][a-zA-Z0-9+.\-]*://.*)/)?"
    r"(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/[A-Za-z0-9\-.]{1,64})?"
)


def split_reference(reference: str) -> tuple[str | None, str | None, str | None]:
    """``(type, id, url)`` of a literal reference; ``url`` only for absolute ones.

    A version (``/_history/2``) is dropped: search matches the resource, not a version.
    Absolute URLs that end in ``Type/id`` (with a known resource type) give type and id
    as well, so that a server base can be recognised later; anything else (``urn:uuid:…``,
    ``http://example.org/x``) is kept as the URL alone.
    """
    m = _REFERENCE.fullmatch(reference)
    if m is None or not element_model().is_resource_type(m.group("type")):
        return None, None, reference
    url = reference if m.group("base") is not None else None
    return m.group("type"), m.group("id"), url


def without_version(canonical: str) -> str:
    """``http://x/ValueSet/y|1.0`` → ``http://x/ValueSet/y``."""
    return canonical.partition("|")[0]


__all__ = [
    "MAX_INSTANT",
    "MIN_INSTANT",
    "as_decimal",
    "date_range",
    "decimal_from_range",
    "decimal_range",
    "instant_text",
    "normalize",
    "split_reference",
    "without_version",
]
