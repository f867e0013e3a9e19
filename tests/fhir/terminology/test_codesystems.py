"""Code systems on their own: the concept index, hierarchy, case sensitivity, content modes
(https://hl7.org/fhir/R4/codesystem.html) and $lookup
(https://hl7.org/fhir/R4/codesystem-operation-lookup.html)."""

from __future__ import annotations

from typing import Any

import pytest

from fhirhub.errors import NotFoundError
from fhirhub.fhir.definitions import Definitions
from fhirhub.fhir.terminology import Terminology, terminology

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
GENDER = "http://hl7.org/fhir/administrative-gender"
V2_SEX = "http://terminology.hl7.org/CodeSystem/v2-0001"
SNOMED = "http://snomed.info/sct"


def params(parameters: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [p for p in parameters["parameter"] if p["name"] == name]


def properties(parameters: dict[str, Any]) -> list[tuple[str, Any]]:
    found = []
    for p in params(parameters, "property"):
        code, value = p["part"][0]["valueCode"], p["part"][1]
        found.append((code, next(v for k, v in value.items() if k.startswith("value"))))
    return found


def test_nested_concepts_and_child_properties_both_make_the_hierarchy() -> None:
    index = terminology().code_system_index(ROLE_CODE)
    assert index is not None
    # DAUADOPT is nested under CHLDADOPT and named as a child of DAUC: two parents.
    assert sorted(index.parents("DAUADOPT")) == ["CHLDADOPT", "DAUC"]
    assert "DAUADOPT" in index.descendants("DAUC")
    assert {"DAUC", "CHLDADOPT"} <= index.ancestors("DAUADOPT")


def test_hierarchy_with_a_cycle_does_not_loop() -> None:
    definitions = Definitions()
    definitions.add({"resourceType": "CodeSystem", "url": "http://example.org/cs", "content": "complete",
                     "concept": [{"code": "a", "property": [{"code": "parent", "valueCode": "b"}]},
                                 {"code": "b", "property": [{"code": "parent", "valueCode": "a"}]}]})
    index = Terminology(definitions).code_system_index("http://example.org/cs")
    assert index is not None
    assert index.descendants("a") == {"b"}
    assert index.ancestors("a") == {"b"}


def test_in_code_system_respects_a_case_sensitive_code_system() -> None:
    tx = terminology()
    assert tx.in_code_system(ACT_CODE, "AMB").result is True
    check = tx.in_code_system(ACT_CODE, "amb")
    assert check.result is False
    assert "'amb'" in check.message and ACT_CODE in check.message


def test_in_code_system_ignores_case_when_the_code_system_is_not_case_sensitive() -> None:
    # v2-0001 does not state caseSensitive: read as false, like the reference validator.
    check = terminology().in_code_system(V2_SEX, "m")
    assert check.result is True
    assert check.display == "Male"
    definitions = Definitions()
    definitions.add({"resourceType": "CodeSystem", "url": "http://example.org/ci", "content": "complete",
                     "caseSensitive": False, "concept": [{"code": "Abc"}]})
    assert Terminology(definitions).in_code_system("http://example.org/ci", "aBC").result is True


def test_in_code_system_for_snomed_code_cannot_be_checked() -> None:
    check = terminology().in_code_system(SNOMED, "22298006")
    assert check.result is None
    assert "22298006" in check.message and SNOMED in check.message
    assert "not available on this server" in check.message


def test_in_code_system_for_an_unknown_system_cannot_be_checked() -> None:
    check = terminology().in_code_system("http://example.org/nowhere", "x")
    assert check.result is None
    assert "http://example.org/nowhere is not available on this server" in check.message


def test_code_missing_from_an_example_code_system_cannot_be_checked() -> None:
    tx = terminology()
    system = "http://terminology.hl7.org/CodeSystem/service-type"
    assert tx.in_code_system(system, "1").result is True
    check = tx.in_code_system(system, "not-a-service")
    assert check.result is None
    assert "only an example" in check.message


def test_is_known_system_only_for_packaged_content() -> None:
    tx = terminology()
    assert tx.is_known_system(GENDER)
    assert tx.is_known_system("https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland")
    assert tx.is_known_system("http://terminology.hl7.org/CodeSystem/insurance-plan-type")  # fragment
    assert not tx.is_known_system(SNOMED)  # content = not-present
    assert not tx.is_known_system("http://loinc.org")  # not packaged at all
    assert not tx.is_known_system("http://terminology.hl7.org/CodeSystem/service-type")  # example


def test_in_code_system_accepts_any_designation_as_display_and_flags_others() -> None:
    tx = terminology()
    system = "http://hl7.org/fhir/link-type"
    assert tx.in_code_system(system, "replaced-by", "Replaced-by").display_ok
    assert tx.in_code_system(system, "replaced-by", "vervangen  door").display_ok  # nl designation
    check = tx.in_code_system(system, "replaced-by", "Replaces")
    assert check.result is True and not check.display_ok
    assert "'Replaces'" in check.message and "preferred display is 'Replaced-by'" in check.message


def test_in_code_system_takes_a_code_system_resource() -> None:
    resource = {"resourceType": "CodeSystem", "url": "http://example.org/own", "content": "complete",
                "caseSensitive": True, "concept": [{"code": "a", "display": "A"}]}
    tx = terminology()
    assert tx.in_code_system(resource, "a").result is True
    assert tx.in_code_system(resource, "b").result is False


# -- $lookup ----------------------------------------------------------------------------------


def test_lookup_returns_name_version_display_and_hierarchy() -> None:
    found = terminology().lookup(ACT_CODE, "IMP")
    assert params(found, "name")[0]["valueString"] == "v3.ActCode"
    assert params(found, "version")[0]["valueString"] == "2018-08-12"
    assert params(found, "display")[0]["valueString"] == "inpatient encounter"
    props = properties(found)
    assert ("parent", "_ActEncounterCode") in props
    assert ("child", "ACUTE") in props and ("child", "NONAC") in props
    assert any(code == "definition" for code, _ in props)


def test_lookup_returns_designations_and_concept_properties() -> None:
    found = terminology().lookup(ACT_CODE, "_ActEncounterCode")
    assert ("notSelectable", True) in properties(found)
    designated = terminology().lookup("http://hl7.org/fhir/link-type", "replaced-by")
    parts = params(designated, "designation")[0]["part"]
    assert {"name": "language", "valueCode": "nl"} in parts
    assert {"name": "value", "valueString": "Vervangen door"} in parts


def test_lookup_returns_only_the_properties_asked_for() -> None:
    found = terminology().lookup(ACT_CODE, "IMP", properties=["child"])
    assert {code for code, _ in properties(found)} == {"child"}
    assert params(found, "display")  # name and display are always there
    assert not params(found, "designation")


def test_lookup_matches_code_case_as_the_system_says() -> None:
    found = terminology().lookup(V2_SEX, "f")
    assert params(found, "display")[0]["valueString"] == "Female"
    with pytest.raises(NotFoundError, match="'imp' is not a code of"):
        terminology().lookup(ACT_CODE, "imp")


def test_lookup_errors_say_what_is_missing() -> None:
    tx = terminology()
    with pytest.raises(NotFoundError, match=r"code system http://example\.org/x is not known"):
        tx.lookup("http://example.org/x", "a")
    with pytest.raises(NotFoundError, match="content is not available") as snomed:
        tx.lookup(SNOMED, "22298006")
    assert snomed.value.issue_code == "not-supported"
    with pytest.raises(NotFoundError, match=r"Version 1\.0 of the code system"):
        tx.lookup(GENDER, "male", version="1.0")
    assert params(tx.lookup(GENDER, "male", version="4.0.1"), "display")[0]["valueString"] == "Male"


def test_lookup_of_a_uk_core_code() -> None:
    found = terminology().lookup("https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                                 "01")
    assert params(found, "display")[0]["valueString"] == "Number present and verified"
    assert params(found, "name")[0]["valueString"] == "UKCoreNHSNumberVerificationStatusEngland"
