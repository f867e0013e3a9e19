"""Reindexing the stored resources over an engine of each backend (``fhirhub.bulk.reindex``;
README "Custom search parameters and reindex"): resources stored before a SearchParameter
(https://hl7.org/fhir/R4/searchparameter.html) existed are found by it once reindexed; an
interrupted run resumes from its checkpoint and indexes each resource once."""

from __future__ import annotations

from typing import Any

import pytest

from fhirhub.bulk.reindex import Checkpoint, Reindexer, check_types
from fhirhub.engine import Engine
from fhirhub.errors import ConflictError, InvalidError
from fhirhub.search.types import IndexRows
from tests.support import body_of, engine_request

Json = dict[str, Any]
MAIDEN_NAME = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName"
CODE = "mothers-maiden-name"
NOTE = "note-text"


def parameter(code: str = CODE, base: str = "Patient", expression: str | None = None) -> Json:
    return {"resourceType": "SearchParameter", "id": code,
            "url": f"https://fhir.example.org/SearchParameter/{code}", "name": "Custom",
            "status": "active", "description": f"Search by {code}", "code": code,
            "base": [base], "type": "string",
            "expression": expression or f"Patient.extension.where(url='{MAIDEN_NAME}').value"}


def patient(rid: str, maiden_name: str) -> Json:
    return {"resourceType": "Patient", "id": rid,
            "extension": [{"url": MAIDEN_NAME, "valueString": maiden_name}]}


def observation(rid: str, note: str) -> Json:
    return {"resourceType": "Observation", "id": rid, "status": "final",
            "code": {"text": "weight"}, "note": [{"text": note}]}


