"""The structural check that runs on every write: :func:`fhirhub.fhir.structure.check_resource`.

Spec: https://hl7.org/fhir/R4/json.html (the JSON format: arrays, primitives, ``_x``
extensions, nulls, nested resources), https://hl7.org/fhir/R4/resource.html (resourceType,
id, contained resources), https://hl7.org/fhir/R4/datatypes.html (primitive formats),
https://hl7.org/fhir/R4/extensibility.html (ext-1) and https://hl7.org/fhir/R4/narrative.html
(the XHTML a narrative may hold).

Every rule has a failing case that pins the issue's code, spine code and expression, and a
passing twin. The 773 official R4 examples must all pass; the reference validator's test
cases are a cross-check (it reports every structural error we do, and more).
"""

from __future__ import annotations

import copy
import gzip
import json
import time
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhirhub.errors import Issue
from fhirhub.fhir import json as fhir_json
from fhirhub.fhir.structure import MAX_ISSUES, check_resource

DATA = Path(__file__).parents[1] / "data"
EXAMPLES = DATA / "r4-examples.ndjson.gz"
VALIDATOR_CASES = DATA / "test-cases" / "validator"

XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'

# Official examples that break a structural rule, with the reason. Each must still fail, so
# that the entry is removed when the cause goes away.
EXAMPLE_EXCEPTIONS = {
    ("ExampleScenario", "example"): "the packaged R4 definitions "
    "(src/fhirhub/fhir/definitions/r4) have no ExampleScenario StructureDefinition, so the "
    "element model does not know the type",
}


@cache
def official_examples() -> tuple[dict[str, Any], ...]:
    with gzip.open(EXAMPLES, "rb") as fh:
        return tuple(fhir_json.loads(line) for line in fh if line.strip())


def patient(**properties: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **properties}


def the_issue(resource: object, **kwargs: Any) -> Issue:
    issues = check_resource(resource, **kwargs)
    assert len(issues) == 1, issues
    assert issues[0].severity == "error"
    return issues[0]


def assert_issue(resource: object, code: str, spine_code: str, expression: str | None,
                 **kwargs: Any) -> Issue:
    issue = the_issue(resource, **kwargs)
    assert (issue.code, issue.spine_code) == (code, spine_code), issue
    assert issue.expression == (() if expression is None else (expression,)), issue
    return issue


# -- the official examples -------------------------------------------------------------------


def test_every_official_r4_example_is_structurally_valid() -> None:
    failures = []
    examples = official_examples()
    assert len(examples) == 773
    for example in examples:
        if (example["resourceType"], example.get("id")) in EXAMPLE_EXCEPTIONS:
            continue
        for issue in check_resource(example):
            failures.append(f"{example['resourceType']}/{example.get('id')}: "
                            f"{issue.expression} {issue.diagnostics}")
    assert not failures, f"{len(failures)} issues:\n" + "\n".join(failures)


@pytest.mark.parametrize(("key", "reason"), EXAMPLE_EXCEPTIONS.items())
def test_listed_example_exceptions_still_fail(key: tuple[str, str], reason: str) -> None:
    example = next(e for e in official_examples() if (e["resourceType"], e.get("id")) == key)
    assert check_resource(example), f"{key} now passes; remove it from EXAMPLE_EXCEPTIONS"


# -- the reference validator's test cases, as a cross-check ---------------------------------

def validator_cases() -> list[dict[str, Any]]:
    manifest = json.loads((VALIDATOR_CASES / "manifest.json").read_text())
    return [case for case in manifest["cases"] if case["file"].endswith(".json")
            and not case["file"].startswith("bad-json")]  # JSON syntax: the parser's job


# Cases where the reference validator reports a structural error, and where we report it.
STRUCTURAL_ERRORS = {
    "ai4": "Patient.birthDate",
    "attachment-with-invalid-binary": "Media.content.data",
    "attachment-tx": "Parameters.parameter[0].value.ofType(Attachment).data",
    "Observation-ex-pain.json": "Observation.value.ofType(integer)",
    "resource-invalid-eid-2": "Location.position.id",
    "resource-invalid-id-2": "Location.id",
    "synthea": "Encounter.reasonCode",
}


@pytest.mark.parametrize("case", validator_cases(), ids=lambda case: case["name"])
def test_reference_validator_case_has_no_structural_error_it_does_not(
        case: dict[str, Any]) -> None:
    resource = fhir_json.loads((VALIDATOR_CASES / case["file"]).read_bytes())
    issues = check_resource(resource)
    assert len(issues) <= case["expected_errors"], issues
    expected = STRUCTURAL_ERRORS.get(case["name"])
    assert [i.expression for i in issues] == ([(expected,)] if expected else [])


