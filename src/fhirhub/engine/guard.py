"""Authorisation of every interaction (docs/security.md).

:func:`authorize` runs before each interaction the engine dispatches, top-level or a
Bundle entry, so that nothing reaches a handler unchecked: the token's scopes must allow
the interaction on the resource type (SMART v2 letters: read and vread ``r``, search and
type or system history ``s``, create ``c``, update and patch ``u``, delete ``d``), and a
patient may touch only resources in their own compartment.

What a caller may *see* is an :class:`~fhirhub.search.types.Access`, which the store
applies inside every search and history query (matches, ``_include``/``_revinclude``,
chains, ``_has``, conditional criteria), so that pages and totals never count what the
caller cannot see. It travels in a context variable set for the whole of a request
(:func:`granted`): every search the engine builds while answering picks it up, so that
no code path can search without it. What a patient *writes* must land in their own
compartment (:func:`check_written`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from fhirhub.auth.principal import Principal
from fhirhub.engine.request import FhirRequest
from fhirhub.engine.router import Route
from fhirhub.errors import ForbiddenError
from fhirhub.fhir.definitions import compartment_params
from fhirhub.search.types import Access, IndexRows, Predicate, SearchQuery
from fhirhub.store.base import Reader

if TYPE_CHECKING:
    from fhirhub.engine.engine import Engine

PUBLIC = frozenset({"capabilities", "smart-configuration", "jwks", "token"})

# The SMART v2 permission letter each interaction needs on its resource type.
NEEDS = {"read": "r", "vread": "r", "history-instance": "r", "create": "c", "update": "u",
         "patch": "u", "delete": "d", "conditional-update": "u", "conditional-patch": "u",
         "conditional-delete": "d", "search-type": "s", "history-type": "s",
         "compartment": "s"}
WORDS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
_INSTANCE = frozenset({"read", "vread", "history-instance", "update", "patch", "delete",
                       "operation"})


@dataclass(frozen=True)
class Grant:
    """A request's caller and what they may see."""

    principal: Principal
    access: Access | None  # None: everything (authorisation off)

    @property
    def patient_ids(self) -> tuple[str, ...] | None:
        """The ids of the Patient resources a patient's token is bound to; None for
        other callers."""
        if self.access is None or self.access.compartment is None:
            return None
        return self.access.compartment[1]


_GRANT: ContextVar[Grant | None] = ContextVar("fhirhub_grant", default=None)


@contextmanager
def granted(grant: Grant | None) -> Iterator[None]:
    """Within: every search the engine makes sees only what ``grant`` allows."""
    token = _GRANT.set(grant)
    try:
        yield
    finally:
        _GRANT.reset(token)


def current() -> Grant | None:
    """The grant of the request being answered (a Bundle entry's is its Bundle's)."""
    return _GRANT.get()


def restrict(query: SearchQuery) -> SearchQuery:
    """``query`` limited to what the current request's caller may see."""
    grant = _GRANT.get()
    if grant is None or grant.access is None:
        return query
    return replace(query, access=grant.access)


def grant_for(engine: Engine, principal: Principal) -> Grant:
    """What ``principal`` may see: the types it may read or search, and for a patient
    their own compartment (the Patient resources holding their NHS number)."""
    if principal.unchecked:
        return Grant(principal, None)
    compartment = None
    if principal.kind == "patient":
        compartment = ("Patient", engine.patients_of(principal.nhs_number or ""))
    return Grant(principal, Access(principal.types_with("rs"), compartment))


def authorize(engine: Engine, req: FhirRequest, route: Route) -> None:
    """Refuse (403) an interaction the caller's token does not allow."""
    grant = _GRANT.get()  # the request's, and its Bundle entries' too
    if grant is None or grant.principal.unchecked or route.interaction in PUBLIC:
        return
    principal = grant.principal
    interaction, rtype = route.interaction, route.resource_type
    if interaction == "transaction" or (rtype is None and interaction in
                                        ("search-system", "history-system")):
        return  # each entry is authorised as it is dispatched; system-wide reads filter
    if principal.kind == "patient" and "AuditEvent" in (rtype, route.compartment_type):
        raise ForbiddenError("The audit log is not available with a patient's token")
    if interaction == "operation":
        _operation(grant, route)
    else:
        target = route.compartment_type if interaction == "compartment" else rtype
        letter = NEEDS[interaction]
        if target and target != "*":
            need(principal, target, letter)
    if interaction == "compartment" and grant.patient_ids is not None and (
            rtype != "Patient" or route.id not in grant.patient_ids):
        raise ForbiddenError(f"{rtype}/{route.id} is not your record")
    if interaction in _INSTANCE and route.id and grant.patient_ids is not None:
        _own(engine.store, grant, str(rtype), route.id, may_be_new=interaction == "update")


