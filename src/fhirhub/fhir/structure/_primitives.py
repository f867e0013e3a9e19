"""The checks of primitive values: JSON kind, range, the type's regex, the calendar, 1 MB.

One :data:`Checker` per R4 primitive type, built once from the element model's regexes
(https://hl7.org/fhir/R4/datatypes.html). The fast path of each checker only answers "good";
the slower diagnosis runs only for a bad value, to say what exactly is wrong with it. Also
here: how a diagnostic shows a JSON value (:func:`describe`, :func:`quote`), which the walk
uses too.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any

from fhirhub.fhir.model import element_model
from fhirhub.fhir.structure._regex import BASE64, XSD_SPACE, xsd_regex

MAX_STRING = 1024 * 1024  # datatypes.html: strings SHALL NOT exceed 1MB (1024*1024 characters)

_INT32 = (-(2**31), 2**31 - 1)

# A checker answers None for a good value, else (IssueType code, what is wrong).
Problem = tuple[str, str]
Checker = Callable[[Any], Problem | None]

# What a well-formed value looks like, for the diagnostics.
_EXPECTED = {
    "base64Binary": "base64 (RFC 4648) in groups of four characters",
    "canonical": "a URI with no whitespace",
    "code": "no leading or trailing whitespace and single spaces inside",
    "date": "YYYY, YYYY-MM or YYYY-MM-DD",
    "dateTime": "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss(.sss)+zz:zz "
                "(a time needs a timezone)",
    "id": "1 to 64 of A-Z, a-z, 0-9, '-' and '.'",
    "instant": "YYYY-MM-DDThh:mm:ss(.sss)+zz:zz, with a timezone",
    "oid": "urn:oid: and a dotted OID, e.g. urn:oid:1.2.3",
    "time": "hh:mm:ss(.sss), hours 00 to 23",
    "uri": "a URI with no whitespace",
    "url": "a URL with no whitespace",
    "uuid": "urn:uuid: and a lower-case UUID",
}

# string and markdown are "[ \r\n\t\S]+": in XML Schema regex terms, any non-empty string.
_ANY_TEXT = frozenset({"string", "markdown"})
_DATES = frozenset({"date", "dateTime", "instant"})
_STRING_LIMITED = frozenset({
    "canonical", "code", "id", "markdown", "oid", "string", "uri", "url", "uuid"})


@cache
def checkers() -> dict[str, Checker]:
    """The checker of each R4 primitive type, by type name."""
    checks: dict[str, Checker] = {
        "boolean": _boolean,
        "decimal": _decimal,
        "integer": _integer_checker("integer", *_INT32),
        "positiveInt": _integer_checker("positiveInt", 1, _INT32[1]),
        "unsignedInt": _integer_checker("unsignedInt", 0, _INT32[1]),
    }
    for type_name, official in element_model().primitive_regex.items():
        if type_name in checks:
            continue
        if type_name in _ANY_TEXT:
            regex = None
        elif type_name == "base64Binary":
            regex = BASE64
        else:
            regex = xsd_regex(official.pattern)
        checks[type_name] = _string_checker(type_name, regex)
    return checks


def no_check(value: Any) -> Problem | None:
    return None  # complex values are checked by the walk, not by a checker


def _boolean(value: Any) -> Problem | None:
    if value is True or value is False:
        return None
    return "structure", f"expected JSON true or false, not {describe(value)}"


def _decimal(value: Any) -> Problem | None:
    kind = type(value)
    if kind is Decimal:
        return None if value.is_finite() else ("value", f"{value} is not a number")
    if kind is int:
        return None
    if kind is float:
        return None if math.isfinite(value) else ("value", f"{value} is not a number")
    return "structure", f"expected a JSON number, not {describe(value)}"


def _integer_checker(type_name: str, low: int, high: int) -> Checker:
    def check(value: Any) -> Problem | None:
        if type(value) is not int:  # bool is an int subclass, and not an integer in JSON
            return "structure", f"expected a JSON integer, not {describe(value)}"
        if low <= value <= high:
            return None
        return "value", f"{value} is out of range ({type_name}: {low} to {high})"
    return check


def _string_checker(type_name: str, regex: re.Pattern[str] | None) -> Checker:
    diagnose = _string_diagnosis(type_name, regex)
    if regex is None:
        def check_text(value: Any) -> Problem | None:
            if type(value) is str and value and len(value) <= MAX_STRING:
                return None
            return diagnose(value)
        return check_text
    if type_name == "base64Binary":
        return diagnose
    match = regex.fullmatch  # every other official regex also rules out outer whitespace
    if type_name in _DATES:
        def check_date(value: Any) -> Problem | None:
            if (type(value) is str and match(value) is not None
                    and (len(value) < 10 or _is_real_day(value))):
                return None
            return diagnose(value)
        return check_date

    def check(value: Any) -> Problem | None:
        if type(value) is str and value and len(value) <= MAX_STRING and match(value):
            return None
        return diagnose(value)
    return check


def _string_diagnosis(type_name: str, regex: re.Pattern[str] | None) -> Checker:
    may_pad = type_name in _ANY_TEXT
    limited = type_name in _STRING_LIMITED
    is_date = type_name in _DATES
    expected = _EXPECTED.get(type_name) or (
        f"a value matching {regex.pattern}" if regex is not None else "text")

    def diagnose(value: Any) -> Problem | None:
        if type(value) is not str:
            return "structure", f"expected a JSON string, not {describe(value)}"
        if not value:
            return "value", "an empty string is not a value; leave the property out instead"
        if limited and len(value) > MAX_STRING:
            return "value", f"the value is {len(value)} characters long; the limit is 1 MB"
        if not may_pad and (value[0] in XSD_SPACE or value[-1] in XSD_SPACE):
            return "value", (f"{quote(value)} starts or ends with whitespace, which a "
                             f"{type_name} may not")
        if regex is not None and regex.fullmatch(value) is None:
            return "value", f"{quote(value)} is not a valid {type_name} (expected {expected})"
        if is_date and len(value) >= 10 and not _is_real_day(value):
            return "value", f"{quote(value)} is not a date on the calendar"
        if type_name == "base64Binary" and not _is_padded_base64(value):
            return "value", f"{quote(value)} is not valid base64: '=' may only pad the end"
        return None
    return diagnose


def _is_real_day(value: str) -> bool:
    day = int(value[8:10])
    return day <= 28 or day <= calendar.monthrange(int(value[0:4]), int(value[5:7]))[1]


def _is_padded_base64(value: str) -> bool:
    if "=" not in value:
        return True
    compact = "".join(value.split())
    body = compact.rstrip("=")
    return "=" not in body and len(compact) - len(body) <= 2


def describe(value: Any) -> str:
    """A JSON value as a diagnostic names it: "null", "an array", "the string 'x'"."""
    if value is None:
        return "null"
    if value is True or value is False:
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, str):
        return f"the string {quote(value)}"
    if isinstance(value, int | float | Decimal):
        return f"the number {value}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def quote(value: str) -> str:
    """A string as a diagnostic quotes it: cut to 60 characters, as a value may run to 1 MB."""
    return repr(value if len(value) <= 60 else value[:57] + "...")
