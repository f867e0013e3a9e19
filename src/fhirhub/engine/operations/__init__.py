"""FHIR operations (``$name``): one table of what exists where, one dispatcher.

Each area registers its operations in its own module (``validate``, ``terminology``); this
package only knows how to find the one a request names and to refuse, with the right status,
a name that does not exist (404), a level or resource type it does not apply to (404) and a
method it does not take (405). https://hl7.org/fhir/R4/operations.html
"""

from __future__ import annotations

from fhirhub.engine.operations._parameters import OperationInput, operation_input
from fhirhub.engine.operations._registry import (
    Level,
    Operation,
    OperationHandler,
    dispatch,
    operations,
    permission,
)

__all__ = [
    "Level",
    "Operation",
    "OperationHandler",
    "OperationInput",
    "dispatch",
    "operation_input",
    "operations",
    "permission",
]