# -- the body and its resourceType -----------------------------------------------------------


@pytest.mark.parametrize("body", [[], "Patient", None, 1])
def test_body_that_is_not_a_json_object_is_rejected(body: object) -> None:
    issue = assert_issue(body, "structure", "INVALID_RESOURCE", None)
    assert "JSON object" in issue.diagnostics


def test_body_without_resource_type_is_rejected() -> None:
    issue = assert_issue({"id": "1"}, "structure", "INVALID_RESOURCE", None)
    assert "resourceType" in issue.diagnostics


def test_resource_type_that_is_not_a_string_is_rejected() -> None:
    assert_issue({"resourceType": ["Patient"]}, "structure", "INVALID_RESOURCE", None)


def test_unknown_resource_type_is_rejected() -> None:
    issue = assert_issue({"resourceType": "Patients"}, "invalid", "INVALID_RESOURCE", None)
    assert "'Patients'" in issue.diagnostics


@pytest.mark.parametrize("abstract", ["Resource", "DomainResource"])
def test_abstract_resource_type_is_rejected(abstract: str) -> None:
    issue = assert_issue({"resourceType": abstract}, "invalid", "INVALID_RESOURCE", None)
    assert "abstract" in issue.diagnostics


def test_minimal_resource_of_a_concrete_type_is_accepted() -> None:
    assert check_resource(patient()) == []
    assert check_resource({"resourceType": "Parameters"}) == []


def test_resource_type_other_than_the_url_type_is_rejected() -> None:
    issue = assert_issue({"resourceType": "Observation", "status": "final"}, "invalid",
                         "INVALID_RESOURCE", None, expected_type="Patient")
    assert issue.diagnostics == (
        "The resource type 'Observation' does not match the URL type 'Patient'")


def test_resource_type_equal_to_the_url_type_is_accepted() -> None:
    assert check_resource(patient(), expected_type="Patient") == []


# -- id -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a b", "a_b", "x" * 65, "é", " a", "a/b", "123#"])
def test_resource_id_outside_the_id_syntax_is_rejected(bad: str) -> None:
    issue = assert_issue(patient(id=bad), "value", "INVALID_RESOURCE_ID", "Patient.id")
    assert "1 to 64" in issue.diagnostics


@pytest.mark.parametrize("good", ["a", "A-1.b", "x" * 64, "0"])
def test_resource_id_in_the_id_syntax_is_accepted(good: str) -> None:
    assert check_resource(patient(id=good)) == []


def test_resource_id_that_is_not_a_string_is_rejected() -> None:
    assert_issue(patient(id=1), "structure", "INVALID_VALUE", "Patient.id")


def test_contained_resource_id_is_checked_too() -> None:
    bad = patient(contained=[{"resourceType": "Organization", "id": "org 1"}])
    assert_issue(bad, "value", "INVALID_RESOURCE_ID", "Patient.contained[0].id")


# -- unknown properties -----------------------------------------------------------------------


def test_unknown_property_is_rejected() -> None:
    issue = assert_issue(patient(foo=1), "structure", "INVALID_RESOURCE", "Patient.foo")
    assert "'foo'" in issue.diagnostics


def test_unknown_property_in_a_datatype_is_rejected_with_its_index() -> None:
    bad = patient(name=[{"family": "Chalmers"}, {"family": "Jim", "foo": "x"}])
    issue = assert_issue(bad, "structure", "INVALID_RESOURCE", "Patient.name[1].foo")
    assert "'foo'" in issue.diagnostics
    assert "HumanName" in issue.diagnostics


def test_unknown_property_in_a_backbone_element_is_rejected() -> None:
    bad = patient(contact=[{"gender": "male", "colour": "blue"}])
    assert_issue(bad, "structure", "INVALID_RESOURCE", "Patient.contact[0].colour")


def test_known_properties_are_accepted() -> None:
    good = patient(name=[{"family": "Chalmers"}], contact=[{"gender": "male"}])
    assert check_resource(good) == []


def test_fhir_comments_are_not_allowed_in_r4() -> None:
    bad = patient(name=[{"fhir_comments": ["a comment"], "family": "Chalmers"}])
    issue = assert_issue(bad, "structure", "INVALID_RESOURCE", "Patient.name[0].fhir_comments")
    assert "R4" in issue.diagnostics


