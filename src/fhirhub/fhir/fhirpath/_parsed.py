"""An expression parsed once, and how each evaluation of it runs.

Parsing is the costly part, so it is cached: the strict syntax check, the engine's tree,
and the ``%`vs-*``` / ``%`ext-*``` constants the expression uses. A run hands the engine
our functions, sets the root resource for ``resolve()``, and turns whatever the engine
raises into :class:`FhirPathError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fhirhub.fhir.fhirpath._engine import R4_MODEL, apply, parse_tree
from fhirhub.fhir.fhirpath._environment import constants_used, environment
from fhirhub.fhir.fhirpath._errors import FhirPathError
from fhirhub.fhir.fhirpath._functions import OPTIONS, RAW_OPTIONS
from fhirhub.fhir.fhirpath._r4_functions import evaluation_root
from fhirhub.fhir.fhirpath._syntax import check_syntax, keywords_as_member_names

# How the engine's messages show its own objects; a client is told "<element>" instead.
_ENGINE_OBJECT = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


@dataclass(frozen=True)
class Parsed:
    """A checked expression, its engine tree, and the constants it needs."""

    expression: str
    tree: dict[str, Any]  # the engine's syntax tree: {"children": [expression node]}
    constants: dict[str, str]  # the %`vs-*` / %`ext-*` names it uses, with their values

    def evaluate(self, resource: Any, variables: Mapping[str, Any] | None, *,
                 raw: bool = False) -> list[Any]:
        """Evaluate on ``resource`` with the standard environment plus ``variables``."""
        return self.run(resource, self.environment(resource, variables), raw=raw)

    def run(self, data: Any, environment: dict[str, Any], *, raw: bool = False,
            tree: dict[str, Any] | None = None) -> list[Any]:
        """Evaluate (a tree derived from) this expression; ``raw`` keeps engine nodes."""
        with evaluation_root(environment.get("rootResource")):
            try:
                return list(apply(data, tree or self.tree, environment, R4_MODEL,
                                  RAW_OPTIONS if raw else OPTIONS))
            except FhirPathError:
                raise
            except Exception as exc:  # evaluation errors surface as plain Exceptions
                raise FhirPathError(
                    f"The FHIRPath expression {self.expression!r} could not be evaluated: "
                    + _ENGINE_OBJECT.sub("<element>", str(exc))
                ) from exc

    def environment(self, resource: Any, variables: Mapping[str, Any] | None) -> dict[str, Any]:
        """The variables for evaluating this expression on ``resource``."""
        return environment(resource, self.constants, variables)


@lru_cache(maxsize=4096)
def parse(expression: str) -> Parsed:
    """``expression`` checked and parsed; :class:`FhirPathError` if it is not valid."""
    text = keywords_as_member_names(expression)
    check_syntax(text, expression)
    try:
        tree = parse_tree(text)
    except Exception as exc:  # fhirpathpy raises bare Exceptions from its ANTLR parser
        raise FhirPathError(f"The FHIRPath expression {expression!r} is not valid: {exc}") from exc
    return Parsed(expression, tree, constants_used(tree))
