"""The engine's authorisation rules (fhirhub.engine.guard), without HTTP: SMART scopes
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html) and the patient
compartment (https://hl7.org/fhir/R4/compartmentdefinition.html)."""

from __future__ import annotations

from typing import Any

import pytest

from fhirhub.auth.principal import UNCHECKED, Principal
from fhirhub.auth.scopes import Grants, parse_scopes
from fhirhub.engine import guard
from fhirhub.engine.router import route
from fhirhub.errors import ForbiddenError
from fhirhub.search.index import index_resource
from fhirhub.search.types import Access, IndexRows, SearchQuery


def principal(scopes: str, kind: str = "system") -> Principal:
    return Principal(kind, Grants.of(parse_scopes(scopes)))


def patient_grant(*ids: str) -> guard.Grant:
    return guard.Grant(principal("patient/*.cruds", "patient"),
                       Access(None, ("Patient", ids)))


def index(resource: dict[str, Any]) -> IndexRows:
    return index_resource(resource)


def observation(*refs: tuple[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                            "code": {"text": "x"}}
    for element, ref in refs:
        body[element] = {"reference": ref} if element == "subject" else [{"reference": ref}]
    return body


def test_every_interaction_the_router_names_has_a_rule() -> None:
    paths = [("GET", "Patient/1"), ("GET", "Patient/1/_history/1"), ("PUT", "Patient/1"),
             ("PATCH", "Patient/1"), ("DELETE", "Patient/1"), ("POST", "Patient"),
             ("GET", "Patient"), ("GET", "Patient/_history"), ("GET", "Patient/1/_history"),
             ("GET", "Patient/1/Observation"), ("PUT", "Patient"), ("DELETE", "Patient"),
             ("PATCH", "Patient")]
    for method, path in paths:
        assert route(method, path).interaction in guard.NEEDS, path
    public = {route("GET", "metadata").interaction, route("GET", "auth/jwks").interaction,
              route("POST", "auth/token").interaction,
              route("GET", ".well-known/smart-configuration").interaction}
    assert public == guard.PUBLIC


def test_restrict_leaves_a_query_alone_outside_a_request() -> None:
    query = SearchQuery(("Patient",))
    assert guard.restrict(query) is query


def test_restrict_applies_the_requests_access() -> None:
    grant = patient_grant("alice")
    with guard.granted(grant):
        assert guard.restrict(SearchQuery(("Patient",))).access == grant.access
    assert guard.current() is None


def test_searchable_types_are_those_asked_each_needing_search() -> None:
    grant = guard.Grant(principal("system/Patient.rs system/Observation.r"), Access())
    assert guard.searchable_types(grant, ("Patient",)) == ("Patient",)
    with pytest.raises(ForbiddenError, match="search Observation"):
        guard.searchable_types(grant, ("Observation",))
    assert guard.searchable_types(grant, ()) == ("Patient",)


def test_a_wildcard_search_scope_means_every_type() -> None:
    grant = guard.Grant(principal("system/*.s"), Access())
    assert guard.searchable_types(grant, ()) == ()


def test_a_token_that_may_search_nothing_is_refused_a_system_search() -> None:
    grant = guard.Grant(principal("system/Patient.r"), Access())
    with pytest.raises(ForbiddenError, match="search any resource type"):
        guard.searchable_types(grant, ())


def test_unchecked_callers_search_what_they_ask() -> None:
    assert guard.searchable_types(guard.Grant(UNCHECKED, None), ()) == ()


def test_need_names_the_missing_scope() -> None:
    with pytest.raises(ForbiddenError, match=r"user/Observation\.c"):
        guard.need(principal("user/Observation.rs", "staff"), "Observation", "c")


@pytest.mark.parametrize("refs", [(("subject", "Patient/alice"),),
                                  (("subject", "Patient/alice"),
                                   ("performer", "Patient/alice"))])
def test_a_patient_may_write_into_their_own_record(refs: tuple[tuple[str, str], ...]) -> None:
    with guard.granted(patient_grant("alice")):
        guard.check_written(observation(*refs), "Observation", index)


@pytest.mark.parametrize("refs", [(("subject", "Patient/bob"),),
                                  (("subject", "Patient/bob"), ("performer", "Patient/alice")),
                                  (("subject", "Patient/alice"), ("performer", "Patient/bob")),
                                  (("subject", "Group/g"),), ()])
def test_a_patient_may_not_write_outside_their_record(refs: tuple[tuple[str, str], ...]) -> None:
    with guard.granted(patient_grant("alice")), pytest.raises(ForbiddenError):
        guard.check_written(observation(*refs), "Observation", index)


def test_a_patient_may_write_only_their_own_patient_resource() -> None:
    with guard.granted(patient_grant("alice")):
        guard.check_written({"resourceType": "Patient", "id": "alice"}, "Patient", index)
        with pytest.raises(ForbiddenError):
            guard.check_written({"resourceType": "Patient", "id": "bob"}, "Patient", index)
        with pytest.raises(ForbiddenError):
            guard.check_written({"resourceType": "Patient", "id": "alice", "link": [
                {"other": {"reference": "Patient/bob"}, "type": "seealso"}]}, "Patient", index)


def test_a_patient_without_a_patient_resource_may_write_nothing() -> None:
    with guard.granted(patient_grant()), pytest.raises(ForbiddenError):
        guard.check_written(observation(("subject", "Patient/alice")), "Observation", index)


def test_writes_of_other_callers_are_not_checked_for_a_compartment() -> None:
    with guard.granted(guard.Grant(principal("system/*.cruds"), Access())):
        guard.check_written(observation(("subject", "Patient/bob")), "Observation", index)