def test_choice_element_by_its_bare_name_is_rejected() -> None:
    bad = {"resourceType": "Observation", "status": "final", "value": {"value": 1}}
    issue = assert_issue(bad, "structure", "INVALID_RESOURCE", "Observation.value")
    assert "valueQuantity" in issue.diagnostics


def test_choice_element_by_its_typed_name_is_accepted() -> None:
    good = {"resourceType": "Observation", "status": "final", "valueQuantity": {"value": 1}}
    assert check_resource(good) == []


def test_choice_element_with_a_type_the_element_does_not_allow_is_rejected() -> None:
    bad = {"resourceType": "Observation", "status": "final", "valueUri": "urn:x"}
    assert_issue(bad, "structure", "INVALID_RESOURCE", "Observation.valueUri")


def test_two_types_of_one_choice_element_are_rejected() -> None:
    bad = patient(deceasedBoolean=True, deceasedDateTime="2020-01-01")
    issue = assert_issue(bad, "structure", "INVALID_RESOURCE",
                         "Patient.deceased.ofType(dateTime)")
    assert "deceasedBoolean" in issue.diagnostics


def test_resource_type_inside_a_datatype_is_rejected() -> None:
    bad = patient(name=[{"resourceType": "HumanName", "family": "Chalmers"}])
    assert_issue(bad, "structure", "INVALID_RESOURCE", "Patient.name[0].resourceType")


# -- JSON shape -------------------------------------------------------------------------------


def test_repeating_element_given_a_single_object_is_rejected() -> None:
    issue = assert_issue(patient(name={"family": "Chalmers"}), "structure", "INVALID_RESOURCE",
                         "Patient.name")
    assert "array" in issue.diagnostics


def test_single_element_given_an_array_is_rejected() -> None:
    issue = assert_issue(patient(gender=["male"]), "structure", "INVALID_RESOURCE",
                         "Patient.gender")
    assert "array" in issue.diagnostics


def test_empty_array_is_rejected() -> None:
    issue = assert_issue(patient(name=[]), "structure", "INVALID_RESOURCE", "Patient.name")
    assert "empty" in issue.diagnostics


def test_empty_object_is_rejected() -> None:
    assert_issue(patient(maritalStatus={}), "structure", "INVALID_RESOURCE",
                 "Patient.maritalStatus")
    assert_issue(patient(name=[{}]), "structure", "INVALID_RESOURCE", "Patient.name[0]")


def test_null_value_is_rejected() -> None:
    assert_issue(patient(gender=None), "structure", "INVALID_RESOURCE", "Patient.gender")
    assert_issue(patient(maritalStatus=None), "structure", "INVALID_RESOURCE",
                 "Patient.maritalStatus")


def test_null_entry_in_an_array_of_objects_is_rejected() -> None:
    bad = patient(name=[{"family": "Chalmers"}, None])
    assert_issue(bad, "structure", "INVALID_RESOURCE", "Patient.name[1]")


def test_complex_element_given_a_primitive_is_rejected() -> None:
    issue = assert_issue(patient(maritalStatus="married"), "structure", "INVALID_RESOURCE",
                         "Patient.maritalStatus")
    assert "CodeableConcept" in issue.diagnostics


def test_arrays_for_repeating_elements_and_objects_for_complex_types_are_accepted() -> None:
    good = patient(name=[{"given": ["Peter", "James"]}],
                   maritalStatus={"coding": [{"code": "M"}]}, gender="male")
    assert check_resource(good) == []


# -- primitives -------------------------------------------------------------------------------

