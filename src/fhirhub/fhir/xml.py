"""FHIR XML in and out, as the FHIR JSON dicts the rest of fhirhub works on.

Follows https://hl7.org/fhir/R4/xml.html and json.html: children in definition order
(:func:`~fhirhub.fhir.model.element_model`), ``value``/``id``/``url`` attributes,
primitive extensions as ``_name`` (arrays aligned with ``null``), resources inside
Resource-typed elements wrapped in an element named by their type, and the Narrative
``div`` as real XHTML that reads back to the very same JSON string.

The reader is in ``_xml_read.py``; this module holds the writer and the public surface.
"""

from __future__ import annotations

import pyexpat
import re
from decimal import Decimal
from functools import cache
from typing import Any

from fhirhub.errors import InvalidError
from fhirhub.fhir import json as fjson
from fhirhub.fhir._xml_read import ATTRIBUTE_ESCAPES, FHIR_NS, XHTML_NS, parse_resource
from fhirhub.fhir.json import decimal_text
from fhirhub.fhir.model import Element, element_model

_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
_XHTML_DIV = XHTML_NS + "}div"  # as expat names it

# Characters XML 1.0 cannot carry at all, not even as character references.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ESCAPE_NEEDED = re.compile(r'[&<>"\n\r\t\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')


def dump_resource(resource: dict[str, Any], *, pretty: bool = False) -> bytes:
    """The FHIR XML (UTF-8, with an XML declaration) of a FHIR JSON resource.

    Raise :class:`InvalidError` for what XML cannot say: an unknown property, a value of
    the wrong shape, characters XML 1.0 forbids, a narrative that is not well-formed XHTML.
    """
    writer = _Writer(pretty)
    writer.resource(fjson.materialize(resource), "", root=True)
    if pretty:
        writer.out.append("\n")
    return "".join(writer.out).encode("utf-8")


class _Writer:
    """Appends the XML of a resource to ``out``, a list of string pieces."""

    def __init__(self, pretty: bool) -> None:
        self.out = [_XML_DECLARATION]
        self.pretty = pretty
        self.nl = "\n" if pretty else ""  # what goes before a tag: newline and indent

    def resource(self, res: Any, path: str, *, root: bool = False) -> None:
        rtype = res.get("resourceType") if isinstance(res, dict) else None
        if not isinstance(rtype, str) or not element_model().is_resource_type(rtype):
            raise _invalid(f"{path or 'The body'} needs a resourceType naming an R4 resource "
                           f"type (found {rtype!r})", path)
        attributes = f' xmlns="{FHIR_NS}"' if root else ""
        self.element(rtype, attributes, res, rtype, path or rtype)

    def element(self, tag: str, attributes: str, obj: dict[str, Any], key: str,
                path: str) -> None:
        out, nl = self.out, self.nl
        start = len(out)
        out.append(f"{nl}<{tag}{attributes}>")
        if self.pretty:
            self.nl += "  "
        self.children(obj, key, path)
        self.nl = nl
        if len(out) == start + 1:
            out[start] = f"{nl}<{tag}{attributes}/>"
        else:
            out.append(f"{nl}</{tag}>")

    def children(self, obj: dict[str, Any], key: str, path: str) -> None:
        index = _index(key)
        in_resource = key in element_model().resource_types
        found: dict[str, tuple[int, Element]] = {}
        for prop in obj:
            name = prop[1:] if prop[:1] == "_" else prop
            if name in found:
                continue
            attribute = _is_attribute(name, key, in_resource)
            entry = None if attribute else index.get(name)
            if entry is None or (name != prop and not entry[1].is_primitive):
                if attribute and name == prop:
                    continue
                raise _invalid(f"{path} has no property {prop!r} in FHIR R4", f"{path}.{prop}")
            found[name] = entry
        for name, (_, element) in sorted(found.items(), key=lambda item: item[1][0]):
            if element.is_primitive:
                self.primitives(obj, name, element, f"{path}.{name}")
            else:
                self.complex(obj[name], name, element, f"{path}.{name}")

    def complex(self, value: Any, name: str, element: Element, path: str) -> None:
        for i, item in enumerate(_as_list(value, element, path)):
            item_path = f"{path}[{i}]" if element.is_array else path
            if element.is_resource:
                self.out.append(f"{self.nl}<{name}>")
                nl = self.nl
                if self.pretty:
                    self.nl += "  "
                self.resource(item, item_path)
                self.nl = nl
                self.out.append(f"{nl}</{name}>")
            elif isinstance(item, dict):
                attributes = self.attributes(item, element.type, item_path)
                self.element(name, attributes, item, element.children_key, item_path)
            else:
                raise _invalid(f"{item_path} must be a JSON object", item_path)

    @staticmethod
    def attributes(obj: dict[str, Any], type_code: str, path: str) -> str:
        text = ""
        for name in ("id", "url") if type_code == "Extension" else ("id",):
            value = obj.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise _invalid(f"{path}.{name} must be a string", f"{path}.{name}")
            text += f' {name}="{_attribute(value, path)}"'
        return text

    def primitives(self, obj: dict[str, Any], name: str, element: Element, path: str) -> None:
        value, extra = obj.get(name), obj.get("_" + name)
        if element.type == "xhtml":
            if extra is not None:
                raise _invalid(f"{path} cannot have an id or extensions in FHIR XML", path)
            self.out.append(self.nl + _checked_xhtml(value, path))
        elif not element.is_array:
            if isinstance(value, list) or isinstance(extra, list):
                raise _invalid(f"{path} must not be an array", path)
            self.primitive(name, value, extra, path)
        else:
            values = [] if value is None else _as_list(value, element, path)
            extras = [] if extra is None else _as_list(extra, element, path)
            if values and extras and len(values) != len(extras):
                raise _invalid(f"{path} and _{name} must have the same length; null aligns "
                               "them (json.html)", path)
            for i in range(max(len(values), len(extras))):
                self.primitive(name, values[i] if values else None,
                               extras[i] if extras else None, f"{path}[{i}]")

    def primitive(self, name: str, value: Any, extra: Any, path: str) -> None:
        attributes = ""
        extensions: Any = None
        if extra is not None:
            if not isinstance(extra, dict) or not extra.keys() <= {"id", "extension"}:
                raise _invalid(f"The '_' object of {path} may hold only id and extension", path)
            attributes = self.attributes(extra, "", path)
            extensions = extra.get("extension")
        if value is not None:
            attributes += f' value="{_attribute(_primitive_text(value, path), path)}"'
        elif not extensions and not attributes:
            raise _invalid(f"{path} has neither a value nor an id or extensions", path)
        if extensions:
            self.element(name, attributes, {"extension": extensions}, "string", path)
        else:
            self.out.append(f"{self.nl}<{name}{attributes}/>")


