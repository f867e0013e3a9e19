"""The terminology operations through the engine, on each backend
(https://hl7.org/fhir/R4/terminology-service.html): GET with query parameters, POST with a
Parameters body, the instance level over stored resources, and every error as an
OperationOutcome with the right status."""

from __future__ import annotations

from typing import Any

from fhirhub.engine import Engine, FhirResponse
from tests.support import body_of
from tests.support import engine_request as request

JSON_HEADERS = {"content-type": "application/fhir+json"}
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER = "http://hl7.org/fhir/administrative-gender"
V2_SEX = "http://terminology.hl7.org/CodeSystem/v2-0001"
SNOMED = "http://snomed.info/sct"






def get(engine: Engine, path: str, **query: str) -> FhirResponse:
    return engine.handle(request("GET", path, query=list(query.items())))


def post(engine: Engine, path: str, *parameters: dict[str, Any]) -> FhirResponse:
    return engine.handle(request("POST", path, {"resourceType": "Parameters", "parameter": list(parameters)}))


def value(response: FhirResponse, name: str) -> Any:
    """The value of the first output parameter ``name`` (None if absent)."""
    assert response.status == 200, body_of(response)
    for p in body_of(response)["parameter"]:
        if p["name"] == name:
            return next(v for k, v in p.items() if k.startswith("value"))
    return None


def error(response: FhirResponse, status: int) -> str:
    """The diagnostics of the OperationOutcome ``response`` must be, with ``status``."""
    outcome = body_of(response)
    assert response.status == status, outcome
    assert outcome["resourceType"] == "OperationOutcome"
    diagnostics: str = outcome["issue"][0]["diagnostics"]
    return diagnostics


def issue_code(response: FhirResponse) -> str:
    code: str = body_of(response)["issue"][0]["code"]
    return code


def store(engine: Engine, resource: dict[str, Any]) -> None:
    response = engine.handle(request("PUT", f"{resource['resourceType']}/{resource['id']}", resource))
    assert response.status in (200, 201), body_of(response)


# -- CodeSystem/$lookup ---------------------------------------------------------------------------


def test_lookup_by_get_returns_display_and_hierarchy(engine: Engine) -> None:
    response = get(engine, "CodeSystem/$lookup", system="http://terminology.hl7.org/CodeSystem/v3-ActCode",
                   code="IMP")
    assert value(response, "display") == "inpatient encounter"
    assert value(response, "name") == "v3.ActCode"
    props = [p["part"] for p in body_of(response)["parameter"] if p["name"] == "property"]
    assert [{"name": "code", "valueCode": "child"}, {"name": "value", "valueCode": "ACUTE"}] in props


def test_lookup_by_post_with_a_coding_and_properties(engine: Engine) -> None:
    response = post(engine, "CodeSystem/$lookup",
                    {"name": "coding", "valueCoding": {"system": GENDER, "code": "female"}},
                    {"name": "property", "valueCode": "definition"})
    assert value(response, "display") == "Female"
    assert value(response, "version") == "4.0.1"
    props = [p for p in body_of(response)["parameter"] if p["name"] == "property"]
    assert [p["part"][0]["valueCode"] for p in props] == ["definition"]


def test_lookup_errors_are_operation_outcomes(engine: Engine) -> None:
    assert "needs a code" in error(get(engine, "CodeSystem/$lookup", system=GENDER), 400)
    assert "needs the code's system" in error(get(engine, "CodeSystem/$lookup", code="male"), 400)
    assert "not known to this server" in error(
        get(engine, "CodeSystem/$lookup", system="http://example.org/cs", code="a"), 404)
    unknown_code = get(engine, "CodeSystem/$lookup", system=GENDER, code="nope")
    assert "'nope' is not a code of" in error(unknown_code, 404)
    snomed = get(engine, "CodeSystem/$lookup", system=SNOMED, code="22298006")
    assert "content is not available" in error(snomed, 404)
    assert issue_code(snomed) == "not-supported"
    assert "must be a Coding" in error(post(engine, "CodeSystem/$lookup",
                                             {"name": "coding", "valueString": "male"}), 400)
    assert "Version 3 of the code system" in error(
        get(engine, "CodeSystem/$lookup", system=GENDER, code="male", version="3"), 404)
    # $lookup is at type level only
    assert "is not defined on CodeSystem/x" in error(
        get(engine, "CodeSystem/x/$lookup", system=GENDER, code="male"), 404)
    assert error(get(engine, "Patient/$lookup", system=GENDER, code="male"), 404)


