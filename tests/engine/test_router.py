"""From a method and a path below the FHIR base to the interaction they name, with no HTTP
(https://hl7.org/fhir/R4/http.html#summary, compartments:
https://hl7.org/fhir/R4/http.html#vsearch and https://hl7.org/fhir/R4/compartmentdefinition.html,
operations: https://hl7.org/fhir/R4/operations.html#executing)."""

from __future__ import annotations

import pytest

from fhirhub.engine.router import Route, route
from fhirhub.errors import Category, FhirError, InvalidError, NotAllowedError, NotFoundError

# -- every interaction shape of the summary table ------------------------------------------------


@pytest.mark.parametrize(("method", "path", "expected"), [
    # instance level
    ("GET", "Patient/123", Route("read", "Patient", "123")),
    ("GET", "Patient/123/_history/2", Route("vread", "Patient", "123", version="2")),
    ("PUT", "Patient/123", Route("update", "Patient", "123")),
    ("PATCH", "Patient/123", Route("patch", "Patient", "123")),
    ("DELETE", "Patient/123", Route("delete", "Patient", "123")),
    ("GET", "Patient/123/_history", Route("history-instance", "Patient", "123")),
    # type level
    ("POST", "Patient", Route("create", "Patient")),
    ("GET", "Patient", Route("search-type", "Patient")),
    ("POST", "Patient/_search", Route("search-type", "Patient")),
    ("GET", "Patient/_history", Route("history-type", "Patient")),
    ("PUT", "Patient", Route("conditional-update", "Patient")),
    ("DELETE", "Patient", Route("conditional-delete", "Patient")),
    ("PATCH", "Patient", Route("conditional-patch", "Patient")),
    # whole system
    ("GET", "metadata", Route("capabilities")),
    ("POST", "", Route("transaction")),
    ("GET", "", Route("search-system")),
    ("POST", "_search", Route("search-system")),
    ("GET", "_history", Route("history-system")),
])
def test_each_interaction_of_the_summary_table_is_routed(method: str, path: str,
                                                         expected: Route) -> None:
    assert route(method, path) == expected


def test_vread_keeps_the_version_as_written_for_the_interaction_to_judge() -> None:
    # Whether "x" is a version is the vread's business (it answers 404), not the router's.
    assert route("GET", "Patient/1/_history/x") == Route("vread", "Patient", "1", version="x")


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "$meta", Route("operation", operation="meta")),
    ("POST", "$convert", Route("operation", operation="convert")),
    ("POST", "Patient/$validate", Route("operation", "Patient", operation="validate")),
    ("GET", "Patient/$match", Route("operation", "Patient", operation="match")),
    ("GET", "Patient/123/$everything", Route("operation", "Patient", "123", operation="everything")),
    ("POST", "Patient/123/$meta-add", Route("operation", "Patient", "123", operation="meta-add")),
])
def test_operations_are_routed_at_system_type_and_instance_level(method: str, path: str,
                                                                 expected: Route) -> None:
    assert route(method, path) == expected


def test_compartment_search_for_one_type_is_routed() -> None:
    assert route("GET", "Patient/1/Observation") == Route(
        "compartment", "Patient", "1", compartment_type="Observation")


def test_compartment_search_for_every_type_is_routed() -> None:
    assert route("GET", "Patient/1/*") == Route("compartment", "Patient", "1", compartment_type="*")


def test_head_routes_as_get() -> None:
    assert route("HEAD", "Patient/1") == route("GET", "Patient/1")
    assert route("HEAD", "Patient") == route("GET", "Patient")
    assert route("HEAD", "metadata") == Route("capabilities")


@pytest.mark.parametrize("path", ["/Patient/1", "Patient/1/", "/Patient/1/"])
def test_leading_and_trailing_slashes_do_not_change_the_route(path: str) -> None:
    assert route("GET", path) == Route("read", "Patient", "1")


@pytest.mark.parametrize("rid", ["a", "9000000009", "A-b.c", "x" * 64,
                                 "3fa85f64-5717-4562-b3fc-2c963f66afa6"])
