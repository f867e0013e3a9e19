"""A typed evaluator for the FHIRPath that search parameters use, straight over the JSON dict.

Indexing runs on every write, and ``fhirpathpy`` costs tens of microseconds an evaluation
and returns bare values (an Identifier and a ContactPoint look alike). So the subset that
search parameter expressions are written in is compiled here, once, into plain functions
that walk the dict and carry each value's FHIR type from the R4 element model:

    path        Patient.name.given        name.family     (Observation.value as Quantity).value
    union       Patient.name | Person.name
    types       X as T      X.as(T)      X.ofType(T)     (T may be written FHIR.T)
    logic       X = 'lit'    X != false    A and B    X.exists()
    filters     X.where(system = 'phone')     X.where(type.coding.code = 'x')
                X.where(resolve() is Patient)    X.where(hasExtension('url'))
                X.extension('url')
    position    X[0]      X.first()

``resolve()``: fhirpathpy does not implement it, and resolving a reference while indexing
would make a resource's rows depend on other resources. ``X.where(resolve() is T)`` only
asks what type ``X`` points to, which the reference itself says: it is rewritten to "keep
the references whose target type is ``T``", read from ``Type/id`` (relative or absolute),
from the contained resource for ``#id``, or from ``Reference.type``. A reference whose type
cannot be told (``urn:uuid:…`` without ``type``) is not kept. Any other use of ``resolve()``
is outside the subset, and ``registry.py`` refuses it in custom parameters: an index row
must follow from the resource alone.

``X as T`` keeps the items of ``X`` that are ``T``s, like ``X.ofType(T)``. FHIRPath N1 makes
``as`` on more than one item an error (fhirpathpy raises it), but R4's own search expressions
apply it to collections (``Observation.component.value as Quantity``), meaning the filter.

An expression outside the subset makes :func:`compile_path` return ``None``; the caller then
falls back to fhirpathpy (see ``registry.py``). ``test_index.py`` checks that both give the
same values for every official parameter over every official example.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhirhub.search import _steps as st

Json = dict[str, Any]
Typed = tuple[str, Any]  # (FHIR type code, value); type "" when unknown

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)|(?P<op>!=|[.()\[\]|=]))"
)
_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n",
            "r": "\r", "t": "\t"}


class Unsupported(Exception):
    """The expression is outside the subset; evaluate it with fhirpathpy instead."""


# -- parsing --------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise Unsupported(text[pos:])
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        """The next token's text, checked against ``value`` / ``kind`` when given."""
        tk, tv = self.peek()
        if (value is not None and tv != value) or (kind is not None and tk != kind):
            raise Unsupported(f"expected {value or kind}, found {tv!r}")
        self.i += 1
        return tv

    def at(self, value: str) -> bool:
        return self.peek()[1] == value and self.peek()[0] in ("op", "id")

    # expr := comparison ('and' comparison)*      (FHIRPath precedence: | over = over and)
    def expr(self) -> st.Step:
        parts = [self.comparison()]
        while self.at("and"):
            self.take("and")
            parts.append(self.comparison())
        return parts[0] if len(parts) == 1 else st.and_(parts)

    # comparison := union (('=' | '!=') literal)?
    def comparison(self) -> st.Step:
        left = self.union()
        if self.at("=") or self.at("!="):
            negate = self.take() == "!="
            return st.compare(left, self.literal(), negate)
        return left

    # union := typed ('|' typed)*
    def union(self) -> st.Step:
        parts = [self.typed()]
        while self.at("|"):
            self.take("|")
            parts.append(self.typed())
        return parts[0] if len(parts) == 1 else st.union(parts)

    # typed := path ('as' TYPE)?
    def typed(self) -> st.Step:
        step = self.path()
        if self.at("as"):
            self.take("as")
            step = st.then(step, st.as_type(self.type_name()))
        return step

    # path := primary ('.' invocation | '[' NUM ']')*
    def path(self) -> st.Step:
        steps = [self.primary()]
        while True:
            if self.at(".") and self.peek(1) == ("id", "exists") and self.peek(2)[1] == "(":
                self.i += 3
                self.take(")")
                steps = [st.exists(st.chain(steps))]  # an aggregate: it sees the whole collection
            elif self.at("."):
                self.take(".")
                steps.append(self.invocation())
            elif self.at("["):
                self.take("[")
                position = int(self.take(kind="num"))
                self.take("]")
                steps.append(st.index(position))
            else:
                return st.chain(steps)

    def primary(self) -> st.Step:
        if self.at("("):
            self.take("(")
            inner = self.expr()
            self.take(")")
            return inner
        name = self.identifier()
        if self.at("("):
            raise Unsupported(f"function {name}() at the start of a path")
        return st.type_root(name) if name[:1].isupper() else self.member(name)

    def invocation(self) -> st.Step:
        name = self.identifier()
        if not self.at("("):
            return self.member(name)
        self.take("(")
        step = self.function(name)
        self.take(")")
        return step

    def function(self, name: str) -> st.Step:
        if name in ("as", "ofType"):
            return st.as_type(self.type_name())
        if name == "where":
            return self.where()
        if name == "extension":
            return st.extension(self.string())
        if name == "first":
            return st.index(0)
        raise Unsupported(f"function {name}()")

    def where(self) -> st.Step:
        if self.peek() == ("id", "resolve") and self.peek(1)[1] == "(":
            self.take("resolve")
            self.take("(")
            self.take(")")
            self.take("is")
            return st.resolves_to(self.type_name())
        if self.peek() == ("id", "hasExtension") and self.peek(1)[1] == "(":
            self.take("hasExtension")
            self.take("(")
            url = self.string()
            self.take(")")
            return st.has_extension(url)
        return st.where(self.expr())

    def literal(self) -> Any:
        kind, text = self.peek()
        self.i += 1
        if kind == "str":
            return _unquote(text)
        if kind == "num":
            return Decimal(text) if "." in text else int(text)
        if kind == "id" and text in ("true", "false"):
            return text == "true"
        raise Unsupported(f"literal {text!r}")

    def member(self, name: str) -> st.Step:
        # Operators (and, is, contains...) are never read here: only '.', '[', '|', '=',
        # '!=', 'as', 'and' and ')' may follow a path, so a name in member position is an
        # element name (ValueSet.expansion.contains is one).
        return st.child(name)

    def identifier(self) -> str:
        text = self.take(kind="id")
        return text[1:-1] if text.startswith("`") else text

    def type_name(self) -> str:
        name = self.identifier()
        if name == "FHIR" and self.at("."):
            self.take(".")
            name = self.identifier()
        elif name == "System":
            raise Unsupported("System types")
        return name

    def string(self) -> str:
        return _unquote(self.take(kind="str"))