# -- CodeSystem/$validate-code --------------------------------------------------------------------


def test_code_system_validate_code_by_get_checks_code_and_display(engine: Engine) -> None:
    good = get(engine, "CodeSystem/$validate-code", url=GENDER, code="male")
    assert value(good, "result") is True and value(good, "display") == "Male"
    bad = get(engine, "CodeSystem/$validate-code", url=GENDER, code="MALE")
    assert value(bad, "result") is False
    assert "'MALE' is not a code of" in value(bad, "message")
    # a display that is none of the code's designations makes it false too
    response = get(engine, "CodeSystem/$validate-code", url=GENDER, code="male", display="Man")
    assert value(response, "result") is False
    assert "preferred display is 'Male'" in value(response, "message")
    assert value(response, "display") == "Male"


def test_code_system_validate_code_by_post_with_a_coding(engine: Engine) -> None:
    response = post(engine, "CodeSystem/$validate-code", {"name": "url", "valueUri": V2_SEX},
                    {"name": "coding", "valueCoding": {"system": V2_SEX, "code": "F"}})
    assert value(response, "result") is True
    other = post(engine, "CodeSystem/$validate-code", {"name": "url", "valueUri": V2_SEX},
                 {"name": "coding", "valueCoding": {"system": GENDER, "code": "female"}})
    assert value(other, "result") is False
    assert f"system is {GENDER}, not {V2_SEX}" in value(other, "message")


def test_code_system_validate_code_for_snomed_cannot_be_checked(engine: Engine) -> None:
    response = get(engine, "CodeSystem/$validate-code", url=SNOMED, code="22298006")
    assert value(response, "result") is False
    assert "could not be checked" in value(response, "message")
    assert value(response, "x-caused-by-unknown-system") == SNOMED


def test_code_system_validate_code_on_a_stored_code_system(engine: Engine) -> None:
    store(engine, {"resourceType": "CodeSystem", "id": "colours", "url": "http://example.org/colours",
                   "status": "active", "content": "complete", "caseSensitive": True,
                   "concept": [{"code": "red", "display": "Red"}]})
    assert value(get(engine, "CodeSystem/colours/$validate-code", code="red"), "result") is True
    assert value(get(engine, "CodeSystem/colours/$validate-code", code="blue"), "result") is False
    assert "is not on this server" in error(get(engine, "CodeSystem/other/$validate-code", code="x"), 404)


def test_code_system_validate_code_errors(engine: Engine) -> None:
    assert "needs the code system" in error(get(engine, "CodeSystem/$validate-code", code="x"), 400)
    assert "A code is needed" in error(get(engine, "CodeSystem/$validate-code", url=GENDER), 400)
    assert "not known to this server" in error(
        get(engine, "CodeSystem/$validate-code", url="http://example.org/cs", code="x"), 404)


# -- ValueSet/$expand -----------------------------------------------------------------------------


def test_expand_by_get_with_filter_and_paging(engine: Engine) -> None:
    response = get(engine, "ValueSet/$expand", url=GENDER_VS, count="2", offset="1")
    assert response.status == 200, body_of(response)
    expansion = body_of(response)["expansion"]
    assert [c["code"] for c in expansion["contains"]] == ["female", "other"]
    assert (expansion["total"], expansion["offset"]) == (4, 1)
    filtered = body_of(get(engine, "ValueSet/$expand", url=GENDER_VS, filter="fem"))["expansion"]
    assert [c["code"] for c in filtered["contains"]] == ["female"]
    assert filtered["parameter"] == [{"name": "filter", "valueString": "fem"}]


