"""Is a ``Narrative.div`` safe to show? Well-formed XHTML, basic formatting only, nothing active.

https://hl7.org/fhir/R4/narrative.html limits the narrative to a subset of XHTML so that a
client can display it as it is. The div is parsed with defusedxml (no DTD, no entities), then
every element and attribute is held against the lists the reference validator uses, and URLs
and styles are searched for script, as a browser would read them.
"""

from __future__ import annotations

import html
import re

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import fromstring as _parse_xml

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


def xhtml_problems(text: str) -> list[str]:
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


def has_content(text: str) -> bool:
    """txt-2: does a ``Narrative.div`` have some non-whitespace text or an image? For a div
    that passed :func:`xhtml_problems` (well-formed, no DTD), stripping the comments and tags
    leaves its text: no second XML parse on the write path."""
    if _IMG.search(text):
        return True
    return bool(narrative_text(text).strip())


def narrative_text(text: str) -> str:
    """The text a person reads in a ``Narrative.div``: comments and tags dropped (each tag
    leaves a space, so ``a<br/>b`` stays two words), entities decoded."""
    return html.unescape(_TAG.sub(" ", _COMMENT.sub("", text)))


_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_IMG = re.compile(r"<img[\s/>]")


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
