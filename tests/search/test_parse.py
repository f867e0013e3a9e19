"""Query parameters into the neutral query tree: https://hl7.org/fhir/R4/search.html

Parameter types and their value syntax (#ptypes, #prefix, #escaping), AND and OR
(#combining), modifiers (#modifiers), chains and reverse chains (#chaining, #has),
result parameters (#return: _sort, _count, _include, _revinclude, _total), and how unknown
parameters and bad values are handled (#errors, Prefer: handling=strict|lenient).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhirhub.errors import Issue
from fhirhub.search.parse import canonical_params, parse_search
from fhirhub.search.registry import registry
from fhirhub.search.types import (
    CompositeValue,
    Include,
    Predicate,
    Prefix,
    RangeValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    TokenValue,
)


def parse(
    *params: tuple[str, str], types: tuple[str, ...] = ("Patient",), strict: bool = True
) -> tuple[SearchQuery, list[Issue]]:
    return parse_search(types, list(params), strict=strict, default_count=20, max_count=100)


def only(*params: tuple[str, str], types: tuple[str, ...] = ("Patient",)) -> Predicate:
    """The single predicate of a search that must parse without issues."""
    query, issues = parse(*params, types=types)
    assert issues == []
    assert len(query.predicates) == 1
    return query.predicates[0]


def error(*params: tuple[str, str], types: tuple[str, ...] = ("Patient",)) -> Issue:
    _query, issues = parse(*params, types=types)
    assert len(issues) == 1, issues
    assert issues[0].severity == "error"
    return issues[0]


# -- token ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("http://x|1", TokenValue("http://x", "1")),
    ("|1", TokenValue("", "1")),
    ("1", TokenValue(None, "1")),
    ("http://x|", TokenValue("http://x", None)),
    (r"a\|b", TokenValue(None, "a|b")),
    (r"http://x|a\,b", TokenValue("http://x", "a,b")),
])
def test_token_forms(text: str, value: TokenValue) -> None:
    assert only(("identifier", text)).values == (value,)


def test_token_with_two_bars_is_invalid() -> None:
    issue = error(("identifier", "a|b|c"))
    assert (issue.code, issue.spine_code) == ("invalid", "INVALID_VALUE")
    assert "identifier" in issue.diagnostics


def test_comma_ors_values_within_one_predicate() -> None:
    assert only(("gender", "male,female")).values == (TokenValue(None, "male"),
                                                     TokenValue(None, "female"))


def test_repeated_parameter_ands_two_predicates() -> None:
    query, _ = parse(("birthdate", "ge2000"), ("birthdate", "lt2010"))
    assert [p.values for p in query.predicates] == [
        (RangeValue("ge", "2000-01-01T00:00:00.000000", "2000-12-31T23:59:59.999999"),),
        (RangeValue("lt", "2010-01-01T00:00:00.000000", "2010-12-31T23:59:59.999999"),),
    ]


@pytest.mark.parametrize(("modifier", "text", "value"), [
    ("not", "male", TokenValue(None, "male")),
    ("text", "Body weight", TokenValue(None, "Body weight")),
    ("in", "http://example.org/ValueSet/vs", "http://example.org/ValueSet/vs"),
    ("not-in", "http://example.org/ValueSet/vs", "http://example.org/ValueSet/vs"),
    ("below", "http://snomed.info/sct|235856003", TokenValue("http://snomed.info/sct",
                                                            "235856003")),
])
def test_token_modifiers(modifier: str, text: str, value: object) -> None:
    predicate = only((f"code:{modifier}", text), types=("Observation",))
    assert predicate.modifier == modifier
    assert predicate.values == (value,)


def test_of_type_keeps_type_code_and_value_together() -> None:
    predicate = only(("identifier:of-type",
                      "http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053"))
    assert predicate.values == (TokenValue("http://terminology.hl7.org/CodeSystem/v2-0203",
                                           "MR|446053"),)


def test_of_type_needs_three_parts() -> None:
    assert error(("identifier:of-type", "MR|446053")).code == "invalid"


def test_id_values_are_plain_strings() -> None:
    predicate = only(("_id", "a,b"))
    assert (predicate.type, predicate.values) == ("token", ("a", "b"))


# -- string, uri ----------------------------------------------------------------------------


@pytest.mark.parametrize("modifier", [None, "exact", "contains"])
def test_string_values_are_given_as_written(modifier: str | None) -> None:
    name = "family" + (f":{modifier}" if modifier else "")
    predicate = only((name, r"O'Brien\, Zoë"))
    assert predicate.modifier == modifier
    assert predicate.values == ("O'Brien, Zoë",)


@pytest.mark.parametrize("modifier", ["above", "below"])
def test_uri_modifiers(modifier: str) -> None:
    predicate = only((f"url:{modifier}", "http://acme.org/fhir/ValueSet"), types=("ValueSet",))
    assert (predicate.type, predicate.modifier) == ("uri", modifier)
    assert predicate.values == ("http://acme.org/fhir/ValueSet",)


# -- reference ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "text", "value"), [
    ("organization", "Organization/1", ReferenceValue("Organization", "1")),
    ("organization", "1", ReferenceValue("Organization", "1")),  # the only target
    ("general-practitioner", "1", ReferenceValue(None, "1")),  # three targets
    ("general-practitioner:Practitioner", "1", ReferenceValue("Practitioner", "1")),
    ("organization", "http://a.org/fhir/Organization/1",
     ReferenceValue("Organization", "1", "http://a.org/fhir/Organization/1")),
    ("organization", "Organization/1/_history/2", ReferenceValue("Organization", "1")),
])
def test_reference_forms(name: str, text: str, value: ReferenceValue) -> None:
    assert only((name, text)).values == (value,)


def test_canonical_reference_drops_the_version() -> None:
    predicate = only(("questionnaire", "http://example.org/Questionnaire/q|2.0"),
                     types=("QuestionnaireResponse",))
    assert predicate.values == (ReferenceValue(None, None, "http://example.org/Questionnaire/q"),)


def test_reference_identifier_modifier_gives_a_token() -> None:
    predicate = only(("subject:identifier", "https://fhir.nhs.uk/Id/nhs-number|9000000009"),
                     types=("Observation",))
    assert predicate.values == (TokenValue("https://fhir.nhs.uk/Id/nhs-number", "9000000009"),)


def test_reference_to_a_type_the_parameter_cannot_point_to_is_invalid() -> None:
    assert error(("organization", "Patient/1")).code == "invalid"


def test_type_modifier_that_is_not_a_target_is_not_supported() -> None:
    issue = error(("organization:Patient", "1"))
    assert (issue.code, issue.spine_code) == ("not-supported", "INVALID_PARAMETER")


def test_type_modifier_and_value_type_must_agree() -> None:
    assert error(("general-practitioner:Practitioner", "Organization/1")).code == "invalid"


# -- date, number, quantity -----------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("2020", RangeValue("eq", "2020-01-01T00:00:00.000000", "2020-12-31T23:59:59.999999")),
    ("ge2020-02", RangeValue("ge", "2020-02-01T00:00:00.000000", "2020-02-29T23:59:59.999999")),
    ("lt2020-02-03T10:00+01:00",
     RangeValue("lt", "2020-02-03T09:00:00.000000", "2020-02-03T09:00:59.999999")),
    # An unencoded '+' in a query string arrives as a space.
    ("sa2020-02-03T10:00:00Z",
     RangeValue("sa", "2020-02-03T10:00:00.000000", "2020-02-03T10:00:00.999999")),
])
def test_date_prefix_and_precision_range(text: str, value: RangeValue) -> None:
    assert only(("birthdate", text)).values == (value,)


def test_approximately_on_a_date_widens_by_a_tenth_of_the_gap_to_now() -> None:
    # An unencoded '+' in a query string arrives as a space.
    (value,) = only(("birthdate", "ap2020-02-03T10:00:00 01:00")).values
    assert isinstance(value, RangeValue)
    assert value.prefix == "ap"
    assert str(value.lo) < "2020-01-01" and str(value.hi) > "2020-03-01"
    assert value.written == "2020-02-03T10:00:00 01:00"


def test_approximately_on_a_number_is_within_ten_percent() -> None:
    (value,) = only(("value-quantity", "ap100"), types=("Observation",)).values
    assert value == RangeValue("ap", Decimal(90), Decimal(110), written="100")


@pytest.mark.parametrize("text", ["2020-13", "20200101", "gt", "xx2020", "2020-02-30"])
def test_malformed_date_is_invalid(text: str) -> None:
    issue = error(("birthdate", text))
    assert (issue.code, issue.spine_code) == ("invalid", "INVALID_VALUE")


@pytest.mark.parametrize(("text", "lo", "hi", "prefix"), [
    ("100", "99.5", "100.5", "eq"),
    ("gt0.25", "0.245", "0.255", "gt"),
    ("1e2", "50", "150", "eq"),
    ("le-3", "-3.5", "-2.5", "le"),
])
def test_number_prefix_and_precision_range(text: str, lo: str, hi: str, prefix: Prefix) -> None:
    (value,) = only(("probability", text), types=("RiskAssessment",)).values
    assert value == RangeValue(prefix, Decimal(lo), Decimal(hi))


def test_malformed_number_is_invalid() -> None:
    assert error(("probability", "1,5x"), types=("RiskAssessment",)).code == "invalid"


@pytest.mark.parametrize(("text", "value"), [
    ("ge5.4|http://unitsofmeasure.org|mg",
     RangeValue("ge", Decimal("5.35"), Decimal("5.45"), "http://unitsofmeasure.org", "mg")),
    ("5.4||mg", RangeValue("eq", Decimal("5.35"), Decimal("5.45"), None, "mg")),
    ("5.4", RangeValue("eq", Decimal("5.35"), Decimal("5.45"))),
])
def test_quantity_forms(text: str, value: RangeValue) -> None:
    assert only(("value-quantity", text), types=("Observation",)).values == (value,)


@pytest.mark.parametrize("text", ["5.4|mg", "5.4|http://unitsofmeasure.org|", "mg"])
def test_malformed_quantity_is_invalid(text: str) -> None:
    assert error(("value-quantity", text), types=("Observation",)).code == "invalid"


# -- composite, special ---------------------------------------------------------------------


def test_composite_value_is_kept_as_written_with_its_parts_parsed_by_component() -> None:
    predicate = only(("code-value-quantity", r"http://loinc.org|8480-6$lt60"),
                     types=("Observation",))
    assert predicate.type == "composite"
    assert predicate.values == (CompositeValue(
        "http://loinc.org|8480-6$lt60",
        (TokenValue("http://loinc.org", "8480-6"),
         RangeValue("lt", Decimal("59.5"), Decimal("60.5"))),
        ("token", "quantity")),)
    assert error(("code-value-quantity", "http://loinc.org|8480-6"),
                 types=("Observation",)).code == "invalid"


def test_text_search_is_a_special_predicate() -> None:
    assert only(("_text", "cancer")) == Predicate("_text", "special", None, ("cancer",))


# -- :missing and unknown modifiers ---------------------------------------------------------


@pytest.mark.parametrize(("text", "missing"), [("true", True), ("false", False)])
def test_missing_modifier(text: str, missing: bool) -> None:
    predicate = only(("birthdate:missing", text))
    assert (predicate.modifier, predicate.values, predicate.missing) == ("missing", (), missing)


def test_missing_takes_only_true_or_false() -> None:
    assert error(("birthdate:missing", "yes")).code == "invalid"


@pytest.mark.parametrize("name", ["birthdate:exact", "family:not", "gender:contains",
                                  "_id:text", "family:Patient"])
def test_modifier_not_allowed_for_the_type_is_not_supported(name: str) -> None:
    issue = error((name, "x"))
    assert (issue.code, issue.spine_code) == ("not-supported", "INVALID_PARAMETER")
    assert name.partition(":")[0] in issue.diagnostics


# -- chains ---------------------------------------------------------------------------------


def test_chain_with_type_modifier() -> None:
    predicate = only(("general-practitioner:Practitioner.name", "Smith"))
    assert predicate == Predicate(
        "general-practitioner", "reference", "Practitioner", (),
        chain=SearchQuery(("Practitioner",), (Predicate("name", "string", None, ("Smith",)),)))


def test_chain_without_modifier_searches_the_targets_that_have_the_parameter() -> None:
    predicate = only(("subject.birthdate", "2000"), types=("Observation",))
    assert predicate.chain is not None
    assert predicate.chain.resource_types == ("Patient",)


def test_chain_goes_to_any_depth_with_a_modifier_at_the_end() -> None:
    predicate = only(("subject:Patient.organization.name:exact", "Acme"), types=("Observation",))
    assert predicate.chain is not None
    inner = predicate.chain.predicates[0]
    assert (inner.param, inner.chain) == ("organization", SearchQuery(
        ("Organization",), (Predicate("name", "string", "exact", ("Acme",)),)))


def test_chain_on_a_parameter_that_is_not_a_reference_is_not_supported() -> None:
    assert error(("family.name", "x")).code == "not-supported"


def test_chain_to_a_parameter_no_target_has_is_not_supported() -> None:
    assert error(("organization.birthdate", "2000")).code == "not-supported"


# -- _has -----------------------------------------------------------------------------------


def test_has_is_a_query_on_the_referring_type() -> None:
    predicate = only(("_has:Observation:patient:code", "http://loinc.org|1234-5"))
    assert predicate == Predicate("patient", "reference", None, (), has=SearchQuery(
        ("Observation",),
        (Predicate("code", "token", None, (TokenValue("http://loinc.org", "1234-5"),)),)))


def test_has_nests() -> None:
    predicate = only(("_has:Observation:patient:_has:AuditEvent:entity:agent", "Practitioner/1"))
    assert predicate.has is not None
    inner = predicate.has.predicates[0]
    assert inner.param == "entity"
    assert inner.has == SearchQuery(("AuditEvent",), (
        Predicate("agent", "reference", None, (ReferenceValue("Practitioner", "1"),)),))


@pytest.mark.parametrize("name", ["_has:Observation:code:status", "_has:Nope:patient:code",
                                  "_has:Observation:patient", "_has:Observation:patient:nope",
                                  "_has:Account:patient:status"])
def test_bad_has_is_not_supported(name: str) -> None:
    types = ("Practitioner",) if "Account" in name else ("Patient",)
    assert error((name, "x"), types=types).code == "not-supported"


# -- result parameters ----------------------------------------------------------------------


def test_count_is_clamped_and_defaults() -> None:
    assert parse(("_count", "500"))[0].count == 100
    assert parse(("_count", "0"))[0].count == 0
    assert parse()[0].count == 20


@pytest.mark.parametrize("text", ["-1", "ten", "2.5"])
def test_bad_count_is_invalid(text: str) -> None:
    assert error(("_count", text)).code == "invalid"


def test_sort_keys_in_order_with_descending() -> None:
    query, issues = parse(("_sort", "-birthdate,family,_lastUpdated"))
    assert issues == []
    assert query.sort == (SortKey("birthdate", True, "date"), SortKey("family", type="string"),
                          SortKey("_lastUpdated"))


def test_sort_by_unknown_parameter_is_not_supported() -> None:
    assert error(("_sort", "shoe-size")).code == "not-supported"


def test_sort_given_twice_is_invalid() -> None:
    assert error(("_sort", "family"), ("_sort", "given")).code == "invalid"


@pytest.mark.parametrize("total", ["none", "estimate", "accurate"])
def test_total(total: str) -> None:
    assert parse(("_total", total))[0].total == total


def test_bad_total_is_invalid() -> None:
    assert error(("_total", "all")).code == "invalid"


@pytest.mark.parametrize(("name", "text", "include"), [
    ("_include", "Patient:organization", Include("Patient", "organization")),
    ("_include", "Patient:general-practitioner:Practitioner",
     Include("Patient", "general-practitioner", "Practitioner")),
    ("_include:iterate", "Organization:partof", Include("Organization", "partof", None, True)),
    ("_include:recurse", "Organization:partof", Include("Organization", "partof", None, True)),
    ("_revinclude", "Provenance:target", Include("Provenance", "target", reverse=True)),
    ("_include", "*", Include("*", "*")),
    ("_include", "Patient:*", Include("Patient", "*")),
])
def test_include_forms(name: str, text: str, include: Include) -> None:
    query, issues = parse((name, text))
    assert issues == []
    assert query.includes == (include,)


@pytest.mark.parametrize(("name", "text"), [
    ("_include", "Patient"), ("_include", "Nope:organization"), ("_include", "Patient:family"),
    ("_include", "Patient:organization:Patient"), ("_revinclude", "Provenance:nope"),
])
def test_bad_include_is_invalid(name: str, text: str) -> None:
    assert error((name, text)).code == "invalid"


def test_include_with_unknown_modifier_is_not_supported() -> None:
    assert error(("_include:deep", "Patient:organization")).code == "not-supported"


@pytest.mark.parametrize("name", ["_cursor", "_page"])
def test_cursor(name: str) -> None:
    assert parse((name, "abc"))[0].cursor == "abc"


def test_parameters_for_the_caller_are_known_but_not_parsed() -> None:
    query, issues = parse(("_format", "json"), ("_pretty", "true"), ("_summary", "count"),
                          ("_elements", "id"), ("_type", "Patient"))
    assert (query.predicates, issues) == ((), [])


def test_parameter_without_value_is_ignored() -> None:
    assert parse(("family", ""), ("shoe-size", ""))[0] == parse()[0]


# -- types searched -------------------------------------------------------------------------


def test_system_search_knows_only_the_common_parameters() -> None:
    assert only(("_lastUpdated", "gt2020"), types=()).param == "_lastUpdated"
    issue = error(("name", "x"), types=())
    assert "all resource types" in issue.diagnostics


def test_several_types_need_the_parameter_on_each() -> None:
    assert only(("birthdate", "2000"), types=("Patient", "Person")).type == "date"
    issue = error(("general-practitioner", "1"), types=("Patient", "Person"))
    assert issue.diagnostics == "Unknown search parameter 'general-practitioner' for Person"


# -- strict and lenient ---------------------------------------------------------------------


def test_strict_reports_errors_naming_the_parameter() -> None:
    _query, issues = parse(("shoe-size", "9"), ("birthdate", "soon"), ("family", "x"))
    assert [(i.severity, i.code, i.spine_code) for i in issues] == [
        ("error", "not-supported", "INVALID_PARAMETER"),
        ("error", "invalid", "INVALID_VALUE"),
    ]
    assert "shoe-size" in issues[0].diagnostics
    assert "birthdate" in issues[1].diagnostics


def test_lenient_drops_what_it_cannot_use_with_warnings() -> None:
    query, issues = parse(("shoe-size", "9"), ("birthdate", "soon"), ("family", "x"),
                          strict=False)
    assert [p.param for p in query.predicates] == ["family"]
    assert [(i.severity, i.code) for i in issues] == [("warning", "not-supported"),
                                                      ("warning", "invalid")]
    assert all("ignored" in i.diagnostics for i in issues)


# -- canonical parameters for the self link --------------------------------------------------


def test_canonical_params_show_only_what_was_used() -> None:
    query, _ = parse(("shoe-size", "9"), ("family", "x"), ("_format", "json"), strict=False)
    assert canonical_params(query) == [("family", "x"), ("_count", "20")]


@pytest.mark.parametrize(("types", "params"), [
    (("Patient",), [
        ("name", "peter,jim"), ("name:exact", "Peter"), ("birthdate", "ge2000-01"),
        ("birthdate", "lt2020-01-01T10:00:00.5+10:00"), ("identifier", "http://x|1"),
        ("identifier", "|2"), ("identifier", "http://x|"),
        ("identifier:of-type", "http://t|MR|123"), ("gender:not", "male"),
        ("general-practitioner:Practitioner", "abc"), ("organization", "Organization/1"),
        ("_has:Observation:patient:code", "http://loinc.org|1234-5"),
        ("active:missing", "true"), ("telecom", r"a\,b\|c\$d\\e"), ("organization.name", "acme"),
        ("general-practitioner:Practitioner.name:exact", "Smith"), ("_id", "a,b"),
        ("_sort", "-birthdate,_id"), ("_count", "50"), ("_include", "Patient:organization"),
        ("_revinclude:iterate", "Provenance:target"), ("_total", "accurate"),
    ]),
    (("Observation",), [
        ("value-quantity", "ge5.4|http://unitsofmeasure.org|mg"), ("value-quantity", "1e2||mg"),
        ("value-quantity", "-0.001"), ("subject.organization.name", "x"),
        ("code-value-quantity", r"http://loinc.org|8480-6$lt60"),
        ("subject:identifier", "urn:x|1"), ("date", "2020"), ("date", "2020-02-03T04:05Z"),
        ("code:text", "body"), ("code:in", "http://vs"),
        ("subject", "http://example.org/fhir/Patient/1"), ("subject", "urn:uuid:1"),
        ("_lastUpdated", "gt2020-01-01T00:00:00.123Z"), ("_include", "*"),
    ]),
])
def test_canonical_params_parse_back_to_the_same_query(
    types: tuple[str, ...], params: list[tuple[str, str]]
) -> None:
    query, issues = parse(*params, types=types)
    assert issues == []
    again, issues = parse(*canonical_params(query), types=types)
    assert issues == []
    assert again == query


_DATES = st.datetimes().map(lambda d: d.isoformat(timespec="microseconds"))


@given(_DATES, st.sampled_from([4, 7, 10, 16, 19, 21, 23, 26]),
       st.sampled_from(["", "Z", "+05:30", "-11:00"]))
def test_any_date_precision_survives_the_round_trip(text: str, width: int, zone: str) -> None:
    value = text[:width] + (zone if width > 10 else "")
    query, issues = parse(("birthdate", value))
    assert issues == [], value
    assert parse(*canonical_params(query))[0] == query


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-10**12, max_value=10**12))
def test_any_number_precision_survives_the_round_trip(number: Decimal) -> None:
    query, issues = parse(("probability", str(number)), types=("RiskAssessment",))
    assert issues == [], number
    again = parse(*canonical_params(query), types=("RiskAssessment",))[0]
    assert again == query


def test_registry_can_be_given() -> None:
    custom = registry().with_custom([{
        "resourceType": "SearchParameter", "code": "nickname", "base": ["Patient"],
        "type": "string", "expression": "Patient.name.given"}])
    query, issues = parse_search(("Patient",), [("nickname", "Bob")], strict=True,
                                 default_count=20, max_count=100, using=custom)
    assert (issues, query.predicates[0].param) == ([], "nickname")