def test_expand_by_post_with_a_value_set_parameter_or_body(engine: Engine) -> None:
    vs = {"resourceType": "ValueSet", "status": "active", "compose": {"include": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
         "filter": [{"property": "concept", "op": "descendent-of", "value": "IMP"}]}]}}
    response = post(engine, "ValueSet/$expand", {"name": "valueSet", "resource": vs},
                    {"name": "activeOnly", "valueBoolean": True})
    assert response.status == 200, body_of(response)
    assert [c["code"] for c in body_of(response)["expansion"]["contains"]] == ["ACUTE", "NONAC"]
    bare = engine.handle(request("POST", "ValueSet/$expand", vs))
    assert bare.status == 200 and body_of(bare)["expansion"]["total"] == 2


def test_expand_a_stored_value_set(engine: Engine) -> None:
    store(engine, {"resourceType": "ValueSet", "id": "mine", "url": "http://example.org/vs",
                   "status": "active", "compose": {"include": [{"valueSet": [GENDER_VS]}],
                               "exclude": [{"system": GENDER, "concept": [{"code": "unknown"}]}]}})
    response = get(engine, "ValueSet/mine/$expand")
    assert response.status == 200, body_of(response)
    assert [c["code"] for c in body_of(response)["expansion"]["contains"]] == ["male", "female", "other"]
    assert "ValueSet/none is not on this server" in error(get(engine, "ValueSet/none/$expand"), 404)
    assert engine.handle(request("DELETE", "ValueSet/mine")).status in (200, 204)
    assert "has been deleted" in error(get(engine, "ValueSet/mine/$expand"), 410)


def test_expand_uses_the_packaged_expansion_for_snomed_value_sets(engine: Engine) -> None:
    response = get(engine, "ValueSet/$expand", url="http://hl7.org/fhir/ValueSet/body-site", count="3")
    assert response.status == 200, body_of(response)
    contains = body_of(response)["expansion"]["contains"]
    assert len(contains) == 3 and contains[0]["system"] == SNOMED


def test_expand_errors_are_operation_outcomes(engine: Engine) -> None:
    assert "needs the value set" in error(get(engine, "ValueSet/$expand"), 400)
    unknown = get(engine, "ValueSet/$expand", url="http://example.org/x")
    assert "is not known to this server" in error(unknown, 404)
    snomed = get(engine, "ValueSet/$expand", url="http://hl7.org/fhir/ValueSet/use-context")
    assert "cannot be expanded on this server" in error(snomed, 422)
    assert issue_code(snomed) == "not-supported"
    negative = get(engine, "ValueSet/$expand", url=GENDER_VS, count="-1")
    assert "'count' must be a whole number" in error(negative, 400)
    assert "'activeOnly' must be true or false" in error(
        get(engine, "ValueSet/$expand", url=GENDER_VS, activeOnly="yes"), 400)
    wrong = post(engine, "ValueSet/$expand", {"name": "valueSet", "resource": {"resourceType": "Patient"}})
    assert "must be a ValueSet" in error(wrong, 400)
    assert "Version 1 of the value set" in error(
        get(engine, "ValueSet/$expand", url=GENDER_VS, valueSetVersion="1"), 404)
    assert error(engine.handle(request("DELETE", "ValueSet/$expand")), 405)


# -- ValueSet/$validate-code ----------------------------------------------------------------------


def test_value_set_validate_code_by_get(engine: Engine) -> None:
    good = get(engine, "ValueSet/$validate-code", url=GENDER_VS, system=GENDER, code="other")
    assert value(good, "result") is True and value(good, "display") == "Other"
    bad = get(engine, "ValueSet/$validate-code", url=GENDER_VS, system=GENDER, code="nope")
    assert value(bad, "result") is False and GENDER_VS in value(bad, "message")


