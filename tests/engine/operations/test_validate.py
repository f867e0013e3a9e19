"""``$validate`` (https://hl7.org/fhir/R4/operation-resource-validate.html) and validation
on every write (https://hl7.org/fhir/R4/http.html#create: 422 for a resource that breaks
its profiles), on each backend."""

from __future__ import annotations

from typing import Any

import pytest

from fhirhub.config import ConfigError, Settings
from fhirhub.engine import Engine, FhirRequest, FhirResponse
from fhirhub.fhir import json as fjson
from tests.support import body_of
from tests.support import engine_request as request

UKCORE_PATIENT = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
NHS = "https://fhir.nhs.uk/Id/nhs-number"






def patient(nhs: str = "9000000009", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": NHS, "value": nhs}],
            "name": [{"family": "Smith"}], **extra}


def severities(response: FhirResponse) -> list[str]:
    return [i["severity"] for i in body_of(response)["issue"]]


def count(engine: Engine, rtype: str) -> int:
    found = body_of(engine.handle(request("GET", rtype, query=[("_total", "accurate")])))
    return int(found["total"])


# -- on every write --------------------------------------------------------------------------

def test_a_create_that_breaks_an_invariant_is_refused_with_422(engine: Engine) -> None:
    response = engine.handle(request("POST", "Patient", patient(contact=[{"gender": "male"}])))
    assert response.status == 422
    issue = body_of(response)["issue"][0]
    assert issue["code"] == "invariant" and "pat-1" in issue["diagnostics"]
    assert issue["expression"] == ["Patient.contact[0]"]


def test_a_create_with_a_wrong_nhs_number_check_digit_is_refused(engine: Engine) -> None:
    response = engine.handle(request("POST", "Patient", patient("9000000008")))
    assert response.status == 422
    assert "Modulus 11" in body_of(response)["issue"][0]["diagnostics"]
    assert count(engine, "Patient") == 0


def test_a_malformed_resource_is_still_refused_with_400(engine: Engine) -> None:
    response = engine.handle(request("POST", "Patient", {"resourceType": "Patient",
                                                         "gender": 1}))
    assert response.status == 400


def test_an_update_and_a_patch_are_validated(engine: Engine) -> None:
    created = engine.handle(request("PUT", "Patient/p1", patient(id="p1")))
    assert created.status == 201
    bad = engine.handle(request("PUT", "Patient/p1", patient("9000000008", id="p1")))
    assert bad.status == 422
    patch = [{"op": "replace", "path": "/identifier/0/value", "value": "1234567890"}]
    patched = engine.handle(FhirRequest(
        method="PATCH", path="Patient/p1", body=fjson.dumps(patch),
        headers={"content-type": "application/json-patch+json"}, request_id="req-2"))
    assert patched.status == 422


def test_a_transaction_entry_that_breaks_a_profile_rolls_back_the_transaction(
        engine: Engine) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {"resource": patient("9000000008"), "request": {"method": "POST", "url": "Patient"}}]}
    response = engine.handle(request("POST", "", bundle))
    assert response.status == 422
    assert count(engine, "Patient") == 0


def test_an_unknown_claimed_profile_refuses_the_write(engine: Engine) -> None:
    response = engine.handle(request("POST", "Patient", patient(
        meta={"profile": ["http://example.org/StructureDefinition/unknown"]})))
    assert response.status == 422
    assert "not known" in body_of(response)["issue"][0]["diagnostics"]


def test_unknown_profiles_can_be_let_through_by_configuration(settings: Settings) -> None:
    engine = Engine(settings.with_(unknown_profiles="warning"))
    try:
        response = engine.handle(request("POST", "Patient", patient(
            meta={"profile": ["http://example.org/StructureDefinition/unknown"]})))
        assert response.status == 201
    finally:
        engine.store.close()


def test_a_required_profile_applies_to_every_resource_of_its_type(settings: Settings) -> None:
    engine = Engine(settings.with_(required_profiles=f"Patient={UKCORE_PATIENT}"))
    try:
        two_nhs_numbers = patient()
        two_nhs_numbers["identifier"].append({"system": NHS, "value": "9434765919"})
        refused = engine.handle(request("POST", "Patient", two_nhs_numbers))
        assert refused.status == 422
        assert "nhsNumber" in fjson.dumps(body_of(refused)).decode()
        assert engine.handle(request("POST", "Patient", patient())).status == 201
    finally:
        engine.store.close()