def test_ids_of_the_r4_id_syntax_are_accepted(rid: str) -> None:
    assert route("GET", f"Patient/{rid}").id == rid


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "Foo"),
    ("POST", "Foo"),
    ("GET", "Foo/1"),
    ("GET", "Foo/1/_history"),
    ("GET", "patient/1"),  # type names are case-sensitive
    ("GET", "Resource"),  # abstract types have no endpoint
    ("GET", "DomainResource/1"),
])
def test_unknown_resource_type_is_not_found(method: str, path: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        route(method, path)
    assert caught.value.category is Category.NOT_FOUND
    assert caught.value.issue_code == "not-supported"
    assert path.split("/", maxsplit=1)[0] in caught.value.diagnostics


@pytest.mark.parametrize("path", [
    "Patient/bad_id",
    "Patient/bad id",
    "Patient/" + "x" * 65,
    "Patient/a!b/_history",
    "Patient/a:b/_history/1",
    "Patient/a$b/Observation",
])
def test_bad_id_is_invalid_resource_id(path: str) -> None:
    with pytest.raises(InvalidError) as caught:
        route("GET", path)
    assert caught.value.category is Category.INVALID
    assert caught.value.spine_code == "INVALID_RESOURCE_ID"
    assert "1-64 letters, digits" in caught.value.diagnostics


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_bad_id_is_refused_for_writes_too(method: str) -> None:
    with pytest.raises(InvalidError) as caught:
        route(method, "Patient/bad_id")
    assert caught.value.spine_code == "INVALID_RESOURCE_ID"


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", ""),
    ("PUT", ""),
    ("PATCH", ""),
    ("POST", "Patient/1"),
    ("OPTIONS", "Patient"),
    ("OPTIONS", "Patient/1"),
])
def test_method_not_defined_at_a_url_is_not_allowed(method: str, path: str) -> None:
    with pytest.raises(NotAllowedError) as caught:
        route(method, path)
    assert caught.value.category is Category.NOT_ALLOWED
    assert caught.value.spine_code == "METHOD_NOT_ALLOWED"
    assert method in caught.value.diagnostics


def test_post_to_an_instance_says_where_create_lives() -> None:
    with pytest.raises(NotAllowedError, match=r"POST creates at Patient"):
        route("POST", "Patient/1")


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "metadata"),
    ("DELETE", "metadata"),
    ("POST", "_history"),
    ("GET", "_search"),
    ("POST", "Patient/_history"),
    ("DELETE", "Patient/_history"),
    ("GET", "Patient/_search"),
    ("POST", "Patient/1/_history"),
    ("PUT", "Patient/1/_history/2"),
    ("DELETE", "Patient/1/_history/2"),
])
def test_wrong_method_at_a_fixed_interaction_url_is_not_allowed(method: str, path: str) -> None:
    with pytest.raises(NotAllowedError):
        route(method, path)


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "Patient/1/Foo"),  # not a type, so not a compartment search
    ("GET", "Patient/1/Resource"),
    ("POST", "Patient/1/Observation"),  # compartment search is GET only
    ("GET", "Patient/1/Observation/2"),
    ("GET", "Patient/1/_history/2/extra"),
    ("GET", "Patient/1/_history/2/_history"),
])
def test_unknown_path_is_not_found_and_names_the_path(method: str, path: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        route(method, path)
    assert caught.value.spine_code == "INVALID_REQUEST"
    assert "No FHIR interaction is defined" in caught.value.diagnostics
    assert path in caught.value.diagnostics


def test_every_routing_error_is_a_fhir_error_with_one_issue() -> None:
    for method, path in [("GET", "Foo"), ("GET", "Patient/bad_id"), ("DELETE", ""),
                         ("GET", "Patient/1/Foo")]:
        with pytest.raises(FhirError) as caught:
            route(method, path)
        assert len(caught.value.issues) == 1
        assert caught.value.issues[0].severity == "error"