def test_value_set_validate_code_by_post_with_a_codeable_concept(engine: Engine) -> None:
    concept = {"coding": [{"system": "http://example.org/other", "code": "x"},
                          {"system": GENDER, "code": "male"}]}
    response = post(engine, "ValueSet/$validate-code", {"name": "url", "valueUri": GENDER_VS},
                    {"name": "codeableConcept", "valueCodeableConcept": concept})
    assert value(response, "result") is True  # valid if any coding is
    none_valid = post(engine, "ValueSet/$validate-code", {"name": "url", "valueUri": GENDER_VS},
                      {"name": "codeableConcept", "valueCodeableConcept": {"coding": concept["coding"][:1]}})
    assert value(none_valid, "result") is False


def test_value_set_validate_code_for_snomed_code_says_it_could_not_check(engine: Engine) -> None:
    response = get(engine, "ValueSet/$validate-code", url="http://hl7.org/fhir/ValueSet/clinical-findings",
                   system=SNOMED, code="22298006")
    assert value(response, "result") is False
    assert "could not be checked" in value(response, "message")
    assert value(response, "x-caused-by-unknown-system") == SNOMED


def test_value_set_validate_code_against_a_given_or_stored_value_set(engine: Engine) -> None:
    vs = {"resourceType": "ValueSet", "id": "yes", "url": "http://example.org/yes", "status": "active",
          "compose": {"include": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0136",
                                   "concept": [{"code": "Y"}]}]}}
    given = post(engine, "ValueSet/$validate-code", {"name": "valueSet", "resource": vs},
                 {"name": "code", "valueCode": "Y"})
    assert value(given, "result") is True  # a bare code, in any system of the value set
    store(engine, vs)
    assert value(get(engine, "ValueSet/yes/$validate-code", code="N"), "result") is False


def test_value_set_validate_code_errors(engine: Engine) -> None:
    assert "needs the value set" in error(get(engine, "ValueSet/$validate-code", code="x"), 400)
    assert "A code is needed" in error(get(engine, "ValueSet/$validate-code", url=GENDER_VS), 400)
    assert "not known to this server" in error(
        get(engine, "ValueSet/$validate-code", url="http://example.org/x", code="a"), 404)


# -- ConceptMap/$translate ------------------------------------------------------------------------


def test_translate_by_get_and_by_post_in_reverse(engine: Engine) -> None:
    response = get(engine, "ConceptMap/$translate", system=GENDER, code="female", targetsystem=V2_SEX)
    assert value(response, "result") is True
    match = next(p for p in body_of(response)["parameter"] if p["name"] == "match")
    assert {"name": "concept", "valueCoding": {"system": V2_SEX, "code": "F"}} in match["part"]
    # POST, with a coding, the other way round
    response = post(engine, "ConceptMap/$translate",
                    {"name": "coding", "valueCoding": {"system": V2_SEX, "code": "M"}},
                    {"name": "reverse", "valueBoolean": True})
    match = next(p for p in body_of(response)["parameter"] if p["name"] == "match")
    assert {"name": "concept", "valueCoding": {"system": GENDER, "code": "male"}} in match["part"]


def test_translate_with_a_stored_concept_map(engine: Engine) -> None:
    element = {"code": "male", "target": [{"code": "m", "equivalence": "equal"}]}
    store(engine, {"resourceType": "ConceptMap", "id": "mine", "url": "http://example.org/cm",
                   "status": "active",
                   "group": [{"source": GENDER, "target": "http://example.org/b", "element": [element]}]})
    response = get(engine, "ConceptMap/mine/$translate", system=GENDER, code="male")
    assert value(response, "result") is True
    missing = get(engine, "ConceptMap/mine/$translate", system=GENDER, code="female")
    assert value(missing, "result") is False and "'female'" in value(missing, "message")


def test_translate_errors_are_operation_outcomes(engine: Engine) -> None:
    assert "A code is needed" in error(get(engine, "ConceptMap/$translate", system=GENDER), 400)
    assert "needs the code's system" in error(get(engine, "ConceptMap/$translate", code="male"), 400)
    assert "concept map http://example.org/cm is not known" in error(
        get(engine, "ConceptMap/$translate", url="http://example.org/cm", system=GENDER, code="male"), 404)