# (resource, expression, code) for values of the wrong JSON kind, format or range.
BAD_PRIMITIVES = {
    "boolean as a string": (patient(active="true"), "Patient.active", "structure"),
    "boolean as a number": (patient(active=1), "Patient.active", "structure"),
    "integer as a decimal": (patient(multipleBirthInteger=Decimal("2.0")),
                             "Patient.multipleBirth.ofType(integer)", "structure"),
    "integer as a boolean": (patient(multipleBirthInteger=True),
                             "Patient.multipleBirth.ofType(integer)", "structure"),
    "integer as a string": (patient(multipleBirthInteger="2"),
                            "Patient.multipleBirth.ofType(integer)", "structure"),
    "integer over 32 bits": (patient(multipleBirthInteger=2**31),
                             "Patient.multipleBirth.ofType(integer)", "value"),
    "integer under 32 bits": (patient(multipleBirthInteger=-(2**31) - 1),
                              "Patient.multipleBirth.ofType(integer)", "value"),
    "positiveInt of 0": ({"resourceType": "Appointment", "status": "booked",
                          "minutesDuration": 0}, "Appointment.minutesDuration", "value"),
    "unsignedInt below 0": ({"resourceType": "Appointment", "status": "booked",
                             "priority": -1}, "Appointment.priority", "value"),
    "decimal as a string": (
        {"resourceType": "Observation", "status": "final", "valueQuantity": {"value": "1.5"}},
        "Observation.value.ofType(Quantity).value", "structure"),
    "decimal as a boolean": (
        {"resourceType": "Observation", "status": "final", "valueQuantity": {"value": False}},
        "Observation.value.ofType(Quantity).value", "structure"),
    "string as a number": (patient(name=[{"family": 12}]), "Patient.name[0].family",
                           "structure"),
    "empty string": (patient(name=[{"family": ""}]), "Patient.name[0].family", "value"),
    "string over 1 MB": (patient(name=[{"text": "x" * (1024 * 1024 + 1)}]),
                         "Patient.name[0].text", "value"),
    "code with leading whitespace": (patient(gender=" male"), "Patient.gender", "value"),
    "code with a double space": (patient(gender="ma  le"), "Patient.gender", "value"),
    "uri with a space": (patient(implicitRules="http://a b"), "Patient.implicitRules",
                         "value"),
    "id type with a space": (patient(meta={"versionId": "a b"}), "Patient.meta.versionId",
                             "value"),
    "date in another format": (patient(birthDate="07/02/1974"), "Patient.birthDate", "value"),
    "date with a time": (patient(birthDate="1974-12-25T14:35:45Z"), "Patient.birthDate",
                         "value"),
    "date of month 13": (patient(birthDate="1974-13-01"), "Patient.birthDate", "value"),
    "date of 30 February": (patient(birthDate="2023-02-30"), "Patient.birthDate", "value"),
    "date of 29 February in a common year": (patient(birthDate="2023-02-29"),
                                             "Patient.birthDate", "value"),
    "date of 31 April": (patient(birthDate="2023-04-31"), "Patient.birthDate", "value"),
    "dateTime without a timezone": (patient(deceasedDateTime="2015-02-07T13:28:17"),
                                    "Patient.deceased.ofType(dateTime)", "value"),
    "dateTime at hour 24": (patient(deceasedDateTime="2015-02-07T24:00:00Z"),
                            "Patient.deceased.ofType(dateTime)", "value"),
    "dateTime of 31 June": (patient(deceasedDateTime="2015-06-31T10:00:00Z"),
                            "Patient.deceased.ofType(dateTime)", "value"),
    "instant without a time": (patient(meta={"lastUpdated": "2015-02-07"}),
                               "Patient.meta.lastUpdated", "value"),
    "time at hour 25": ({"resourceType": "Observation", "status": "final",
                         "valueTime": "25:00:00"}, "Observation.value.ofType(time)", "value"),
    "base64 with other characters": (patient(photo=[{"data": "%%%2@()()"}]),
                                     "Patient.photo[0].data", "value"),
    "base64 with a space inside a group": (patient(photo=[{"data": "SG Vs"}]),
                                           "Patient.photo[0].data", "value"),
    "base64 padded in the middle": (patient(photo=[{"data": "SGV=bG8="}]),
                                    "Patient.photo[0].data", "value"),
    "base64 with leading whitespace": (patient(photo=[{"data": " SGVsbG8="}]),
                                       "Patient.photo[0].data", "value"),
    "oid without urn:oid:": (patient(extension=[{"url": "http://x", "valueOid": "1.2.3"}]),
                             "Patient.extension[0].value.ofType(oid)", "value"),
    "uuid in upper case": (
        patient(extension=[{"url": "http://x",
                            "valueUuid": "urn:uuid:C757873D-EC9A-4326-A141-556F43239520"}]),
        "Patient.extension[0].value.ofType(uuid)", "value"),
    "given name that is a number": (patient(name=[{"given": ["Peter", 2]}]),
                                    "Patient.name[0].given[1]", "structure"),
}