def need(principal: Principal, rtype: str, letter: str) -> None:
    if not principal.allows(rtype, letter):
        context = {"patient": "patient", "staff": "user"}.get(principal.kind, "system")
        raise ForbiddenError(
            f"The access token does not allow you to {WORDS[letter]} {rtype} resources "
            f"(that needs the scope {context}/{rtype}.{letter} or wider)",
            spine_code="ACCESS_DENIED")


def searchable_types(grant: Grant | None, asked: tuple[str, ...]) -> tuple[str, ...]:
    """The types a system-level (or whole-compartment) search or history may return:
    those asked for, each needing ``s``, or else every type the caller may search; ()
    means every type. 403 when the caller may search none."""
    if grant is None or grant.principal.unchecked:
        return asked
    for rtype in asked:
        need(grant.principal, rtype, "s")
    if asked:
        return asked
    types = grant.principal.types_with("s")
    if types is None:
        return ()
    if not types:
        raise ForbiddenError("The access token does not allow you to search any resource "
                             "type (that needs a scope such as system/Patient.s or "
                             "system/*.rs)")
    return tuple(sorted(types))


def _operation(grant: Grant, route: Route) -> None:
    """An operation needs one of the letters it declares on its type; at system level,
    on every type (``system/*.r``): it may reach anything."""
    from fhirhub.engine.operations import permission

    letters, principal = permission(route), grant.principal
    if not letters:
        return  # no such operation: dispatch refuses it (404)
    if route.resource_type is None:
        if not any(principal.types_with(c) is None for c in letters):
            raise ForbiddenError(f"The operation ${route.operation} needs a wildcard scope "
                                 f"such as system/*.{letters[0]}")
    elif not any(principal.allows(route.resource_type, c) for c in letters):
        need(principal, route.resource_type, letters[0])


def _own(reader: Reader, grant: Grant, rtype: str, rid: str, *, may_be_new: bool) -> None:
    """A patient may act on a resource only when it is in their compartment; a write
    that ``may_be_new`` may also create it (which must then land there:
    :func:`check_written`)."""
    if visible(reader, grant, rtype, rid):
        return
    if may_be_new and reader.read(rtype, rid) is None:
        return
    raise ForbiddenError(f"{rtype}/{rid} is not in your record")


def visible(reader: Reader, grant: Grant, rtype: str, rid: str) -> bool:
    """May the caller of ``grant`` see ``rtype/rid`` (does it exist, for them)?"""
    query = SearchQuery((rtype,), predicates=(Predicate("_id", "token", None, (rid,)),),
                        count=1, access=grant.access)
    return bool(reader.search(query).matches)


def check_replaceable(reader: Reader, rtype: str, rid: str) -> None:
    """Refuse (403) a patient's write to an id that names another patient's resource
    (a conditional update whose criteria matched nothing they can see, with an id in
    the body)."""
    grant = _GRANT.get()
    if grant is not None and grant.patient_ids is not None:
        _own(reader, grant, rtype, rid, may_be_new=True)


def check_written(resource: dict[str, Any], rtype: str,
                  index: Callable[[dict[str, Any]], IndexRows]) -> None:
    """Refuse (403) a patient's write of a resource outside their compartment (by the
    references ``index`` finds in it)."""
    grant = _GRANT.get()
    ids = grant.patient_ids if grant is not None else None
    if ids is None:
        return
    params = compartment_params("Patient").get(rtype, ())
    patients = {row.ref_id for row in index(resource).reference
                if row.param in params and row.ref_type == "Patient"}
    if rtype == "Patient":
        patients.add(str(resource.get("id")))
    # In the patient's compartment, and in no other patient's.
    if patients and patients <= set(ids):
        return
    raise ForbiddenError(f"A patient may write only their own record: this {rtype} must "
                         "refer to your Patient resource (e.g. as its subject), and to no "
                         "other patient")



__all__ = ["NEEDS", "PUBLIC", "Grant", "authorize", "check_replaceable", "check_written",
           "current", "grant_for", "granted", "need", "restrict", "searchable_types",
           "visible"]
