"""A resource → the rows that make it searchable: https://hl7.org/fhir/R4/search.html#ptypes

For each parameter of the resource's type (``registry.py``), its expression is evaluated
and every value becomes rows by the parameter's type and the value's FHIR datatype, as the
tables of search.html say:

* token — Coding (system, code, display as text), CodeableConcept (each coding, and its
  text), Identifier (system, value), ContactPoint (value; no system), boolean ("true"/"false"),
  and code/string/uri/id (the value alone). Two side rows serve modifiers the row shape
  cannot: ``param:of-type`` (system and code of ``Identifier.type``, code ``"<type code>|<value>"``)
  and ``param:identifier`` on references (``Reference.identifier`` system and value).
* string — each part of a HumanName (family, given, prefix, suffix, text) and of an Address
  (line, city, district, state, postalCode, country, text), and plain strings/markdown;
  ``norm`` is :func:`~fhirhub.search._values.normalize`, ``exact`` as written.
* reference — ``Type/id`` (type and id), absolute URLs (kept in ``url``, plus type and id when
  they end in ``Type/id``), canonicals and uris (``url`` without ``|version``). Contained
  references (``#x``) are skipped: they never match a search for a resource on the server.
* date — date, dateTime, instant, Period (no start: from the first instant; no end: to the
  last), Timing (one range over its events and bounds: "only the outer limits matter").
* number, quantity — the range the value's precision implies; Quantity, its specialisations
  and Money (system ``urn:iso:std:iso:4217``); a Range with both ends as one row from its low
  end to its high end.
* uri — the value as written, and a canonical's URL without ``|version`` as a second row.

``_id`` gives no rows: the store has the id. Composite parameters give no rows either: they
are matched through their components, each of which is an ordinary parameter with rows of
its own. Special parameters (``_text``, ``_content``, ``near``) are the store's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

from fhirhub.fhir.structure import narrative_text
from fhirhub.search._composite import Memo, Part, PartMaker, canonical_part, composite_rows
from fhirhub.search._paths import Typed
from fhirhub.search._steps import QUANTITY_TYPES
from fhirhub.search._ucum import UCUM, canonical
from fhirhub.search._values import (
    MAX_INSTANT,
    MIN_INSTANT,
    as_decimal,
    date_range,
    decimal_range,
    normalize,
    split_reference,
    without_version,
)
from fhirhub.search.registry import Registry, registry
from fhirhub.search.text import words
from fhirhub.search.types import (
    CompositeRow,
    DateRow,
    IndexRows,
    NumberRow,
    QuantityRow,
    ReferenceRow,
    StringRow,
    TextRow,
    TokenRow,
    UriRow,
)

Json = dict[str, Any]

ISO_4217 = "urn:iso:std:iso:4217"
OF_TYPE = ":of-type"  # suffix of the side rows for token :of-type
IDENTIFIER = ":identifier"  # suffix of the side rows for reference :identifier
CANONICAL = ":ucum"  # suffix of the quantity rows in canonical UCUM units

# "" is a value whose type is unknown (a fallback result): a plain string is taken as one.
_STRING_TYPES = frozenset({"string", "markdown", "code", "id", "uri", "url", "canonical", "oid",
                           "uuid", ""})
_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def index_resource(resource: Json, *, using: Registry | None = None) -> IndexRows:
    """Every row ``resource`` contributes to search, without duplicates."""
    reg = using or registry()
    rtype = str(resource.get("resourceType", ""))
    out = _Rows()
    for param in reg.indexed(rtype):
        values = param.extract(resource)
        if values:
            _EMITTERS[param.type](param.code, _unwrap(values), out)
    composite: list[CompositeRow] = []
    memo: Memo = {}
    for param in reg.composites(rtype):
        composite.extend(composite_rows(resource, param, reg, _PART_MAKERS, param.code, memo))
        if any(reg.type_of(c.definition) == "quantity" for c in param.components):
            composite.extend(composite_rows(resource, param, reg, _UCUM_PART_MAKERS,
                                            param.code + CANONICAL, memo))
    texts = reg.for_type(rtype)
    text = [TextRow("_content", words(_strings_of(resource)))] if "_content" in texts else []
    if "_text" in texts:
        narrative = resource.get("text")
        div = narrative.get("div") if isinstance(narrative, dict) else None
        if isinstance(div, str) and div:
            text.append(TextRow("_text", words([narrative_text(div)])))
    # Rows are gathered as tuples, whose hashing is cheap, and made into rows once unique.
    return IndexRows(
        token=[TokenRow(*t) for t in dict.fromkeys(out.token)],
        string=[StringRow(*t) for t in dict.fromkeys(out.string)],
        reference=[ReferenceRow(*t) for t in dict.fromkeys(out.reference)],
        date=[DateRow(*t) for t in dict.fromkeys(out.date)],
        number=[NumberRow(*t) for t in dict.fromkeys(out.number)],
        quantity=[QuantityRow(*t) for t in dict.fromkeys(out.quantity)],
        uri=[UriRow(*t) for t in dict.fromkeys(out.uri)],
        composite=composite,
        text=[t for t in text if t.words],
    )


# -- _text and _content ------------------------------------------------------------------------

# Values that are identifiers of things rather than text a person would search for.
_NOT_TEXT = frozenset({"reference", "system", "url", "fullUrl", "id", "div", "data",
                       "resourceType"})


def _strings_of(resource: Json) -> Iterator[str]:
    """Every string of ``resource`` a person might search for (``_content``): its values but
    references, systems, URLs, ids and binary data; the narrative as text."""
    stack: list[Any] = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _NOT_TEXT:
                    if key == "div" and isinstance(value, str):
                        yield narrative_text(value)
                elif isinstance(value, str):
                    yield value
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            for item in node:
                if isinstance(item, str):
                    yield item
                elif isinstance(item, dict | list):
                    stack.append(item)


# -- composite parts ----------------------------------------------------------------------------


def _token_parts(code: str, values: list[Typed]) -> list[Part]:
    rows = _Rows()
    _tokens(code, _unwrap(values), rows)
    return [(s, c, None, None, None, None) for _p, s, c, _t in rows.token
            if c is not None or s is not None]


def _reference_parts(code: str, values: list[Typed]) -> list[Part]:
    rows = _Rows()
    _references(code, _unwrap(values), rows)
    return [(t, i, None, None, None, None) for _p, t, i, _u in rows.reference if i is not None]


def _string_parts(code: str, values: list[Typed]) -> list[Part]:
    rows = _Rows()
    _strings(code, _unwrap(values), rows)
    return [(None, norm, None, None, None, None) for _p, norm, _e in rows.string]


def _uri_parts(code: str, values: list[Typed]) -> list[Part]:
    rows = _Rows()
    _uris(code, _unwrap(values), rows)
    return [(None, v, None, None, None, None) for _p, v in rows.uri]


def _date_parts(code: str, values: list[Typed]) -> list[Part]:
    rows = _Rows()
    _dates(code, _unwrap(values), rows)
    return [(None, None, None, None, lo, hi) for _p, lo, hi in rows.date]


def _number_parts(code: str, values: list[Typed]) -> list[Part]:
    rows = _Rows()
    _numbers(code, _unwrap(values), rows)
    return [(None, None, lo, hi, None, None) for _p, lo, hi in rows.number]


def _quantity_parts(code: str, values: list[Typed]) -> list[Part]:
    rows = _Rows()
    _quantities(code, _unwrap(values), rows)
    return [(system, unit_code, lo, hi, None, None)
            for p, lo, hi, system, unit_code, _u in rows.quantity if p == code]


def _canonical_parts(code: str, values: list[Typed]) -> list[Part]:
    rows = _Rows()
    _quantities(code, _unwrap(values), rows)
    found = (canonical_part(system, unit_code, lo, hi)
             for p, lo, hi, system, unit_code, _u in rows.quantity if p == code)
    return [part for part in found if part is not None]


_PART_MAKERS: dict[str, PartMaker] = {
    "token": _token_parts,
    "reference": _reference_parts,
    "string": _string_parts,
    "uri": _uri_parts,
    "date": _date_parts,
    "number": _number_parts,
    "quantity": _quantity_parts,
}
_UCUM_PART_MAKERS: dict[str, PartMaker] = {**_PART_MAKERS, "quantity": _canonical_parts}


_Token = tuple[str, str | None, str | None, str | None]


class _Rows:
    """Rows as tuples in the field order of their row classes."""

    __slots__ = ("date", "number", "quantity", "reference", "string", "token", "uri")

    def __init__(self) -> None:
        self.token: list[_Token] = []
        self.string: list[tuple[str, str, str]] = []
        self.reference: list[_Token] = []
        self.date: list[tuple[str, str, str]] = []
        self.number: list[tuple[str, Decimal, Decimal]] = []
        self.quantity: list[tuple[str, Decimal, Decimal, str | None, str | None, str | None]] = []
        self.uri: list[tuple[str, str]] = []


def _unwrap(values: list[Typed]) -> Iterable[Typed]:
    """Extensions stand for their value (``Patient.extension('…mothersMaidenName')``)."""
    for type_code, value in values:
        if type_code != "Extension" or not isinstance(value, dict):
            yield type_code, value
            continue
        for key, inner in value.items():
            if key.startswith("value") and len(key) > 5:
                yield _value_type(key[5:]), inner


def _value_type(suffix: str) -> str:
    """``valueDateTime`` → ``dateTime``; ``valueCodeableConcept`` → ``CodeableConcept``."""
    if suffix in ("Boolean", "Canonical", "Code", "Date", "DateTime", "Decimal", "Id", "Instant",
                  "Integer", "Markdown", "Oid", "PositiveInt", "String", "Time", "UnsignedInt",
                  "Uri", "Url", "Uuid", "Base64Binary"):
        return suffix[0].lower() + suffix[1:]
    return suffix


# -- token ----------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return normalize(value) if isinstance(value, str) and value else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _tokens(code: str, values: Iterable[Typed], rows: _Rows) -> None:
    out = rows.token
    for type_code, value in values:
        if type_code == "Coding":
            _coding(code, value, None, out)
        elif type_code == "CodeableConcept":
            _concept(code, value, out)
        elif type_code == "Identifier":
            _identifier(code, value, out)
        elif type_code == "ContactPoint":
            if _str(value.get("value")):
                out.append((code, None, value["value"], None))
        elif type_code == "boolean" and isinstance(value, bool):
            out.append((code, None, "true" if value else "false", None))
        elif isinstance(value, str) and value:
            out.append((code, None, value, None))


def _coding(code: str, coding: Any, text: str | None, out: list[_Token]) -> None:
    # A coding with only a display still serves :text.
    if isinstance(coding, dict) and (coding.get("code") or coding.get("system")
                                     or coding.get("display")):
        label = text or _text(coding.get("display"))
        out.append((code, _str(coding.get("system")), _str(coding.get("code")), label))


def _concept(code: str, concept: Any, out: list[_Token]) -> None:
    if not isinstance(concept, dict):
        return
    text = _text(concept.get("text"))
    codings = [c for c in concept.get("coding", ()) if isinstance(c, dict)]
    for coding in codings:
        _coding(code, coding, None, out)
    # :text looks at CodeableConcept.text as well as each display.
    if text is not None and all(_text(c.get("display")) != text for c in codings):
        out.append((code, None, None, text))


def _identifier(code: str, identifier: Any, out: list[_Token]) -> None:
    if not isinstance(identifier, dict):
        return
    value, system = _str(identifier.get("value")), _str(identifier.get("system"))
    kind = identifier.get("type")
    if value is None and system is None:
        return
    label = _text(kind.get("text")) if isinstance(kind, dict) else None
    out.append((code, system, value, label))
    if value is None or not isinstance(kind, dict):
        return
    for coding in kind.get("coding", ()):
        if isinstance(coding, dict) and _str(coding.get("code")):
            out.append((code + OF_TYPE, _str(coding.get("system")),
                                f"{coding['code']}|{value}", None))


# -- string ---------------------------------------------------------------------------------


def _strings(code: str, values: Iterable[Typed], rows: _Rows) -> None:
    out = rows.string
    for type_code, value in values:
        if type_code in ("HumanName", "Address") and isinstance(value, dict):
            for part in _NAME_PARTS if type_code == "HumanName" else _ADDRESS_PARTS:
                found = value.get(part)
                if found.__class__ is list:
                    out.extend((code, normalize(t), t) for t in found if isinstance(t, str) and t)
                elif isinstance(found, str) and found:
                    out.append((code, normalize(found), found))
        elif type_code in _STRING_TYPES and isinstance(value, str) and value:
            out.append((code, normalize(value), value))


# -- reference ------------------------------------------------------------------------------


def _references(code: str, values: Iterable[Typed], rows: _Rows) -> None:
    out = rows.reference
    for type_code, value in values:
        if isinstance(value, str):
            if value:
                out.append((code, None, None, without_version(value)))
        elif not isinstance(value, dict):
            continue
        elif type_code == "Reference":
            _reference(code, value, rows)
        elif isinstance(value.get("resourceType"), str) and isinstance(value.get("id"), str):
            # A resource in place of a reference (Bundle.entry[0].resource): point at it.
            out.append((code, value["resourceType"], value["id"], None))


def _reference(code: str, value: Json, rows: _Rows) -> None:
    literal = value.get("reference")
    if isinstance(literal, str) and literal and not literal.startswith("#"):
        ref_type, ref_id, url = split_reference(literal)
        rows.reference.append((code, ref_type, ref_id, url))
    identifier = value.get("identifier")
    if isinstance(identifier, dict) and _str(identifier.get("value")):
        rows.token.append(
            (code + IDENTIFIER, _str(identifier.get("system")), identifier["value"], None)
        )


# -- date -----------------------------------------------------------------------------------


def _dates(code: str, values: Iterable[Typed], rows: _Rows) -> None:
    out = rows.date
    for type_code, value in values:
        span: tuple[str, str] | None = None
        if isinstance(value, str):
            span = date_range(value)
        elif type_code == "Period":
            span = _period(value)
        elif type_code == "Timing":
            span = _timing(value)
        if span is not None:
            out.append((code, span[0], span[1]))


def _period(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, dict):
        return None
    start = date_range(value["start"]) if isinstance(value.get("start"), str) else None
    end = date_range(value["end"]) if isinstance(value.get("end"), str) else None
    if start is None and end is None:
        return None
    return (start[0] if start else MIN_INSTANT), (end[1] if end else MAX_INSTANT)


def _timing(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, dict):
        return None
    spans = [date_range(e) for e in value.get("event", ()) if isinstance(e, str)]
    repeat = value.get("repeat")
    if isinstance(repeat, dict):
        spans.append(_period(repeat.get("boundsPeriod")))
    found = [s for s in spans if s is not None]
    if not found:
        return None
    return min(s[0] for s in found), max(s[1] for s in found)


# -- number and quantity --------------------------------------------------------------------


def _numbers(code: str, values: Iterable[Typed], rows: _Rows) -> None:
    for type_code, value in values:
        span = _quantity_span(type_code, value) if isinstance(value, dict) else _span(value)
        if span is not None:
            rows.number.append((code, span[0], span[1]))


def _span(value: Any) -> tuple[Decimal, Decimal] | None:
    number = as_decimal(value)
    return None if number is None else decimal_range(number)


def _quantity_span(type_code: str, value: Json) -> tuple[Decimal, Decimal] | None:
    if type_code == "Range":
        low, high = value.get("low"), value.get("high")
        lo = _span(low.get("value")) if isinstance(low, dict) else None
        hi = _span(high.get("value")) if isinstance(high, dict) else None
        # A half-open range has no finite bound to store: it is not indexed.
        return (lo[0], hi[1]) if lo is not None and hi is not None else None
    return _span(value.get("value"))


def _quantities(code: str, values: Iterable[Typed], rows: _Rows) -> None:
    for type_code, value in values:
        if not isinstance(value, dict):
            continue
        span = _quantity_span(type_code, value)
        if span is None:
            continue
        unit_of = value
        if type_code == "Range":
            unit_of = value["low"] if isinstance(value.get("low"), dict) else value["high"]
        if type_code == "Money":
            rows.quantity.append(
                (code, span[0], span[1], ISO_4217, _str(value.get("currency")), None)
            )
        elif type_code in QUANTITY_TYPES or type_code in ("Range", ""):
            system, unit_code = _str(unit_of.get("system")), _str(unit_of.get("code"))
            rows.quantity.append((code, span[0], span[1], system, unit_code,
                                  _str(unit_of.get("unit"))))
            found = canonical(unit_code) if system == UCUM and unit_code else None
            if found is not None:
                # Beside it, the value in canonical units, under its own parameter name so
                # that only unit-aware comparisons see it (fhirhub.store.search_sql).
                rows.quantity.append((code + CANONICAL, found.convert(span[0]),
                                      found.convert(span[1]), UCUM, found.unit, None))


# -- uri ------------------------------------------------------------------------------------


def _uris(code: str, values: Iterable[Typed], rows: _Rows) -> None:
    for type_code, value in values:
        if isinstance(value, str) and value:
            rows.uri.append((code, value))
            if type_code == "canonical" and "|" in value:
                rows.uri.append((code, without_version(value)))


_EMITTERS: dict[str, Callable[[str, Iterable[Typed], _Rows], None]] = {
    "token": _tokens,
    "string": _strings,
    "reference": _references,
    "date": _dates,
    "number": _numbers,
    "quantity": _quantities,
    "uri": _uris,
}

__all__ = ["CANONICAL", "IDENTIFIER", "ISO_4217", "OF_TYPE", "index_resource"]
