"""FHIR patch: JSON Patch and FHIRPath Patch.

Spec: https://hl7.org/fhir/R4/http.html#patch, https://hl7.org/fhir/R4/fhirpatch.html and
RFC 6902 (https://www.rfc-editor.org/rfc/rfc6902). Cases: ``fhir-patch-tests.xml`` and
``json-patch-tests.json`` from https://github.com/FHIR/fhir-test-cases (patch).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET
import pytest

from fhirhub.errors import InvalidError, UnprocessableError
from fhirhub.fhir.patch import apply_fhirpath_patch, apply_json_patch
from fhirhub.fhir.xml import parse_resource

CASES_DIR = Path(__file__).parents[1] / "data" / "test-cases" / "patch"


def _case_id(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# -- the official FHIRPath Patch cases ----------------------------------------------------


@dataclass(frozen=True)
class FhirPatchCase:
    name: str
    input: dict[str, Any]
    patch: dict[str, Any]
    output: dict[str, Any] | None  # None: the case expects an error


def _resource_in(wrapper: Any) -> dict[str, Any]:
    (element,) = list(wrapper)
    return parse_resource(SafeET.tostring(element))


def _fhir_patch_cases() -> list[FhirPatchCase]:
    root = SafeET.parse(CASES_DIR / "fhir-patch-tests.xml").getroot()
    cases = []
    for case in root.iter("case"):
        output = case.find("output")
        cases.append(FhirPatchCase(
            name=case.get("name", ""),
            input=_resource_in(case.find("input")),
            patch=_resource_in(case.find("diff")),
            output=_resource_in(output) if output is not None else None,
        ))
    return cases


FHIR_PATCH_CASES = _fhir_patch_cases()


def test_all_fhirpath_patch_cases_are_read() -> None:
    assert len(FHIR_PATCH_CASES) == 33


@pytest.mark.parametrize("case", FHIR_PATCH_CASES, ids=[_case_id(c.name) for c in FHIR_PATCH_CASES])
def test_official_fhirpath_patch_case(case: FhirPatchCase) -> None:
    before = copy.deepcopy(case.input)
    if case.output is None:
        with pytest.raises(UnprocessableError) as caught:
            apply_fhirpath_patch(case.input, case.patch)
        paths = [part["valueString"] for p in case.patch["parameter"] for part in p["part"]
                 if part["name"] == "path"]
        assert any(path in caught.value.diagnostics for path in paths)
    else:
        assert apply_fhirpath_patch(case.input, case.patch) == case.output
    assert case.input == before


# -- the RFC 6902 cases -----------------------------------------------------------------------

JSON_PATCH_CASES = json.loads((CASES_DIR / "json-patch-tests.json").read_text("utf-8"))


def test_all_json_patch_cases_are_read() -> None:
    assert len(JSON_PATCH_CASES) == 16


@pytest.mark.parametrize("case", JSON_PATCH_CASES,
                         ids=[_case_id(c["comment"]) for c in JSON_PATCH_CASES])
def test_official_json_patch_case(case: dict[str, Any]) -> None:
    before = copy.deepcopy(case["doc"])
    if "error" in case:
        with pytest.raises(UnprocessableError, match=r"^JSON Patch operation \d+ "):
            apply_json_patch(case["doc"], case["patch"])
    else:
        assert apply_json_patch(case["doc"], case["patch"]) == case["expected"]
    assert case["doc"] == before


# -- JSON Patch: what a client is told --------------------------------------------------------

PATIENT: dict[str, Any] = {
    "resourceType": "Patient", "id": "p1", "active": True,
    "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
}


def test_json_patch_that_is_not_an_array_is_invalid() -> None:
    with pytest.raises(InvalidError, match="must be a JSON array of operations, not an object"):
        apply_json_patch(PATIENT, {"op": "remove", "path": "/active"})


@pytest.mark.parametrize(("operation", "message"), [
    ({"op": "delete", "path": "/active"}, r"operation 1 has op 'delete'; it must be one of"),
    ({"op": "remove"}, r"operation 1 \(remove\) has no 'path' member"),
    ({"op": "add", "path": "/x"}, r"operation 1 \(add\) has no 'value' member"),
    ({"op": "remove", "path": "active"}, r"operation 1 \(remove\): path 'active' is not a JSON"),
    ("remove /active", r"operation 1 must be a JSON object, not a string"),
])
def test_malformed_json_patch_operations_are_invalid_and_named(
    operation: object, message: str
) -> None:
    patch = [{"op": "test", "path": "/id", "value": "p1"}, operation]
    with pytest.raises(InvalidError, match=message) as caught:
        apply_json_patch(PATIENT, patch)
    assert type(caught.value) is InvalidError


def test_failed_json_patch_test_is_unprocessable_with_both_values() -> None:
    with pytest.raises(UnprocessableError, match=(
        r"^JSON Patch operation 0 \(test at '/name/0/family'\): test failed: "
        r"the value is 'Chalmers', not 'Windsor'$"
    )):
        apply_json_patch(PATIENT, [{"op": "test", "path": "/name/0/family", "value": "Windsor"}])


def test_json_patch_test_compares_json_types_not_python_equality() -> None:
    with pytest.raises(UnprocessableError, match="the value is True, not 1"):
        apply_json_patch(PATIENT, [{"op": "test", "path": "/active", "value": 1}])
    result = apply_json_patch({"n": Decimal("1.50")}, [{"op": "test", "path": "/n", "value": 1.5}])
    assert result == {"n": Decimal("1.50")}


@pytest.mark.parametrize(("operation", "message"), [
    ({"op": "remove", "path": "/telecom/0"}, r"'/telecom' does not exist$"),
    ({"op": "replace", "path": "/name/3/family", "value": "X"},
     r"'/name/3' is beyond the end of the array \(1 items\)$"),
    ({"op": "add", "path": "/active/x", "value": 1},
     r"'/active/x' does not exist: its parent is a boolean$"),
    ({"op": "move", "from": "/gender", "path": "/x"}, r"from '/gender': '/gender' does not exist"),
])
def test_json_patch_paths_that_do_not_exist_are_unprocessable_and_say_where(
    operation: dict[str, Any], message: str
) -> None:
    with pytest.raises(UnprocessableError, match=message) as caught:
        apply_json_patch(PATIENT, [operation])
    assert caught.value.diagnostics.startswith("JSON Patch operation 0 (")


def test_json_patch_returns_a_new_dict_sharing_nothing_with_its_inputs() -> None:
    resource = copy.deepcopy(PATIENT)
    value = {"system": "phone", "value": "123"}
    result = apply_json_patch(resource, [{"op": "add", "path": "/telecom", "value": [value]}])
    assert resource == PATIENT
    result["telecom"][0]["value"] = "changed"
    assert value["value"] == "123"


def test_json_patch_must_leave_a_resource() -> None:
    with pytest.raises(UnprocessableError, match="leaves an array, not a resource"):
        apply_json_patch(PATIENT, [{"op": "replace", "path": "", "value": []}])


# -- FHIRPath Patch: element model and errors -------------------------------------------------


def _patch(*operations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Parameters",
            "parameter": [{"name": "operation", "part": parts} for parts in operations]}


def _op(kind: str, path: str, **parts: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": "type", "valueCode": kind},
                                 {"name": "path", "valueString": path}]
    for name, value in parts.items():
        if name == "value":
            out.append({"name": "value", **value})
        elif name == "name":
            out.append({"name": "name", "valueString": value})
        else:
            out.append({"name": name, "valueInteger": value})
    return out


OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation", "status": "final", "code": {"text": "weight"},
    "valueQuantity": {"value": Decimal("72.5"), "unit": "kg"},
    "note": [{"text": "first"}, {"text": "second"}],
}


def test_add_of_a_choice_value_sets_the_typed_property() -> None:
    observation = {k: v for k, v in OBSERVATION.items() if k != "valueQuantity"}
    patch = _patch(_op("add", "Observation", name="value",
                       value={"valueQuantity": {"value": 3, "unit": "kg"}}))
    assert apply_fhirpath_patch(observation, patch)["valueQuantity"] == {"value": 3, "unit": "kg"}


def test_replace_of_a_choice_value_may_change_its_type() -> None:
    patch = _patch(_op("replace", "Observation.value", value={"valueString": "heavy"}))
    result = apply_fhirpath_patch(OBSERVATION, patch)
    assert result["valueString"] == "heavy"
    assert "valueQuantity" not in result


def test_add_to_a_non_repeating_element_that_has_a_value_is_unprocessable() -> None:
    patch = _patch(_op("add", "Observation", name="value", value={"valueString": "x"}))
    with pytest.raises(UnprocessableError, match=(
        r"^FHIRPath Patch operation 0 \(add at 'Observation'\): Observation.value\[x\] already "
        r"has a value and does not repeat; use replace to change it$"
    )) as caught:
        apply_fhirpath_patch(OBSERVATION, patch)
    assert caught.value.expression == ("Parameters.parameter[0]",)


def test_add_to_a_repeating_element_appends() -> None:
    patch = _patch(_op("add", "Observation", name="note", value={"valueAnnotation": {"text": "3"}}))
    assert [n["text"] for n in apply_fhirpath_patch(OBSERVATION, patch)["note"]] == [
        "first", "second", "3"]


def test_a_value_of_the_wrong_type_is_unprocessable() -> None:
    patch = _patch(_op("replace", "Observation.status", value={"valueString": "final"}))
    with pytest.raises(UnprocessableError, match=(
        r"Observation\.status is a code, so the value must be a valueCode, not a valueString"
    )):
        apply_fhirpath_patch(OBSERVATION, patch)


def test_replace_of_a_path_matching_several_elements_is_unprocessable() -> None:
    patch = _patch(_op("replace", "Observation.note.text", value={"valueMarkdown": "x"}))
    with pytest.raises(UnprocessableError, match="matches 2 elements; replace needs exactly one"):
        apply_fhirpath_patch(OBSERVATION, patch)


def test_replace_of_a_path_matching_nothing_is_unprocessable() -> None:
    patch = _patch(_op("replace", "Observation.issued", value={"valueInstant": "2020-01-01"}))
    with pytest.raises(UnprocessableError, match="matches nothing; replace needs an element"):
        apply_fhirpath_patch(OBSERVATION, patch)


def test_delete_of_nothing_changes_nothing_and_of_several_is_unprocessable() -> None:
    result = apply_fhirpath_patch(OBSERVATION, _patch(_op("delete", "Observation.issued")))
    assert result == OBSERVATION
    assert result is not OBSERVATION
    with pytest.raises(UnprocessableError, match="only a single element can be deleted"):
        apply_fhirpath_patch(OBSERVATION, _patch(_op("delete", "Observation.note")))


def test_delete_picks_by_filter_and_keeps_primitive_extensions_aligned() -> None:
    patient = {"resourceType": "Patient", "name": [{
        "given": ["Peter", "James", "Jim"],
        "_given": [None, {"extension": [{"url": "http://x", "valueString": "y"}]}, None],
    }]}
    patch = _patch(_op("delete", "Patient.name.given.where($this = 'Peter')"))
    result = apply_fhirpath_patch(patient, patch)
    assert result["name"][0] == {
        "given": ["James", "Jim"],
        "_given": [{"extension": [{"url": "http://x", "valueString": "y"}]}, None],
    }


def test_insert_and_move_check_their_indexes() -> None:
    insert = _patch(_op("insert", "Observation.note", index=3, value={"valueAnnotation": {}}))
    with pytest.raises(UnprocessableError, match="index 3 is out of range: the list has 2 item"):
        apply_fhirpath_patch(OBSERVATION, insert)
    move = _patch(_op("move", "Observation.note", source=0, destination=2))
    with pytest.raises(UnprocessableError, match="destination 2 is out of range"):
        apply_fhirpath_patch(OBSERVATION, move)
    moved = apply_fhirpath_patch(OBSERVATION, _patch(_op("move", "Observation.note", source=1,
                                                         destination=0)))
    assert [n["text"] for n in moved["note"]] == ["second", "first"]


def test_insert_needs_a_repeating_element() -> None:
    patch = _patch(_op("insert", "Observation.status", index=0, value={"valueCode": "final"}))
    with pytest.raises(UnprocessableError, match="'status' does not repeat; insert works on lists"):
        apply_fhirpath_patch(OBSERVATION, patch)


def test_nested_parts_build_an_anonymous_value_by_the_model() -> None:
    patch = _patch(_op("add", "Observation", name="component", value={"part": [
        {"name": "code", "valueCodeableConcept": {"text": "systolic"}},
        {"name": "value", "valueQuantity": {"value": 120}},
    ]}))
    assert apply_fhirpath_patch(OBSERVATION, patch)["component"] == [
        {"code": {"text": "systolic"}, "valueQuantity": {"value": 120}}]


def test_a_path_that_leaves_the_resource_is_unprocessable() -> None:
    observation = {**OBSERVATION, "subject": {"reference": "Patient/1"}}
    patch = _patch(_op("add", "Observation.subject.resolve()", name="active",
                       value={"valueBoolean": True}))
    with pytest.raises(UnprocessableError, match="leads outside the resource being patched"):
        apply_fhirpath_patch(observation, patch)


@pytest.mark.parametrize(("parameters", "message"), [
    ({"resourceType": "Patient"}, r"must be a Parameters resource"),
    (_patch(_op("remove", "Observation.status")),
     r"parameter\[0\]: the operation type is 'remove'"),
    (_patch(_op("add", "Observation", value={"valueCode": "x"})), r"add needs a 'name' part"),
    (_patch([*_op("delete", "Observation.status"), {"name": "colour", "valueString": "x"}]),
     r"parameter\[0\]\.part\[2\]: unknown part 'colour'"),
    (_patch(_op("delete", "Observation.status..x")),
     r"^FHIRPath Patch operation 0 \(delete at 'Observation.status..x'\): The FHIRPath "
     r"expression 'Observation.status..x' is not valid"),
    (_patch(_op("delete", "Observation.colour")), r"Observation has no element 'colour'"),
])
def test_malformed_fhirpath_patches_are_invalid(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidError, match=message) as caught:
        apply_fhirpath_patch(OBSERVATION, parameters)
    assert type(caught.value) is InvalidError


def test_fhirpath_patch_returns_a_new_dict_and_leaves_its_inputs_alone() -> None:
    observation, value = copy.deepcopy(OBSERVATION), {"valueAnnotation": {"text": "x"}}
    patch = _patch(_op("add", "Observation", name="note", value=value))
    result = apply_fhirpath_patch(observation, patch)
    assert observation == OBSERVATION
    result["note"][-1]["text"] = "changed"
    assert value == {"valueAnnotation": {"text": "x"}}
