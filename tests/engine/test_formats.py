"""Which wire format a caller sends and wants, and the ``_summary`` / ``_elements`` views,
with no HTTP (https://hl7.org/fhir/R4/http.html#mime-type,
https://hl7.org/fhir/R4/http.html#version-parameter, https://hl7.org/fhir/R4/search.html#summary,
https://hl7.org/fhir/R4/search.html#elements)."""

from __future__ import annotations

from typing import Any

import pytest

from fhirhub.engine.formats import (
    apply_view,
    parse_elements,
    request_format,
    response_format,
    summary_mode,
)
from fhirhub.errors import InvalidError, NotAcceptableError, UnsupportedMediaError

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
CHROME = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
          "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7")
SUBSETTED_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"

# -- response_format -----------------------------------------------------------------------------


def test_no_format_and_no_accept_answers_json() -> None:
    assert response_format(None, None) == "json"
    assert response_format("", "") == "json"


@pytest.mark.parametrize(("param", "expected"), [
    ("json", "json"), ("xml", "xml"), ("application/fhir+json", "json"),
    ("application/fhir+xml", "xml"), ("application/json", "json"), ("text/xml", "xml"),
    ("application/xml", "xml"), ("XML", "xml"),
])
def test_format_parameter_names_the_format(param: str, expected: str) -> None:
    assert response_format(param, None) == expected


def test_format_parameter_wins_over_accept() -> None:
    assert response_format("xml", FHIR_JSON) == "xml"
    assert response_format("json", FHIR_XML) == "json"
    # even over an Accept the server could not honour at all
    assert response_format("json", "image/png") == "json"


def test_unknown_format_parameter_is_not_acceptable() -> None:
    with pytest.raises(NotAcceptableError, match="_format='html'") as caught:
        response_format("html", None)
    assert caught.value.spine_code == "NOT_ACCEPTABLE"


@pytest.mark.parametrize(("accept", "expected"), [
    (FHIR_XML, "xml"),
    (FHIR_JSON, "json"),
    ("application/xml", "xml"),
    ("application/json", "json"),
    (f"{FHIR_XML}, {FHIR_JSON}", "xml"),  # equal quality: the first listed
    (f"{FHIR_JSON}, {FHIR_XML}", "json"),
])
def test_accept_names_the_format(accept: str, expected: str) -> None:
    assert response_format(None, accept) == expected


@pytest.mark.parametrize(("accept", "expected"), [
    (f"{FHIR_JSON};q=0.5, {FHIR_XML};q=0.9", "xml"),
    (f"{FHIR_XML};q=0.1, {FHIR_JSON}", "json"),
    (f"{FHIR_XML};q=0, {FHIR_JSON};q=0.2", "json"),  # q=0 means "not this one"
    (f"{FHIR_XML};q=not-a-number, {FHIR_JSON};q=0.1", "json"),  # a broken q counts as 0
    (f"image/png, {FHIR_XML};q=0.3", "xml"),  # unknown types are skipped, not fatal
])
def test_accept_quality_values_choose_the_format(accept: str, expected: str) -> None:
    assert response_format(None, accept) == expected


@pytest.mark.parametrize("accept", ["*/*", "application/*", "*/*;q=0.1"])
def test_wildcard_accept_answers_json(accept: str) -> None:
    assert response_format(None, accept) == "json"


def test_wildcard_loses_to_an_explicitly_preferred_xml() -> None:
    assert response_format(None, f"*/*;q=0.5, {FHIR_XML}") == "xml"


@pytest.mark.parametrize("accept", ["text/html", "text/html,application/xhtml+xml,*/*;q=0.8"])
def test_browser_asking_for_html_gets_json_rather_than_406(accept: str) -> None:
    assert response_format(None, accept) == "json"


def test_browser_default_accept_gets_json() -> None:
    assert response_format(None, CHROME) == "json"


@pytest.mark.parametrize("accept", [
    f"{FHIR_JSON}; fhirVersion=3.0",
    f"{FHIR_XML}; fhirVersion=5.0",
    f'{FHIR_JSON}; fhirVersion="4.3"',
    f"{FHIR_JSON};q=0.5, {FHIR_XML}; fhirVersion=1.0",  # any listed type asking for another version
])
def test_fhir_version_other_than_4_0_is_not_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptableError, match=r"4\.0\.1") as caught:
        response_format(None, accept)
    assert caught.value.spine_code == "NOT_ACCEPTABLE"


