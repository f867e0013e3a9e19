"""Validation against R4 definitions and UK Core profiles
(https://hl7.org/fhir/R4/validation.html, https://hl7.org/fhir/R4/profiling.html).

Each test states one rule; the resources are the smallest that show it."""

from __future__ import annotations

from typing import Any

import pytest

from fhirhub.errors import Issue
from fhirhub.fhir.definitions import packaged
from fhirhub.fhir.terminology import terminology
from fhirhub.fhir.validation import Validator, nhs_number_problem

UKCORE_PATIENT = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
VERIFICATION = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"


def errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity in ("error", "fatal")]


def only(issues: list[Issue], severity: str) -> list[Issue]:
    return [i for i in issues if i.severity == severity]


def observation(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]}, **extra}


def uk_patient(nhs: str = "9000000009", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "meta": {"profile": [UKCORE_PATIENT]},
            "identifier": [{"system": NHS, "value": nhs}], "name": [{"family": "Smith"}],
            **extra}


# -- base definitions -------------------------------------------------------------------------

def test_a_minimal_valid_observation_has_no_errors(validator: Validator) -> None:
    assert errors(validator.validate(observation())) == []


def test_an_observation_coded_as_a_vital_sign_must_meet_its_vital_signs_profile(
        validator: Validator) -> None:
    weight = observation(code={"coding": [{"system": "http://loinc.org", "code": "29463-7"}]})
    issues = errors(validator.validate(weight))
    assert any("vs-2" in i.diagnostics for i in issues)  # no value and no dataAbsentReason
    assert any("category" in i.diagnostics.lower() for i in issues)


def test_a_missing_required_element_is_an_error_naming_it(validator: Validator) -> None:
    resource = observation()
    del resource["status"]
    (issue,) = errors(validator.validate(resource))
    assert issue.code == "required"
    assert issue.expression == ("Observation.status",)
    assert "Observation.status" in issue.diagnostics


def test_a_code_outside_a_required_binding_is_an_error(validator: Validator) -> None:
    issues = errors(validator.validate(observation(status="done")))
    assert [i.code for i in issues] == ["code-invalid"]
    assert issues[0].expression == ("Observation.status",)
    assert "required" in issues[0].diagnostics


def test_a_snomed_code_that_cannot_be_checked_is_information_not_an_error(
        validator: Validator) -> None:
    resource = {"resourceType": "Condition", "subject": {"reference": "Patient/1"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "22298006"}]},
                "clinicalStatus": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active"}]}}
    assert errors(validator.validate(resource)) == []


def test_a_code_unknown_to_its_packaged_code_system_is_an_error(validator: Validator) -> None:
    resource = observation(category=[{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
        "code": "no-such-category"}]}])
    issues = errors(validator.validate(resource))
    assert issues and all(i.code == "code-invalid" for i in issues)
    assert issues[0].expression[0].startswith("Observation.category[0].coding[0]")


def test_a_failed_invariant_names_its_key(validator: Validator) -> None:
    patient = {"resourceType": "Patient", "contact": [{"gender": "male"}]}
    (issue,) = errors(validator.validate(patient))
    assert issue.code == "invariant"
    assert "pat-1" in issue.diagnostics
    assert issue.expression == ("Patient.contact[0]",)


def test_a_reference_to_a_type_the_element_does_not_allow_is_an_error(
        validator: Validator) -> None:
    issues = errors(validator.validate(observation(subject={"reference": "Medication/1"})))
    assert [i.expression for i in issues] == [("Observation.subject.reference",)]
    assert "Medication" in issues[0].diagnostics


def test_a_reference_type_that_is_not_a_resource_type_is_an_error(validator: Validator) -> None:
    issues = errors(validator.validate(observation(subject={"reference": "Pateint/1"})))
    assert "not a FHIR R4 resource type" in issues[0].diagnostics


