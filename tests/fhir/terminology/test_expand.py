"""Value set expansion (https://hl7.org/fhir/R4/valueset-operation-expand.html): compose
filters (https://hl7.org/fhir/R4/valueset.html#compose), imports, excludes, text filter,
paging, and the packaged pre-computed expansions."""

from __future__ import annotations

from typing import Any

import pytest

from fhirhub.errors import NotFoundError, UnprocessableError
from fhirhub.fhir.definitions import packaged
from fhirhub.fhir.terminology import terminology

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER = "http://hl7.org/fhir/administrative-gender"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
V2_SEX = "http://terminology.hl7.org/CodeSystem/v2-0001"
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
UNCLOSED = "http://hl7.org/fhir/StructureDefinition/valueset-unclosed"


def filtered(system: str, op: str, value: str, prop: str = "concept") -> dict[str, Any]:
    return {"resourceType": "ValueSet", "url": "http://example.org/vs", "status": "active",
            "compose": {"include": [{"system": system,
                                     "filter": [{"property": prop, "op": op, "value": value}]}]}}


def codes(expanded: dict[str, Any]) -> list[str]:
    return [c["code"] for c in expanded["expansion"].get("contains", [])]


def test_expand_administrative_gender_lists_its_four_codes() -> None:
    expanded = terminology().expand(GENDER_VS)
    assert expanded["resourceType"] == "ValueSet" and expanded["url"] == GENDER_VS
    assert codes(expanded) == ["male", "female", "other", "unknown"]
    assert expanded["expansion"]["total"] == 4
    assert expanded["expansion"]["contains"][0] == {"system": GENDER, "version": "4.0.1",
                                                    "code": "male", "display": "Male"}
    assert expanded["expansion"]["identifier"].startswith("urn:uuid:")
    assert "text" not in expanded


def test_is_a_filter_includes_the_concept_and_its_descendants() -> None:
    assert codes(terminology().expand(filtered(ACT_CODE, "is-a", "IMP"))) == ["IMP", "ACUTE", "NONAC"]


def test_descendent_of_filter_leaves_out_the_concept_itself() -> None:
    assert codes(terminology().expand(filtered(ACT_CODE, "descendent-of", "IMP"))) == ["ACUTE", "NONAC"]


def test_is_a_follows_every_parent_of_a_poly_hierarchy() -> None:
    assert "DAUADOPT" in codes(terminology().expand(filtered(ROLE_CODE, "is-a", "DAUC")))
    assert "DAUADOPT" in codes(terminology().expand(filtered(ROLE_CODE, "is-a", "CHLDADOPT")))


def test_is_not_a_filter_is_everything_else() -> None:
    found = codes(terminology().expand(filtered(V2_SEX, "is-not-a", "M")))
    assert "M" not in found and "F" in found


def test_generalizes_filter_is_the_concept_and_its_ancestors() -> None:
    found = set(codes(terminology().expand(filtered(ACT_CODE, "generalizes", "ACUTE"))))
    assert {"ACUTE", "IMP", "_ActEncounterCode"} <= found
    assert "AMB" not in found


def test_regex_filter_matches_whole_codes() -> None:
    assert codes(terminology().expand(filtered(V2_SEX, "regex", "[AM]", "code"))) == ["A", "M"]


def test_in_and_not_in_filters() -> None:
    tx = terminology()
    assert codes(tx.expand(filtered(V2_SEX, "in", "F,M,Q"))) == ["F", "M"]
    assert "F" not in codes(tx.expand(filtered(V2_SEX, "not-in", "F,M")))


def test_equals_and_exists_filters_on_a_concept_property() -> None:
    tx = terminology()
    abstract = codes(tx.expand(filtered(ACT_CODE, "=", "true", "notSelectable")))
    assert "_ActEncounterCode" in abstract and "AMB" not in abstract
    assert set(codes(tx.expand(filtered(ACT_CODE, "exists", "true", "notSelectable")))) == set(abstract)


def test_filter_this_server_cannot_apply_is_refused_clearly() -> None:
    with pytest.raises(UnprocessableError, match="operator 'sounds-like' is not one") as error:
        terminology().expand(filtered(V2_SEX, "sounds-like", "x"))
    assert error.value.issue_code == "not-supported"
    with pytest.raises(UnprocessableError, match="too costly"):
        terminology().expand(filtered(V2_SEX, "regex", "(a+)+b", "code"))


def test_expansion_follows_imports_and_applies_excludes() -> None:
    tx = terminology()
    assert codes(tx.expand("http://hl7.org/fhir/ValueSet/yesnodontknow")) == ["N", "Y", "asked-unknown"]
    encounter = codes(tx.expand("http://terminology.hl7.org/ValueSet/v3-ActEncounterCode"))
    assert "AMB" in encounter and "_ActEncounterCode" not in encounter


def test_abstract_and_inactive_concepts_are_marked_and_active_only_leaves_inactive_out() -> None:
    tx = terminology()
    root = tx.expand(filtered(ACT_CODE, "is-a", "_ActEncounterCode"))["expansion"]["contains"][0]
    assert root["code"] == "_ActEncounterCode" and root["abstract"] is True
    whole = {"resourceType": "ValueSet", "compose": {"include": [{"system": NULL_FLAVOR}]}}
    retired = [c for c in tx.expand(whole)["expansion"]["contains"] if c.get("inactive")]
    assert [c["code"] for c in retired] == ["NP"]
    assert "NP" not in codes(tx.expand(whole, active_only=True))