@pytest.mark.parametrize("accept", [f"{FHIR_JSON}; fhirVersion=4.0",
                                    f"{FHIR_JSON}; fhirVersion=4.0.1",
                                    f"{FHIR_XML};fhirVersion=4.0"])
def test_fhir_version_4_0_is_accepted(accept: str) -> None:
    assert response_format(None, accept) in ("json", "xml")


@pytest.mark.parametrize("accept", ["image/png", "application/pdf, text/plain",
                                    f"{FHIR_JSON};q=0, image/png"])
def test_accept_of_only_unsupported_types_is_not_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptableError) as caught:
        response_format(None, accept)
    assert "application/fhir+json" in caught.value.diagnostics  # says what to send instead
    assert caught.value.spine_code == "NOT_ACCEPTABLE"


# -- request_format ------------------------------------------------------------------------------


@pytest.mark.parametrize(("content_type", "expected"), [
    (FHIR_JSON, "json"),
    (f"{FHIR_JSON}; charset=utf-8", "json"),
    ("application/json", "json"),
    ("Application/FHIR+JSON", "json"),
    (FHIR_XML, "xml"),
    (f"{FHIR_XML};charset=UTF-8", "xml"),
    ("application/xml", "xml"),
    (f"{FHIR_JSON}; fhirVersion=4.0", "json"),
])
def test_content_type_names_the_body_format(content_type: str, expected: str) -> None:
    assert request_format(content_type) == expected


@pytest.mark.parametrize("content_type", [None, "", "  "])
def test_missing_content_type_is_unsupported_media(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaError, match="no Content-Type") as caught:
        request_format(content_type)
    assert caught.value.spine_code == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "application/fhir+turtle", "multipart/form-data"])
def test_unsupported_content_type_is_unsupported_media_and_named(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaError) as caught:
        request_format(content_type)
    assert content_type in caught.value.diagnostics
    assert caught.value.spine_code == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize("content_type", [f"{FHIR_JSON}; fhirVersion=3.0",
                                          f"{FHIR_XML}; fhirVersion=3.0"])
def test_content_type_of_another_fhir_version_is_unsupported_media(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaError):
        request_format(content_type)


# -- _summary and _elements ----------------------------------------------------------------------

XHTML = '<div xmlns="http://www.w3.org/1999/xhtml">Jane Smith</div>'


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient", "id": "p1",
        "meta": {"versionId": "2", "tag": [{"system": "http://example.org/tags", "code": "vip"}]},
        "text": {"status": "generated", "div": XHTML},
        "extension": [{"url": "http://example.org/ext", "valueString": "x"}],
        "modifierExtension": [{"url": "http://example.org/mod", "valueBoolean": True}],
        "active": True,  # a modifier and a summary element
        "name": [{"family": "Smith"}],
        "gender": "female",
        "_gender": {"extension": [{"url": "http://example.org/g", "valueString": "f"}]},
        "birthDate": "1980-02-29",
        "deceasedBoolean": False,  # a modifier choice element
        "photo": [{"title": "me"}],  # neither summary nor modifier
        "communication": [{"language": {"text": "English"}}],
    }


def observation() -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": "o1",
        "text": {"status": "generated", "div": XHTML},
        "status": "final",  # mandatory and a modifier
        "code": {"text": "weight"},  # mandatory
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-01-01",
        "valueQuantity": {"value": 70, "unit": "kg"},
        "note": [{"text": "after lunch"}],
    }


