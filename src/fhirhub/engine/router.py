"""From a path below the FHIR base to the interaction it names
(https://hl7.org/fhir/R4/http.html#summary)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fhirhub.errors import InvalidError, NotAllowedError, NotFoundError
from fhirhub.fhir.definitions import compartment_definitions
from fhirhub.fhir.model import element_model

ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class Route:
    interaction: str  # read, vread, update, patch, delete, history-instance, history-type,
    # history-system, create, search-type, search-system, capabilities, transaction,
    # operation, compartment, conditional-update/-delete/-patch; and the OAuth/SMART
    # endpoints smart-configuration, token, jwks
    resource_type: str | None = None
    id: str | None = None
    version: str | None = None
    operation: str | None = None
    compartment_type: str | None = None  # Patient/123/Observation: "Observation" (or "*")


def check_type(name: str) -> str:
    if not element_model().is_resource_type(name):
        raise NotFoundError(
            f"'{name}' is not a FHIR R4 resource type this server knows",
            spine_code="INVALID_REQUEST", issue_code="not-supported",
        )
    return name


def check_id(value: str) -> str:
    if not ID_RE.fullmatch(value):
        raise InvalidError(
            f"'{value}' is not a valid resource id: use 1-64 letters, digits, '-' or '.'",
            spine_code="INVALID_RESOURCE_ID",
        )
    return value


# Fixed URLs and the one method each takes (a wrong method there is 405, not 404).
_FIXED_SYSTEM = {"metadata": "GET", "_history": "GET", "_search": "POST"}
_FIXED_TYPE = {"_history": "GET", "_search": "POST"}


def _not_allowed(method: str, what: str) -> NotAllowedError:
    return NotAllowedError(f"{method} is not allowed on {what}", spine_code="METHOD_NOT_ALLOWED")


# The OAuth and SMART endpoints below the FHIR base (SMART wants its configuration at
# [base]/.well-known/smart-configuration): path -> (interaction, method).
_AUTH_PATHS = {(".well-known", "smart-configuration"): ("smart-configuration", "GET"),
               ("auth", "token"): ("token", "POST"), ("auth", "jwks"): ("jwks", "GET")}
_AUTH = frozenset(p[0] for p in _AUTH_PATHS)


def _auth_route(method: str, parts: list[str]) -> Route:
    found = _AUTH_PATHS.get((parts[0], parts[1])) if len(parts) == 2 else None
    if found is None:
        raise NotFoundError(f"Nothing is served at {'/'.join(parts)[:200]!r}",
                            spine_code="INVALID_REQUEST", issue_code="not-found")
    interaction, allowed = found
    if ("GET" if method == "HEAD" else method) != allowed:
        raise _not_allowed(method, f"{'/'.join(parts)} ({allowed} only)")
    return Route(interaction)


def route(method: str, path: str) -> Route:
    parts = [p for p in path.strip("/").split("/") if p]
    m = "GET" if method == "HEAD" else method
    if not parts:
        if m == "POST":
            return Route("transaction")
        if m == "GET":
            return Route("search-system")
        raise _not_allowed(method, "the server base")
    head = parts[0]
    if head in _AUTH:
        return _auth_route(method, parts)
    if len(parts) == 1:
        if head == "metadata" and m == "GET":
            return Route("capabilities")
        if head == "_history" and m == "GET":
            return Route("history-system")
        if head == "_search" and m == "POST":
            return Route("search-system")
        if head.startswith("$"):
            return Route("operation", operation=head[1:])
        if head in _FIXED_SYSTEM:
            raise _not_allowed(method, f"[base]/{head} ({_FIXED_SYSTEM[head]} only)")
        rtype = check_type(head)
        by_method = {"GET": "search-type", "POST": "create", "PUT": "conditional-update",
                     "DELETE": "conditional-delete", "PATCH": "conditional-patch"}
        if m not in by_method:
            raise _not_allowed(method, f"{rtype}")
        return Route(by_method[m], rtype)
    rtype = check_type(head)
    second = parts[1]
    if len(parts) == 2:
        if second == "_search" and m == "POST":
            return Route("search-type", rtype)
        if second == "_history" and m == "GET":
            return Route("history-type", rtype)
        if second.startswith("$"):
            return Route("operation", rtype, operation=second[1:])
        if second in _FIXED_TYPE:
            raise _not_allowed(method, f"{rtype}/{second} ({_FIXED_TYPE[second]} only)")
        rid = check_id(second)
        by_method = {"GET": "read", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}
        if m not in by_method:
            raise _not_allowed(method, f"{rtype}/{rid} (POST creates at {rtype})")
        return Route(by_method[m], rtype, rid)
    rid = check_id(second)
    third = parts[2]
    if len(parts) == 3:
        if third == "_history" and m == "GET":
            return Route("history-instance", rtype, rid)
        if third.startswith("$"):
            return Route("operation", rtype, rid, operation=third[1:])
        if m == "GET" and (third == "*" or element_model().is_resource_type(third)):
            if rtype not in compartment_definitions():
                raise NotFoundError(
                    f"{rtype} is not a compartment; compartments are "
                    f"{', '.join(sorted(compartment_definitions()))}",
                    spine_code="INVALID_REQUEST", issue_code="not-supported",
                )
            return Route("compartment", rtype, rid, compartment_type=third)
    if len(parts) == 4 and third == "_history" and m == "GET":
        return Route("vread", rtype, rid, version=parts[3])
    if len(parts) in (3, 4) and third == "_history":
        raise _not_allowed(method, f"{rtype}/{rid}/_history (GET only)")
    raise NotFoundError(f"No FHIR interaction is defined at '{path}' for {method}",
                        spine_code="INVALID_REQUEST", issue_code="not-supported")


__all__ = ["ID_RE", "Route", "check_id", "check_type", "route"]