@cache
def _index(key: str) -> dict[str, tuple[int, Element]]:
    """Children of ``key`` by JSON name, with their position in definition order."""
    model = element_model()
    return {name: (i, model.children(key)[name]) for i, name in enumerate(model.order(key))}


def _is_attribute(name: str, key: str, in_resource: bool) -> bool:
    """Properties written as XML attributes (or, for resourceType, as the element name)."""
    if in_resource:
        return name == "resourceType"
    return name == "id" or (name == "url" and key == "Extension")


def _as_list(value: Any, element: Element, path: str) -> list[Any]:
    if element.is_array:
        if not isinstance(value, list):
            raise _invalid(f"{path} must be a JSON array", path)
        return value
    if isinstance(value, list):
        raise _invalid(f"{path} must not be an array", path)
    return [value]


def _primitive_text(value: Any, path: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, float):
        return repr(value)
    raise _invalid(f"{path} must be a string, number or boolean", path)


def _attribute(text: str, path: str) -> str:
    if _ESCAPE_NEEDED.search(text) is None:
        return text
    bad = _NOT_XML.search(text)
    if bad is not None:
        raise _invalid(f"{path} contains the character U+{ord(bad.group()):04X}, which XML "
                       "cannot represent; remove it", path)
    return text.translate(ATTRIBUTE_ESCAPES)


def _checked_xhtml(div: Any, path: str) -> str:
    """The narrative div as it is, once we know it is a well-formed XHTML ``div``.

    It is copied into the output verbatim, so that it reads back as the same string;
    a broken one would break the whole document.
    """
    if not isinstance(div, str) or not div.startswith("<div"):
        raise _invalid(f"{path} must be a string holding an XHTML <div>", path)
    # Starting with "<div" leaves no room for a DTD; undefined entities are errors.
    parser = pyexpat.ParserCreate("utf-8", "}")
    roots: list[str] = []

    def root(tag: str, _attributes: Any) -> None:
        roots.append(tag)
        parser.StartElementHandler = None

    parser.StartElementHandler = root
    try:
        parser.Parse(div.encode("utf-8"), True)
    except (pyexpat.ExpatError, UnicodeEncodeError) as exc:
        raise _invalid(f"{path} is not well-formed XHTML: {exc}", path) from None
    if roots != [_XHTML_DIV]:
        raise _invalid(f'{path} must be a <div xmlns="{XHTML_NS}">', path)
    return div


def _invalid(diagnostics: str, path: str) -> InvalidError:
    return InvalidError(diagnostics, issue_code="structure", spine_code="INVALID_REQUEST",
                        expression=(path,) if path else ())


__all__ = ["dump_resource", "parse_resource"]
