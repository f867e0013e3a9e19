"""FHIR XML to FHIR JSON: a streaming reader on top of defusedxml's expat parser.

The JSON is built straight from the parser's events, with no element tree in between;
the stack of open elements knows, from the R4 element model, what each child must be.
Only the Narrative ``div`` needs its source text: it is cut from the input bytes, so that
JSON -> XML -> JSON gives back the same string (see :class:`_Narrative`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache
from typing import Any
from xml.etree.ElementTree import ParseError

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser

from fhirhub.errors import InvalidError
from fhirhub.fhir.model import Element, element_model

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_IN_XHTML = XHTML_NS + "}"  # expat's names are "namespace}local"
_IN_XML = _XML_NS + "}"

# http.html: "UTF-8 encoding SHALL be used for FHIR instances".
_DECLARED_ENCODING = re.compile(rb"\A(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding\s*=\s*[\"']([^\"']*)")
_UTF8_NAMES = frozenset({"utf-8", "utf8"})

_INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})

# Frame kinds: what the open element is.
_RESOURCE, _COMPLEX, _PRIMITIVE, _HOLDER = range(4)
_ALLOWED_ATTRIBUTES = {
    _RESOURCE: frozenset(),
    _COMPLEX: frozenset({"id"}),
    _PRIMITIVE: frozenset({"id", "value"}),
    _HOLDER: frozenset(),
}
_EXTENSION_ATTRIBUTES = frozenset({"id", "url"})


def parse_resource(data: bytes) -> dict[str, Any]:
    """The FHIR JSON dict of one FHIR XML resource.

    Raise :class:`InvalidError` (code ``structure``) naming the line and the element for
    XML that is not well-formed or not FHIR, and for any DTD or entity declaration.
    """
    match = _DECLARED_ENCODING.match(data)
    encoding = match.group(1).decode("ascii", "replace") if match else "utf-8"
    if encoding.lower() not in _UTF8_NAMES:
        raise _structure(f"The XML declares the encoding {encoding!r}; FHIR XML must be UTF-8")
    return _Reader(data).read()


def _structure(diagnostics: str, path: str = "") -> InvalidError:
    return InvalidError(diagnostics, issue_code="structure", spine_code="INVALID_REQUEST",
                        expression=(path,) if path else ())


class _Frame:
    """One open element: what it is, and the JSON object its children go into."""

    __slots__ = ("arrays", "element", "index", "key", "kind", "name", "obj", "parent", "value")

    def __init__(self, kind: int, key: str, name: str, parent: _Frame | None, *,
                 element: Element | None = None, index: int | None = None) -> None:
        self.kind = kind
        self.key = key  # model key of the children
        self.name = name
        self.parent = parent
        self.element = element
        self.index = index  # position in its array, for the path in messages
        self.obj: dict[str, Any] = {"resourceType": key} if kind == _RESOURCE else {}
        self.value: Any = None  # a primitive's value; a holder's resource
        self.arrays: list[str] | None = None  # primitive arrays to tidy at the end

    @property
    def path(self) -> str:
        if self.parent is None:
            return self.name
        if self.kind == _RESOURCE:  # FHIRPath does not name the type of a nested resource
            return self.parent.path
        step = self.name if self.index is None else f"{self.name}[{self.index}]"
        return f"{self.parent.path}.{step}"


class _Reader:
    """Turns the expat events of one document into its FHIR JSON, with a stack of frames."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.model = element_model()
        self.top: _Frame | None = None
        self.result: dict[str, Any] | None = None
        self.narrative: _Narrative | None = None
        self.xhtml_declared_at = -1  # byte offset of the last tag declaring xmlns=XHTML
        self.xhtml_prefix = False  # some prefix outside a narrative is bound to XHTML
        # As target, self offers none of start/end/data, so ElementTree's pure-Python glue
        # (name fixing, attribute dicts: some 40% of the parse time) is not installed; our
        # handlers take expat's events directly, beside defusedxml's DTD/entity handlers.
        self.parser = DefusedXMLParser(target=self, encoding="utf-8", forbid_dtd=True,
                                       forbid_entities=True, forbid_external=True)
        self.expat = self.parser.parser
        self.expat.StartElementHandler = self.on_start
        self.expat.EndElementHandler = self.on_end
        self.expat.CharacterDataHandler = self.on_text
        self.expat.StartNamespaceDeclHandler = self.on_namespace

    def read(self) -> dict[str, Any]:
        try:
            self.parser.feed(self.data)
            self.parser.close()
        except ParseError as exc:
            raise _structure(f"The body is not well-formed XML: {exc}") from None
        except DTDForbidden:
            raise _structure("The XML has a DTD (<!DOCTYPE>); FHIR XML must not have one, "
                             "and it is refused for safety") from None
        except EntitiesForbidden:
            raise _structure("The XML declares entities; FHIR XML must not, and they are "
                             "refused for safety") from None
        except ExternalReferenceForbidden:
            raise _structure("The XML refers to an external entity; it is refused for "
                             "safety") from None
        if self.result is None:  # expat reports a missing root element itself
            raise _structure("The body holds no FHIR resource")
        return self.result

    def fail(self, diagnostics: str, path: str) -> InvalidError:
        return _structure(f"{diagnostics} (line {self.expat.CurrentLineNumber})", path)

    # -- expat handlers -------------------------------------------------------------------

    def on_namespace(self, prefix: str | None, uri: str | None) -> None:
        if prefix is None:
            if uri == XHTML_NS:  # expat reports it just before the tag, at the same offset
                self.xhtml_declared_at = self.expat.CurrentByteIndex
        elif uri == XHTML_NS and self.narrative is None:
            self.xhtml_prefix = True

    def on_start(self, tag: str, attributes: list[str]) -> None:
        if self.narrative is not None:
            self.narrative.start(tag, attributes)
            return
        parent = self.top
        namespace, _, name = tag.rpartition("}")
        if namespace != FHIR_NS:
            if namespace == XHTML_NS and name == "div" and parent is not None:
                self.start_narrative(parent, tag, attributes)
                return
            where = f" in {parent.path}" if parent is not None else ""
            raise self.fail(f"The element <{name}>{where} is in the namespace "
                            f"{namespace or '(none)'!r}; FHIR elements are in {FHIR_NS!r}",
                            parent.path if parent is not None else "")
        if parent is None or parent.kind == _HOLDER:
            frame = self.start_resource(parent, name)
        else:
            frame = self.start_child(parent, name)
        if attributes:
            self.attributes(frame, attributes)
        self.top = frame

    def on_end(self, _tag: str) -> None:
        narrative = self.narrative
        if narrative is not None:
            if narrative.end():
                self.narrative = None
                assert self.top is not None  # a narrative always has a parent
                self.top.obj["div"] = narrative.text(self.expat.CurrentByteIndex)
            return
        frame = self.top
        assert frame is not None  # expat balances start and end
        self.top = frame.parent
        if frame.arrays:
            _tidy_arrays(frame.obj, frame.arrays)
        if frame.kind == _PRIMITIVE:
            self.end_primitive(frame)
        elif frame.kind == _HOLDER:
            if frame.value is None:
                raise self.fail(f"{frame.path} must hold a resource", frame.path)
            self.add(frame, frame.value)
        elif not frame.obj:
            raise self.fail(f"The element {frame.path} is empty; FHIR elements must have a "
                            "value or children", frame.path)
        elif frame.kind == _RESOURCE:
            if frame.parent is None:
                self.result = frame.obj
            else:
                frame.parent.value = frame.obj
        else:
            self.add(frame, frame.obj)

    def on_text(self, text: str) -> None:
        if self.narrative is not None:
            self.narrative.events.append(text)
        elif not text.isspace():
            where = self.top.path if self.top is not None else ""
            # Text reaches us when the next tag starts: count back to where it begins.
            line = self.expat.CurrentLineNumber - text.lstrip().count("\n")
            raise _structure(f"{where} has the text {text.strip()[:40]!r} (line {line}); FHIR "
                             "XML holds values in value attributes, not as text", where)

    # -- building -------------------------------------------------------------------------

    def start_resource(self, holder: _Frame | None, name: str) -> _Frame:
        if name not in self.model.resource_types:
            where = f" in {holder.path}" if holder is not None else ""
            raise self.fail(f"<{name}>{where} is not an R4 resource type",
                            holder.path if holder is not None else "")
        if holder is not None and holder.value is not None:
            raise self.fail(f"{holder.path} holds more than one resource", holder.path)
        return _Frame(_RESOURCE, name, name, holder)

    def start_child(self, parent: _Frame, name: str) -> _Frame:
        entry = _child_elements(parent.key).get(name)
        if entry is None:
            known = self.model.child(parent.key, name)
            if known is None:
                what = "not a known element"
            elif known.type == "xhtml":
                what = f"XHTML: it must be in the namespace {XHTML_NS!r}"
            else:
                what = "an XML attribute, not an element"
            raise self.fail(f"<{name}> in {parent.path} is {what}", f"{parent.path}.{name}")
        element, kind = entry
        obj = parent.obj
        index = None
        if element.is_array:
            index = len(obj.get(name) or obj.get("_" + name) or ())
        elif name in obj or "_" + name in obj:
            raise self.fail(f"{parent.path}.{name} appears more than once; it does not repeat",
                            f"{parent.path}.{name}")
        return _Frame(kind, element.children_key, name, parent, element=element, index=index)

    def attributes(self, frame: _Frame, attributes: list[str]) -> None:
        allowed = _EXTENSION_ATTRIBUTES if frame.key == "Extension" else _ALLOWED_ATTRIBUTES[
            frame.kind]
        for i in range(0, len(attributes), 2):
            name, value = attributes[i], attributes[i + 1]
            if "}" in name:  # other namespaces (xsi:schemaLocation) carry no FHIR content
                continue
            if name not in allowed:
                hint = " (a resource's id is an <id value=\"...\"/> element)" if (
                    name == "id" and frame.kind == _RESOURCE) else ""
                raise self.fail(f"{frame.path} has an unknown attribute {name!r}{hint}",
                                frame.path)
            if name == "value":
                frame.value = self.convert(value, frame)
            else:
                frame.obj[name] = value

    def convert(self, text: str, frame: _Frame) -> Any:
        assert frame.element is not None  # primitives are elements
        type_code = frame.element.type
        if type_code == "boolean":
            if text in ("true", "false"):
                return text == "true"
        elif type_code in _INTEGER_TYPES or type_code == "decimal":
            if self.model.primitive_regex[type_code].fullmatch(text):
                return Decimal(text) if type_code == "decimal" else int(text)
        else:
            return text
        raise self.fail(f"{frame.path} has the value {text!r}, which is not a valid "
                        f"{type_code}", frame.path)

    def end_primitive(self, frame: _Frame) -> None:
        parent, name, value, extra = frame.parent, frame.name, frame.value, frame.obj
        assert parent is not None  # primitives are elements, never the root
        assert frame.element is not None
        if value is None and not extra:
            raise self.fail(f"{frame.path} has neither a value attribute nor extensions",
                            frame.path)
        if frame.element.is_array:
            parent.obj.setdefault(name, []).append(value)
            parent.obj.setdefault("_" + name, []).append(extra or None)
            if parent.arrays is None:
                parent.arrays = []
            if name not in parent.arrays:
                parent.arrays.append(name)
            return
        if value is not None:
            parent.obj[name] = value
        if extra:
            parent.obj["_" + name] = extra

    def add(self, frame: _Frame, value: Any) -> None:
        parent = frame.parent
        assert parent is not None  # not the root resource
        assert frame.element is not None
        if frame.element.is_array:
            parent.obj.setdefault(frame.name, []).append(value)
        else:
            parent.obj[frame.name] = value

    def start_narrative(self, parent: _Frame, tag: str, attributes: list[str]) -> None:
        element = self.model.child(parent.key, "div")
        if element is None or element.type != "xhtml":
            raise self.fail(f"{parent.path} cannot have an XHTML <div>", parent.path)
        if "div" in parent.obj:
            raise self.fail(f"{parent.path}.div appears more than once", parent.path)
        # The source text can stand alone only if it declares its own namespace and no
        # prefix bound to XHTML outside it could be used inside it.
        offset = self.expat.CurrentByteIndex
        self_contained = self.xhtml_declared_at == offset and not self.xhtml_prefix
        self.narrative = _Narrative(self.data, offset, self_contained)
        self.narrative.start(tag, attributes)


