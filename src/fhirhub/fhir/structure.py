"""The structural check every write runs: is this body FHIR R4 JSON of a known shape?

It walks the JSON with the element model (no FHIRPath) and reports, as error
:class:`~fhirhub.errors.Issue` objects, what the R4 JSON format and the datatypes forbid:

* the body is an object with the ``resourceType`` of a concrete R4 resource (and the one the
  URL names, when given); ``id`` has the id syntax;
* every property is an element of its parent (choices by their typed name, ``valueQuantity``;
  ``resourceType`` only at a resource root; no DSTU2 ``fhir_comments``);
* arrays exactly where the element repeats, objects for complex types, no ``null``, ``{}`` or
  ``[]`` (https://hl7.org/fhir/R4/json.html);
* primitives of the right JSON kind, in range, matching the official regex of their type, dates
  that exist on the calendar, strings not over 1 MB (https://hl7.org/fhir/R4/datatypes.html);
* primitive extensions (``_birthDate``, ``_given``) with only ``id``/``extension``, aligned with
  their values;
* nested resources (``contained``, ``Bundle.entry.resource``, ...) checked as resources, and
  contained resources without ``contained`` of their own (dom-2);
* extensions with a ``url`` and either one ``value[x]`` or nested extensions (ext-1);
* ``Narrative.div``: well-formed XHTML in the basic formatting subset, with nothing active
  in it (https://hl7.org/fhir/R4/narrative.html).

Cardinality, bindings, invariants and profiles are the profile validator's job; it adds its
own issues beside these, so :func:`check_resource` only returns a list and never raises.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import fromstring as _parse_xml

from fhirhub.errors import Issue
from fhirhub.fhir.model import ElementModel, element_model

MAX_ISSUES = 100
MAX_STRING = 1024 * 1024  # datatypes.html: strings SHALL NOT exceed 1MB (1024*1024 characters)

_RESOURCE = "INVALID_RESOURCE"
_VALUE = "INVALID_VALUE"
_RESOURCE_ID = "INVALID_RESOURCE_ID"

_ELEMENT_KEYS = frozenset({"id", "extension"})
_ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")
_INT32 = (-(2**31), 2**31 - 1)

# A checker answers None for a good value, else (IssueType code, what is wrong).
Problem = tuple[str, str]
Checker = Callable[[Any], Problem | None]


class _Full(Exception):
    """Stops the walk once MAX_ISSUES issues are collected."""


# -- public entry point -------------------------------------------------------------------------


def check_resource(resource: object, *, expected_type: str | None = None) -> list[Issue]:
    """Error issues for what is structurally wrong with ``resource`` (empty: all is well).

    ``expected_type`` is the type the URL names (``PUT /Patient/1``); a body of another type
    is an issue. At most :data:`MAX_ISSUES` issues are returned.
    """
    walker = _Walker()
    try:
        walker.resource(resource, "", contained=False, expected=expected_type)
    except _Full:
        pass
    except RecursionError:
        walker.issues.append(Issue("error", "structure", "The resource is nested too deeply "
                                   "to be checked", (), _RESOURCE))
    return walker.issues


# -- the element model, as the walk needs it ---------------------------------------------------

_PRIMITIVE, _COMPLEX, _NESTED_RESOURCE, _XHTML = range(4)


@dataclass(frozen=True, slots=True)
class _Prop:
    """One JSON property a parent may have."""

    name: str
    segment: str  # in FHIRPath: the name, or value.ofType(Quantity) for a choice
    type: str
    kind: int
    children_key: str
    is_array: bool
    choice: str | None  # the definition path shared by all types of one choice element
    extensible: bool  # may carry a "_name" sibling (XML attributes and xhtml may not)
    check: Checker  # for primitives; the others are checked by the walk


@dataclass(frozen=True, slots=True)
class _Props:
    """The properties of one type or backbone element, keyed by JSON name."""

    key: str
    by_name: dict[str, _Prop]
    choice_bases: dict[str, str]  # "value" -> "valueQuantity, valueString, ..."


_PROPS: dict[str, _Props] = {}


def _props(key: str) -> _Props:
    found = _PROPS.get(key)
    if found is None:
        found = _PROPS[key] = _build_props(key)
    return found


def _build_props(key: str) -> _Props:
    model = element_model()
    checkers = _checkers()
    by_name: dict[str, _Prop] = {}
    choices: dict[str, list[str]] = {}
    for name, el in model.children(key).items():
        if el.is_resource:
            kind = _NESTED_RESOURCE
        elif el.type == "xhtml":
            kind = _XHTML
        else:
            kind = _PRIMITIVE if el.is_primitive else _COMPLEX
        by_name[name] = _Prop(
            name=name,
            segment=f"{el.path.rpartition('.')[2][:-3]}.ofType({el.type})" if el.is_choice
            else name,
            type=el.type,
            kind=kind,
            children_key=el.children_key,
            is_array=el.is_array,
            choice=el.path if el.is_choice else None,
            extensible=kind == _PRIMITIVE and not _is_xml_attribute(model, key, name),
            check=checkers[el.type] if kind == _PRIMITIVE else _no_check,
        )
        if el.is_choice:
            choices.setdefault(el.path.rpartition(".")[2][:-3], []).append(name)
    bases = {base: ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
             for base, names in choices.items()}
    return _Props(key, by_name, bases)


def _is_xml_attribute(model: ElementModel, key: str, name: str) -> bool:
    # Element.id and Extension.url are XML attributes (representation xmlAttr) in every
    # StructureDefinition, so they cannot have extensions; Resource.id is an element and can.
    return (name == "id" and key not in model.resource_types) or (
        key == "Extension" and name == "url")


# -- primitives -----------------------------------------------------------------------------------

_XSD_SPACE_CLASS = " \\t\\n\\r"  # the same, escaped for a regex character class
_XSD_SPACE = " \t\n\r"  # whitespace, as FHIR (XML) means it; not a no-break space

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

# The official base64Binary regex, (\s*([0-9a-zA-Z\+/=]){4}\s*)+, backtracks exponentially on a
# bad value with many spaces (each run of spaces can end one group or start the next). This is
# the same language, written so that each character has only one way to match.
_BASE64 = re.compile(r"[ \t\n\r]*(?:[0-9a-zA-Z+/=]{4}[ \t\n\r]*)+")

# string and markdown are "[ \r\n\t\S]+": in XML Schema regex terms, any non-empty string.
_ANY_TEXT = frozenset({"string", "markdown"})
_DATES = frozenset({"date", "dateTime", "instant"})
_STRING_LIMITED = frozenset({
    "canonical", "code", "id", "markdown", "oid", "string", "uri", "url", "uuid"})


def _xsd_regex(pattern: str) -> re.Pattern[str]:
    """Compile a StructureDefinition (XML Schema) regex with XML Schema's meaning of \\s.

    XML Schema's ``\\s`` is space, tab, CR and LF only; Python's is every Unicode space, so
    compiled as is, a ``code`` with a no-break space in it would be refused (the official
    v2 code system examples have some).
    """
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            if escaped == "s":
                out.append(_XSD_SPACE_CLASS if in_class else f"[{_XSD_SPACE_CLASS}]")
            elif escaped == "S" and not in_class:
                out.append(f"[^{_XSD_SPACE_CLASS}]")
            elif escaped == "S":
                raise ValueError(f"\\S inside a character class is not supported: {pattern}")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        out.append(ch)
        i += 1
    return re.compile("".join(out))


@cache
def _checkers() -> dict[str, Checker]:
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
            regex = _BASE64
        else:
            regex = _xsd_regex(official.pattern)
        checks[type_name] = _string_checker(type_name, regex)
    return checks


def _no_check(value: Any) -> Problem | None:
    return None  # complex values are checked by the walk, not by a checker


def _boolean(value: Any) -> Problem | None:
    if value is True or value is False:
        return None
    return "structure", f"expected JSON true or false, not {_describe(value)}"


def _decimal(value: Any) -> Problem | None:
    kind = type(value)
    if kind is Decimal:
        return None if value.is_finite() else ("value", f"{value} is not a number")
    if kind is int:
        return None
    if kind is float:
        return None if math.isfinite(value) else ("value", f"{value} is not a number")
    return "structure", f"expected a JSON number, not {_describe(value)}"


def _integer_checker(type_name: str, low: int, high: int) -> Checker:
    def check(value: Any) -> Problem | None:
        if type(value) is not int:  # bool is an int subclass, and not an integer in JSON
            return "structure", f"expected a JSON integer, not {_describe(value)}"
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
            return "structure", f"expected a JSON string, not {_describe(value)}"
        if not value:
            return "value", "an empty string is not a value; leave the property out instead"
        if limited and len(value) > MAX_STRING:
            return "value", f"the value is {len(value)} characters long; the limit is 1 MB"
        if not may_pad and (value[0] in _XSD_SPACE or value[-1] in _XSD_SPACE):
            return "value", (f"{_quote(value)} starts or ends with whitespace, which a "
                             f"{type_name} may not")
        if regex is not None and regex.fullmatch(value) is None:
            return "value", f"{_quote(value)} is not a valid {type_name} (expected {expected})"
        if is_date and len(value) >= 10 and not _is_real_day(value):
            return "value", f"{_quote(value)} is not a date on the calendar"
        if type_name == "base64Binary" and not _is_padded_base64(value):
            return "value", f"{_quote(value)} is not valid base64: '=' may only pad the end"
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


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, str):
        return f"the string {_quote(value)}"
    if isinstance(value, int | float | Decimal):
        return f"the number {value}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _quote(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


# -- narrative -----------------------------------------------------------------------------------

_XHTML_NS = "{http://www.w3.org/1999/xhtml}"
_XML_NS = "{http://www.w3.org/XML/1998/namespace}"

# narrative.html: "only the basic html formatting elements and attributes described in chapters
# 7-11 (except section 4 of chapter 9) and 12 of the HTML 4.0 standard, <a> elements (either
# name or href), images and internally contained style attributes". These are the lists the
# reference (Java) validator enforces for that rule.
_ELEMENTS = frozenset({
    "p", "br", "div", "h1", "h2", "h3", "h4", "h5", "h6", "a", "span", "b", "em", "i",
    "strong", "small", "big", "tt", "dfn", "q", "var", "abbr", "acronym", "cite",
    "blockquote", "hr", "address", "bdo", "kbd", "sub", "sup", "ul", "ol", "li", "dl", "dt",
    "dd", "pre", "table", "caption", "colgroup", "col", "thead", "tr", "tfoot", "tbody", "th",
    "td", "code", "samp", "img", "map", "area",
})
_ATTRIBUTES = frozenset({
    "title", "style", "class", "id", "lang", "xml:lang", "xml:space", "dir", "accesskey",
    "tabindex", "span", "width", "align", "valign", "char", "charoff", "abbr", "axis",
    "headers", "scope", "rowspan", "colspan",
})
_ELEMENT_ATTRIBUTES = frozenset({
    "a.href", "a.name", "a.charset", "a.type", "a.hreflang", "a.rel", "a.rev", "a.shape",
    "a.coords", "img.src", "img.border", "img.alt", "img.longdesc", "img.height", "img.width",
    "img.usemap", "img.ismap", "map.name", "area.shape", "area.coords", "area.href",
    "area.nohref", "area.alt", "table.summary", "table.width", "table.border", "table.frame",
    "table.rules", "table.cellspacing", "table.cellpadding", "blockquote.cite", "q.cite",
    "td.nowrap",
})
_URL_ATTRIBUTES = frozenset({"href", "src", "cite", "longdesc", "usemap"})
_ACTIVE_SCHEMES = ("javascript:", "vbscript:", "data:")
_ACTIVE_STYLE = ("javascript:", "vbscript:", "expression(")


def _xhtml_problems(text: str) -> list[str]:
    """What is wrong with a ``Narrative.div`` value (empty: nothing)."""
    if not text.startswith("<div"):
        return ["The narrative must be XHTML starting with '<div'"]
    try:
        root = _parse_xml(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:  # a second lock: after "<div" a DTD is not well-formed
        return ["The narrative must not contain a DTD, entity declarations or external "
                "entities"]
    except ParseError as exc:
        return [f"The narrative is not well-formed XHTML: {exc}"]
    if root.tag != f"{_XHTML_NS}div":
        return ["The narrative must be a <div> in the XHTML namespace "
                "(xmlns=\"http://www.w3.org/1999/xhtml\")"]
    problems: dict[str, None] = {}  # in order, without repeats
    for node in root.iter():
        tag: str = node.tag
        if not tag.startswith(_XHTML_NS):
            problems[f"The element {tag} is not XHTML; a narrative is XHTML only"] = None
            continue
        name = tag[len(_XHTML_NS):]
        if name not in _ELEMENTS:
            problems[f"The element <{name}> is not allowed in a narrative (only basic XHTML "
                     "formatting: no scripts, forms, frames, objects or styles)"] = None
            continue
        for attribute, value in node.attrib.items():
            problem = _attribute_problem(name, attribute, value)
            if problem is not None:
                problems[problem] = None
    return list(problems)


def _attribute_problem(element: str, attribute: str, value: str) -> str | None:
    if attribute.startswith(_XML_NS):
        attribute = "xml:" + attribute[len(_XML_NS):]
    elif attribute.startswith("{"):
        return f"The attribute {attribute} on <{element}> is not XHTML"
    if attribute.lower().startswith("on"):
        return f"The event attribute '{attribute}' on <{element}> is not allowed in a narrative"
    if attribute not in _ATTRIBUTES and f"{element}.{attribute}" not in _ELEMENT_ATTRIBUTES:
        return f"The attribute '{attribute}' is not allowed on <{element}> in a narrative"
    if attribute in _URL_ATTRIBUTES and _is_active_url(element, value):
        return (f"The URL in <{element} {attribute}> is not allowed in a narrative "
                "(no javascript:, vbscript: or data: URLs but data: images)")
    if attribute == "style" and _is_active_style(value):
        return f"The style on <{element}> is not allowed in a narrative: it contains script"
    return None


def _is_active_url(element: str, value: str) -> bool:
    if ":" not in value:
        return False  # a relative URL or a fragment
    url = _compact(value)
    if element == "img" and url.startswith("data:image/"):
        return False
    return url.startswith(_ACTIVE_SCHEMES)


def _is_active_style(value: str) -> bool:
    lowered = value.lower()
    if "script" not in lowered and "expression" not in lowered:
        return False
    style = _compact(value)
    return any(active in style for active in _ACTIVE_STYLE)


def _compact(value: str) -> str:
    # Browsers skip control characters and spaces inside a scheme ("java\tscript:").
    return "".join(ch for ch in value if ch > " ").lower()


# -- the walk ------------------------------------------------------------------------------------


class _Walker:
    """Walks one resource, collecting issues."""

    __slots__ = ("issues", "model")

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.model = element_model()

    def add(self, code: str, spine: str, diagnostics: str, expression: str) -> None:
        self.issues.append(
            Issue("error", code, diagnostics, (expression,) if expression else (), spine))
        if len(self.issues) >= MAX_ISSUES:
            raise _Full

    # resources

    def resource(self, value: Any, path: str, *, contained: bool, expected: str | None) -> None:
        if type(value) is not dict:
            self.add("structure", _RESOURCE,
                     f"A resource must be a JSON object, not {_describe(value)}", path)
            return
        type_name = self.resource_type(value, path)
        if type_name is None:
            return
        if expected is not None and type_name != expected:
            self.add("invalid", _RESOURCE, f"The resource type '{type_name}' does not match "
                     f"the URL type '{expected}'", path)
        here = path or type_name
        if contained and "contained" in value:
            self.add("invalid", _RESOURCE, "A contained resource must not contain resources "
                     "of its own (dom-2); put them all in the container", f"{here}.contained")
        resource_id = value.get("id")
        if type(resource_id) is str and resource_id and _ID.fullmatch(resource_id) is None:
            self.add("value", _RESOURCE_ID, f"The resource id {_quote(resource_id)} is not "
                     "valid: an id is 1 to 64 of A-Z, a-z, 0-9, '-' and '.'", f"{here}.id")
        self.object(value, type_name, here, resource_root=True)

    def resource_type(self, value: dict[str, Any], path: str) -> str | None:
        type_name = value.get("resourceType")
        if type_name is None:
            self.add("structure", _RESOURCE, "The resource has no 'resourceType' property; a "
                     "FHIR JSON resource names its type in 'resourceType'", path)
        elif type(type_name) is not str:
            self.add("structure", _RESOURCE, "'resourceType' must be a JSON string, not "
                     f"{_describe(type_name)}", path)
        elif type_name in self.model.resource_types:
            return type_name
        elif type_name in self.model.abstract_types:
            self.add("invalid", _RESOURCE, f"'{type_name}' is an abstract type; a resource "
                     "must be of a concrete type such as 'Patient'", path)
        else:
            self.add("invalid", _RESOURCE, f"'{type_name}' is not a FHIR R4 resource type",
                     path)
        return None

    # objects and their properties

    def object(self, obj: dict[str, Any], key: str, path: str, *,
               resource_root: bool = False) -> None:
        props = _PROPS.get(key) or _props(key)
        by_name = props.by_name
        choices: dict[str, str] | None = None
        for name, value in obj.items():
            prop = by_name.get(name)
            if prop is None:
                if name[:1] == "_":
                    prop = self.primitive_extension(obj, name, value, props, path)
                    # "_valueString" without "valueString" is still the one value[x]
                    if prop is not None and prop.choice is not None and prop.name not in obj:
                        choices = self.one_choice(choices, prop.choice, prop, path)
                elif not (resource_root and name == "resourceType"):
                    self.unknown(props, name, path)
                continue
            if prop.choice is not None:
                choices = self.one_choice(choices, prop.choice, prop, path)
            if prop.is_array:
                if type(value) is not list or not value:
                    self.not_an_array(prop, value, path)
                elif prop.kind == _PRIMITIVE:
                    check = prop.check
                    for index, item in enumerate(value):
                        if item is None:
                            self.null(obj, prop, path, index)
                        elif (problem := check(item)) is not None:
                            self.bad_value(prop, problem, path, index)
                else:
                    for index, item in enumerate(value):
                        self.value(obj, prop, item, path, index)
            elif type(value) is list:
                self.add("structure", _RESOURCE, f"'{name}' has at most one value, so it must "
                         "not be a JSON array", f"{path}.{prop.segment}")
            elif prop.kind == _PRIMITIVE and value is not None:
                if (problem := prop.check(value)) is not None:
                    self.bad_value(prop, problem, path, -1)
            else:
                self.value(obj, prop, value, path, -1)

    def value(self, obj: dict[str, Any], prop: _Prop, value: Any, parent: str,
              index: int) -> None:
        kind = prop.kind
        if value is None:
            self.null(obj, prop, parent, index)
        elif kind == _PRIMITIVE:
            if (problem := prop.check(value)) is not None:
                self.bad_value(prop, problem, parent, index)
        elif kind == _XHTML:
            self.narrative(value, _at(parent, prop.segment, index))
        elif type(value) is not dict:
            self.add("structure", _RESOURCE, f"'{prop.name}' must be a JSON object "
                     f"({prop.type}), not {_describe(value)}", _at(parent, prop.segment, index))
        elif not value:
            self.add("structure", _RESOURCE, f"'{prop.name}' must not be an empty object; "
                     "leave the property out instead", _at(parent, prop.segment, index))
        elif kind == _COMPLEX:
            path = _at(parent, prop.segment, index)
            self.object(value, prop.children_key, path)
            if prop.type == "Extension":
                self.extension(value, path)
        else:
            self.resource(value, _at(parent, prop.segment, index),
                          contained=prop.name == "contained", expected=None)

    def bad_value(self, prop: _Prop, problem: Problem, parent: str, index: int) -> None:
        self.add(problem[0], _VALUE, f"Invalid {prop.type} in '{prop.name}': {problem[1]}",
                 _at(parent, prop.segment, index))

    def null(self, obj: dict[str, Any], prop: _Prop, parent: str, index: int) -> None:
        if index >= 0 and prop.extensible:
            # A null in a primitive array stands for a value that has only extensions.
            extensions = obj.get("_" + prop.name)
            if (type(extensions) is list and index < len(extensions)
                    and extensions[index] is not None):
                return
            self.add("structure", _RESOURCE, f"'{prop.name}' has a null entry with no "
                     f"matching entry in '_{prop.name}'; null is only allowed where the "
                     "primitive has extensions but no value", _at(parent, prop.segment, index))
            return
        where = "have null entries" if index >= 0 else "be null"
        self.add("structure", _RESOURCE, f"'{prop.name}' must not {where}; leave it out "
                 "instead", _at(parent, prop.segment, index))

    def not_an_array(self, prop: _Prop, value: Any, path: str) -> None:
        if type(value) is list:
            diagnostics = (f"'{prop.name}' must not be an empty array; leave the property "
                           "out instead")
        else:
            diagnostics = (f"'{prop.name}' repeats, so it must be a JSON array, not "
                           f"{_describe(value)}")
        self.add("structure", _RESOURCE, diagnostics, f"{path}.{prop.segment}")

    def one_choice(self, choices: dict[str, str] | None, choice: str, prop: _Prop,
                   path: str) -> dict[str, str]:
        if choices is None:
            choices = {}
        first = choices.setdefault(choice, prop.name)
        if first != prop.name:
            self.add("structure", _RESOURCE, f"'{prop.name}' and '{first}' are both given, but "
                     f"{choice.rpartition('.')[2]} has only one value", f"{path}.{prop.segment}")
        return choices

    def unknown(self, props: _Props, name: str, path: str) -> None:
        if name == "fhir_comments":
            diagnostics = "'fhir_comments' is not allowed in FHIR R4 JSON"
        elif name == "resourceType":
            diagnostics = ("'resourceType' is only allowed at the root of a resource; "
                           f"{props.key} is not a resource")
        elif name in props.choice_bases:
            diagnostics = (f"Unknown property '{name}': {name}[x] is a choice, named with its "
                           f"type ({props.choice_bases[name]})")
        else:
            diagnostics = f"Unknown property '{name}': it is not an element of {props.key}"
        self.add("structure", _RESOURCE, diagnostics, f"{path}.{name}")

    # primitive extensions: "_birthDate": {...}, "_given": [null, {...}]

    def primitive_extension(self, obj: dict[str, Any], name: str, value: Any, props: _Props,
                            path: str) -> _Prop | None:
        base = name[1:]
        prop = props.by_name.get(base)
        if prop is None:
            self.add("structure", _RESOURCE, f"Unknown property '{name}': '{base}' is not an "
                     f"element of {props.key}", f"{path}.{name}")
            return None
        if not prop.extensible:
            self.add("structure", _RESOURCE, f"Unknown property '{name}': only primitive "
                     f"elements have a '_' sibling, and '{base}' of {props.key} is not one "
                     "that can have extensions", f"{path}.{name}")
            return None
        if not prop.is_array:
            self.element_extension(value, name, f"{path}.{prop.segment}")
        elif type(value) is not list or not value:
            self.add("structure", _RESOURCE, f"'{name}' must be a non-empty JSON array, as "
                     f"'{base}' repeats", f"{path}.{name}")
        else:
            self.extension_array(obj.get(base), value, name, f"{path}.{base}")
        return prop

    def extension_array(self, values: Any, extensions: list[Any], name: str,
                        path: str) -> None:
        if type(values) is list and len(values) != len(extensions):
            self.add("structure", _RESOURCE, f"'{name}' must have one entry for each value "
                     f"(it has {len(extensions)}, for {len(values)} values)", path)
        for index, item in enumerate(extensions):
            if item is not None:
                self.element_extension(item, name, f"{path}[{index}]")
            elif values is None:
                self.add("structure", _RESOURCE, f"'{name}' has a null entry, but there is "
                         "no value for it either", f"{path}[{index}]")
            # else a null beside a value; a null beside a null is reported with the values

    def element_extension(self, value: Any, name: str, path: str) -> None:
        if type(value) is not dict or not value:
            self.add("structure", _RESOURCE, f"'{name}' must be a JSON object with 'id' "
                     f"and/or 'extension', not {_describe(value)}", path)
            return
        extra = [k for k in value if k not in _ELEMENT_KEYS]
        if extra:
            for k in extra:
                self.add("structure", _RESOURCE, f"'{k}' is not allowed in '{name}': a "
                         "primitive's extension object has only 'id' and 'extension'", path)
            value = {k: v for k, v in value.items() if k in _ELEMENT_KEYS}
        self.object(value, "Element", path)

    # extensions and narrative

    def extension(self, ext: dict[str, Any], path: str) -> None:
        if "url" not in ext:
            self.add("invalid", _RESOURCE, "An extension must have a 'url'", path)
        if "extension" in ext and any(k.startswith(("value", "_value")) for k in ext):
            self.add("invalid", _RESOURCE, "An extension must have either a value[x] or "
                     "nested extensions, not both (ext-1)", path)

    def narrative(self, value: Any, path: str) -> None:
        if type(value) is not str:
            self.add("structure", _VALUE, f"The narrative must be a JSON string of XHTML, not "
                     f"{_describe(value)}", path)
            return
        for problem in _xhtml_problems(value):
            self.add("value", _VALUE, problem, path)


def _at(parent: str, name: str, index: int) -> str:
    return f"{parent}.{name}" if index < 0 else f"{parent}.{name}[{index}]"


__all__ = ["MAX_ISSUES", "check_resource"]
