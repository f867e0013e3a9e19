"""fhirpathpy, the engine, as the package's other private modules use it.

This is the only module that imports fhirpathpy, so that replacing the engine
(docs/adr/0003-fhirpath-engine.md) starts and mostly ends here. The engine's calls are
untyped; each handle below states the signature we rely on.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.nodes import FP_DateTime, FP_Quantity, FP_Time, ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser import parse
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

R4_MODEL = models["r4"]

# (data, tree, environment, model, options) -> results
apply = cast(Callable[..., list[Any]], apply_parsed_path)
# The engine's syntax tree: {"children": [expression node]}, each node a dict with
# "type", "children" and, for tokens, "text".
parse_tree = cast(Callable[[str], dict[str, Any]], parse)
# (data, model type key or None): a node the engine navigates as part of a resource.
create_node = cast(Callable[[Any, "str | None"], Any], ResourceNode.create_node)
quantity = cast(Callable[[Decimal, str], FP_Quantity], FP_Quantity)
# The date/time constructors answer None for text they do not accept.
date_time = cast(Callable[[str], "FP_DateTime | None"], FP_DateTime)
time = cast(Callable[[str], "FP_Time | None"], FP_Time)

__all__ = [
    "R4_MODEL",
    "FHIRPathLexer",
    "FHIRPathParser",
    "FP_DateTime",
    "FP_Quantity",
    "FP_Time",
    "ResourceNode",
    "apply",
    "create_node",
    "date_time",
    "parse_tree",
    "quantity",
    "time",
]
