"""Codes against value sets, as the profile validator asks on every write
(https://hl7.org/fhir/R4/valueset-operation-validate-code.html, compose:
https://hl7.org/fhir/R4/valueset.html#compose)."""

from __future__ import annotations

import time
from typing import Any

from fhirhub.fhir.definitions import Definitions, packaged
from fhirhub.fhir.terminology import Terminology, terminology

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER = "http://hl7.org/fhir/administrative-gender"
SNOMED = "http://snomed.info/sct"
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def value_set(*include: dict[str, Any], exclude: tuple[dict[str, Any], ...] = (),
              **extra: Any) -> dict[str, Any]:
    compose: dict[str, Any] = {"include": list(include), **extra}
    if exclude:
        compose["exclude"] = list(exclude)
    return {"resourceType": "ValueSet", "url": "http://example.org/vs", "status": "active",
            "compose": compose}


def test_validate_code_accepts_a_code_of_administrative_gender() -> None:
    check = terminology().validate_code(GENDER_VS, GENDER, "female")
    assert check.result is True
    assert check.display == "Female"


def test_validate_code_refuses_a_code_not_in_the_value_set_and_says_where() -> None:
    check = terminology().validate_code(GENDER_VS, GENDER, "woman")
    assert check.result is False
    assert "'woman'" in check.message and GENDER in check.message and GENDER_VS in check.message


def test_validate_code_refuses_a_code_system_the_value_set_does_not_use() -> None:
    check = terminology().validate_code(GENDER_VS, "http://example.org/other", "male")
    assert check.result is False
    assert "has no codes from http://example.org/other" in check.message


def test_validate_code_respects_case_sensitivity_of_each_code_system() -> None:
    tx = terminology()
    assert tx.validate_code(GENDER_VS, GENDER, "Male").result is False  # caseSensitive: true
    yes_no = "http://terminology.hl7.org/ValueSet/v2-0136"  # v2-0136 does not state it
    assert tx.validate_code(yes_no, "http://terminology.hl7.org/CodeSystem/v2-0136", "y").result


def test_validate_code_checks_the_display_against_every_designation() -> None:
    tx = terminology()
    assert tx.validate_code(GENDER_VS, GENDER, "male", "male").display_ok  # case is ignored
    check = tx.validate_code(GENDER_VS, GENDER, "male", "Man")
    assert check.result is True and check.display_ok is False
    assert "'Man'" in check.message and "'Male'" in check.message


def test_bare_code_without_system_is_looked_for_in_every_system_of_the_value_set() -> None:
    tx = terminology()
    yes_no_unknown = "http://hl7.org/fhir/ValueSet/yesnodontknow"
    assert tx.validate_code(yes_no_unknown, None, "asked-unknown").result is True
    assert tx.validate_code(yes_no_unknown, None, "Y").result is True
    assert tx.validate_code(yes_no_unknown, None, "maybe").result is False
    assert tx.validate_code(GENDER_VS, None, "MALE").result is False


def test_validate_code_for_snomed_code_cannot_be_checked() -> None:
    check = terminology().validate_code("http://hl7.org/fhir/ValueSet/clinical-findings", SNOMED,
                                        "22298006")
    assert check.result is None
    assert "22298006" in check.message and SNOMED in check.message
    assert "not available on this server" in check.message


def test_value_set_with_snomed_filter_still_checks_codes_of_other_systems() -> None:
    snomed_filter = [{"property": "concept", "op": "is-a", "value": "404684003"}]
    vs = value_set({"system": SNOMED, "filter": snomed_filter}, {"system": GENDER})
    tx = terminology()
    assert tx.validate_code(vs, GENDER, "other").result is True
    assert tx.validate_code(vs, GENDER, "nope").result is False
    assert tx.validate_code(vs, SNOMED, "22298006").result is None
    assert tx.validate_code(vs, None, "22298006").result is None  # could be a SNOMED code


def test_value_set_listing_concepts_of_an_unpackaged_system_is_checkable() -> None:
    # referencerange-appliesto lists three SNOMED CT concepts by code.
    url = "http://hl7.org/fhir/ValueSet/referencerange-appliesto"
    tx = terminology()
    assert tx.validate_code(url, SNOMED, "248153007").result is True
    assert tx.validate_code(url, SNOMED, "22298006").result is False


def test_unknown_value_set_cannot_be_checked() -> None:
    check = terminology().validate_code("http://example.org/ValueSet/nowhere", GENDER, "male")
    assert check.result is None
    assert "http://example.org/ValueSet/nowhere is not available on this server" in check.message


