"""The fast path's own reader: FHIRPath text to a small syntax tree (see ``_fast``).

A tokenizer and a recursive-descent parser with FHIRPath's precedence
(https://hl7.org/fhirpath/N1/#operator-precedence), for the part of the language that the
invariants of FHIR R4 use. Anything else (date, time and quantity literals, ``$index``...)
raises :class:`Unsupported`, and the caller falls back to the full engine. Syntax is not
judged here: the engine's strict check has already accepted the expression.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal


class Unsupported(Exception):  # a signal to fall back, not an error
    """The expression uses something the fast path does not compile."""


# -- the syntax tree --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    value: object  # str, bool, int or Decimal; None for the empty collection {}


@dataclass(frozen=True, slots=True)
class Var:
    name: str  # %name, without the %


@dataclass(frozen=True, slots=True)
class This:
    pass


@dataclass(frozen=True, slots=True)
class Member:
    """An element name; ``source`` None means it applies to the current focus."""

    source: Node | None
    name: str


@dataclass(frozen=True, slots=True)
class Call:
    """A function; ``source`` None means it applies to the current focus."""

    source: Node | None
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class TypeName:
    """A type specifier: ``Quantity``, ``FHIR.Quantity``, ``System.String``."""

    namespace: str | None
    name: str


@dataclass(frozen=True, slots=True)
class Index:
    source: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Negate:
    operand: Node


Node = Literal | Var | This | Member | Call | TypeName | Index | Binary | Negate

# -- tokens ----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<quoted>`(?:\\.|[^\\`])*`)
  | (?P<string>'(?:\\.|[^\\'])*')
  | (?P<special>\$[A-Za-z]+)
  | (?P<op><=|>=|!=|!~|[-+*/&|=~<>().,\[\]{}%])
""", re.VERBOSE | re.DOTALL)

_ESCAPES = {"'": "'", '"': '"', "`": "`", "r": "\r", "n": "\n", "t": "\t", "f": "\f",
            "\\": "\\", "/": "/"}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)

# Operators by precedence, loosest first (https://hl7.org/fhirpath/N1/#grammar: the order of
# the alternatives of ``expression``). ``is``/``as`` take a type, not an expression.
_LEVELS: tuple[frozenset[str], ...] = (
    frozenset({"implies"}),
    frozenset({"or", "xor"}),
    frozenset({"and"}),
    frozenset({"in", "contains"}),
    frozenset({"=", "~", "!=", "!~"}),
    frozenset({"<", ">", "<=", ">="}),
    frozenset({"|"}),
    frozenset({"is", "as"}),
    frozenset({"+", "-", "&"}),
    frozenset({"*", "/", "div", "mod"}),
)
_KEYWORD_OPS = frozenset({"implies", "or", "xor", "and", "in", "contains", "is", "as", "div", "mod"})
# Words that end a quantity literal (``4 days``): not supported.
_UNITS = frozenset({"year", "years", "month", "months", "week", "weeks", "day", "days", "hour",
                    "hours", "minute", "minutes", "second", "seconds", "millisecond",
                    "milliseconds"})


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, name, quoted, string, special, op
    text: str


def _unescape(body: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match[1]
        if len(code) == 5:
            return chr(int(code[1:], 16))
        return _ESCAPES.get(code, match[0])

    return _ESCAPE.sub(one, body)


def tokenize(text: str) -> list[_Token]:
    tokens, at = [], 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None or match.lastgroup is None:
            raise Unsupported(f"unexpected text at {at}: {text[at:at + 10]!r}")  # @dates...
        if match.lastgroup != "space":
            tokens.append(_Token(match.lastgroup, match[0]))
        at = match.end()
    return tokens


# -- the parser ------------------------------------------------------------------------------


def parse(text: str) -> Node:
    """The syntax tree of ``text``; :class:`Unsupported` for what the fast path lacks."""
    parser = _Parser(tokenize(text))
    node = parser.expression(0)
    if parser.peek() is not None:
        raise Unsupported(f"unexpected {parser.peek()}")
    return node


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self, ahead: int = 0) -> _Token | None:
        at = self.at + ahead
        return self.tokens[at] if at < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise Unsupported("unexpected end")
        self.at += 1
        return token

    def expect(self, text: str) -> None:
        if self.take().text != text:
            raise Unsupported(f"expected {text!r}")

    def operator(self, level: int) -> str | None:
        token = self.peek()
        if token is None or token.text not in _LEVELS[level]:
            return None
        if token.kind == "name" and token.text not in _KEYWORD_OPS:
            return None
        return token.text

    def expression(self, level: int) -> Node:
        if level == len(_LEVELS):
            return self.unary()
        left = self.expression(level + 1)
        while (op := self.operator(level)) is not None:
            self.take()
            right = self.type_name() if op in ("is", "as") else self.expression(level + 1)
            left = Binary(op, left, right)
        return left

    def unary(self) -> Node:
        token = self.peek()
        if token is not None and token.kind == "op" and token.text in "+-":
            self.take()
            operand = self.unary()
            return operand if token.text == "+" else Negate(operand)
        return self.postfix(self.term())

    def postfix(self, node: Node) -> Node:
        while (token := self.peek()) is not None and token.text in (".", "["):
            self.take()
            if token.text == "[":
                node = Index(node, self.expression(0))
                self.expect("]")
            else:
                node = self.invocation(node)
        return node

    def term(self) -> Node:
        token = self.take()
        if token.kind == "number":
            return self.number(token.text)
        if token.kind == "string":
            return Literal(_unescape(token.text[1:-1]))
        if token.kind == "special":
            if token.text != "$this":
                raise Unsupported(token.text)  # $index, $total
            return This()
        if token.text == "%":
            return Var(self.constant_name())
        if token.text == "(":
            node = self.expression(0)
            self.expect(")")
            return node
        if token.text == "{":
            self.expect("}")
            return Literal(None)
        if token.kind == "name" and token.text in ("true", "false"):
            return Literal(token.text == "true")
        self.at -= 1
        return self.invocation(None)

    def number(self, text: str) -> Literal:
        following = self.peek()
        if following is not None and (following.kind == "string" or following.text in _UNITS):
            raise Unsupported("quantity literal")
        return Literal(Decimal(text) if "." in text else int(text))

    def constant_name(self) -> str:
        token = self.take()
        if token.kind == "name":
            return token.text
        if token.kind in ("quoted", "string"):
            return _unescape(token.text[1:-1])
        raise Unsupported("bad external constant")

    def identifier(self) -> str:
        token = self.take()
        if token.kind == "name":
            return token.text
        if token.kind == "quoted":
            return _unescape(token.text[1:-1])
        raise Unsupported(f"expected a name, got {token.text!r}")

    def invocation(self, source: Node | None) -> Node:
        name = self.identifier()
        following = self.peek()
        if following is None or following.text != "(":
            return Member(source, name)
        self.take()
        args: list[Node] = []
        while (token := self.peek()) is not None and token.text != ")":
            if args:
                self.expect(",")
            args.append(self.type_name() if name in ("is", "as", "ofType") else self.expression(0))
        self.expect(")")
        return Call(source, name, tuple(args))

    def type_name(self) -> TypeName:
        first = self.identifier()
        following = self.peek()
        if following is not None and following.text == ".":
            self.take()
            return TypeName(first, self.identifier())
        return TypeName(None, first)