@cache
def _child_elements(key: str) -> dict[str, tuple[Element, int]]:
    """The children of ``key`` written as FHIR elements, with the frame kind of each.

    ``id`` (and an extension's ``url``) are attributes, except for a resource's ``id``;
    the narrative ``div`` is in the XHTML namespace.
    """
    model = element_model()
    table = {}
    for name, element in model.children(key).items():
        attribute = name == "id" or (name == "url" and key == "Extension")
        if element.type == "xhtml" or (attribute and key not in model.resource_types):
            continue
        if element.is_resource:
            kind = _HOLDER
        elif element.is_primitive:
            kind = _PRIMITIVE
        else:
            kind = _COMPLEX
        table[name] = (element, kind)
    return table


def _tidy_arrays(obj: dict[str, Any], names: list[str]) -> None:
    """Drop the value or ``_`` array of a repeating primitive when it is all null."""
    for name in names:
        for prop in (name, "_" + name):
            if all(item is None for item in obj[prop]):
                del obj[prop]


class _Narrative:
    """The XHTML ``div`` being read, and its text once it ends.

    Its text is the source bytes when they stand alone as the same XHTML (the usual
    ``<div xmlns="http://www.w3.org/1999/xhtml">``); otherwise it is written afresh from
    the parser's events, with the namespace declared on the ``div``.
    """

    def __init__(self, data: bytes, start: int, self_contained: bool) -> None:
        self.data = data
        self.offset = start
        self.self_contained = self_contained
        self.depth = 0
        # (tag, attributes) for a start, str for text, None for an end.
        self.events: list[tuple[str, list[str]] | str | None] = []

    def start(self, tag: str, attributes: list[str]) -> None:
        self.depth += 1
        self.events.append((tag, attributes))
        if not tag.startswith(_IN_XHTML) or _has_qualified_attribute(attributes):
            self.self_contained = False

    def end(self) -> bool:
        """Record an end tag; True when it closes the ``div``."""
        self.depth -= 1
        self.events.append(None)
        return self.depth == 0

    def text(self, end_offset: int) -> str:
        # expat reports an end tag at its "</", but a self-closed <div/> after its "/>":
        # an empty div is written afresh.
        if self.self_contained and len(self.events) > 2:
            stop = self.data.index(b">", end_offset) + 1
            return self.data[self.offset:stop].decode("utf-8")
        return _write_xhtml(self.events)


