"""The syntax of UCUM unit expressions (case-sensitive form), parsed into a small tree.

The grammar of https://ucum.org/ucum#section-Syntax-Rules (UCUM 2.2, §7)::

    main-term   ::= "/" term | term
    term        ::= term "." component | term "/" component | component
    component   ::= annotatable annotation | annotatable | annotation | factor | "(" term ")"
    annotatable ::= simple-unit exponent | simple-unit
    exponent    ::= ["+" | "-"] digits
    factor      ::= digits
    annotation  ::= "{" printable ASCII characters but curly braces "}"

``.`` and ``/`` have the same precedence and apply left to right (``a/b.c`` is
``(a/b).c``); a leading ``/`` inverts the whole term. A simple unit is an atom or a prefix
and a metric atom; which one is the caller's business (it knows the table), so a
``Symbol`` keeps the text as written. Square brackets belong to the symbol (``[in_i]``,
``m[H2O]``, ``B[10.nV]``), and ``10*`` / ``10^`` are the only atoms that begin with digits.
Annotations mean nothing: one alone is the unity, one after a unit is dropped.

Two relaxations, both for codes that UCUM's own table of common units and FHIR's
``ucum-common`` value set use: an annotation may hold spaces (``{# of fetuses}``), and it
may follow a factor or a parenthesised term as well as a unit (``1{c}``,
``U/(10.g){feces}``).
"""

from __future__ import annotations

from dataclasses import dataclass

_DIGITS = frozenset("0123456789")
# Where a symbol ends (outside square brackets): operators, parentheses, an annotation, an
# exponent. Anything else printable may be part of one (', %, *, _, ^ ...).
_SYMBOL_END = _DIGITS | frozenset("./(){}+-")
_TEN_POWER = ("10*", "10^")


class UcumSyntaxError(ValueError):
    """The text is not a UCUM expression."""


@dataclass(frozen=True, slots=True)
class Symbol:
    """A simple unit as written (prefix and atom still together), raised to ``exponent``."""

    text: str
    exponent: int = 1


@dataclass(frozen=True, slots=True)
class Factor:
    """An integer factor; an annotation alone is ``Factor(1)``."""

    value: int


@dataclass(frozen=True, slots=True)
class Group:
    """A parenthesised term."""

    term: Term


Component = Symbol | Factor | Group
# The components in order, each with whether it divides (True) or multiplies (False) what
# comes before it; the first one divides only for a main term that begins with "/".
Term = tuple[tuple[bool, Component], ...]


def parse(text: str) -> Term:
    """The tree of a UCUM expression; ``UcumSyntaxError`` if it is not one."""
    parser = _Parser(text)
    if text.startswith("/"):
        parser.pos = 1
        term: Term = ((True, Group(parser.term())),)
    else:
        term = parser.term()
    if parser.pos != len(text):
        raise parser.error("unexpected character")
    return term


class _Parser:
    """A recursive-descent parser over ``text``, reading from ``pos``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> UcumSyntaxError:
        return UcumSyntaxError(f"{what} at {self.pos} in {self.text!r}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def term(self) -> Term:
        parts: list[tuple[bool, Component]] = [(False, self.component())]
        while self.peek() in (".", "/"):
            divide = self.peek() == "/"
            self.pos += 1
            parts.append((divide, self.component()))
        return tuple(parts)

    def component(self) -> Component:
        ch = self.peek()
        if ch == "{":
            self.annotation()
            return Factor(1)
        if ch == "(":
            self.pos += 1
            found: Component = Group(self.term())
            if self.peek() != ")":
                raise self.error("missing ')'")
            self.pos += 1
        elif ch in _DIGITS and not self.text.startswith(_TEN_POWER, self.pos):
            found = Factor(int(self.digits()))
        else:
            found = Symbol(self.symbol(), self.exponent())
        if self.peek() == "{":
            self.annotation()
        return found

    def symbol(self) -> str:
        start = self.pos
        if self.text.startswith(_TEN_POWER, start):
            self.pos += 3
            return self.text[start:self.pos]
        text = self.text
        while self.pos < len(text) and text[self.pos] not in _SYMBOL_END:
            ch = text[self.pos]
            if not "!" <= ch <= "~":
                raise self.error("not a printable ASCII character")
            if ch == "[":
                close = text.find("]", self.pos)
                if close < 0:
                    raise self.error("missing ']'")
                self.pos = close
            self.pos += 1
        if self.pos == start:
            raise self.error("expected a unit")
        return text[start:self.pos]

    def exponent(self) -> int:
        sign = self.peek()
        if sign in ("+", "-"):
            self.pos += 1
            if self.peek() not in _DIGITS:
                raise self.error("expected the digits of an exponent")
        elif sign not in _DIGITS:
            return 1
        value = int(self.digits())
        return -value if sign == "-" else value

    def digits(self) -> str:
        start = self.pos
        while self.peek() in _DIGITS:
            self.pos += 1
        return self.text[start:self.pos]

    def annotation(self) -> None:
        close = self.text.find("}", self.pos)
        if close < 0:
            raise self.error("missing '}'")
        body = self.text[self.pos + 1:close]
        if "{" in body or not all(" " <= ch <= "~" for ch in body):
            raise self.error("an annotation holds printable ASCII characters but braces")
        self.pos = close + 1


__all__ = ["Component", "Factor", "Group", "Symbol", "Term", "UcumSyntaxError", "parse"]