def test_expand_with_filter_returns_only_matching_concepts() -> None:
    tx = terminology()
    assert codes(tx.expand(GENDER_VS, filter="male")) == ["male"]  # a word start, not "female"
    assert codes(tx.expand(GENDER_VS, filter="FEM")) == ["female"]
    assert codes(tx.expand(GENDER_VS, filter="unk")) == ["unknown"]
    assert codes(tx.expand(GENDER_VS, filter="nothing like it")) == []
    patient = "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode"
    assert "IMP" in codes(tx.expand(patient, filter="inpatient enc"))
    parameters = tx.expand(GENDER_VS, filter="male")["expansion"]["parameter"]
    assert {"name": "filter", "valueString": "male"} in parameters


def test_paging_with_count_and_offset() -> None:
    tx = terminology()
    page = tx.expand(GENDER_VS, count=2, offset=1)["expansion"]
    assert [c["code"] for c in page["contains"]] == ["female", "other"]
    assert (page["total"], page["offset"]) == (4, 1)
    assert {"name": "count", "valueInteger": 2} in page["parameter"]
    assert {"name": "offset", "valueInteger": 1} in page["parameter"]
    beyond = tx.expand(GENDER_VS, count=2, offset=10)["expansion"]
    assert beyond["total"] == 4 and "contains" not in beyond
    assert len(codes(tx.expand(GENDER_VS, count=1_000_000))) == 4  # a large count is no error
    only_total = tx.expand(GENDER_VS, count=0)["expansion"]
    assert only_total["total"] == 4 and "contains" not in only_total


def test_expansion_too_large_for_one_response_must_be_paged(monkeypatch: pytest.MonkeyPatch) -> None:
    from fhirhub.fhir.terminology import _expand

    monkeypatch.setattr(_expand, "MAX_EXPANSION", 3)
    with pytest.raises(UnprocessableError, match="page through it with count and offset") as error:
        terminology().expand(GENDER_VS)
    assert error.value.issue_code == "too-costly"
    assert len(codes(terminology().expand(GENDER_VS, count=3))) == 3
    assert len(codes(terminology().expand(GENDER_VS, count=3, offset=2))) == 2


def test_designations_are_included_when_asked() -> None:
    vs = {"resourceType": "ValueSet", "compose": {"include": [{"system": "http://hl7.org/fhir/link-type"}]}}
    plain = terminology().expand(vs)["expansion"]["contains"]
    assert all("designation" not in c for c in plain)
    rich = terminology().expand(vs, include_designations=True)["expansion"]["contains"]
    assert {"language": "nl", "value": "Vervangen door"} in rich[0]["designation"]


def test_uk_core_value_sets_expand() -> None:
    tx = terminology()
    gender = tx.expand("https://fhir.hl7.org.uk/ValueSet/UKCore-PersonStatedGenderCode")
    assert codes(gender) == ["1", "2", "9", "X"]
    status = tx.expand("https://fhir.hl7.org.uk/ValueSet/UKCore-NHSNumberVerificationStatus")
    assert status["expansion"]["total"] == 18
    assert {"system": NULL_FLAVOR, "code": "NI", "display": "NoInformation"}.items() <= (
        status["expansion"]["contains"][-1].items())


def test_packaged_expansion_is_used_when_the_compose_needs_an_unpackaged_system() -> None:
    currencies = terminology().expand("http://hl7.org/fhir/ValueSet/currencies", filter="pound")
    expansion = currencies["expansion"]
    assert {"url": UNCLOSED, "valueBoolean": True} in expansion["extension"]
    assert "GBP" in codes(currencies)
    packaged_one = packaged().expansion("http://hl7.org/fhir/ValueSet/currencies")
    assert packaged_one is not None
    assert expansion["identifier"] == packaged_one["expansion"]["identifier"]  # that expansion


def test_packaged_expansion_cut_short_has_no_total() -> None:
    body_site = terminology().expand("http://hl7.org/fhir/ValueSet/body-site", count=5)["expansion"]
    assert "total" not in body_site
    assert len(body_site["contains"]) == 5
    assert any(e["url"].endswith("valueset-toocostly") for e in body_site["extension"])


def test_value_set_needing_snomed_without_packaged_expansion_cannot_be_expanded() -> None:
    with pytest.raises(UnprocessableError, match=r"cannot be expanded on this server: .*snomed") as error:
        terminology().expand("http://hl7.org/fhir/ValueSet/use-context")
    assert error.value.issue_code == "not-supported"


def test_fragment_code_system_expands_as_unclosed() -> None:
    vs = {"resourceType": "ValueSet", "compose": {"include": [
        {"system": "http://terminology.hl7.org/CodeSystem/insurance-plan-type"}]}}
    expansion = terminology().expand(vs)["expansion"]
    assert expansion["total"] == 10
    assert {"url": UNCLOSED, "valueBoolean": True} in expansion["extension"]


def test_unknown_value_set_is_not_found() -> None:
    with pytest.raises(NotFoundError, match=r"value set http://example\.org/nowhere is not known"):
        terminology().expand("http://example.org/nowhere")
