"""A server's own SearchParameters, through the engine on each backend
(https://hl7.org/fhir/R4/searchparameter.html; unknown parameters and ``handling``:
https://hl7.org/fhir/R4/search.html#errors; the CapabilityStatement's ``searchParam``:
https://hl7.org/fhir/R4/capabilitystatement-definitions.html#CapabilityStatement.rest.resource.searchParam).

A custom parameter is usable for searches and for the indexing of every resource written
from then on, at once (README "Custom search parameters and reindex").
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest

from fhirhub.config import Settings
from fhirhub.engine import Engine, FhirResponse
from fhirhub.engine.search_params import check_search_parameter, is_custom
from fhirhub.errors import UnprocessableError
from fhirhub.fhir import json as fjson
from fhirhub.fhir.definitions import search_parameters
from fhirhub.search.registry import registry
from fhirhub.search.types import IndexRows
from fhirhub.store import StoredVersion
from tests.support import body_of, engine_request

Json = dict[str, Any]
MAIDEN_NAME = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName"
SP_URL = "https://fhir.example.org/SearchParameter/mothers-maiden-name"
CODE = "mothers-maiden-name"


def maiden_name_parameter(**changes: Any) -> Json:
    return {"resourceType": "SearchParameter", "id": CODE, "url": SP_URL,
            "name": "MothersMaidenName", "status": "active",
            "description": "Search by the mother's maiden name", "code": CODE,
            "base": ["Patient"], "type": "string",
            "expression": f"Patient.extension.where(url='{MAIDEN_NAME}').value", **changes}


def patient(rid: str, maiden_name: str, **extra: Any) -> Json:
    return {"resourceType": "Patient", "id": rid, "name": [{"family": "Smith", "given": ["Jo"]}],
            "extension": [{"url": MAIDEN_NAME, "valueString": maiden_name}], **extra}


def put(engine: Engine, resource: Json) -> FhirResponse:
    path = f"{resource['resourceType']}/{resource['id']}"
    response = engine.handle(engine_request("PUT", path, resource))
    assert response.status in (200, 201), body_of(response)
    return response


def search(engine: Engine, query: str, **headers: str) -> FhirResponse:
    return engine.handle(engine_request("GET", "Patient", query=parse_qsl(query),
                                        headers=headers))


def found(engine: Engine, query: str) -> list[str]:
    response = search(engine, query)
    assert response.status == 200, body_of(response)
    return sorted(e["resource"]["id"] for e in body_of(response).get("entry", [])
                  if e["search"]["mode"] == "match")


def outcome_entries(response: FhirResponse) -> list[Json]:
    return [e["resource"] for e in body_of(response).get("entry", [])
            if e["search"]["mode"] == "outcome"]


def search_params(engine: Engine, rtype: str) -> dict[str, Json]:
    statement = body_of(engine.handle(engine_request("GET", "metadata")))
    [resource] = [r for r in statement["rest"][0]["resource"] if r["type"] == rtype]
    return {p["name"]: p for p in resource["searchParam"]}


# -- usable at once ---------------------------------------------------------------------------


def test_patients_written_after_a_custom_parameter_are_found_by_it_at_once(engine: Engine) -> None:
    assert put(engine, maiden_name_parameter()).status == 201
    put(engine, patient("p1", "Robinson"))
    put(engine.trusted(), patient("p2", "Jones"))  # as an import of prevalidated lines
    assert found(engine, f"{CODE}=robin") == ["p1"]
    assert found(engine, f"{CODE}:exact=Jones") == ["p2"]
    assert found(engine, f"{CODE}=smith") == []
    # ... and in conditional criteria: the existing one matches, nothing is created.
    again = {k: v for k, v in patient("ignored", "Robinson").items() if k != "id"}
    response = engine.handle(engine_request("POST", "Patient", again,
                                            headers={"if-none-exist": f"{CODE}:exact=Robinson"}))
    assert response.status == 200
    assert found(engine, f"{CODE}=robinson") == ["p1"]


def test_a_custom_parameter_stored_in_a_transaction_replaces_the_official_one_with_its_code(
        engine: Engine) -> None:
    family = maiden_name_parameter(id="given-as-family", code="family",
                                   url="https://fhir.example.org/SearchParameter/family",
                                   expression="Patient.name.given")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": family, "request": {"method": "PUT", "url": "SearchParameter/given-as-family"}}]}
    assert engine.handle(engine_request("POST", "", bundle)).status == 200
    put(engine, patient("p1", "Robinson"))
    assert found(engine, "family=jo") == ["p1"]
    assert found(engine, "family=smith") == []
    assert search_params(engine, "Patient")["family"]["definition"] == \
        "https://fhir.example.org/SearchParameter/family"


# -- the CapabilityStatement ------------------------------------------------------------------


def test_capability_statement_lists_a_custom_parameter_while_it_is_stored(engine: Engine) -> None:
    assert CODE not in search_params(engine, "Patient")
    put(engine, maiden_name_parameter())
    listed = search_params(engine, "Patient")[CODE]
    assert listed["definition"] == SP_URL
    assert listed["type"] == "string"
    assert listed["documentation"] == (
        f"Defined on this server (SearchParameter/{CODE}): Search by the mother's maiden name")
    assert "documentation" not in search_params(engine, "Patient")["family"]
    assert CODE not in search_params(engine, "Practitioner")
    assert engine.handle(engine_request("DELETE", f"SearchParameter/{CODE}")).status in (200, 204)
    assert CODE not in search_params(engine, "Patient")


def test_capability_statement_lists_composite_and_special_parameters_it_has() -> None:
    from fhirhub.engine.capabilities import capability_statement

    statement = capability_statement("", "2026-01-01")
    [observation] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Observation"]
    params = {p["name"]: p for p in observation["searchParam"]}
    assert params["code-value-quantity"]["type"] == "composite"
    assert params["code-value-quantity"]["definition"] == \
        "http://hl7.org/fhir/SearchParameter/Observation-code-value-quantity"
    assert params["_text"]["type"] == "special"
    assert params["_content"]["type"] == "special"
    assert "_has" not in params  # not a SearchParameter of R4's: never invented
    assert set(params) == set(registry().for_type("Observation"))


# -- refused, removed ---------------------------------------------------------------------------


def test_a_custom_parameter_that_cannot_be_compiled_is_refused_and_nothing_is_stored(
        engine: Engine) -> None:
    bad = maiden_name_parameter(expression="Patient.name.where(")
    response = engine.handle(engine_request("PUT", f"SearchParameter/{CODE}", bad))
    assert response.status == 422
    outcome = body_of(response)
    assert outcome["resourceType"] == "OperationOutcome"
    [issue] = outcome["issue"]
    assert issue["severity"] == "error"
    assert issue["diagnostics"].startswith(
        f"The SearchParameter '{CODE}' cannot be used: The FHIRPath expression "
        "'Patient.name.where(' is not valid")
    assert issue["expression"] == ["SearchParameter.expression"]
    assert engine.handle(engine_request("GET", f"SearchParameter/{CODE}")).status == 404
    # In a transaction, the whole transaction is refused.
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient("p1", "Robinson"), "request": {"method": "PUT", "url": "Patient/p1"}},
        {"resource": bad, "request": {"method": "PUT", "url": f"SearchParameter/{CODE}"}}]}
    response = engine.handle(engine_request("POST", "", bundle))
    assert response.status == 422
    assert "cannot be used" in body_of(response)["issue"][0]["diagnostics"]
    assert engine.handle(engine_request("GET", "Patient/p1")).status == 404
    assert engine.registry is registry()


def test_a_custom_parameter_with_an_unsupported_resolve_is_refused_naming_the_form() -> None:
    with pytest.raises(UnprocessableError, match=r"uses resolve\(\) other than as "
                       r"'X.where\(resolve\(\) is Type\)'"):
        check_search_parameter(maiden_name_parameter(expression="Patient.link.other.resolve()"))


def test_retired_and_official_parameters_are_not_checked_as_custom() -> None:
    check_search_parameter(maiden_name_parameter(status="retired", expression="Patient.name.where("))
    official = next(sp for sp in search_parameters() if sp["id"] == "individual-family")
    assert not is_custom(official)
    assert is_custom(maiden_name_parameter())


def test_stored_official_copies_and_parameters_that_do_not_compile_are_not_used(
        engine: Engine) -> None:
    put(engine, next(sp for sp in search_parameters() if sp["id"] == "individual-family"))
    # As if written by a version of fhirhub that checked less: straight into the store.
    bad = maiden_name_parameter(id="bad", code="bad", url="https://x.example/bad",
                                expression="Patient.extension.where(url=")
    stored = StoredVersion("SearchParameter", "bad", 1, "2026-01-01T00:00:00.000000Z", False,
                           fjson.dumps(bad))
    engine.store.run([], lambda tx: tx.write(stored, IndexRows()))
    engine.refresh_definitions()
    assert engine.registry is registry()  # neither is custom: no server start stops on them
    put(engine, maiden_name_parameter())
    put(engine, patient("p1", "Robinson"))
    assert found(engine, f"{CODE}=rob") == ["p1"]
    assert engine.registry.get("Patient", "bad") is None


def _assert_unknown(engine: Engine, code: str) -> None:
    lenient = search(engine, f"{code}=rob")
    assert lenient.status == 200
    [outcome] = outcome_entries(lenient)
    assert outcome["issue"][0]["severity"] == "warning"
    assert code in outcome["issue"][0]["diagnostics"]
    strict = search(engine, f"{code}=rob", prefer="handling=strict")
    assert strict.status == 400
    assert code in body_of(strict)["issue"][0]["diagnostics"]


def test_deleting_or_retiring_a_custom_parameter_makes_it_unknown_again(engine: Engine) -> None:
    other = "maiden-name-2"
    put(engine, maiden_name_parameter())
    put(engine, maiden_name_parameter(id=other, code=other, url=f"{SP_URL}-2"))
    put(engine, patient("p1", "Robinson"))
    assert found(engine, f"{CODE}=rob") == found(engine, f"{other}=rob") == ["p1"]
    assert engine.handle(engine_request("DELETE", f"SearchParameter/{CODE}")).status in (200, 204)
    _assert_unknown(engine, CODE)
    put(engine, maiden_name_parameter(id=other, code=other, url=f"{SP_URL}-2", status="retired"))
    _assert_unknown(engine, other)
    assert engine.registry is registry()


# -- other worker processes ---------------------------------------------------------------------


def test_another_worker_uses_a_custom_parameter_after_its_refresh(settings: Settings) -> None:
    writer, other = Engine(settings), Engine(settings)
    try:
        put(writer, maiden_name_parameter())
        put(writer, patient("p1", "Robinson"))
        other.refresh_definitions()  # the app does this every 5 s
        assert found(other, f"{CODE}=rob") == ["p1"]
        put(other, patient("p2", "Robertson"))  # indexed by the other worker
        assert found(writer, f"{CODE}=rob") == ["p1", "p2"]
        assert CODE in search_params(other, "Patient")
    finally:
        writer.store.close()
        other.store.close()