GOOD_PRIMITIVES = {
    "boolean": patient(active=False),
    "integer": patient(multipleBirthInteger=2),
    "integer at the 32-bit limits": {"resourceType": "Observation", "status": "final",
                                     "component": [
                                         {"code": {"text": "a"}, "valueInteger": 2**31 - 1},
                                         {"code": {"text": "b"}, "valueInteger": -(2**31)}]},
    "positiveInt of 1": {"resourceType": "Appointment", "status": "booked",
                         "minutesDuration": 1},
    "unsignedInt of 0": {"resourceType": "Appointment", "status": "booked", "priority": 0},
    "decimal with its precision": {"resourceType": "Observation", "status": "final",
                                   "valueQuantity": {"value": Decimal("1.50")}},
    "decimal written as an integer": {"resourceType": "Observation", "status": "final",
                                      "valueQuantity": {"value": 2}},
    "string with outer whitespace": patient(name=[{"family": " Chalmers "}]),
    "string with a no-break space": patient(name=[{"family": "van\u00a0Dyke"}]),
    "string of exactly 1 MB": patient(name=[{"text": "x" * (1024 * 1024)}]),
    "markdown with outer whitespace": {"resourceType": "Observation", "status": "final",
                                       "note": [{"text": "  *note*\n"}]},
    "code": patient(gender="male"),
    "code with single spaces": patient(gender="ma le"),
    "uri": patient(implicitRules="urn:oid:1.2.3"),
    "date of a year": patient(birthDate="1974"),
    "date of a month": patient(birthDate="1974-12"),
    "date of 29 February in a leap year": patient(birthDate="2024-02-29"),
    "dateTime with a timezone": patient(deceasedDateTime="2015-02-07T13:28:17.239+02:00"),
    "dateTime of a day": patient(deceasedDateTime="2015-02-07"),
    "instant": patient(meta={"lastUpdated": "2015-02-07T13:28:17.239Z"}),
    "time": {"resourceType": "Observation", "status": "final", "valueTime": "23:59:59.5"},
    "base64": patient(photo=[{"data": "SGVsbG8="}]),
    "base64 in lines of four-character groups": patient(photo=[{"data": "SGVs\nbG8h"}]),
    "oid": patient(extension=[{"url": "http://x", "valueOid": "urn:oid:1.2.3"}]),
    "uuid": patient(extension=[{"url": "http://x",
                                "valueUuid": "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"}]),
}


@pytest.mark.parametrize(("resource", "expression", "code"), BAD_PRIMITIVES.values(),
                         ids=BAD_PRIMITIVES.keys())
def test_primitive_of_the_wrong_kind_format_or_range_is_rejected(
        resource: dict[str, Any], expression: str, code: str) -> None:
    issue = assert_issue(resource, code, "INVALID_VALUE", expression)
    assert issue.diagnostics.startswith("Invalid ")


@pytest.mark.parametrize("resource", GOOD_PRIMITIVES.values(), ids=GOOD_PRIMITIVES.keys())
def test_primitive_of_the_right_kind_format_and_range_is_accepted(
        resource: dict[str, Any]) -> None:
    assert check_resource(resource) == []


def test_invalid_date_diagnostics_say_what_is_expected() -> None:
    issue = the_issue(patient(birthDate="07/02/1974"))
    assert "'07/02/1974'" in issue.diagnostics
    assert "YYYY-MM-DD" in issue.diagnostics
    assert "calendar" in the_issue(patient(birthDate="2023-02-30")).diagnostics


def test_base64_check_does_not_backtrack_on_a_long_bad_value() -> None:
    # The official regex backtracks exponentially here (2^n ways to share out the spaces).
    bad = patient(photo=[{"data": "AAAA " * 5000 + "A"}])
    started = time.perf_counter()
    assert_issue(bad, "value", "INVALID_VALUE", "Patient.photo[0].data")
    assert time.perf_counter() - started < 1.0


# -- primitive extensions: _x ------------------------------------------------------------------

EXT = {"url": "http://example.org/ext", "valueString": "x"}


def test_primitive_extension_with_id_and_extension_is_accepted() -> None:
    assert check_resource(patient(birthDate="1974", _birthDate={"id": "b", "extension": [EXT]})) \
        == []


def test_primitive_extension_without_a_value_is_accepted() -> None:
    assert check_resource(patient(_gender={"extension": [EXT]})) == []


def test_primitive_extension_with_another_property_is_rejected() -> None:
    issue = assert_issue(patient(birthDate="1974", _birthDate={"value": "1974"}),
                         "structure", "INVALID_RESOURCE", "Patient.birthDate")
    assert "'value'" in issue.diagnostics


def test_primitive_extension_that_is_not_an_object_is_rejected() -> None:
    assert_issue(patient(birthDate="1974", _birthDate="1974"), "structure", "INVALID_RESOURCE",
                 "Patient.birthDate")
    assert_issue(patient(birthDate="1974", _birthDate={}), "structure", "INVALID_RESOURCE",
                 "Patient.birthDate")


def test_primitive_extension_content_is_checked() -> None:
    bad = patient(birthDate="1974", _birthDate={"extension": [{"valueString": "x"}]})
    assert_issue(bad, "invalid", "INVALID_RESOURCE", "Patient.birthDate.extension[0]")


