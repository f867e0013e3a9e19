"""What fhirhub plugs into the engine: its functions, and ``trace()`` to our logger.

Everything goes through the engine's own extension points, the ``userInvocationTable``
and ``traceFn`` options; the engine's code is never patched, and none of its functions is
replaced. Each evaluation runs with :data:`OPTIONS`, or :data:`RAW_OPTIONS` to keep the
engine's nodes (the resource's own objects) in the result.
"""

from __future__ import annotations

import logging
from typing import Any

from fhirhub.fhir.fhirpath import _r4_functions as r4
from fhirhub.fhir.fhirpath._precision import boundary, precision
from fhirhub.fhir.fhirpath._sort import sort
from fhirhub.fhir.fhirpath._strings import escape, matches_full, unescape

_LOG = logging.getLogger("fhirhub.fhirpath")


def _trace(label: str, items: Any) -> None:
    # The engine prints traces to standard output, which a server must keep clean.
    _LOG.debug("trace %s: %r", label, items)


# Signatures in the engine's table format; arguments arrive evaluated, inputs as plain data.
_FUNCTIONS: dict[str, dict[str, Any]] = {
    "resolve": {"fn": r4.resolve},
    "hasValue": {"fn": r4.has_value},
    "getValue": {"fn": r4.get_value},
    "lowBoundary": {"fn": boundary(high=False), "arity": {0: [], 1: ["Integer"]}},
    "highBoundary": {"fn": boundary(high=True), "arity": {0: [], 1: ["Integer"]}},
    "precision": {"fn": precision},
    "matchesFull": {"fn": matches_full, "arity": {1: ["String"]}},
    "escape": {"fn": escape, "arity": {1: ["String"]}},
    "unescape": {"fn": unescape, "arity": {1: ["String"]}},
    "sort": {"fn": sort, "variadic": "Expr"},
}
OPTIONS: dict[str, Any] = {"userInvocationTable": _FUNCTIONS, "traceFn": _trace}
RAW_OPTIONS: dict[str, Any] = {**OPTIONS, "returnRawData": True}
