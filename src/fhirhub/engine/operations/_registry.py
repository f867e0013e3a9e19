"""The table of operations and the dispatch of a routed ``$name`` request to one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from fhirhub.engine.request import FhirRequest, FhirResponse
from fhirhub.engine.router import Route
from fhirhub.errors import NotAllowedError, NotFoundError

if TYPE_CHECKING:
    from fhirhub.engine.engine import Engine

Level = Literal["system", "type", "instance"]
OperationHandler = Callable[["Engine", FhirRequest, Route], FhirResponse]


@dataclass(frozen=True)
class Operation:
    """One operation: its name, where it applies, the methods it takes, its handler.

    ``types`` empty means every resource type (at type and instance level).
    ``affects_state`` operations are POST only (https://hl7.org/fhir/R4/operations.html).
    """

    name: str
    levels: frozenset[Level]
    handler: OperationHandler
    types: frozenset[str] = frozenset()
    affects_state: bool = False
    definition: str = ""  # canonical URL of its OperationDefinition, for the CapabilityStatement
    needs: str = "r"  # SMART permission letters on the type, any one of which allows it


def _level(route: Route) -> Level:
    if route.resource_type is None:
        return "system"
    return "instance" if route.id is not None else "type"


def operations() -> tuple[Operation, ...]:
    """Every operation the server has, from the modules that define them."""
    from fhirhub.engine.operations import terminology, validate

    return (*validate.OPERATIONS, *terminology.OPERATIONS)


def dispatch(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    """Run the operation ``route`` names, or refuse it with a clear OperationOutcome."""
    name = route.operation or ""
    level = _level(route)
    candidates = [op for op in operations() if op.name == name]
    where = "/".join(x for x in (route.resource_type, route.id) if x) or "the server base"
    if not candidates:
        raise NotFoundError(f"The operation ${name} is not supported by this server",
                            spine_code="INVALID_REQUEST", issue_code="not-supported")
    for op in candidates:
        if level in op.levels and (level == "system" or not op.types
                                   or route.resource_type in op.types):
            _check_method(op, req.method)
            return op.handler(engine, req, route)
    places = ", ".join(sorted(_places(op) for op in candidates))
    raise NotFoundError(f"The operation ${name} is not defined on {where}; it is defined on "
                        f"{places}", spine_code="INVALID_REQUEST", issue_code="not-supported")


def permission(route: Route) -> str:
    """The SMART permission letters on the route's resource type that allow the operation
    it names (any one will do); at instance level, read (the operation sees a stored
    resource). Empty for an operation that does not exist (dispatch refuses it)."""
    if route.id is not None:
        return "r"
    level = _level(route)
    for op in operations():
        if op.name == route.operation and level in op.levels:
            return op.needs
    return ""


def _check_method(op: Operation, method: str) -> None:
    allowed = ("POST",) if op.affects_state else ("GET", "HEAD", "POST")
    if method not in allowed:
        raise NotAllowedError(f"${op.name} takes {' or '.join(a for a in allowed if a != 'HEAD')}"
                              f", not {method}", spine_code="METHOD_NOT_ALLOWED")


def _places(op: Operation) -> str:
    types = "/".join(sorted(op.types)) if op.types else "[type]"
    labels = {"system": "[base]", "type": types, "instance": f"{types}/[id]"}
    return " and ".join(f"{labels[level]}/${op.name}" for level in sorted(op.levels))