def _has_qualified_attribute(attributes: list[str]) -> bool:
    """An attribute in a namespace (but xml:), whose prefix may be declared outside."""
    return any("}" in name and not name.startswith(_IN_XML) for name in attributes[::2])


_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
# Newlines and tabs as references: a parser would otherwise normalise them to spaces.
ATTRIBUTE_ESCAPES = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
    "\n": "&#10;", "\r": "&#13;", "\t": "&#9;",
})


def _write_xhtml(events: list[tuple[str, list[str]] | str | None]) -> str:
    """XHTML text for parser events, each element's namespace declared where it changes."""
    out: list[str] = []
    open_tags: list[tuple[str, int, str]] = []  # (name, position in out, default namespace)
    default = ""
    for event in events:
        if isinstance(event, str):
            out.append(event.translate(_TEXT_ESCAPES))
        elif event is None:
            name, position, default = open_tags.pop()
            if position == len(out) - 1:  # no content: <br/>
                out[position] = out[position][:-1] + "/>"
            else:
                out.append(f"</{name}>")
        else:
            tag, attributes = event
            namespace, _, name = tag.rpartition("}")
            head = f"<{name}"
            if namespace != default:
                head += f' xmlns="{namespace}"'
            open_tags.append((name, len(out), default))
            default = namespace
            for i in range(0, len(attributes), 2):
                head += f' {_attribute_name(attributes[i], i)}="'
                head += attributes[i + 1].translate(ATTRIBUTE_ESCAPES) + '"'
            out.append(head + ">")
    return "".join(out)


def _attribute_name(name: str, position: int) -> str:
    namespace, _, local = name.rpartition("}")
    if not namespace:
        return local
    if namespace == _XML_NS:
        return f"xml:{local}"
    prefix = f"ns{position // 2}"
    return f'xmlns:{prefix}="{namespace}" {prefix}:{local}'