def test_underscore_property_of_an_unknown_element_is_rejected() -> None:
    assert_issue(patient(_foo={"extension": [EXT]}), "structure", "INVALID_RESOURCE",
                 "Patient._foo")


def test_underscore_property_of_a_complex_element_is_rejected() -> None:
    assert_issue(patient(name=[{"family": "X"}], _name=[{"extension": [EXT]}]), "structure",
                 "INVALID_RESOURCE", "Patient._name")


def test_underscore_property_of_an_xml_attribute_is_rejected() -> None:
    # Element.id and Extension.url are attributes in XML: they cannot have extensions.
    bad = patient(name=[{"id": "n1", "_id": {"extension": [EXT]}}])
    assert_issue(bad, "structure", "INVALID_RESOURCE", "Patient.name[0]._id")
    bad = patient(extension=[{**EXT, "_url": {"extension": [EXT]}}])
    assert_issue(bad, "structure", "INVALID_RESOURCE", "Patient.extension[0]._url")


def test_extension_of_a_choice_primitive_uses_its_typed_name() -> None:
    good = patient(deceasedDateTime="2020", _deceasedDateTime={"extension": [EXT]})
    assert check_resource(good) == []
    bad = patient(deceasedBoolean=True, _deceasedDateTime={"extension": [EXT]})
    assert_issue(bad, "structure", "INVALID_RESOURCE", "Patient.deceased.ofType(dateTime)")


def test_primitive_array_extensions_aligned_with_nulls_are_accepted() -> None:
    good = patient(name=[{"given": ["Peter", None, "James"],
                          "_given": [None, {"extension": [EXT]}, {"id": "g3"}]}])
    assert check_resource(good) == []


def test_null_in_a_primitive_array_without_an_extension_is_rejected() -> None:
    bad = patient(name=[{"given": ["Peter", None]}])
    issue = assert_issue(bad, "structure", "INVALID_RESOURCE", "Patient.name[0].given[1]")
    assert "_given" in issue.diagnostics


def test_null_in_both_a_primitive_array_and_its_extensions_is_rejected_once() -> None:
    bad = patient(name=[{"given": ["Peter", None], "_given": [None, None]}])
    assert_issue(bad, "structure", "INVALID_RESOURCE", "Patient.name[0].given[1]")


def test_primitive_array_extensions_of_another_length_are_rejected() -> None:
    bad = patient(name=[{"given": ["Peter"], "_given": [None, {"extension": [EXT]}]}])
    issue = assert_issue(bad, "structure", "INVALID_RESOURCE", "Patient.name[0].given")
    assert "one entry for each value" in issue.diagnostics


def test_null_extension_with_no_value_at_all_is_rejected() -> None:
    bad = patient(name=[{"_given": [None, {"extension": [EXT]}]}])
    assert_issue(bad, "structure", "INVALID_RESOURCE", "Patient.name[0].given[0]")


def test_primitive_array_extensions_that_are_not_an_array_are_rejected() -> None:
    bad = patient(name=[{"given": ["Peter"], "_given": {"extension": [EXT]}}])
    assert_issue(bad, "structure", "INVALID_RESOURCE", "Patient.name[0]._given")


# -- nested resources ---------------------------------------------------------------------------


def bundle(*resources: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:{i}", "resource": r} for i, r in
                      enumerate(resources)]}


def test_bundle_entry_resource_is_checked_as_a_resource() -> None:
    bad = bundle(patient(), patient(birthDate="2023-02-30"))
    assert_issue(bad, "value", "INVALID_VALUE", "Bundle.entry[1].resource.birthDate")
    bad = bundle(patient(foo=1))
    assert_issue(bad, "structure", "INVALID_RESOURCE", "Bundle.entry[0].resource.foo")


def test_bundle_entry_resource_without_resource_type_is_rejected() -> None:
    assert_issue(bundle({"id": "1"}), "structure", "INVALID_RESOURCE",
                 "Bundle.entry[0].resource")
    assert_issue(bundle({"resourceType": "DomainResource"}), "invalid", "INVALID_RESOURCE",
                 "Bundle.entry[0].resource")


def test_resource_put_directly_in_a_bundle_entry_is_rejected() -> None:
    bad = {"resourceType": "Bundle", "type": "collection", "entry": [patient()]}
    assert_issue(bad, "structure", "INVALID_RESOURCE", "Bundle.entry[0].resourceType")