def test_a_contained_resource_is_validated_as_a_resource(validator: Validator) -> None:
    resource = observation(contained=[{"resourceType": "Observation", "id": "c1"}],
                           hasMember=[{"reference": "#c1"}])
    issues = errors(validator.validate(resource))
    assert {i.expression[0] for i in issues} >= {"Observation.contained[0].status",
                                                 "Observation.contained[0].code"}


def test_a_reference_to_a_missing_contained_resource_breaks_ref_1(validator: Validator) -> None:
    issues = errors(validator.validate(observation(subject={"reference": "#nothere"})))
    assert any("ref-1" in i.diagnostics for i in issues)


def test_a_bundle_entry_resource_is_validated(validator: Validator) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": "urn:uuid:6f1c2b50-8b1b-4f5e-9c39-0d1f3a0c2b11",
                         "resource": {"resourceType": "Observation"}}]}
    issues = errors(validator.validate(bundle))
    assert "Bundle.entry[0].resource.status" in {i.expression[0] for i in issues}


def test_a_urn_reference_in_a_bundle_is_checked_by_the_type_it_resolves_to(
        validator: Validator) -> None:
    med = "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": med, "resource": {"resourceType": "Medication"}},
        {"fullUrl": "urn:uuid:3a7e53c0-4b0a-4b8e-9a49-2f4e0c7b2f01",
         "resource": observation(subject={"reference": med})}]}
    issues = errors(validator.validate(bundle))
    assert [i.expression for i in issues] == [("Bundle.entry[1].resource.subject.reference",)]


def test_an_unknown_extension_is_a_warning(validator: Validator) -> None:
    issues = validator.validate(observation(extension=[
        {"url": "http://example.org/fhir/StructureDefinition/x", "valueString": "y"}]))
    assert errors(issues) == []
    assert any("not known" in i.diagnostics for i in only(issues, "warning"))


def test_an_unknown_modifier_extension_is_an_error(validator: Validator) -> None:
    issues = errors(validator.validate(observation(modifierExtension=[
        {"url": "http://example.org/fhir/StructureDefinition/x", "valueString": "y"}])))
    assert issues[0].expression == ("Observation.modifierExtension[0]",)


def test_a_known_extension_used_outside_its_context_is_an_error(validator: Validator) -> None:
    issues = errors(validator.validate(observation(extension=[{
        "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
        "valueAddress": {"city": "Leeds"}}])))
    assert "not allowed here" in issues[0].diagnostics


def test_a_known_extension_is_checked_against_its_definition(validator: Validator) -> None:
    patient = {"resourceType": "Patient", "extension": [{
        "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
        "valueString": "Leeds"}]}
    issues = errors(validator.validate(patient))
    assert any("String" in i.diagnostics or "string" in i.diagnostics for i in issues)


def test_a_claimed_profile_that_is_unknown_is_an_error_by_default(validator: Validator) -> None:
    resource = observation(meta={"profile": ["http://example.org/StructureDefinition/nope"]})
    (issue,) = errors(validator.validate(resource))
    assert "not known" in issue.diagnostics


def test_an_unknown_claimed_profile_can_be_configured_as_a_warning() -> None:
    lenient = Validator(packaged(), terminology(), unknown_profile="warning")
    resource = observation(meta={"profile": ["http://example.org/StructureDefinition/nope"]})
    issues = lenient.validate(resource)
    assert errors(issues) == []
    assert only(issues, "warning")


# -- UK Core ---------------------------------------------------------------------------------

def test_a_ukcore_patient_with_a_valid_nhs_number_has_no_errors(validator: Validator) -> None:
    assert errors(validator.validate(uk_patient())) == []


@pytest.mark.parametrize(("value", "reason"), [
    ("9000000008", "check digit"),
    ("900000000", "10 digits"),
    ("90000000O9", "10 digits"),
])
def test_an_invalid_nhs_number_is_an_error(validator: Validator, value: str, reason: str) -> None:
    (issue,) = errors(validator.validate(uk_patient(value)))
    assert reason in issue.diagnostics
    assert issue.expression == ("Patient.identifier[0].value",)