def tags(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return resource["meta"]["tag"]  # type: ignore[no-any-return]


def is_subsetted(resource: dict[str, Any]) -> bool:
    return any(t.get("system") == SUBSETTED_SYSTEM and t.get("code") == "SUBSETTED"
               for t in tags(resource))


@pytest.mark.parametrize("summary", [None, "false"])
def test_no_view_returns_the_resource_unchanged(summary: Any) -> None:
    assert apply_view(patient(), summary, None) == patient()


def test_summary_true_keeps_the_summary_elements_only() -> None:
    view = apply_view(patient(), "true", None)
    assert set(view) == {"resourceType", "id", "meta", "active", "name", "gender", "_gender",
                         "birthDate", "deceasedBoolean"}
    assert view["name"] == [{"family": "Smith"}]


def test_summary_true_keeps_each_summary_choice_of_a_choice_element() -> None:
    view = apply_view(observation(), "true", None)
    assert {"status", "code", "subject", "effectiveDateTime", "valueQuantity"} <= set(view)
    assert "note" not in view and "text" not in view


def test_summary_text_keeps_text_id_meta_and_mandatory_elements() -> None:
    view = apply_view(observation(), "text", None)
    assert set(view) == {"resourceType", "id", "meta", "text", "status", "code"}
    assert set(apply_view(patient(), "text", None)) == {"resourceType", "id", "meta", "text"}


def test_summary_data_drops_only_the_text() -> None:
    view = apply_view(patient(), "data", None)
    assert set(view) == set(patient()) - {"text"}
    assert view["photo"] == patient()["photo"]


def test_summary_count_keeps_only_the_identity() -> None:
    assert set(apply_view(patient(), "count", None)) == {"resourceType", "id", "meta"}


@pytest.mark.parametrize("summary", ["true", "text", "data", "count"])
def test_every_summary_view_is_tagged_subsetted_and_keeps_other_tags(summary: Any) -> None:
    view = apply_view(patient(), summary, None)
    assert is_subsetted(view)
    assert {"system": "http://example.org/tags", "code": "vip"} in tags(view)
    assert view["meta"]["versionId"] == "2"


def test_a_view_does_not_change_the_resource_it_is_given() -> None:
    original = patient()
    apply_view(original, "true", None)
    assert original == patient()


def test_subsetted_tag_is_not_added_twice() -> None:
    twice = apply_view(apply_view(patient(), "true", None), "true", None)
    assert [t["code"] for t in tags(twice)].count("SUBSETTED") == 1


def test_a_view_of_a_resource_without_meta_gets_one_with_the_tag() -> None:
    view = apply_view(observation(), "true", None)
    assert view["meta"] == {"tag": [{"system": SUBSETTED_SYSTEM, "code": "SUBSETTED",
                                     "display": "Resource encoded in summary mode"}]}


def test_elements_keeps_the_asked_elements_and_the_identity() -> None:
    view = apply_view(patient(), None, frozenset({"gender", "birthDate"}))
    assert {"resourceType", "id", "meta", "gender", "birthDate"} <= set(view)
    assert "name" not in view and "photo" not in view and "text" not in view
    assert view["_gender"] == patient()["_gender"]  # a primitive's extensions go with it
    assert is_subsetted(view)


def test_elements_keeps_modifier_elements_even_when_not_asked() -> None:
    view = apply_view(patient(), None, frozenset({"gender"}))
    assert {"active", "deceasedBoolean", "modifierExtension"} <= set(view)
    assert "extension" not in view  # a plain extension is not a modifier


def test_elements_keeps_mandatory_elements_even_when_not_asked() -> None:
    view = apply_view(observation(), None, frozenset({"subject"}))
    assert set(view) == {"resourceType", "id", "meta", "status", "code", "subject"}


@pytest.mark.parametrize("name", ["value", "value[x]"])
def test_elements_names_a_choice_element_by_its_base_name(name: str) -> None:
    view = apply_view(observation(), None, frozenset({name}))
    assert view["valueQuantity"] == {"value": 70, "unit": "kg"}
    assert "effectiveDateTime" not in view


def test_elements_ignores_names_the_type_does_not_have() -> None:
    view = apply_view(observation(), None, frozenset({"nonsense"}))
    assert set(view) == {"resourceType", "id", "meta", "status", "code"}


def test_summary_mode_accepts_the_five_values_and_refuses_others() -> None:
    assert [summary_mode(v) for v in ("true", "text", "data", "count", "false")] == [
        "true", "text", "data", "count", "false"]
    assert summary_mode(None) is None
    with pytest.raises(InvalidError, match="maybe"):
        summary_mode("maybe")


def test_parse_elements_splits_and_trims_and_refuses_an_empty_list() -> None:
    assert parse_elements(" gender , name,,") == frozenset({"gender", "name"})
    assert parse_elements(None) is None
    with pytest.raises(InvalidError):
        parse_elements(" , ")
