"""The bulk importer used directly over an engine of each backend: NDJSON lines of resources
and Bundles, whole-file Bundles, grouping and its fallback, ``urn:uuid`` references across
lines, and the report (https://hl7.org/fhir/R4/nd-json.html, https://hl7.org/fhir/R4/bundle.html
including https://hl7.org/fhir/R4/bundle.html#references, and
https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import gc
import gzip
import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from fhirhub.bulk.importer import Importer, iter_lines
from fhirhub.engine import Engine, FhirRequest, FhirResponse

URN_A = "urn:uuid:2f1c9a55-4f0a-4a53-8a8e-6a6b0e2b7a01"
URN_B = "urn:uuid:2f1c9a55-4f0a-4a53-8a8e-6a6b0e2b7a02"



def count_requests(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[FhirRequest]:
    """The requests the importer sends to the engine from now on (one per transaction)."""
    sent: list[FhirRequest] = []
    handle = engine.handle

    def counting(request: FhirRequest) -> FhirResponse:
        sent.append(request)
        return handle(request)

    monkeypatch.setattr(engine, "handle", counting)
    return sent


def ndjson(path: Path, *lines: Any) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines))
    return path


def patient(rid: str | None = None, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": "Smith"}], **extra}
    if rid is not None:
        res["id"] = rid
    return res


def observation(rid: str | None, subject: str) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                           "code": {"text": "weight"}, "subject": {"reference": subject}}
    if rid is not None:
        res["id"] = rid
    return res


def stored(engine: Engine, rtype: str, rid: str) -> dict[str, Any]:
    version = engine.store.read(rtype, rid)
    assert version is not None and version.body is not None, f"{rtype}/{rid} not stored"
    body: dict[str, Any] = json.loads(version.body)
    return body


def only_id(engine: Engine, rtype: str) -> str:
    [version] = list(engine.store.iter_current(rtype))
    return version.id


# -- plain resources and grouping ---------------------------------------------------------------


def test_plain_resources_are_written_in_groups_with_their_ids(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ndjson(tmp_path / "p.ndjson", *(patient(f"p{i}") for i in range(7)))
    sent = count_requests(engine, monkeypatch)
    report = Importer(engine, group=3).run(path)
    assert [len(r.parsed["entry"]) for r in sent] == [3, 3, 1]
    assert report.errors == []
    assert report.resources == {"Patient": 7}
    assert {v.id for v in engine.store.iter_current("Patient")} == {f"p{i}" for i in range(7)}


def test_a_group_with_one_bad_resource_still_imports_the_rest(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ndjson(tmp_path / "g.ndjson", patient("g1"), patient("g2"),
                  patient("g3", notAnElement=1), patient("g4"), observation("g5", "Patient/g1"))
    sent = count_requests(engine, monkeypatch)
    report = Importer(engine, group=200).run(path)
    # the group in one transaction, then (it failed) each resource on its own
    assert [len(r.parsed["entry"]) for r in sent] == [5, 1, 1, 1, 1, 1]
    assert report.resources == {"Patient": 3, "Observation": 1}
    assert len(report.errors) == 1
    assert report.errors[0].startswith("g.ndjson line 3: ")
    assert "notAnElement" in report.errors[0]
    assert engine.store.read("Patient", "g3") is None
    assert engine.store.count() == 4


def test_resources_without_an_id_are_created(engine: Engine, tmp_path: Path) -> None:
    path = ndjson(tmp_path / "n.ndjson", patient(), patient())
    report = Importer(engine).run(path)
    assert report.resources == {"Patient": 2}
    assert engine.store.count("Patient") == 2


def test_reimporting_resources_with_ids_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    path = ndjson(tmp_path / "r.ndjson", patient("r1"), observation("r2", "Patient/r1"))
    Importer(engine).run(path)
    again = Importer(engine).run(path)
    assert again.errors == []
    assert {(v.id, v.version_id) for v in engine.store.iter_current()} == {("r1", 1), ("r2", 1)}


def test_lines_that_are_not_resources_are_reported_with_file_and_line(
        engine: Engine, tmp_path: Path) -> None:
    path = ndjson(tmp_path / "bad.ndjson", patient("ok1"), "{not json", '["a", "list"]',
                  '{"no": "resourceType"}', "", patient("ok2"))
    report = Importer(engine).run(path)
    assert report.resources == {"Patient": 2}
    assert [e.split(":")[0] for e in report.errors] == [
        "bad.ndjson line 2", "bad.ndjson line 3", "bad.ndjson line 4"]
    assert report.lines == 5  # the blank line 5 is skipped, and line 6 keeps its number


def test_report_counts_lines_resources_and_errors(engine: Engine, tmp_path: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient("c1"), "request": {"method": "PUT", "url": "Patient/c1"}},
        {"resource": observation("c2", "Patient/c1"),
         "request": {"method": "PUT", "url": "Observation/c2"}}]}
    path = ndjson(tmp_path / "c.ndjson", bundle, patient("c3"), patient("c4", bogus=1), "{")
    report = Importer(engine).run(path)
    assert report.lines == 4
    assert report.resources == {"Patient": 2, "Observation": 1}
    assert report.total == 3
    assert len(report.errors) == 2


def test_progress_is_told_every_byte_read(engine: Engine, tmp_path: Path) -> None:
    path = ndjson(tmp_path / "pr.ndjson", patient("pr1"), patient("pr2"))
    seen: list[int] = []
    Importer(engine, progress=seen.append).run(path)
    assert sum(seen) == path.stat().st_size


# -- Bundles ------------------------------------------------------------------------------------------


def test_transaction_bundle_entries_keep_their_ids(engine: Engine, tmp_path: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:" + "0" * 8 + "-0000-4000-8000-" + "0" * 12,
         "resource": patient("kept"), "request": {"method": "POST", "url": "Patient"}}]}
    report = Importer(engine).run(ndjson(tmp_path / "t.ndjson", bundle))
    assert report.errors == []
    assert stored(engine, "Patient", "kept")["meta"]["versionId"] == "1"


def test_batch_bundle_keeps_its_good_entries_and_reports_the_bad(engine: Engine, tmp_path: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient("b1"), "request": {"method": "PUT", "url": "Patient/b1"}},
        {"resource": patient("b2", bogus=True), "request": {"method": "PUT", "url": "Patient/b2"}},
        {"resource": patient("b3"), "request": {"method": "PUT", "url": "Patient/b3"}}]}
    report = Importer(engine).run(ndjson(tmp_path / "b.ndjson", bundle))
    assert report.resources == {"Patient": 2}
    assert len(report.errors) == 1 and report.errors[0].startswith("b.ndjson line 1: ")
    assert {v.id for v in engine.store.iter_current()} == {"b1", "b3"}


def test_collection_bundle_entries_are_imported_as_plain_resources(
        engine: Engine, tmp_path: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "http://example.org/fhir/Patient/col1", "resource": patient("col1")},
        {"fullUrl": "http://example.org/fhir/Observation/col2",
         "resource": observation("col2", "Patient/col1")},
        {"resource": patient()},
        {"fullUrl": "http://example.org/fhir/nothing"},  # an entry without a resource is skipped
    ]}
    path = ndjson(tmp_path / "col.ndjson", bundle, bundle)  # twice: the ids make it idempotent
    report = Importer(engine).run(path)
    assert report.errors == []
    assert report.resources == {"Patient": 4, "Observation": 2}
    assert stored(engine, "Observation", "col2")["subject"] == {"reference": "Patient/col1"}
    assert stored(engine, "Patient", "col1")["meta"]["versionId"] == "1"
    assert engine.store.count("Patient") == 3  # col1, and the id-less one created twice


def test_collection_entries_may_refer_to_each_other_by_full_url(
        engine: Engine, tmp_path: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": URN_A, "resource": patient()},
        {"fullUrl": URN_B, "resource": observation("refers", URN_A)}]}
    report = Importer(engine).run(ndjson(tmp_path / "colref.ndjson", bundle))
    assert report.errors == []
    assert stored(engine, "Observation", "refers")["subject"] == {
        "reference": f"Patient/{only_id(engine, 'Patient')}"}


def test_a_whole_file_json_bundle_is_one_document(engine: Engine, tmp_path: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": URN_A, "resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {"resource": observation(None, URN_A), "request": {"method": "POST", "url": "Observation"}},
    ]}
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle, indent=2))
    report = Importer(engine).run(path)
    assert report.lines == 1
    assert report.errors == []
    assert report.resources == {"Patient": 1, "Observation": 1}
    [obs] = list(engine.store.iter_current("Observation"))
    assert json.loads(obs.body or b"{}")["subject"] == {
        "reference": f"Patient/{only_id(engine, 'Patient')}"}


def test_urn_reference_on_a_later_line_is_rewritten_to_the_real_id(
        engine: Engine, tmp_path: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": URN_A, "resource": patient(), "request": {"method": "POST", "url": "Patient"}}]}
    group = {"resourceType": "Group", "id": "cohort", "type": "person", "actual": True,
             "member": [{"entity": {"reference": URN_A}}]}
    path = ndjson(tmp_path / "x.ndjson", bundle, observation("later", URN_A), group)
    report = Importer(engine).run(path)
    assert report.errors == []
    real = f"Patient/{only_id(engine, 'Patient')}"
    assert stored(engine, "Observation", "later")["subject"] == {"reference": real}
    assert stored(engine, "Group", "cohort")["member"] == [{"entity": {"reference": real}}]


def test_urn_reference_to_a_full_url_never_seen_is_reported(engine: Engine, tmp_path: Path) -> None:
    report = Importer(engine).run(ndjson(tmp_path / "u.ndjson", observation("orphan", URN_B)))
    assert len(report.errors) == 1 and URN_B in report.errors[0]
    assert engine.store.read("Observation", "orphan") is None


# -- reading files ---------------------------------------------------------------------------------


def test_iter_lines_numbers_ndjson_lines_and_skips_blank_ones(tmp_path: Path) -> None:
    path = tmp_path / "l.ndjson"
    path.write_bytes(b'{"a": 1}\n\n  \n{"b": 2}\r\n{"c": 3}')
    assert [(n, line.strip()) for n, line in iter_lines(path)] == [
        (1, b'{"a": 1}'), (4, b'{"b": 2}'), (5, b'{"c": 3}')]


def test_iter_lines_reads_gzip(tmp_path: Path) -> None:
    path = tmp_path / "l.ndjson.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n{"b": 2}\n'))
    assert [n for n, _ in iter_lines(path)] == [1, 2]


def test_reading_a_gz_file_closes_it(tmp_path: Path) -> None:
    path = tmp_path / "closed.ndjson.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n'))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(iter_lines(path))
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


# -- validation in worker processes (fhirhub import --jobs) ------------------------------------

def test_workers_validate_ahead_and_valid_lines_are_written_the_same(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    profiles = engine.validator.check_profiles

    def spy(resource: dict[str, Any], **kwargs: Any) -> Any:
        checked.append(resource["resourceType"])
        return profiles(resource, **kwargs)

    monkeypatch.setattr(engine.validator, "check_profiles", spy)
    path = ndjson(tmp_path / "w.ndjson", patient("w1"), patient("w2"),
                  observation("w3", "Patient/w1"))
    report = Importer(engine, group=2, jobs=1).run(path)
    assert checked == ["Bundle", "Bundle"]  # the entries were validated by the worker
    assert report.errors == []
    assert report.resources == {"Patient": 2, "Observation": 1}
    assert stored(engine, "Observation", "w3")["subject"] == {"reference": "Patient/w1"}


def test_with_workers_an_invalid_resource_is_still_refused_with_the_engines_error(
        engine: Engine, tmp_path: Path) -> None:
    bad_nhs = patient("w4", identifier=[{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                          "value": "9000000008"}])
    bad_contact = patient("w5", contact=[{"gender": "male"}])  # pat-1
    path = ndjson(tmp_path / "v.ndjson", patient("w6"), bad_nhs, bad_contact)
    report = Importer(engine, group=200, jobs=1).run(path)
    assert report.resources == {"Patient": 1}
    assert [e.split(": ")[0] for e in report.errors] == ["v.ndjson line 2", "v.ndjson line 3"]
    assert "Modulus 11" in report.errors[0]
    assert "pat-1" in report.errors[1]
    assert engine.store.read("Patient", "w4") is None


def test_with_workers_a_transaction_with_a_wrong_reference_type_is_refused(
        engine: Engine, tmp_path: Path) -> None:
    medication = "urn:uuid:6c4f0ad1-3c1b-4a56-9a0e-3b51f8c7a001"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": medication, "resource": {"resourceType": "Medication"},
         "request": {"method": "POST", "url": "Medication"}},
        {"resource": observation(None, medication),
         "request": {"method": "POST", "url": "Observation"}}]}
    report = Importer(engine, jobs=1).run(ndjson(tmp_path / "t.ndjson", bundle))
    assert report.resources == {}
    assert "Medication" in report.errors[0]