def test_valid_nested_resources_are_accepted() -> None:
    assert check_resource(bundle(patient(id="1"), bundle(patient()))) == []
    parameters = {"resourceType": "Parameters",
                  "parameter": [{"name": "p", "resource": patient(gender="male")},
                                {"name": "q", "part": [{"name": "r", "resource": patient()}]}]}
    assert check_resource(parameters) == []


def test_parameters_resource_is_checked_as_a_resource() -> None:
    bad = {"resourceType": "Parameters",
           "parameter": [{"name": "q", "part": [{"name": "r", "resource": patient(foo=1)}]}]}
    assert_issue(bad, "structure", "INVALID_RESOURCE",
                 "Parameters.parameter[0].part[0].resource.foo")


def test_contained_resource_is_checked_as_a_resource() -> None:
    bad = patient(contained=[{"resourceType": "Organization", "id": "o", "active": "yes"}])
    assert_issue(bad, "structure", "INVALID_VALUE", "Patient.contained[0].active")


def test_contained_resource_with_contained_resources_is_rejected() -> None:
    inner = {"resourceType": "Organization", "id": "o2"}
    bad = patient(contained=[{"resourceType": "Organization", "id": "o", "contained": [inner]}])
    issue = assert_issue(bad, "invalid", "INVALID_RESOURCE", "Patient.contained[0].contained")
    assert "dom-2" in issue.diagnostics


def test_contained_resources_side_by_side_are_accepted() -> None:
    good = patient(contained=[{"resourceType": "Organization", "id": "o"},
                              {"resourceType": "Practitioner", "id": "p"}],
                   managingOrganization={"reference": "#o"})
    assert check_resource(good) == []
    # A bundled resource is not contained: it may contain resources.
    assert check_resource(bundle(good)) == []


# -- extensions -------------------------------------------------------------------------------


def test_extension_without_url_is_rejected() -> None:
    issue = assert_issue(patient(extension=[{"valueString": "x"}]), "invalid",
                         "INVALID_RESOURCE", "Patient.extension[0]")
    assert "url" in issue.diagnostics


def test_extension_url_that_is_not_a_string_is_rejected() -> None:
    assert_issue(patient(extension=[{"url": 1, "valueString": "x"}]), "structure",
                 "INVALID_VALUE", "Patient.extension[0].url")


def test_extension_with_two_values_is_rejected() -> None:
    bad = patient(extension=[{"url": "http://x", "valueString": "x", "valueBoolean": True}])
    assert_issue(bad, "structure", "INVALID_RESOURCE",
                 "Patient.extension[0].value.ofType(boolean)")


def test_extension_with_a_value_and_nested_extensions_is_rejected() -> None:
    bad = patient(modifierExtension=[{"url": "http://x", "valueString": "x",
                                      "extension": [EXT]}])
    issue = assert_issue(bad, "invalid", "INVALID_RESOURCE", "Patient.modifierExtension[0]")
    assert "ext-1" in issue.diagnostics


def test_simple_and_complex_extensions_are_accepted() -> None:
    good = patient(extension=[EXT, {"url": "http://x", "extension": [
        {"url": "part", "valueCoding": {"code": "a"}}, {"url": "other", "valueInteger": 1}]}],
        modifierExtension=[{"url": "http://y", "valueBoolean": False}])
    assert check_resource(good) == []


# -- narrative ----------------------------------------------------------------------------------


def narrative(div: object) -> dict[str, Any]:
    return patient(text={"status": "generated", "div": div})


GOOD_DIV = (f'<div {XHTML}><p>Peter <b>Chalmers</b> &amp; co</p>'
            '<table class="grid"><tr><td style="color: red" colspan="2">'
            '<a href="https://example.org/p?a=1#x" title="t">link</a> '
            '<a name="anchor"> </a><img src="data:image/png;base64,iVBORw0KGgo=" alt="x"/>'
            '</td></tr></table><ul><li xml:lang="en">one</li></ul></div>')


def test_narrative_in_the_allowed_xhtml_subset_is_accepted() -> None:
    assert check_resource(narrative(GOOD_DIV)) == []