def write(engine: Engine, *resources: Json) -> None:
    """One transaction of PUTs."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources]}
    response = engine.handle(engine_request("POST", "", bundle))
    assert response.status == 200, body_of(response)


def found(engine: Engine, rtype: str, code: str, value: str) -> list[str]:
    response = engine.handle(engine_request("GET", rtype, query=[(code, value), ("_count", "100")]))
    assert response.status == 200, body_of(response)
    return sorted(e["resource"]["id"] for e in body_of(response).get("entry", [])
                  if e["search"]["mode"] == "match")


@pytest.fixture
def stored_before(engine: Engine) -> Engine:
    """Seven Patients (p0..p6, maiden name "Robinson<n>") written before the parameter."""
    write(engine, *(patient(f"p{n}", f"Robinson{n}") for n in range(7)))
    write(engine, parameter())
    assert found(engine, "Patient", CODE, "robinson") == []
    return engine


def recording(engine: Engine, monkeypatch: pytest.MonkeyPatch,
              fail_at: int | None = None) -> list[str]:
    """The ids the reindexer computes index rows for from now on; the call numbered
    ``fail_at`` (from 1) raises, as a crash in the middle of a batch would."""
    indexed: list[str] = []

    def counting(resource: Json) -> IndexRows:
        if fail_at is not None and len(indexed) + 1 == fail_at:
            raise KeyboardInterrupt
        indexed.append(str(resource["id"]))
        return Engine.index(engine, resource)  # not an earlier test double's

    monkeypatch.setattr(engine, "index", counting)
    return indexed


def interrupt(engine: Engine, monkeypatch: pytest.MonkeyPatch, fail_at: int,
              types: tuple[str, ...] = ()) -> None:
    """A run in batches of three that stops while computing the ``fail_at``-th rows."""
    recording(engine, monkeypatch, fail_at=fail_at)
    reindexer = Reindexer(engine, types=types, batch=3)
    start = reindexer.start()
    with pytest.raises(KeyboardInterrupt):
        reindexer.run(start)


def test_resources_stored_before_a_parameter_are_found_by_it_after_reindex(
        stored_before: Engine) -> None:
    engine = stored_before
    progressed: list[int] = []
    reindexer = Reindexer(engine, batch=3, progress=progressed.append)
    start = reindexer.start()
    assert start.after is None and start.done == 0
    assert reindexer.total() == 8  # the Patients and the SearchParameter
    report = reindexer.run(start)
    assert found(engine, "Patient", CODE, "robinson") == [f"p{n}" for n in range(7)]
    assert found(engine, "Patient", CODE, "robinson3") == ["p3"]
    assert dict(report.resources) == {"Patient": 7, "SearchParameter": 1}
    assert progressed == [3, 3, 2]
    assert reindexer.saved() is None  # a finished run leaves no checkpoint


def test_an_interrupted_reindex_resumes_from_its_checkpoint_indexing_each_resource_once(
        stored_before: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = stored_before
    first = recording(engine, monkeypatch, fail_at=5)  # in the middle of the second batch
    reindexer = Reindexer(engine, batch=3)
    with pytest.raises(KeyboardInterrupt):
        reindexer.run(reindexer.start())
    saved = reindexer.saved()
    assert saved == Checkpoint((), saved.parameters if saved else "", ("Patient", "p2"), 3)
    assert found(engine, "Patient", CODE, "robinson") == ["p0", "p1", "p2"]  # batch 1 only
    # A run for other types does not take it over, nor throw it away.
    with pytest.raises(ConflictError, match="An interrupted reindex of every resource type "
                       "is not finished"):
        Reindexer(engine, types=["Patient"]).start()

    again = recording(engine, monkeypatch)
    resumed = Reindexer(engine, batch=3)
    start = resumed.start()
    assert (start.after, start.done) == (("Patient", "p2"), 3)
    report = resumed.run(start)
    assert again == ["p3", "p4", "p5", "p6", CODE]  # nothing of the committed batch again
    assert first[:3] == ["p0", "p1", "p2"]
    assert report.total == 5
    assert found(engine, "Patient", CODE, "robinson") == [f"p{n}" for n in range(7)]
    assert resumed.saved() is None


def test_a_changed_parameter_set_or_restart_starts_the_reindex_over(
        stored_before: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = stored_before
    interrupt(engine, monkeypatch, fail_at=4)
    write(engine, parameter(NOTE, "Observation", "Observation.note.text"))
    changed = Reindexer(engine, batch=3)
    assert changed.start().after is None
    assert changed.note is not None and "starting over" in changed.note

    interrupt(engine, monkeypatch, fail_at=4)
    again = recording(engine, monkeypatch)
    restarted = Reindexer(engine, batch=3)
    start = restarted.start(restart=True)
    assert (start.after, start.done) == (None, 0)
    restarted.run(start)
    assert again == [*(f"p{n}" for n in range(7)), CODE, NOTE]


def test_reindex_of_some_types_leaves_the_others_alone(engine: Engine) -> None:
    write(engine, patient("p1", "Robinson"), observation("o1", "fasting"))
    write(engine, parameter(), parameter(NOTE, "Observation", "Observation.note.text"))
    reindexer = Reindexer(engine, types=["Patient"])
    assert reindexer.total() == 1
    report = reindexer.run(reindexer.start())
    assert dict(report.resources) == {"Patient": 1}
    assert found(engine, "Patient", CODE, "rob") == ["p1"]
    assert found(engine, "Observation", NOTE, "fast") == []


def test_a_resource_changed_while_its_batch_is_prepared_is_indexed_from_its_new_version(
        stored_before: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = stored_before
    index = engine.index

    def racing(resource: Json) -> IndexRows:
        rows = index(resource)
        if resource["id"] == "p1" and resource["meta"]["versionId"] == "1":
            write(engine, patient("p1", "Changed"))  # a client's update, meanwhile
        return rows

    monkeypatch.setattr(engine, "index", racing)
    reindexer = Reindexer(engine, batch=3)
    reindexer.run(reindexer.start())
    assert found(engine, "Patient", CODE, "changed") == ["p1"]
    assert found(engine, "Patient", CODE, "robinson1") == []  # not the stale rows


def test_unknown_types_are_refused() -> None:
    with pytest.raises(InvalidError, match="Not a FHIR R4 resource type: Patients, Persons"):
        check_types(["Patient", "Persons", "Patients"])