def test_a_required_profile_that_is_unknown_stops_start_up(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="REQUIRED_PROFILES"):
        Engine(settings.with_(required_profiles="Patient=http://example.org/nope"))


# -- $validate ---------------------------------------------------------------------------------

def test_validate_a_valid_resource_answers_200_with_no_error(engine: Engine) -> None:
    response = engine.handle(request("POST", "Patient/$validate", patient()))
    assert response.status == 200
    assert "error" not in severities(response)


def test_validate_with_nothing_to_say_answers_one_information_issue(engine: Engine) -> None:
    narrated = patient(text={"status": "generated",
                             "div": '<div xmlns="http://www.w3.org/1999/xhtml">Jane Smith</div>'})
    response = engine.handle(request("POST", "Patient/$validate", narrated))
    assert severities(response) == ["information"]


def test_validate_reports_every_issue_and_stores_nothing(engine: Engine) -> None:
    response = engine.handle(request("POST", "Patient/$validate", patient(
        "9000000008", contact=[{"gender": "male"}])))
    assert response.status == 200
    assert severities(response).count("error") == 2
    assert count(engine, "Patient") == 0


def test_validate_takes_the_resource_in_a_parameters_body(engine: Engine) -> None:
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient("9000000008")}]}
    response = engine.handle(request("POST", "Patient/$validate", params))
    assert response.status == 200
    assert "error" in severities(response)


def test_validate_against_a_profile_given_as_a_parameter(engine: Engine) -> None:
    two = patient()
    two["identifier"].append({"system": NHS, "value": "9434765919"})
    plain = engine.handle(request("POST", "Patient/$validate", two))
    assert "error" not in severities(plain)
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": two}, {"name": "profile", "valueCanonical": UKCORE_PATIENT}]}
    profiled = engine.handle(request("POST", "Patient/$validate", params))
    assert "error" in severities(profiled)


def test_validate_with_an_unknown_profile_is_404(engine: Engine) -> None:
    response = engine.handle(request("POST", "Patient/$validate", patient(),
                                     query=[("profile", "http://example.org/nope")]))
    assert response.status == 404


def test_validate_reports_structural_errors_without_refusing_the_call(engine: Engine) -> None:
    response = engine.handle(request("POST", "Patient/$validate",
                                     {"resourceType": "Patient", "gender": 1}))
    assert response.status == 200
    assert "error" in severities(response)


def test_validate_of_another_type_than_the_url_is_an_error_issue(engine: Engine) -> None:
    response = engine.handle(request("POST", "Observation/$validate", patient()))
    assert "error" in severities(response)


def test_validate_an_update_needs_the_id_of_the_url(engine: Engine) -> None:
    engine.handle(request("PUT", "Patient/p1", patient(id="p1")))
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient(id="other")},
        {"name": "mode", "valueCode": "update"}]}
    response = engine.handle(request("POST", "Patient/p1/$validate", params))
    assert "error" in severities(response)
    assert "id" in body_of(response)["issue"][0]["diagnostics"]


def test_validate_mode_update_at_type_level_is_400(engine: Engine) -> None:
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient()}, {"name": "mode", "valueCode": "update"}]}
    assert engine.handle(request("POST", "Patient/$validate", params)).status == 400


def test_validate_an_unknown_mode_is_400(engine: Engine) -> None:
    response = engine.handle(request("POST", "Patient/$validate", patient(),
                                     query=[("mode", "destroy")]))
    assert response.status == 400


def test_validate_mode_delete_of_a_missing_resource_is_404(engine: Engine) -> None:
    response = engine.handle(request("POST", "Patient/nope/$validate",
                                     query=[("mode", "delete")]))
    assert response.status == 404


def test_validate_the_stored_resource_with_get(engine: Engine) -> None:
    engine.handle(request("PUT", "Patient/p1", patient(id="p1")))
    response = engine.handle(request("GET", "Patient/p1/$validate",
                                     query=[("profile", UKCORE_PATIENT)]))
    assert response.status == 200
    assert "error" not in severities(response)