BAD_DIVS = {
    "not starting with div": f'<p {XHTML}>x</p>',
    "leading whitespace": f' <div {XHTML}>x</div>',
    "not well-formed": f'<div {XHTML}><p>x</div>',
    "without the XHTML namespace": '<div><p>x</p></div>',
    "HTML entity": f'<div {XHTML}>a&nbsp;b</div>',
    "DTD": f'<div {XHTML}><!DOCTYPE d [<!ENTITY e "x">]>&e;</div>',
    "script": f'<div {XHTML}><script>alert(1)</script></div>',
    "iframe": f'<div {XHTML}><iframe src="https://evil.example"/></div>',
    "object": f'<div {XHTML}><object data="x.swf"/></div>',
    "embed": f'<div {XHTML}><embed src="x.swf"/></div>',
    "form": f'<div {XHTML}><form action="https://evil.example">x</form></div>',
    "input": f'<div {XHTML}><input name="a"/></div>',
    "style element": f'<div {XHTML}><style>p {{ color: red }}</style></div>',
    "event attribute": f'<div {XHTML}><p onclick="alert(1)">x</p></div>',
    "event attribute in capitals": f'<div {XHTML}><img src="a.png" ONERROR="alert(1)"/></div>',
    "javascript URL": f'<div {XHTML}><a href="javascript:alert(1)">x</a></div>',
    "javascript URL in disguise": f'<div {XHTML}><a href=" Java&#9;Script:alert(1)">x</a></div>',
    "data URL link": f'<div {XHTML}><a href="data:text/html,&lt;script&gt;">x</a></div>',
    "vbscript image": f'<div {XHTML}><img src="vbscript:msgbox(1)"/></div>',
    "script in a style": f'<div {XHTML}><p style="width: expression(alert(1))">x</p></div>',
    "attribute outside the subset": f'<div {XHTML}><p contenteditable="true">x</p></div>',
    "element of another namespace": f'<div {XHTML}><svg xmlns="http://www.w3.org/2000/svg"/></div>',
}


@pytest.mark.parametrize("div", BAD_DIVS.values(), ids=BAD_DIVS.keys())
def test_narrative_outside_the_allowed_xhtml_subset_is_rejected(div: str) -> None:
    issue = assert_issue(narrative(div), "value", "INVALID_VALUE", "Patient.text.div")
    assert "narrative" in issue.diagnostics.lower()


def test_narrative_that_is_not_a_string_is_rejected() -> None:
    assert_issue(narrative({"p": "x"}), "structure", "INVALID_VALUE", "Patient.text.div")


def test_narrative_div_cannot_have_extensions() -> None:
    bad = patient(text={"status": "generated", "div": GOOD_DIV, "_div": {"extension": [EXT]}})
    assert_issue(bad, "structure", "INVALID_RESOURCE", "Patient.text._div")


def test_narrative_problems_are_each_reported_once() -> None:
    div = f'<div {XHTML}><script>1</script><script>2</script><p onclick="x">y</p></div>'
    issues = check_resource(narrative(div))
    assert len(issues) == 2
    assert {i.expression for i in issues} == {("Patient.text.div",)}


# -- collecting issues ----------------------------------------------------------------------------


def test_all_issues_are_collected() -> None:
    bad = patient(id="a b", foo=1, birthDate="2023-02-30", name=[{"given": [1]}])
    assert [i.expression for i in check_resource(bad)] == [
        ("Patient.id",), ("Patient.foo",), ("Patient.birthDate",), ("Patient.name[0].given[0]",)]


def test_issues_are_capped() -> None:
    bad = patient(**{f"foo{i}": i for i in range(MAX_ISSUES + 50)})
    issues = check_resource(bad)
    assert len(issues) == MAX_ISSUES == 100
    assert issues[-1].expression == (f"Patient.foo{MAX_ISSUES - 1}",)


def test_resource_nested_too_deeply_is_rejected_without_crashing() -> None:
    item: dict[str, Any] = {"linkId": "leaf", "type": "display"}
    for i in range(3000):
        item = {"linkId": str(i), "type": "group", "item": [item]}
    issues = check_resource({"resourceType": "Questionnaire", "status": "draft",
                             "item": [item]})
    assert issues[-1].code == "structure"
    assert "nested too deeply" in issues[-1].diagnostics


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.decimals(allow_nan=False, allow_infinity=False, places=2),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["url", "value", "valueString", "extension", "id", "_given", "given",
                         "family", "resourceType", "div", "x"]), inner, max_size=3),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(["name", "birthDate", "_birthDate", "extension", "contained",
                            "text", "active", "photo", "id", "link", "foo"]),
       value=JSON_VALUES)
def test_any_json_value_gives_issues_and_never_an_exception(key: str, value: Any) -> None:
    issues = check_resource(patient(**{key: value}))
    assert all(isinstance(i, Issue) and i.severity == "error" for i in issues)


def test_check_does_not_change_the_resource() -> None:
    example = next(e for e in official_examples() if e["resourceType"] == "Patient")
    before = copy.deepcopy(example)
    check_resource(example)
    assert example == before