def test_value_set_imports_are_followed() -> None:
    tx = terminology()
    url = "http://hl7.org/fhir/ValueSet/yesnodontknow"  # imports v2-0136, adds asked-unknown
    assert tx.validate_code(url, "http://terminology.hl7.org/CodeSystem/v2-0136", "N").result is True
    assert tx.validate_code(url, "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                            "asked-unknown").result is True
    assert tx.validate_code(url, "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                            "unknown").result is False


def test_import_of_an_unknown_value_set_makes_codes_outside_the_rest_uncertain() -> None:
    # media-modality imports dicom-cid29, which is not packaged.
    tx = terminology()
    url = "http://hl7.org/fhir/ValueSet/media-modality"
    assert tx.validate_code(url, "http://terminology.hl7.org/CodeSystem/media-modality", "diagram").result
    check = tx.validate_code(url, "http://dicom.nema.org/resources/ontology/DCM", "XX")
    assert check.result is None
    assert "dicom-cid29" in check.message


def test_excluded_codes_are_not_in_the_value_set() -> None:
    tx = terminology()
    url = "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode"  # is-a, minus the root
    assert tx.validate_code(url, ACT_CODE, "AMB").result is True
    assert tx.validate_code(url, ACT_CODE, "ACUTE").result is True
    assert tx.validate_code(url, ACT_CODE, "_ActEncounterCode").result is False
    assert tx.validate_code(url, ACT_CODE, "_ActAccountCode").result is False


def test_is_not_a_filter_leaves_out_the_concept_and_its_descendants() -> None:
    url = "http://hl7.org/fhir/ValueSet/patient-contactrelationship"
    system = "http://terminology.hl7.org/CodeSystem/v2-0131"
    assert terminology().validate_code(url, system, "C").result is True
    assert terminology().validate_code(url, system, "O").result is False


def test_exclusion_that_cannot_be_computed_makes_those_codes_uncertain() -> None:
    snomed_filter = [{"property": "concept", "op": "is-a", "value": "1"}]
    vs = value_set({"system": SNOMED, "concept": [{"code": "1"}, {"code": "2"}]}, {"system": GENDER},
                   exclude=({"system": SNOMED, "filter": snomed_filter},))
    tx = terminology()
    assert tx.validate_code(vs, SNOMED, "2").result is None
    assert tx.validate_code(vs, GENDER, "male").result is True


def test_compose_inactive_false_leaves_out_inactive_codes() -> None:
    vs = value_set({"system": NULL_FLAVOR}, inactive=False)
    tx = terminology()
    assert tx.validate_code(vs, NULL_FLAVOR, "NI").result is True
    assert tx.validate_code(vs, NULL_FLAVOR, "NP").result is False  # status: retired
    assert tx.validate_code(value_set({"system": NULL_FLAVOR}), NULL_FLAVOR, "NP").result is True


def test_packaged_expansion_confirms_codes_of_an_unpackaged_system() -> None:
    tx = terminology()
    url = "http://hl7.org/fhir/ValueSet/currencies"  # all of ISO 4217, not packaged
    check = tx.validate_code(url, "urn:iso:std:iso:4217", "GBP")
    assert check.result is True and check.display == "Pound sterling"
    assert tx.validate_code(url, "urn:iso:std:iso:4217", "XXZ").result is None


def test_uk_core_value_set_of_several_code_systems() -> None:
    tx = terminology()
    url = "https://fhir.hl7.org.uk/ValueSet/UKCore-NHSNumberVerificationStatus"
    england = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
    check = tx.validate_code(url, england, "01")
    assert check.result is True and check.display == "Number present and verified"
    assert tx.validate_code(url, england, "99").result is False
    assert tx.validate_code(url, NULL_FLAVOR, "NI").result is True  # listed by code
    assert tx.validate_code(url, NULL_FLAVOR, "UNK").result is False
    assert tx.validate_code(f"{url}|2.2.0", england, "02").result is True


def test_implicit_value_sets_of_a_code_system() -> None:
    tx = terminology()
    assert tx.validate_code("http://terminology.hl7.org/CodeSystem/v2-0001?fhir_vs",
                            "http://terminology.hl7.org/CodeSystem/v2-0001", "F").result is True
    assert tx.validate_code(f"{SNOMED}?fhir_vs=isa/404684003", SNOMED, "22298006").result is None


def test_value_sets_that_import_each_other_do_not_loop() -> None:
    definitions = Definitions()
    for name, other in (("a", "b"), ("b", "a")):
        own = {"system": "http://example.org/cs", "concept": [{"code": name}]}
        definitions.add({"resourceType": "ValueSet", "url": f"http://example.org/{name}",
                         "compose": {"include": [{"valueSet": [f"http://example.org/{other}"]}, own]}})
    tx = Terminology(definitions)
    assert tx.validate_code("http://example.org/a", "http://example.org/cs", "a").result is True
    assert tx.validate_code("http://example.org/a", "http://example.org/cs", "zz").result is None


def test_filter_this_server_cannot_apply_makes_that_system_uncertain() -> None:
    vs = value_set({"system": GENDER, "filter": [{"property": "concept", "op": "sounds-like", "value": "x"}]})
    check = terminology().validate_code(vs, GENDER, "male")
    assert check.result is None
    assert "sounds-like" in check.message


def test_construction_is_cheap_and_a_cached_check_is_constant_time() -> None:
    definitions = packaged()
    started = time.perf_counter()
    tx = Terminology(definitions)
    assert time.perf_counter() - started < 0.05  # nothing is computed up front
    tx.validate_code(GENDER_VS, GENDER, "male")
    started = time.perf_counter()
    for _ in range(10_000):
        tx.validate_code(GENDER_VS, GENDER, "male")
    assert time.perf_counter() - started < 0.5  # about 1 microsecond a check
