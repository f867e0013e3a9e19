"""The search parameter registry: https://hl7.org/fhir/R4/searchparameter.html

Which parameters a type has (https://hl7.org/fhir/R4/search.html#all for the common ones),
their types, targets and components, and custom SearchParameters added at run time.
"""

from __future__ import annotations

from typing import Any

import pytest

from fhirhub.errors import InvalidError
from fhirhub.search.registry import Registry, SearchParamDef, registry


def _custom(code: str, expression: str, *, kind: str = "string",
            base: tuple[str, ...] = ("Patient",)) -> dict[str, Any]:
    return {"resourceType": "SearchParameter", "url": f"http://example.org/sp/{code}",
            "code": code, "base": list(base), "type": kind, "expression": expression}


def _param(resource_type: str, code: str) -> SearchParamDef:
    found = registry().get(resource_type, code)
    assert found is not None, f"{resource_type} has no parameter {code}"
    return found


def test_registry_is_built_once_per_process() -> None:
    assert registry() is registry()


def test_a_type_has_its_own_and_the_common_parameters() -> None:
    params = registry().for_type("Patient")
    assert {"name", "birthdate", "identifier", "general-practitioner"} <= set(params)
    assert {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"} <= set(params)


def test_text_and_content_are_declared_special() -> None:
    assert _param("Patient", "_text").type == "special"
    assert _param("Patient", "_content").type == "special"


def test_text_belongs_to_domain_resources_only() -> None:
    assert "_text" not in registry().for_type("Bundle")
    assert "_content" in registry().for_type("Bundle")


def test_named_queries_and_filter_are_not_registered() -> None:
    assert registry().get("Patient", "_query") is None
    assert registry().get("Patient", "_filter") is None


def test_resource_gives_only_the_common_parameters_for_system_search() -> None:
    assert set(registry().for_type("Resource")) == {
        "_content", "_id", "_lastUpdated", "_profile", "_security", "_source", "_tag"
    }


def test_unknown_type_or_code_gives_none() -> None:
    assert registry().get("Patient", "no-such-parameter") is None
    assert registry().get("NoSuchType", "name") is None


def test_shared_expression_is_cut_down_to_the_type() -> None:
    # Official: "Patient.name | Person.name | Practitioner.name | RelatedPerson.name"-like unions.
    assert _param("Patient", "phonetic").expression == "Patient.name"
    assert _param("Practitioner", "phonetic").expression == "Practitioner.name"


def test_definition_carries_type_base_url_and_expression() -> None:
    birthdate = _param("Patient", "birthdate")
    assert birthdate.type == "date"
    assert "Patient" in birthdate.base
    assert birthdate.url == "http://hl7.org/fhir/SearchParameter/individual-birthdate"
    assert birthdate.expression == "Patient.birthDate"


def test_reference_parameter_lists_its_targets() -> None:
    assert set(_param("Patient", "general-practitioner").targets) == {
        "Organization", "Practitioner", "PractitionerRole"
    }
    assert _param("Patient", "organization").targets == ("Organization",)


def test_composite_parameter_lists_its_components() -> None:
    composite = _param("Observation", "code-value-quantity")
    assert composite.type == "composite"
    assert [c.expression for c in composite.components] == ["code", "value.as(Quantity)"]
    assert composite.components[0].definition.endswith("/clinical-code")


def test_every_official_expression_compiles_to_the_fast_path() -> None:
    reg = registry()
    slow = [
        (t, code) for t in sorted(reg.resource_types)
        for code, p in reg.for_type(t).items()
        if p.extract.expression and not p.extract.fast
    ]
    assert slow == []


def test_indexed_parameters_leave_out_columns_composites_and_specials() -> None:
    codes = {p.code for p in registry().indexed("Observation")}
    assert "code" in codes
    assert "_tag" in codes
    # _id and _lastUpdated are answered from the stores' own columns.
    assert not codes & {"_id", "_lastUpdated", "_text", "_content", "code-value-quantity"}


def test_custom_parameter_is_added_without_changing_the_original() -> None:
    custom = registry().with_custom([_custom("nickname", "Patient.name.where(use='nickname')")])
    added = custom.get("Patient", "nickname")
    assert added is not None
    assert added.extract.fast
    assert registry().get("Patient", "nickname") is None
    assert custom.get("Patient", "birthdate") == registry().get("Patient", "birthdate")


def test_custom_parameter_replaces_the_official_one_with_its_code() -> None:
    custom = registry().with_custom([_custom("family", "Patient.name.where(use='official').family")])
    assert _param("Patient", "family").expression == "Patient.name.family"
    replaced = custom.get("Patient", "family")
    assert replaced is not None
    assert replaced.expression == "Patient.name.where(use='official').family"


def test_custom_parameter_outside_the_subset_is_evaluated_by_fhirpathpy() -> None:
    custom = registry().with_custom([
        _custom("first-given", "Patient.name.select(given.first())"),
        _custom("gp-count", "Patient.generalPractitioner.count()", kind="number"),
    ])
    patient = {"resourceType": "Patient", "name": [{"given": ["A", "B"]}, {"given": ["C"]}],
               "generalPractitioner": [{"reference": "Practitioner/1"}]}
    first_given = custom.get("Patient", "first-given")
    gp_count = custom.get("Patient", "gp-count")
    assert first_given is not None and gp_count is not None
    assert not first_given.extract.fast
    assert first_given.extract(patient) == [("string", "A"), ("string", "C")]
    assert gp_count.extract(patient) == [("integer", 1)]


def test_custom_parameter_with_a_declared_type_keeps_it() -> None:
    custom = registry().with_custom([
        _custom("gp", "Patient.generalPractitioner.select($this).ofType(Reference)",
                kind="reference"),
    ])
    gp = custom.get("Patient", "gp")
    assert gp is not None
    assert gp.extract({"resourceType": "Patient",
                       "generalPractitioner": [{"reference": "Practitioner/1"}]}) == [
        ("Reference", {"reference": "Practitioner/1"})
    ]


def test_custom_parameter_with_a_bad_expression_is_refused_when_added() -> None:
    with pytest.raises(InvalidError, match="'broken' cannot be used"):
        registry().with_custom([_custom("broken", "Patient.name.(")])


def test_custom_parameter_may_use_resolve_only_to_test_the_target_type() -> None:
    registry().with_custom([_custom("gp-org", "Patient.generalPractitioner"
                                    ".where(resolve() is Organization)", kind="reference")])
    with pytest.raises(InvalidError, match="resolve"):
        registry().with_custom([_custom("gp-name", "Patient.generalPractitioner.resolve().name")])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"code": ""}, "needs a code"),
        ({"type": "text"}, "no valid type"),
        ({"base": []}, "at least one base"),
    ],
)
def test_custom_parameter_without_code_type_or_base_is_refused(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidError, match=message):
        registry().with_custom([{**_custom("x", "Patient.name"), **change}])


def test_custom_parameter_on_a_new_base_is_searchable_there() -> None:
    custom = Registry([]).with_custom([_custom("x", "Basic.code", kind="token", base=("Basic",))])
    assert set(custom.for_type("Basic")) == {"x"}
    assert custom.resource_types == {"Basic"}
