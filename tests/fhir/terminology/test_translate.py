"""Concept maps (https://hl7.org/fhir/R4/conceptmap-operation-translate.html)."""

from __future__ import annotations

from typing import Any

import pytest

from fhirhub.errors import InvalidError, NotFoundError
from fhirhub.fhir.terminology import terminology

GENDER = "http://hl7.org/fhir/administrative-gender"
V2_SEX = "http://terminology.hl7.org/CodeSystem/v2-0001"
V2_MAP = "http://hl7.org/fhir/ConceptMap/cm-administrative-gender-v2"
UK_GENDER = "https://fhir.hl7.org.uk/CodeSystem/NHSDataModelAndDictionary-PersonStatedGenderCode"


def matches(parameters: dict[str, Any]) -> list[tuple[str, str | None, str | None, str]]:
    """(equivalence, system, code, source map) of each match."""
    found = []
    for p in parameters["parameter"]:
        if p["name"] == "match":
            parts = {part["name"]: part for part in p["part"]}
            coding = parts.get("concept", {}).get("valueCoding", {})
            found.append((parts["equivalence"]["valueCode"], coding.get("system"), coding.get("code"),
                          parts["source"]["valueUri"]))
    return found


def result(parameters: dict[str, Any]) -> bool:
    return bool(parameters["parameter"][0]["valueBoolean"])


def concept_map(group: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "ConceptMap", "url": "http://example.org/cm", "status": "active",
            "group": [{"source": "http://example.org/a", "target": "http://example.org/b", **group}]}


def test_translate_finds_every_packaged_map_from_the_system() -> None:
    found = terminology().translate("male", GENDER)
    assert result(found)
    assert ("equal", V2_SEX, "M", V2_MAP) in matches(found)
    assert ("equivalent", UK_GENDER, "1",
            "https://fhir.hl7.org.uk/ConceptMap/ConceptMap-UKCore-AdministrativeGender") in matches(found)


def test_translate_to_one_target_system_with_several_matches() -> None:
    found = terminology().translate("other", GENDER, target_system=V2_SEX)
    assert matches(found) == [("wider", V2_SEX, "A", V2_MAP), ("wider", V2_SEX, "O", V2_MAP)]


def test_translate_through_a_named_map_or_between_named_value_sets() -> None:
    tx = terminology()
    assert [m[2] for m in matches(tx.translate("female", GENDER, concept_map=V2_MAP))] == ["F"]
    between = tx.translate("female", GENDER, source="http://hl7.org/fhir/ValueSet/administrative-gender",
                           target="http://terminology.hl7.org/ValueSet/v3-AdministrativeGender")
    assert [m[2] for m in matches(between)] == ["F"]


def test_reverse_translation_turns_the_equivalence_round() -> None:
    found = terminology().translate("A", V2_SEX, reverse=True)
    assert matches(found) == [("narrower", GENDER, "other", V2_MAP)]


def test_untranslatable_code_gives_result_false_with_a_message() -> None:
    found = terminology().translate("nope", GENDER, target_system=V2_SEX)
    assert not result(found)
    message = found["parameter"][1]["valueString"]
    assert "'nope'" in message and V2_MAP in message


def test_no_map_from_the_system_gives_result_false() -> None:
    found = terminology().translate("x", "http://example.org/unmapped")
    assert not result(found)
    assert found["parameter"][1]["valueString"] == (
        "No ConceptMap on this server maps codes from http://example.org/unmapped")


def test_unmatched_equivalence_is_a_match_but_not_a_result() -> None:
    cm = concept_map({"element": [{"code": "x", "target": [{"equivalence": "unmatched"}]}]})
    found = terminology().translate("x", "http://example.org/a", concept_map=cm)
    assert not result(found)
    assert matches(found) == [("unmatched", None, None, "http://example.org/cm")]


def test_unmapped_codes_follow_the_group_unmapped_rule() -> None:
    tx = terminology()
    provided = concept_map({"unmapped": {"mode": "provided"}})
    assert matches(tx.translate("q", "http://example.org/a", concept_map=provided)) == [
        ("equal", "http://example.org/b", "q", "http://example.org/cm")]
    fixed = concept_map({"unmapped": {"mode": "fixed", "code": "other"}})
    assert matches(tx.translate("q", "http://example.org/a", concept_map=fixed))[0][:3] == (
        "inexact", "http://example.org/b", "other")
    other_map = {"resourceType": "ConceptMap", "url": "http://example.org/cm2", "group": [
        {"source": GENDER, "target": V2_SEX, "unmapped": {"mode": "other-map", "url": V2_MAP}}]}
    assert matches(tx.translate("male", GENDER, concept_map=other_map)) == [("equal", V2_SEX, "M", V2_MAP)]


def test_translate_errors() -> None:
    with pytest.raises(NotFoundError, match=r"concept map http://example\.org/none is not known"):
        terminology().translate("male", GENDER, concept_map="http://example.org/none")
    with pytest.raises(InvalidError, match="needs the code's system"):
        terminology().translate("male")