def _unquote(text: str) -> str:
    body = text[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    chars = iter(body)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        escaped = next(chars, "")
        if escaped not in _ESCAPES:
            raise Unsupported(f"escape \\{escaped}")
        out.append(_ESCAPES[escaped])
    return "".join(out)


# -- entry point ----------------------------------------------------------------------------


def compile_path(expression: str) -> Callable[[Json], list[Typed]] | None:
    """A function ``resource -> [(type, value), …]`` for ``expression``, or ``None``.

    ``None`` means the expression is outside the subset described in the module docstring.
    """
    try:
        parser = _Parser(expression)
        step = parser.expr()
        if parser.peek()[0] != "eof":
            raise Unsupported(f"unexpected {parser.peek()[1]!r}")
    except Unsupported:
        return None

    # exists() answers even when nothing is there: such an expression is always walked.
    firsts = None if "exists(" in expression else _first_members(expression)
    needs: dict[str, frozenset[str]] = {}

    def extract(resource: Json) -> list[Typed]:
        resource_type = str(resource.get("resourceType", ""))
        if firsts is not None:
            # Most parameters of a type find nothing in a given resource: when none of the
            # top-level properties the expression starts from is there, stop before walking.
            keys = needs.get(resource_type)
            if keys is None:
                keys = needs[resource_type] = frozenset(
                    option[0]
                    for name in firsts
                    for option in st.candidates(resource_type, name)
                )
            if keys.isdisjoint(resource):
                return []
        nodes = step([(resource, resource_type, resource_type)], resource)
        return [(type_code, value) for value, type_code, _key in nodes]

    return extract


_FIRST_MEMBER = re.compile(r"\(*\s*[A-Z][A-Za-z]*\.([a-z][A-Za-z0-9]*)\b")


def _first_members(expression: str) -> frozenset[str] | None:
    """The element each ``Type.element…`` part starts from; ``None`` if a part does not."""
    names = set()
    for part in split_union(expression):
        m = _FIRST_MEMBER.match(part)
        if m is None:
            return None
        names.add(m.group(1))
    return frozenset(names)


def split_union(expression: str) -> list[str]:
    """The top-level ``|`` parts of an expression (not those inside brackets or quotes)."""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'" and (i == 0 or expression[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        elif not quoted and depth == 0 and ch == "|":
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return parts


__all__ = ["Typed", "compile_path", "split_union"]