def test_validate_without_a_resource_is_400(engine: Engine) -> None:
    assert engine.handle(request("POST", "Patient/$validate")).status == 400


def test_an_unknown_operation_is_404(engine: Engine) -> None:
    response = engine.handle(request("POST", "Patient/$frobnicate", patient()))
    assert response.status == 404
    assert "$frobnicate" in body_of(response)["issue"][0]["diagnostics"]


def test_validate_at_system_level_is_404_naming_where_it_is_defined(engine: Engine) -> None:
    response = engine.handle(request("POST", "$validate", patient()))
    assert response.status == 404
    assert "[type]/$validate" in body_of(response)["issue"][0]["diagnostics"]


def test_the_capability_statement_lists_operations_and_supported_profiles(
        engine: Engine) -> None:
    statement = body_of(engine.handle(request("GET", "metadata")))
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {"name": "validate",
            "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"} in \
        by_type["Patient"]["operation"]
    assert "expand" in {op["name"] for op in by_type["ValueSet"]["operation"]}
    assert UKCORE_PATIENT in by_type["Patient"]["supportedProfile"]


def test_the_capability_statement_names_a_required_profile(settings: Settings) -> None:
    engine = Engine(settings.with_(required_profiles=f"Patient={UKCORE_PATIENT}"))
    try:
        statement = body_of(engine.handle(request("GET", "metadata")))
        patient_entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
        assert patient_entry["profile"] == UKCORE_PATIENT
        assert UKCORE_PATIENT in patient_entry["documentation"]
    finally:
        engine.store.close()


# -- a deployment's own profiles, stored on the server ------------------------------------------

CUSTOM = "https://example.org/fhir/StructureDefinition/patient-with-birthdate"


def _custom_profile() -> dict[str, Any]:
    return {"resourceType": "StructureDefinition", "id": "patient-with-birthdate",
            "url": CUSTOM, "name": "PatientWithBirthDate", "status": "active",
            "kind": "resource", "abstract": False, "type": "Patient",
            "baseDefinition": UKCORE_PATIENT, "derivation": "constraint",
            "differential": {"element": [
                {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1}]}}


def test_a_profile_stored_on_the_server_is_used_to_validate(engine: Engine) -> None:
    claims = patient(meta={"profile": [CUSTOM]})
    assert engine.handle(request("POST", "Patient", claims)).status == 422  # unknown yet
    assert engine.handle(request("PUT", "StructureDefinition/patient-with-birthdate",
                                 _custom_profile())).status == 201
    refused = engine.handle(request("POST", "Patient", claims))
    assert refused.status == 422
    assert "Patient.birthDate" in body_of(refused)["issue"][0]["diagnostics"]
    assert engine.handle(request("POST", "Patient", {**claims, "birthDate": "1990-01-02"})).status == 201

    assert engine.handle(request("DELETE", "StructureDefinition/patient-with-birthdate")).status \
        in (200, 204)
    assert engine.handle(request("POST", "Patient", {**claims, "birthDate": "1990-01-02"})).status == 422


def test_a_profile_stored_by_another_process_is_picked_up(settings: Settings) -> None:
    other = Engine(settings)
    engine = Engine(settings)
    try:
        assert other.handle(request("PUT", "StructureDefinition/patient-with-birthdate",
                                    _custom_profile())).status == 201
        engine.refresh_definitions()
        response = engine.handle(request("POST", "Patient/$validate",
                                         patient(meta={"profile": [CUSTOM]})))
        assert "error" in severities(response)
    finally:
        other.store.close()
        engine.store.close()


def test_a_profile_stored_in_a_transaction_is_used_to_validate(engine: Engine) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _custom_profile(),
         "request": {"method": "PUT", "url": "StructureDefinition/patient-with-birthdate"}}]}
    assert engine.handle(request("POST", "", bundle)).status == 200
    response = engine.handle(request("POST", "Patient/$validate",
                                     patient(meta={"profile": [CUSTOM]})))
    assert "error" in severities(response)
    assert "Patient.birthDate" in fjson.dumps(body_of(response)).decode()
