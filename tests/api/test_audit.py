"""The audit log over HTTP: every request recorded, AuditEvent read-only and searchable
(the NHS Interoperability Standard ISNFR02; https://hl7.org/fhir/R4/auditevent.html,
https://profiles.ihe.net/ITI/BALP/)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from fhirhub.audit.record import AuditRecord
from fhirhub.config import Settings
from fhirhub.store.audit import AuditQuery
from tests.api.helpers import FHIR_JSON, NHS, patient

H = {"Content-Type": FHIR_JSON}


def _rid() -> str:
    return str(uuid.uuid4())


def _records(client: TestClient, request_id: str) -> list[AuditRecord]:
    store = client.app.engine.store  # type: ignore[attr-defined]
    rows = store.audit_search(AuditQuery(request_ids=(request_id,), oldest_first=True,
                                         count=100)).rows
    return [AuditRecord.from_json(r.record) for r in rows]


def _only(client: TestClient, request_id: str) -> AuditRecord:
    found = [r for r in _records(client, request_id) if r.parent is None]
    assert len(found) == 1, found
    return found[0]


def _events(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/fhir/AuditEvent", params=params)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])
            if e["resource"]["resourceType"] == "AuditEvent"]


# -- every request, every outcome -------------------------------------------------------


def test_a_read_is_audited_with_the_resource_version_and_the_patients_nhs_number(
        client: TestClient) -> None:
    pid = client.post("/fhir/Patient", json=patient(nhs="9434765919"), headers=H).json()["id"]
    rid = _rid()
    r = client.get(f"/fhir/Patient/{pid}", headers={"X-Request-ID": rid, "User-Agent": "ua/1"})
    rec = _only(client, rid)
    assert (rec.interaction, rec.outcome, rec.status, rec.method) == ("read", "0", 200, "GET")
    assert rec.entities[0].reference == f"Patient/{pid}" and rec.entities[0].version == 1
    assert rec.patients[0].reference == f"Patient/{pid}"
    assert rec.patients[0].nhs_number == "9434765919"
    assert rec.user_agent == "ua/1"
    assert rec.response_sha256 == hashlib.sha256(r.content).hexdigest()


def test_a_create_is_audited_with_digests_of_both_bodies(client: TestClient) -> None:
    rid, cid = _rid(), "corr-77"
    sent = patient()
    r = client.post("/fhir/Patient", json=sent, headers={**H, "X-Request-ID": rid,
                                                        "X-Correlation-ID": cid})
    rec = _only(client, rid)
    assert (rec.interaction, rec.outcome, rec.status) == ("create", "0", 201)
    assert rec.correlation_id == cid
    assert rec.request_sha256 == hashlib.sha256(r.request.content).hexdigest()
    assert rec.response_sha256 == hashlib.sha256(r.content).hexdigest()
    assert rec.entities[0].reference == f"Patient/{r.json()['id']}"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/fhir/Patient/nope", 404),
    ("GET", "/fhir/Patient?birthdate=notadate", 400),
    ("GET", "/fhir/NotAType/1", 404),
    ("TRACE", "/fhir/Patient", 405),
    ("GET", "/elsewhere", 404),
])
def test_failed_requests_are_audited_with_their_operation_outcome(
        client: TestClient, method: str, path: str, status: int) -> None:
    rid = _rid()
    r = client.request(method, path, content=b"{}",
                       headers={**H, "X-Request-ID": rid, "Prefer": "handling=strict"})
    assert r.status_code == status
    rec = _only(client, rid)
    assert rec.status == status and rec.outcome == "4"
    assert rec.outcome_resource == r.json()


def test_a_conditional_create_that_finds_a_match_records_the_resource_returned(
        client: TestClient) -> None:
    pid = client.post("/fhir/Patient", json=patient(nhs="9434765919"), headers=H).json()["id"]
    rid = _rid()
    r = client.post("/fhir/Patient", json=patient(nhs="9434765919"), headers={
        **H, "X-Request-ID": rid, "If-None-Exist": f"identifier={NHS}|9434765919"})
    assert r.status_code == 200
    rec = _only(client, rid)
    assert [e.reference for e in rec.entities] == [f"Patient/{pid}"]
    assert rec.patients[0].nhs_number == "9434765919"


def test_a_refused_write_leaves_a_failure_record_and_no_change(client: TestClient) -> None:
    rid = _rid()
    bad = {**patient(), "gender": "sometimes"}
    r = client.post("/fhir/Patient", json=bad, headers={**H, "X-Request-ID": rid})
    assert r.status_code in (400, 422)
    rec = _only(client, rid)
    assert rec.outcome == "4" and rec.entities == ()


def test_a_request_with_a_bad_request_id_header_is_still_audited(client: TestClient) -> None:
    before = client.app.engine.store.audit_count(AuditQuery())  # type: ignore[attr-defined]
    r = client.get("/fhir/metadata", headers={"X-Request-ID": "bad id"})
    assert r.status_code == 400
    after = client.app.engine.store.audit_count(AuditQuery())  # type: ignore[attr-defined]
    assert after == before + 1


def test_every_request_is_audited_once(client: TestClient) -> None:
    store = client.app.engine.store  # type: ignore[attr-defined]
    before = store.audit_count(AuditQuery())
    pid = client.post("/fhir/Patient", json=patient(), headers=H).json()["id"]
    client.get(f"/fhir/Patient/{pid}")
    client.get("/fhir/Patient", params={"_id": pid})
    client.get(f"/fhir/Patient/{pid}/_history")
    client.delete(f"/fhir/Patient/{pid}")
    client.get(f"/fhir/Patient/{pid}")
    client.get("/fhir/metadata")
    assert store.audit_count(AuditQuery()) == before + 7


# -- Bundles ------------------------------------------------------------------------------


def test_transaction_entries_are_audited_with_the_bundle_in_its_transaction(
        client: TestClient) -> None:
    rid = _rid()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": patient(nhs="9434765919"),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:p1"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    r = client.post("/fhir", json=bundle, headers={**H, "X-Request-ID": rid})
    assert r.status_code == 200
    records = _records(client, rid)
    top = [x for x in records if x.parent is None]
    entries = sorted((x for x in records if x.parent is not None), key=lambda x: x.entry or 0)
    assert [t.interaction for t in top] == ["transaction"]
    assert [(e.entry, e.interaction, e.parent) for e in entries] == [
        (0, "create", top[0].id), (1, "create", top[0].id)]
    assert entries[1].patients[0].reference == entries[0].entities[0].reference


def test_a_failed_transaction_records_the_failure_and_no_entry(client: TestClient) -> None:
    rid = _rid()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": "Patient/a"}},
        {"request": {"method": "PUT", "url": "Patient/a"}, "resource": {
            **patient(), "id": "a"}}]}
    r = client.post("/fhir", json=bundle, headers={**H, "X-Request-ID": rid})
    assert r.status_code >= 400
    records = _records(client, rid)
    assert [(x.interaction, x.outcome) for x in records] == [("transaction", "4")]


def test_batch_entries_are_audited_each_with_its_own_outcome(client: TestClient) -> None:
    rid = _rid()
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/missing"}}]}
    assert client.post("/fhir", json=bundle, headers={**H, "X-Request-ID": rid}).status_code == 200
    records = _records(client, rid)
    top = [x for x in records if x.parent is None]
    assert [t.interaction for t in top] == ["batch"]
    entries = {x.entry: x for x in records if x.parent == top[0].id}
    assert (entries[0].interaction, entries[0].outcome) == ("create", "0")
    assert (entries[1].interaction, entries[1].status) == ("read", 404)


# -- AuditEvent through the API ------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/fhir/AuditEvent"), ("PUT", "/fhir/AuditEvent/x"),
    ("DELETE", "/fhir/AuditEvent/x"), ("PATCH", "/fhir/AuditEvent/x"),
])
def test_audit_events_cannot_be_written_and_the_attempt_is_audited(
        client: TestClient, method: str, path: str) -> None:
    rid = _rid()
    body = {"resourceType": "AuditEvent", "id": "x"}
    headers = {"X-Request-ID": rid, "Content-Type": "application/json-patch+json"
               if method == "PATCH" else FHIR_JSON}
    r = client.request(method, path, json=[] if method == "PATCH" else body, headers=headers)
    assert r.status_code == 405
    assert r.json()["resourceType"] == "OperationOutcome"
    assert _only(client, rid).status == 405


def test_an_audit_event_can_be_written_in_no_transaction_either(client: TestClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "AuditEvent"}, "request": {"method": "POST",
                                                                 "url": "AuditEvent"}}]}
    assert client.post("/fhir", json=bundle, headers=H).status_code == 405


def test_an_audit_event_is_read_by_id_with_its_one_version(client: TestClient) -> None:
    rid = _rid()
    client.get("/fhir/metadata", headers={"X-Request-ID": rid})
    event_id = _only(client, rid).id
    r = client.get(f"/fhir/AuditEvent/{event_id}")
    assert r.status_code == 200
    event = r.json()
    assert event["resourceType"] == "AuditEvent" and event["id"] == event_id
    assert r.headers["etag"] == 'W/"1"'
    assert client.get(f"/fhir/AuditEvent/{event_id}/_history/1").json()["id"] == event_id
    assert client.get(f"/fhir/AuditEvent/{event_id}/_history/2").status_code == 404
    history = client.get(f"/fhir/AuditEvent/{event_id}/_history").json()
    assert history["type"] == "history" and len(history["entry"]) == 1
    assert client.get("/fhir/AuditEvent/not-there").status_code == 404


def test_audit_events_are_found_by_request_id_and_correlation_id(client: TestClient) -> None:
    rid = _rid()
    client.get("/fhir/metadata", headers={"X-Request-ID": rid, "X-Correlation-ID": "c-9"})
    by_request = _events(client, **{"request-id": rid})
    by_correlation = _events(client, **{"correlation-id": "c-9"})
    assert [e["id"] for e in by_request] == [e["id"] for e in by_correlation]
    assert len(by_request) == 1


def test_audit_events_are_found_by_nhs_number_and_by_patient_reference(
        client: TestClient) -> None:
    pid = client.post("/fhir/Patient", json=patient(nhs="9434765919"), headers=H).json()["id"]
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": f"Patient/{pid}"}}
    client.post("/fhir/Observation", json=obs, headers=H)
    client.get(f"/fhir/Patient/{pid}")
    by_ref = _events(client, patient=f"Patient/{pid}")
    by_nhs = _events(client, **{"patient:identifier": f"{NHS}|9434765919"})
    by_bare = _events(client, patient="9434765919")
    assert len(by_ref) == 3  # create Patient, create Observation, read Patient
    assert {e["id"] for e in by_nhs} == {e["id"] for e in by_ref} == {e["id"] for e in by_bare}
    compartment = client.get(f"/fhir/Patient/{pid}/AuditEvent").json()
    assert {e["resource"]["id"] for e in compartment["entry"]} == {e["id"] for e in by_ref}


def test_audit_events_are_found_by_outcome_interaction_entity_and_date(
        client: TestClient) -> None:
    pid = client.post("/fhir/Patient", json=patient(), headers=H).json()["id"]
    client.get("/fhir/Patient/missing")
    assert {e["outcome"] for e in _events(client, outcome="4")} == {"4"}
    created = _events(client, subtype="create")
    assert created and all(e["action"] == "C" for e in created)
    assert len(_events(client, entity=f"Patient/{pid}")) == 1
    assert len(_events(client, action="C")) == len(created)
    all_today = _events(client, date="ge2000-01-01", _count="100")
    assert len(_events(client, date="lt2000-01-01")) == 0
    assert len(all_today) >= 2


def test_audit_event_search_pages_newest_first_by_cursor(client: TestClient) -> None:
    for _ in range(5):
        client.get("/fhir/metadata", headers={"X-Correlation-ID": "paging"})
    first = client.get("/fhir/AuditEvent", params={"correlation-id": "paging", "_count": "2",
                                                    "_total": "accurate"}).json()
    assert first["total"] == 5
    seen = [e["resource"]["recorded"] for e in first["entry"]]
    url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    while url:
        page = client.get(url.replace("http://testserver", "")).json()
        seen += [e["resource"]["recorded"] for e in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)


def test_an_unknown_audit_search_parameter_is_refused_when_strict(client: TestClient) -> None:
    r = client.get("/fhir/AuditEvent", params={"nonsense": "1"},
                   headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    lenient = client.get("/fhir/AuditEvent", params={"nonsense": "1"}).json()
    assert lenient["entry"][-1]["search"]["mode"] == "outcome"


def test_a_system_search_for_audit_events_points_to_their_endpoint(client: TestClient) -> None:
    r = client.get("/fhir", params={"_type": "AuditEvent"})
    assert r.status_code == 400 and "/AuditEvent" in r.text


def test_a_bad_audit_search_value_is_a_400(client: TestClient) -> None:
    assert client.get("/fhir/AuditEvent", params={"date": "notadate"}).status_code == 400
    assert client.get("/fhir/AuditEvent", params={"_cursor": "junk"}).status_code == 400


# -- bodies ------------------------------------------------------------------------------


@pytest.fixture
def keeping(settings: Settings, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    from fhirhub.api import create_app

    app = create_app(settings.with_(audit_bodies=request.param))
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.mark.parametrize("keeping", ["full"], indirect=True)
def test_full_bodies_are_kept_beside_the_record(keeping: TestClient) -> None:
    rid = _rid()
    keeping.post("/fhir/Patient", json=patient(family="Keepme"), headers={**H, "X-Request-ID": rid})
    store = keeping.app.engine.store  # type: ignore[attr-defined]
    row = store.audit_search(AuditQuery(request_ids=(rid,))).rows[0]
    parts = {b.part: b for b in store.audit_bodies(row.chain, row.chain_seq)}
    assert b"Keepme" in parts["request"].content and b"Keepme" in parts["response"].content
    assert parts["request"].expires is not None


@pytest.mark.parametrize("keeping", ["redacted"], indirect=True)
def test_redacted_bodies_keep_the_shape_and_mask_personal_data(keeping: TestClient) -> None:
    rid = _rid()
    keeping.post("/fhir/Patient", json=patient(family="Hideme"), headers={**H, "X-Request-ID": rid})
    store = keeping.app.engine.store  # type: ignore[attr-defined]
    row = store.audit_search(AuditQuery(request_ids=(rid,))).rows[0]
    parts = {b.part: b for b in store.audit_bodies(row.chain, row.chain_seq)}
    assert b"Hideme" not in parts["request"].content
    assert b"9000000009" not in parts["request"].content
    assert b'"resourceType":"Patient"' in parts["request"].content


def test_bodies_are_not_kept_by_default(client: TestClient) -> None:
    rid = _rid()
    client.post("/fhir/Patient", json=patient(), headers={**H, "X-Request-ID": rid})
    store = client.app.engine.store  # type: ignore[attr-defined]
    row = store.audit_search(AuditQuery(request_ids=(rid,))).rows[0]
    assert store.audit_bodies(row.chain, row.chain_seq) == []
