"""Strict syntax: an expression is refused at its first syntax error.

The engine's own parser recovers from syntax errors silently (``Patient..name`` or
``2 + 2 /* unfinished`` evaluate to something), which would let broken invariants and
search parameters through unnoticed. We parse with the engine's grammar first and stop at
the first error. Before that, a keyword used as a member name after a ``.``
(``Patient.text.div``) is delimited so that it reads as a name, as the FHIR reference
engine does.
"""

from __future__ import annotations

import re
from typing import Any

from antlr4 import CommonTokenStream, InputStream

from fhirhub.fhir.fhirpath._engine import FHIRPathLexer, FHIRPathParser
from fhirhub.fhir.fhirpath._errors import FhirPathError

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keywords the grammar already accepts as names (and that are function names too).
_NAME_KEYWORDS = frozenset({"as", "contains", "in", "is"})
_NAMES = (FHIRPathLexer.IDENTIFIER, FHIRPathLexer.DELIMITEDIDENTIFIER)


def keywords_as_member_names(expression: str) -> str:
    """Delimit a keyword used as a member name: ``text.div`` -> ``text.`div```.

    The grammar reserves ``div``, ``mod``, ``and``... even after a ``.``, where only a name
    can follow; the FHIR reference engine reads them as names there (``Patient.text.div``
    is everyday FHIR), so we do too, without touching anything else in the expression.
    """
    stream = CommonTokenStream(_lexer(expression))
    try:
        stream.fill()
    except Exception:  # a lexical error: leave it for the syntax check to report
        return expression
    tokens = [t for t in stream.tokens if t.channel == 0 and t.type != -1]
    out, done = [], 0
    for before, token, after in zip([None, *tokens], tokens, [*tokens[1:], None], strict=False):
        if before is not None and before.text == "." and _is_keyword_name(token, after):
            out += [expression[done:token.start], f"`{token.text}`"]
            done = token.stop + 1
    return "".join(out) + expression[done:] if out else expression


def _is_keyword_name(token: Any, after: Any) -> bool:
    """A reserved word (not a function call) that the grammar would not take as a name."""
    return bool(
        token.type not in _NAMES
        and _WORD.fullmatch(token.text)
        and token.text not in _NAME_KEYWORDS
        and (after is None or after.text != "(")
    )


def check_syntax(expression: str, original: str) -> None:
    """Parse ``expression`` with the engine's grammar; a syntax error names ``original``."""
    listener = _RaiseOnSyntaxError(original)
    lexer = _lexer(expression)
    lexer.addErrorListener(listener)
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    parser.entireExpression()  # type: ignore[no-untyped-call]  # generated, untyped


def _lexer(expression: str) -> Any:
    # ANTLR's default listener prints errors to stderr; ours are raised or left to the parser.
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    return lexer


class _RaiseOnSyntaxError:
    """An ANTLR error listener that stops at the first syntax error."""

    def __init__(self, expression: str) -> None:
        self.expression = expression

    # The method names and positions are ANTLR's ErrorListener protocol.
    def syntaxError(
        self, recognizer: Any, symbol: Any, line: int, column: int, msg: str, e: Any
    ) -> None:
        raise FhirPathError(
            f"The FHIRPath expression {self.expression!r} is not valid: {msg} "
            f"(line {line}, column {column + 1})"
        )

    def reportAmbiguity(self, *args: Any) -> None:
        pass

    def reportAttemptingFullContext(self, *args: Any) -> None:
        pass

    def reportContextSensitivity(self, *args: Any) -> None:
        pass
