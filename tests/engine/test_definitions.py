"""The packaged R4 and UK Core conformance resources, installed into the database so that
they are read and searched like any resource (issue 3: "StructureDefinition, ValueSet,
CodeSystem and SearchParameter resources from R4 and UK Core are readable and searchable")."""

from __future__ import annotations

import pytest

from fhirhub.config import Settings
from fhirhub.engine import Engine, FhirRequest, FhirResponse
from fhirhub.engine.definitions import install, installed, packaged_resources
from tests.support import body_of


def get(engine: Engine, path: str, query: list[tuple[str, str]] | None = None) -> FhirResponse:
    return engine.handle(FhirRequest(method="GET", path=path, query=query or [],
                                     base_url="http://fhir.example.org/fhir", request_id="r"))




def test_installed_definitions_are_readable_and_searchable_and_installed_once(
        engine: Engine) -> None:
    assert not installed(engine)
    assert install(engine) == len(packaged_resources())
    assert installed(engine)

    patient = get(engine, "StructureDefinition/UKCore-Patient")
    assert patient.status == 200
    assert body_of(patient)["url"] == "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"

    found = body_of(get(engine, "ValueSet", [("url", "http://hl7.org/fhir/ValueSet/administrative-gender")]))
    assert [e["resource"]["id"] for e in found["entry"]] == ["administrative-gender"]
    uk = body_of(get(engine, "CodeSystem", [("url:below", "https://fhir.hl7.org.uk/CodeSystem/"),
                                            ("_summary", "count")]))
    assert uk["total"] > 50
    params = body_of(get(engine, "SearchParameter", [("base", "Patient"), ("code", "birthdate")]))
    assert params["entry"]

    expanded = get(engine, "ValueSet/administrative-gender/$expand")
    assert expanded.status == 200
    codes = {c["code"] for c in body_of(expanded)["expansion"]["contains"]}
    assert codes == {"male", "female", "other", "unknown"}

    assert install(engine) == 0


def test_definitions_install_with_authorisation_on(secured_settings: Settings,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The server installs its packaged content as the operator who started it: no token
    is needed."""
    from fhirhub.engine import definitions

    few = [r for r in packaged_resources() if r["resourceType"] == "ValueSet"][:3]
    monkeypatch.setattr(definitions, "packaged_resources", lambda: few)
    engine = Engine(secured_settings)
    try:
        assert install(engine) == 3
        assert all(engine.store.read("ValueSet", r["id"]) is not None for r in few)
    finally:
        engine.store.close()
