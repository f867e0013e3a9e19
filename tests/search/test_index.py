"""Index rows: what a resource contributes to search, by parameter type and datatype.

Spec: https://hl7.org/fhir/R4/search.html#ptypes — token (#token, its datatype table),
string (#string), reference (#reference), date (#date, "implicit ranges"), number (#number)
and quantity (#quantity) with the precision of their values, uri (#uri), the common
parameters (#all) and composites (#composite). The official examples of the R4 package are
indexed whole, and the typed fast path is checked against fhirpathpy over all of them.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from fhirhub.fhir import json as fjson
from fhirhub.fhir.fhirpath import compile_expression
from fhirhub.search._ucum import UCUM
from fhirhub.search.index import CANONICAL, ISO_4217, index_resource
from fhirhub.search.registry import registry
from fhirhub.search.types import (
    DateRow,
    IndexRows,
    NumberRow,
    QuantityRow,
    ReferenceRow,
    StringRow,
    TokenRow,
    UriRow,
)

EXAMPLES = Path(__file__).parent.parent / "data" / "r4-examples.ndjson.gz"
Json = dict[str, Any]


@cache
def examples() -> tuple[Json, ...]:
    with gzip.open(EXAMPLES, "rb") as fh:
        return tuple(fjson.loads(line) for line in fh if line.strip())


def example(resource_type: str, resource_id: str) -> Json:
    return next(r for r in examples()
                if r["resourceType"] == resource_type and r["id"] == resource_id)


def rows_of(rows: Iterable[Any], param: str) -> list[Any]:
    return [r for r in rows if r.param == param]


# -- the official examples ------------------------------------------------------------------


def test_every_official_example_is_indexed_without_error() -> None:
    assert len(examples()) == 773
    total = 0
    for resource in examples():
        rows = index_resource(resource)
        total += sum(len(getattr(rows, kind)) for kind in vars(rows))
    assert total > 7000


def test_patient_example_gives_identifier_family_and_birthdate_range() -> None:
    rows = index_resource(example("Patient", "example"))
    assert TokenRow("identifier", "urn:oid:1.2.36.146.595.217.0.1", "12345") in rows.token
    assert StringRow("family", "chalmers", "Chalmers") in rows.string
    assert StringRow("family", "windsor", "Windsor") in rows.string
    assert {r.exact for r in rows_of(rows.string, "given")} == {"Peter", "James", "Jim"}
    assert rows_of(rows.date, "birthdate") == [
        DateRow("birthdate", "1974-12-25T00:00:00.000000", "1974-12-25T23:59:59.999999")
    ]
    assert ReferenceRow("organization", "Organization", "1", None) in rows.reference
    assert TokenRow("gender", None, "male") in rows.token
    assert TokenRow("active", None, "true") in rows.token


def test_observation_example_gives_code_subject_date_and_value_quantity() -> None:
    rows = index_resource(example("Observation", "example"))
    assert TokenRow("code", "http://loinc.org", "29463-7", "body weight") in rows.token
    assert ReferenceRow("subject", "Patient", "example", None) in rows.reference
    assert ReferenceRow("patient", "Patient", "example", None) in rows.reference
    assert rows_of(rows.date, "date") == [
        DateRow("date", "2016-03-28T00:00:00.000000", "2016-03-28T23:59:59.999999")
    ]
    assert rows_of(rows.quantity, "value-quantity") == [
        QuantityRow("value-quantity", Decimal("184.5"), Decimal("185.5"),
                    "http://unitsofmeasure.org", "[lb_av]", "lbs")
    ]


def _comparable(values: Iterable[Any]) -> list[str]:
    return sorted({fjson.dumps(v).decode() for v in values if v is not None})


def _as_fhirpathpy_reads_it(expression: str, resource_type: str) -> str:
    # fhirpathpy does not start a path at the abstract Resource / DomainResource.
    expression = re.sub(r"\b(Resource|DomainResource)\.", resource_type + ".", expression)
    # R4 search expressions apply `as` to collections (Observation.component.value as
    # Quantity); FHIRPath N1 makes that an error, which fhirpathpy raises. The fast path
    # filters item by item, as ofType() does.
    return re.sub(r" as (\w+)\)", r").ofType(\1)", expression)


def test_fast_path_agrees_with_fhirpathpy_over_the_official_examples() -> None:
    reg = registry()
    compared = 0
    disagreements = []
    for resource in examples():
        resource_type = resource["resourceType"]
        for param in reg.indexed(resource_type):
            expression = param.extract.expression or ""
            if "hasExtension" in expression:  # not implemented by fhirpathpy: tested below
                continue
            evaluate = compile_expression(_as_fhirpathpy_reads_it(expression, resource_type))
            want = _comparable(evaluate(resource))
            got = _comparable(value for _type, value in param.extract(resource))
            compared += 1
            if got != want:
                disagreements.append((resource_type, resource["id"], param.code, got, want))
    assert compared > 15000
    assert disagreements == []


# -- token ----------------------------------------------------------------------------------


def test_codeable_concept_gives_a_row_per_coding_with_its_display_as_text() -> None:
    rows = index_resource({"resourceType": "Observation", "code": {
        "coding": [{"system": "http://loinc.org", "code": "1-8", "display": "Ächtung"},
                   {"system": "http://snomed.info/sct", "code": "42"}],
        "text": "Some Text"}})
    assert rows_of(rows.token, "code") == [
        TokenRow("code", "http://loinc.org", "1-8", "achtung"),
        TokenRow("code", "http://snomed.info/sct", "42", None),
        TokenRow("code", None, None, "some text"),
    ]


def test_codeable_concept_text_is_searchable_when_no_coding_has_a_code() -> None:
    rows = index_resource({"resourceType": "ServiceRequest", "bodySite": [
        {"coding": [{"display": "Right arm"}], "text": "Right arm"}]})
    assert rows_of(rows.token, "body-site") == [TokenRow("body-site", None, None, "right arm")]


def test_identifier_gives_system_and_value_and_an_of_type_row() -> None:
    rows = index_resource({"resourceType": "Patient", "identifier": [{
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                             "code": "MR"}], "text": "Medical record"},
        "system": "http://hospital/mrn", "value": "A1"}]})
    assert [r for r in rows.token if r.param.startswith("identifier")] == [
        TokenRow("identifier", "http://hospital/mrn", "A1", "medical record"),
        TokenRow("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203", "MR|A1"),
    ]


def test_contact_point_gives_its_value_without_a_system() -> None:
    rows = index_resource({"resourceType": "Patient", "telecom": [
        {"system": "phone", "value": "0123"}, {"system": "email", "value": "a@b.c"}]})
    assert rows_of(rows.token, "telecom") == [TokenRow("telecom", None, "0123"),
                                             TokenRow("telecom", None, "a@b.c")]
    assert rows_of(rows.token, "phone") == [TokenRow("phone", None, "0123")]
    assert rows_of(rows.token, "email") == [TokenRow("email", None, "a@b.c")]


def test_boolean_and_code_give_the_value_alone() -> None:
    rows = index_resource({"resourceType": "Patient", "active": False, "gender": "female"})
    assert TokenRow("active", None, "false") in rows.token
    assert TokenRow("gender", None, "female") in rows.token


@pytest.mark.parametrize(("deceased", "code"), [
    ({}, "false"),
    ({"deceasedBoolean": False}, "false"),
    ({"deceasedBoolean": True}, "true"),
    ({"deceasedDateTime": "2020-01-01"}, "true"),
])
def test_deceased_is_true_only_for_a_deceased_patient(deceased: Json, code: str) -> None:
    rows = index_resource({"resourceType": "Patient", **deceased})
    assert rows_of(rows.token, "deceased") == [TokenRow("deceased", None, code)]


# -- string ---------------------------------------------------------------------------------


def test_human_name_gives_a_row_per_part_normalised_and_exact() -> None:
    rows = index_resource({"resourceType": "Patient", "name": [{
        "text": "Dr Zoë O'Brien", "family": "O'Brien", "given": ["Zoë", "Anne"],
        "prefix": ["Dr"], "suffix": ["PhD"]}]})
    assert rows_of(rows.string, "name") == [
        StringRow("name", "o'brien", "O'Brien"),
        StringRow("name", "zoe", "Zoë"),
        StringRow("name", "anne", "Anne"),
        StringRow("name", "dr", "Dr"),
        StringRow("name", "phd", "PhD"),
        StringRow("name", "dr zoe o'brien", "Dr Zoë O'Brien"),
    ]


def test_address_gives_a_row_per_part() -> None:
    rows = index_resource({"resourceType": "Patient", "address": [{
        "line": ["1 High St", "Flat 2"], "city": "Leeds", "district": "West Yorkshire",
        "state": "England", "postalCode": "LS1 1AA", "country": "UK"}]})
    assert [r.exact for r in rows_of(rows.string, "address")] == [
        "1 High St", "Flat 2", "Leeds", "West Yorkshire", "England", "LS1 1AA", "UK"]
    assert rows_of(rows.string, "address-postalcode") == [
        StringRow("address-postalcode", "ls1 1aa", "LS1 1AA")]


def test_extension_parameter_indexes_the_extension_value() -> None:
    url = "http://hl7.org/fhir/StructureDefinition/patient-extensions-Patient-mothersMaidenName"
    rows = index_resource({"resourceType": "Patient",
                           "extension": [{"url": url, "valueString": "Smith"}]})
    assert rows_of(rows.string, "mothersMaidenName") == [
        StringRow("mothersMaidenName", "smith", "Smith")]


# -- reference ------------------------------------------------------------------------------


@pytest.mark.parametrize(("reference", "row"), [
    ("Patient/1", ReferenceRow("subject", "Patient", "1", None)),
    ("Patient/1/_history/3", ReferenceRow("subject", "Patient", "1", None)),
    ("http://other.org/fhir/Patient/9",
     ReferenceRow("subject", "Patient", "9", "http://other.org/fhir/Patient/9")),
    ("urn:uuid:8c3b2d8e-6f4a-4b1b-9e8e-3a1f4f2b7c55",
     ReferenceRow("subject", None, None, "urn:uuid:8c3b2d8e-6f4a-4b1b-9e8e-3a1f4f2b7c55")),
])
def test_reference_gives_type_and_id_and_keeps_absolute_urls(
    reference: str, row: ReferenceRow
) -> None:
    rows = index_resource({"resourceType": "Observation", "subject": {"reference": reference}})
    assert rows_of(rows.reference, "subject") == [row]


def test_contained_reference_gives_no_row() -> None:
    rows = index_resource({"resourceType": "Observation",
                           "contained": [{"resourceType": "Patient", "id": "p"}],
                           "subject": {"reference": "#p"}})
    assert rows.reference == []


def test_reference_identifier_gives_an_identifier_row() -> None:
    rows = index_resource({"resourceType": "Observation", "subject": {
        "type": "Patient", "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number",
                                          "value": "9000000009"}}})
    assert rows.reference == []
    assert TokenRow("subject:identifier", "https://fhir.nhs.uk/Id/nhs-number",
                    "9000000009") in rows.token
    # resolve() is rewritten to a type test, which Reference.type answers.
    assert TokenRow("patient:identifier", "https://fhir.nhs.uk/Id/nhs-number",
                    "9000000009") in rows.token


@pytest.mark.parametrize(("subject", "patient_rows"), [
    ({"reference": "Patient/1"}, 1),
    ({"reference": "http://x.org/fhir/Patient/1"}, 1),
    ({"reference": "Group/1"}, 0),
    ({"reference": "urn:uuid:0c3b2d8e-6f4a-4b1b-9e8e-3a1f4f2b7c55"}, 0),
])
def test_where_resolve_is_type_keeps_references_to_that_type(
    subject: Json, patient_rows: int
) -> None:
    rows = index_resource({"resourceType": "Observation", "subject": subject})
    assert len(rows_of(rows.reference, "subject")) == 1
    assert len(rows_of(rows.reference, "patient")) == patient_rows


def test_canonical_reference_gives_its_url_without_version() -> None:
    rows = index_resource({"resourceType": "QuestionnaireResponse",
                           "questionnaire": "http://example.org/Questionnaire/q|2.0"})
    assert rows_of(rows.reference, "questionnaire") == [
        ReferenceRow("questionnaire", None, None, "http://example.org/Questionnaire/q")]


def test_questionnaire_item_subject_uses_the_has_extension_filter() -> None:
    flag = "http://hl7.org/fhir/StructureDefinition/questionnaireresponse-isSubject"
    rows = index_resource({"resourceType": "QuestionnaireResponse", "item": [
        {"linkId": "1", "extension": [{"url": flag, "valueBoolean": True}],
         "answer": [{"valueReference": {"reference": "Patient/7"}}]},
        {"linkId": "2", "answer": [{"valueReference": {"reference": "Patient/8"}}]}]})
    assert rows_of(rows.reference, "item-subject") == [
        ReferenceRow("item-subject", "Patient", "7", None)]


# -- date -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "lo", "hi"), [
    ("2020", "2020-01-01T00:00:00.000000", "2020-12-31T23:59:59.999999"),
    ("2020-02", "2020-02-01T00:00:00.000000", "2020-02-29T23:59:59.999999"),
    ("2020-02-03", "2020-02-03T00:00:00.000000", "2020-02-03T23:59:59.999999"),
    ("2020-02-03T10:00:00+10:00", "2020-02-03T00:00:00.000000", "2020-02-03T00:00:00.999999"),
    ("2020-02-03T10:00:00Z", "2020-02-03T10:00:00.000000", "2020-02-03T10:00:00.999999"),
    # No zone: taken as UTC (see fhirhub.search._values).
    ("2020-02-03T10:00:00", "2020-02-03T10:00:00.000000", "2020-02-03T10:00:00.999999"),
    ("2020-02-03T10:00:00.25Z", "2020-02-03T10:00:00.250000", "2020-02-03T10:00:00.259999"),
])
def test_date_is_the_range_its_precision_covers_in_utc(value: str, lo: str, hi: str) -> None:
    rows = index_resource({"resourceType": "Observation", "effectiveDateTime": value})
    assert rows_of(rows.date, "date") == [DateRow("date", lo, hi)]


def test_period_without_end_runs_to_the_last_instant() -> None:
    rows = index_resource({"resourceType": "Encounter", "period": {"start": "2021-05-01"}})
    assert rows_of(rows.date, "date") == [
        DateRow("date", "2021-05-01T00:00:00.000000", "9999-12-31T23:59:59.999999")]


def test_period_without_start_runs_from_the_first_instant() -> None:
    rows = index_resource({"resourceType": "Encounter", "period": {"end": "2021-05-01"}})
    assert rows_of(rows.date, "date") == [
        DateRow("date", "0001-01-01T00:00:00.000000", "2021-05-01T23:59:59.999999")]


def test_timing_gives_the_outer_limits_of_its_events() -> None:
    rows = index_resource({"resourceType": "CarePlan", "activity": [{"detail": {
        "scheduledTiming": {"event": ["2021-03-05", "2021-01-02", "2021-02-03T10:00:00Z"]}}}]})
    assert rows_of(rows.date, "activity-date") == [
        DateRow("activity-date", "2021-01-02T00:00:00.000000", "2021-03-05T23:59:59.999999")]


def test_last_updated_gives_no_row_because_stores_keep_it_in_a_column() -> None:
    rows = index_resource({"resourceType": "Patient",
                           "meta": {"lastUpdated": "2024-01-02T03:04:05.678+00:00"}})
    assert rows_of(rows.date, "_lastUpdated") == []


def test_malformed_date_gives_no_row() -> None:
    rows = index_resource({"resourceType": "Patient", "birthDate": "2020-13-01"})
    assert rows.date == []


# -- number and quantity --------------------------------------------------------------------


def test_quantity_is_the_range_of_its_precision_with_system_code_and_unit() -> None:
    rows = index_resource({"resourceType": "Observation", "valueQuantity": {
        "value": Decimal("5.40"), "unit": "mg", "system": "http://unitsofmeasure.org",
        "code": "mg"}})
    assert rows_of(rows.quantity, "value-quantity") == [QuantityRow(
        "value-quantity", Decimal("5.395"), Decimal("5.405"), "http://unitsofmeasure.org",
        "mg", "mg")]


def test_money_is_a_quantity_in_iso_4217() -> None:
    rows = index_resource({"resourceType": "ChargeItem",
                           "priceOverride": {"value": 12, "currency": "GBP"}})
    assert rows_of(rows.quantity, "price-override") == [QuantityRow(
        "price-override", Decimal("11.5"), Decimal("12.5"), ISO_4217, "GBP", None)]


def test_range_is_one_quantity_row_from_low_to_high() -> None:
    rows = index_resource({"resourceType": "Condition", "onsetRange": {
        "low": {"value": 2, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
        "high": {"value": Decimal("4.0"), "unit": "a"}}})
    assert rows_of(rows.quantity, "onset-age") == [QuantityRow(
        "onset-age", Decimal("1.5"), Decimal("4.05"), "http://unitsofmeasure.org", "a", "a")]


def test_half_open_range_gives_no_row() -> None:
    rows = index_resource({"resourceType": "Condition", "onsetRange": {"low": {"value": 2}}})
    assert rows.quantity == []


def test_number_is_the_range_of_its_precision() -> None:
    rows = index_resource({"resourceType": "RiskAssessment",
                           "prediction": [{"probabilityDecimal": Decimal("0.25")}]})
    assert rows_of(rows.number, "probability") == [
        NumberRow("probability", Decimal("0.245"), Decimal("0.255"))]


# -- uri and meta ---------------------------------------------------------------------------


def test_meta_gives_tag_security_profile_and_source() -> None:
    rows = index_resource({"resourceType": "Patient", "meta": {
        "tag": [{"system": "http://t", "code": "a"}],
        "security": [{"system": "http://s", "code": "R"}],
        "profile": ["http://p/StructureDefinition/x|1.0"],
        "source": "http://src#1"}})
    assert TokenRow("_tag", "http://t", "a") in rows.token
    assert TokenRow("_security", "http://s", "R") in rows.token
    assert rows_of(rows.uri, "_profile") == [
        UriRow("_profile", "http://p/StructureDefinition/x|1.0"),
        UriRow("_profile", "http://p/StructureDefinition/x")]
    assert rows_of(rows.uri, "_source") == [UriRow("_source", "http://src#1")]


def test_id_gives_no_rows() -> None:
    rows = index_resource({"resourceType": "Patient", "id": "abc"})
    assert rows == IndexRows(token=[TokenRow("deceased", None, "false")])


# -- composites, duplicates, custom parameters ----------------------------------------------


def test_composite_rows_keep_each_component_with_its_own_value() -> None:
    rows = index_resource(example("Observation", "blood-pressure"))
    found = [r for r in rows.composite if r.param == "component-code-value-quantity"]
    by_combo: dict[int, dict[int, set[object]]] = {}
    for r in found:
        by_combo.setdefault(r.combo, {}).setdefault(r.pos, set()).add(
            r.code if r.pos == 0 else r.lo)
    systolic = [c for c in by_combo.values() if "8480-6" in c[0]]
    assert len(systolic) == 1
    assert systolic[0][1] == {Decimal("106.5")}  # 107 mm[Hg], as written
    canonical_rows = [r for r in rows.composite
                      if r.param == "component-code-value-quantity" + CANONICAL]
    assert {r.system for r in canonical_rows if r.pos == 1} == {UCUM}


def test_text_rows_hold_the_narrative_and_content_words() -> None:
    rows = index_resource({"resourceType": "Patient", "name": [{"family": "Zoë"}],
                           "text": {"status": "generated",
                                    "div": "<div>Seen <b>today</b> &amp; well<!-- draft --></div>"}})
    text = {r.param: r.words for r in rows.text}
    assert text["_text"] == " seen today well "  # comments are not text a person reads
    assert " zoe " in text["_content"] and " today " in text["_content"]


def test_equal_rows_are_given_once() -> None:
    rows = index_resource({"resourceType": "Patient", "name": [{"given": ["Ann"]},
                                                               {"given": ["Ann"]}]})
    assert rows_of(rows.string, "given") == [StringRow("given", "ann", "Ann")]


def test_custom_registry_adds_its_parameters() -> None:
    custom = registry().with_custom([{
        "resourceType": "SearchParameter", "code": "nickname", "base": ["Patient"],
        "type": "string", "expression": "Patient.name.where(use='nickname').given"}])
    rows = index_resource({"resourceType": "Patient", "name": [
        {"use": "nickname", "given": ["Bob"]}, {"use": "official", "given": ["Robert"]}]},
        using=custom)
    assert rows_of(rows.string, "nickname") == [StringRow("nickname", "bob", "Bob")]