def test_nhs_number_check_digit_follows_modulus_11() -> None:
    assert nhs_number_problem("9434765919") is None
    assert nhs_number_problem("9434765918") is not None
    assert nhs_number_problem("1234567890") is not None  # check digit would be 10: invalid


def test_two_nhs_numbers_break_the_slice_maximum(validator: Validator) -> None:
    patient = uk_patient()
    patient["identifier"].append({"system": NHS, "value": "9434765919"})
    issues = errors(validator.validate(patient))
    assert any("nhsNumber" in i.diagnostics and "at most 1" in i.diagnostics for i in issues)


def test_an_nhs_number_without_a_value_breaks_the_slice(validator: Validator) -> None:
    patient = uk_patient()
    del patient["identifier"][0]["value"]
    issues = errors(validator.validate(patient))
    assert any(i.expression == ("Patient.identifier[0].value",) for i in issues)


def test_the_nhs_number_verification_status_is_bound_to_its_value_set(
        validator: Validator) -> None:
    def with_status(code: str) -> dict[str, Any]:
        patient = uk_patient()
        patient["identifier"][0]["extension"] = [{"url": VERIFICATION, "valueCodeableConcept": {
            "coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                        "code": code}]}}]
        return patient

    assert errors(validator.validate(with_status("01"))) == []
    assert errors(validator.validate(with_status("99")))


def test_required_profiles_apply_without_being_claimed() -> None:
    strict = Validator(packaged(), terminology(),
                       required_profiles={"Patient": (UKCORE_PATIENT,)})
    patient = uk_patient("9000000008")
    del patient["meta"]
    assert errors(strict.validate(patient))


# -- slicing, fixed and pattern values (a profile written for the test) -------------------------

PROFILE = "http://example.org/fhir/StructureDefinition/test-observation"


def _profile(**slicing: Any) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition", "url": PROFILE, "name": "TestObservation",
        "status": "draft", "kind": "resource", "abstract": False, "type": "Observation",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "derivation": "constraint",
        "differential": {"element": [
            {"id": "Observation.category", "path": "Observation.category",
             "slicing": {"discriminator": [{"type": "pattern", "path": "$this"}],
                         "rules": slicing.get("rules", "open"),
                         "ordered": slicing.get("ordered", False)}, "min": 1},
            {"id": "Observation.category:vital", "path": "Observation.category",
             "sliceName": "vital", "min": 1, "max": "1", "patternCodeableConcept": {"coding": [{
                 "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                 "code": "vital-signs"}]}},
            {"id": "Observation.category:lab", "path": "Observation.category",
             "sliceName": "lab", "max": "1", "patternCodeableConcept": {"coding": [{
                 "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                 "code": "laboratory"}]}},
            {"id": "Observation.value[x]", "path": "Observation.value[x]",
             "type": [{"code": "Quantity"}]},
            {"id": "Observation.value[x].system", "path": "Observation.value[x].system",
             "fixedUri": "http://unitsofmeasure.org"},
        ]},
    }


def _category(code: str) -> dict[str, Any]:
    return {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": code}]}


def _validator(**slicing: Any) -> Validator:
    return Validator(packaged().extended([_profile(**slicing)]), terminology())


def test_items_are_matched_to_slices_by_pattern() -> None:
    ok = observation(meta={"profile": [PROFILE]}, category=[_category("vital-signs")])
    assert errors(_validator().validate(ok)) == []


def test_a_required_slice_that_is_missing_is_an_error() -> None:
    resource = observation(meta={"profile": [PROFILE]}, category=[_category("laboratory")])
    issues = errors(_validator().validate(resource))
    assert any("vital" in i.diagnostics and "at least 1" in i.diagnostics for i in issues)


def test_an_item_outside_closed_slicing_is_an_error() -> None:
    resource = observation(meta={"profile": [PROFILE]},
                           category=[_category("vital-signs"), _category("imaging")])
    assert errors(_validator().validate(resource)) == []
    issues = errors(_validator(rules="closed").validate(resource))
    assert [i.expression for i in issues] == [("Observation.category[1]",)]


def test_items_outside_open_at_end_slicing_must_come_last() -> None:
    resource = observation(meta={"profile": [PROFILE]},
                           category=[_category("imaging"), _category("vital-signs")])
    issues = errors(_validator(rules="openAtEnd").validate(resource))
    assert any("openAtEnd" in i.diagnostics for i in issues)


def test_ordered_slices_must_come_in_their_order() -> None:
    resource = observation(meta={"profile": [PROFILE]},
                           category=[_category("laboratory"), _category("vital-signs")])
    issues = errors(_validator(ordered=True).validate(resource))
    assert any("ordered" in i.diagnostics for i in issues)


def test_a_choice_type_the_profile_does_not_allow_is_an_error() -> None:
    resource = observation(meta={"profile": [PROFILE]}, category=[_category("vital-signs")],
                           valueString="high")
    issues = errors(_validator().validate(resource))
    assert any("string" in i.diagnostics and "not allowed" in i.diagnostics for i in issues)


def test_a_value_other_than_the_fixed_one_is_an_error() -> None:
    resource = observation(meta={"profile": [PROFILE]}, category=[_category("vital-signs")],
                           valueQuantity={"value": 1, "system": "http://example.org/units",
                                          "code": "x"})
    issues = errors(_validator().validate(resource))
    assert [i.expression for i in issues] == [("Observation.value.ofType(Quantity).system",)]
    assert "http://unitsofmeasure.org" in issues[0].diagnostics


# -- type, exists and profile discriminators -------------------------------------------------------

SLICED = "http://example.org/fhir/StructureDefinition/test-sliced"
BP_COMPONENT = "http://example.org/fhir/StructureDefinition/test-component-with-value"


def _sliced_profile(discriminator: str) -> list[dict[str, Any]]:
    base = {"resourceType": "StructureDefinition", "status": "draft", "kind": "resource",
            "abstract": False, "type": "Observation", "derivation": "constraint",
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation"}
    if discriminator == "type":
        elements = [
            {"id": "Observation.component.value[x]", "path": "Observation.component.value[x]",
             "slicing": {"discriminator": [{"type": "type", "path": "$this"}], "rules": "closed"}},
            {"id": "Observation.component.value[x]:valueQuantity",
             "path": "Observation.component.value[x]", "sliceName": "valueQuantity",
             "type": [{"code": "Quantity"}]},
        ]
    elif discriminator == "exists":
        elements = [
            {"id": "Observation.component", "path": "Observation.component",
             "slicing": {"discriminator": [{"type": "exists", "path": "value"}],
                         "rules": "open"}},
            {"id": "Observation.component:measured", "path": "Observation.component",
             "sliceName": "measured", "min": 1, "max": "1"},
            {"id": "Observation.component:measured.value[x]",
             "path": "Observation.component.value[x]", "min": 1},
        ]
    else:
        elements = [
            {"id": "Observation.component", "path": "Observation.component",
             "slicing": {"discriminator": [{"type": "profile", "path": "$this"}],
                         "rules": "open"}},
            {"id": "Observation.component:valued", "path": "Observation.component",
             "sliceName": "valued", "min": 1, "type": [{"code": "BackboneElement",
                                                          "profile": [BP_COMPONENT]}]},
        ]
    return [{**base, "url": SLICED, "name": "TestSliced", "differential": {"element": elements}}]


def _component(**value: Any) -> dict[str, Any]:
    return {"code": {"text": "x"}, **value}


def _sliced_validator(discriminator: str) -> Validator:
    return Validator(packaged().extended(_sliced_profile(discriminator)), terminology())


def test_a_type_discriminator_with_closed_slicing_refuses_other_types() -> None:
    validator = _sliced_validator("type")
    ok = observation(meta={"profile": [SLICED]},
                     component=[_component(valueQuantity={"value": 1})])
    assert errors(validator.validate(ok)) == []
    bad = observation(meta={"profile": [SLICED]}, component=[_component(valueString="high")])
    assert errors(validator.validate(bad))


def test_an_exists_discriminator_matches_by_presence() -> None:
    validator = _sliced_validator("exists")
    ok = observation(meta={"profile": [SLICED]},
                     component=[_component(), _component(valueString="x")])
    assert errors(validator.validate(ok)) == []
    missing = observation(meta={"profile": [SLICED]}, component=[_component()])
    issues = errors(validator.validate(missing))
    assert any("measured" in i.diagnostics for i in issues)


def test_a_profile_discriminator_matches_items_that_conform_to_the_slice_profile() -> None:
    birth_place = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
    profile = {"resourceType": "StructureDefinition", "url": SLICED, "name": "TestProfiled",
               "status": "draft", "kind": "resource", "abstract": False, "type": "Patient",
               "derivation": "constraint",
               "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
               "differential": {"element": [
                   {"id": "Patient.extension", "path": "Patient.extension",
                    "slicing": {"discriminator": [{"type": "profile", "path": "$this"}],
                                "rules": "open"}},
                   {"id": "Patient.extension:born", "path": "Patient.extension",
                    "sliceName": "born", "min": 1,
                    "type": [{"code": "Extension", "profile": [birth_place]}]}]}}
    validator = Validator(packaged().extended([profile]), terminology())

    def with_extension(url: str) -> dict[str, Any]:
        return {"resourceType": "Patient", "meta": {"profile": [SLICED]},
                "extension": [{"url": url, "valueAddress": {"city": "Leeds"}}]}

    assert errors(validator.validate(with_extension(birth_place))) == []
    other = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName"
    issues = errors(validator.validate(with_extension(other)))
    assert any("born" in i.diagnostics and "at least 1" in i.diagnostics for i in issues)


def test_unknown_extensions_can_be_refused_like_the_reference_validator_does() -> None:
    strict = Validator(packaged(), terminology(), unknown_extension="error")
    foreign = observation(extension=[{"url": "https://fhir.example.nz/ext/age", "valueInteger": 3}])
    assert errors(strict.validate(foreign))
    made_up = observation(extension=[{"url": "http://example.org/fhir/ext/x", "valueInteger": 3}])
    assert errors(strict.validate(made_up)) == []  # RFC 2606 example domains are examples


def test_an_extension_url_must_be_absolute(validator: Validator) -> None:
    issues = errors(validator.validate(observation(extension=[{"url": "something",
                                                               "valueString": "x"}])))
    assert issues[0].expression == ("Observation.extension[0].url",)


def test_a_code_of_an_unpackaged_system_under_a_required_binding_is_information(
        validator: Validator) -> None:
    allergy = {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/1"},
               "clinicalStatus": {"coding": [{"system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
                                              "code": "T78.4"}]}}
    issues = validator.validate(allergy)
    assert errors(issues) == []
    assert any(i.severity == "information" and "cannot be checked" in i.diagnostics
               for i in issues)


def test_a_bundle_full_url_must_be_absolute(validator: Validator) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": "Patient/1", "resource": {"resourceType": "Patient", "id": "1"}}]}
    (issue,) = errors(validator.validate(bundle))
    assert issue.expression == ("Bundle.entry[0].fullUrl",)


def test_html_in_a_plain_string_is_refused(validator: Validator) -> None:
    patient = {"resourceType": "Patient", "name": [{"text": "Jane <script>alert(1)</script>"}]}
    (issue,) = errors(validator.validate(patient))
    assert issue.code == "security" and issue.expression == ("Patient.name[0].text",)


def test_a_profile_differential_that_names_no_element_is_an_error(validator: Validator) -> None:
    profile = {"resourceType": "StructureDefinition", "url": "http://example.org/sd/bad",
               "name": "Bad", "status": "draft", "kind": "resource", "abstract": False,
               "type": "Observation", "derivation": "constraint",
               "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
               "differential": {"element": [{"id": "Observation.valueBla",
                                             "path": "Observation.valueBla"}]}}
    (issue,) = errors(validator.validate(profile))
    assert issue.expression == ("StructureDefinition.differential.element[0]",)
