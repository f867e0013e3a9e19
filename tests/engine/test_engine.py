"""The engine with no HTTP at all: a FhirRequest in, a FhirResponse (or WireResponse) out, on
each backend (https://hl7.org/fhir/R4/http.html; transactions:
https://hl7.org/fhir/R4/http.html#transaction; versioning and If-Match:
https://hl7.org/fhir/R4/http.html#concurrency; conditional create:
https://hl7.org/fhir/R4/http.html#ccreate; the NHS X-Request-ID retry rule is in README.md)."""

from __future__ import annotations

import threading
from contextlib import suppress
from typing import Any

import pytest

from fhirhub.engine import Engine, FhirRequest, FhirResponse
from fhirhub.errors import FhirError
from fhirhub.fhir import json as fjson
from tests.support import body_of

NHS = "https://fhir.nhs.uk/Id/nhs-number"
JSON_HEADERS = {"content-type": "application/fhir+json"}



def patient(nhs: str = "9000000009", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": NHS, "value": nhs}],
            "name": [{"family": "Smith", "given": ["Jane"]}], "gender": "female", **extra}


def request(method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
            query: list[tuple[str, str]] | None = None, request_id: str = "req-1") -> FhirRequest:
    raw = b"" if body is None else fjson.dumps(body)
    all_headers = {**(JSON_HEADERS if body is not None else {}), **(headers or {})}
    return FhirRequest(method=method, path=path, query=query or [], headers=all_headers,
                       body=raw, base_url="http://fhir.example.org/fhir", request_id=request_id)




def put(engine: Engine, rid: str, **extra: Any) -> FhirResponse:
    response = engine.handle(request("PUT", f"Patient/{rid}", patient(id=rid, **extra)))
    assert response.status in (200, 201), body_of(response)
    return response


# -- the request cycle ----------------------------------------------------------------------------


def test_create_then_read_round_trips_the_resource(engine: Engine) -> None:
    created = engine.handle(request("POST", "Patient", patient()))
    assert created.status == 201
    body = body_of(created)
    rid = body["id"]
    assert created.headers["Location"] == (
        f"http://fhir.example.org/fhir/Patient/{rid}/_history/1")
    assert created.headers["ETag"] == 'W/"1"'
    read = engine.handle(request("GET", f"Patient/{rid}"))
    assert read.status == 200
    assert body_of(read) == body
    assert body["meta"]["versionId"] == "1"
    assert body["name"] == patient()["name"]


def test_respond_renders_the_wire_body_in_the_asked_format(engine: Engine) -> None:
    put(engine, "w1")
    wire = engine.respond(request("GET", "Patient/w1", headers={"accept": "application/fhir+xml"}))
    assert wire.status == 200
    assert wire.headers["Content-Type"] == "application/fhir+xml; charset=utf-8"
    assert b'<Patient xmlns="http://hl7.org/fhir"><id value="w1"/>' in wire.body
    # HEAD renders as GET does; the HTTP adapter sends the headers without the body.
    head = engine.respond(request("HEAD", "Patient/w1"))
    get = engine.respond(request("GET", "Patient/w1"))
    assert (head.status, head.headers["ETag"], head.body) == (200, 'W/"1"', get.body)


def test_errors_come_back_as_operation_outcomes_not_exceptions(engine: Engine) -> None:
    response = engine.handle(request("GET", "Patient/nope"))
    assert response.status == 404
    outcome = body_of(response)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "RESOURCE_NOT_FOUND"
    assert engine.handle(request("GET", "Nope/1")).status == 404
    assert engine.handle(request("POST", "Patient/1", patient())).status == 405


def test_unexpected_exception_becomes_a_500_outcome_naming_the_request_id(
        engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def explode(*args: object) -> FhirResponse:
        raise RuntimeError("secret connection string postgresql://admin:hunter2@db")

    monkeypatch.setitem(engine._handlers, "read", explode)
    response = engine.handle(request("GET", "Patient/x", request_id="rid-4242"))
    assert response.status == 500
    issue = body_of(response)["issue"][0]
    assert issue["severity"] == "fatal"
    assert issue["details"]["coding"][0]["code"] == "INTERNAL_SERVER_ERROR"
    assert "rid-4242" in issue["diagnostics"]
    wire = engine.respond(request("GET", "Patient/x", request_id="rid-4243"))
    assert wire.status == 500
    assert b"rid-4243" in wire.body
    for text in (b"secret", b"hunter2", b"RuntimeError", b"Traceback"):
        assert text not in wire.body
    # ...while the operator's log keeps what the client must not see
    assert any("rid-4242" in r.getMessage() and r.exc_info for r in caplog.records)


def test_unexpected_exception_inside_a_write_stores_nothing(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from fhirhub.engine import crud

    original = crud.Prepared.write

    def write_then_fail(self: crud.Prepared, tx: Any) -> crud.Written:
        original(self, tx)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(crud.Prepared, "write", write_then_fail)
    assert engine.handle(request("POST", "Patient", patient())).status == 500
    assert engine.store.count("Patient") == 0


# -- idempotent POST (X-Request-ID) --------------------------------------------------------------


def test_post_retried_with_the_same_request_id_replays_the_first_response(engine: Engine) -> None:
    first = engine.handle(request("POST", "Patient", patient(), headers={"x-request-id": "r-1"}))
    again = engine.handle(request("POST", "Patient", patient(), headers={"x-request-id": "r-1"}))
    assert (first.status, again.status) == (201, 201)
    assert again.headers["X-Idempotent-Replay"] == "true"
    assert "X-Idempotent-Replay" not in first.headers
    assert again.headers["Location"] == first.headers["Location"]
    assert body_of(again) == body_of(first)
    assert engine.store.count("Patient") == 1


def test_same_request_id_with_another_body_is_a_conflict(engine: Engine) -> None:
    engine.handle(request("POST", "Patient", patient(), headers={"x-request-id": "r-2"}))
    other = engine.handle(request("POST", "Patient", patient(nhs="9000000017"),
                                  headers={"x-request-id": "r-2"}))
    assert other.status == 409
    assert body_of(other)["issue"][0]["details"]["coding"][0]["code"] == "DUPLICATE_REJECTED"
    assert engine.store.count("Patient") == 1


def test_request_id_made_up_by_the_server_does_not_make_a_post_idempotent(engine: Engine) -> None:
    # FhirRequest.request_id is the id for logs; only the client's header keys a replay.
    for _ in range(2):
        assert engine.handle(request("POST", "Patient", patient(), request_id="same")).status == 201
    assert engine.store.count("Patient") == 2


def test_a_failed_post_is_not_remembered(engine: Engine) -> None:
    bad = patient(bogus=True)
    assert engine.handle(request("POST", "Patient", bad, headers={"x-request-id": "r-3"})).status == 400
    retried = engine.handle(request("POST", "Patient", bad, headers={"x-request-id": "r-3"}))
    assert retried.status == 400
    assert "X-Idempotent-Replay" not in retried.headers


def test_transaction_retried_with_the_same_request_id_is_not_run_twice(engine: Engine) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}}]}
    first = engine.handle(request("POST", "", bundle, headers={"x-request-id": "tx-1"}))
    again = engine.handle(request("POST", "", bundle, headers={"x-request-id": "tx-1"}))
    assert (first.status, again.status) == (200, 200)
    assert again.headers["X-Idempotent-Replay"] == "true"
    assert engine.store.count("Patient") == 1


def test_batch_retried_with_the_same_request_id_does_not_create_again(engine: Engine) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}}]}
    for _ in range(2):
        assert engine.handle(request("POST", "", bundle, headers={"x-request-id": "b-1"})).status == 200
    assert engine.store.count("Patient") == 1


# -- transactions ------------------------------------------------------------------------------------


def test_transaction_with_a_failing_later_entry_stores_nothing(engine: Engine) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0d1f6a4e-8d2b-4c43-9a63-0e9f2d0e7a11", "resource": patient(),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": patient(id="t1"), "request": {"method": "PUT", "url": "Patient/t1"}},
        {"resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                      "code": {"text": "weight"},
                      "subject": {"reference": "urn:uuid:0d1f6a4e-8d2b-4c43-9a63-0e9f2d0e7a11"},
                      "notAnElement": 1},
         "request": {"method": "PUT", "url": "Observation/o1"}},
    ]}
    response = engine.handle(request("POST", "", bundle))
    assert response.status == 400
    diagnostics = body_of(response)["issue"][0]["diagnostics"]
    assert "Bundle.entry[2]" in diagnostics and "nothing in the transaction was saved" in diagnostics
    assert engine.store.count() == 0
    assert engine.store.read("Patient", "t1") is None
    history = engine.handle(request("GET", "_history"))
    assert "entry" not in body_of(history)


def test_transaction_failing_on_a_read_entry_rolls_back_its_writes(engine: Engine) -> None:
    put(engine, "keep", gender="male")
    # The GET runs last (http.html#trules), after the PUT has written its new version.
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Patient/missing"}},
        {"resource": patient(id="keep", gender="other"),
         "request": {"method": "PUT", "url": "Patient/keep"}},
    ]}
    response = engine.handle(request("POST", "", bundle))
    assert response.status == 404
    current = engine.store.read("Patient", "keep")
    assert current is not None and current.version_id == 1
    assert b'"male"' in (current.body or b"")


def test_successful_transaction_commits_every_entry(engine: Engine) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(id=f"ok{i}"), "request": {"method": "PUT", "url": f"Patient/ok{i}"}}
        for i in range(3)]}
    response = engine.handle(request("POST", "", bundle))
    assert response.status == 200
    statuses = [e["response"]["status"] for e in body_of(response)["entry"]]
    assert statuses == ["201 Created"] * 3
    assert engine.store.count("Patient") == 3


# -- If-Match ----------------------------------------------------------------------------------------


def test_update_with_matching_if_match_makes_the_next_version(engine: Engine) -> None:
    put(engine, "m1")
    response = engine.handle(request("PUT", "Patient/m1", patient(id="m1", gender="male"),
                                     headers={"if-match": 'W/"1"'}))
    assert response.status == 200
    assert response.headers["ETag"] == 'W/"2"'


@pytest.mark.parametrize("etag", ['W/"1"', '"1"', "1"])
def test_update_with_stale_if_match_is_412_and_changes_nothing(engine: Engine, etag: str) -> None:
    put(engine, "m2")
    put(engine, "m2", gender="male")
    response = engine.handle(request("PUT", "Patient/m2", patient(id="m2", gender="other"),
                                     headers={"if-match": etag}))
    assert response.status == 412
    assert body_of(response)["issue"][0]["details"]["coding"][0]["code"] == "PRECONDITION_FAILED"
    current = engine.store.read("Patient", "m2")
    assert current is not None and current.version_id == 2


def test_if_match_on_a_resource_that_does_not_exist_is_412(engine: Engine) -> None:
    response = engine.handle(request("PUT", "Patient/new", patient(id="new"),
                                     headers={"if-match": 'W/"1"'}))
    assert response.status == 412
    assert engine.store.read("Patient", "new") is None


def test_malformed_if_match_is_400(engine: Engine) -> None:
    put(engine, "m3")
    response = engine.handle(request("PUT", "Patient/m3", patient(id="m3", gender="male"),
                                     headers={"if-match": "banana"}))
    assert response.status == 400


def test_patch_with_stale_if_match_is_412(engine: Engine) -> None:
    put(engine, "m4")
    put(engine, "m4", gender="male")
    response = engine.handle(FhirRequest(
        "PATCH", "Patient/m4", body=b'[{"op": "replace", "path": "/gender", "value": "other"}]',
        headers={"content-type": "application/json-patch+json", "if-match": 'W/"1"'}))
    assert response.status == 412


def test_delete_with_stale_if_match_is_412_and_deletes_nothing(engine: Engine) -> None:
    put(engine, "m5")
    response = engine.handle(request("DELETE", "Patient/m5", headers={"if-match": 'W/"7"'}))
    assert response.status == 412
    current = engine.store.read("Patient", "m5")
    assert current is not None and not current.deleted


# -- conditional create under real concurrency ------------------------------------------------


def test_concurrent_conditional_creates_from_8_threads_create_exactly_one(engine: Engine) -> None:
    criteria = f"identifier={NHS}|9434765919"
    threads = 8
    barrier = threading.Barrier(threads)
    statuses: list[int] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def attempt(n: int) -> None:
        req = request("POST", "Patient", patient(nhs="9434765919"),
                      headers={"if-none-exist": criteria}, request_id=f"t{n}")
        try:
            barrier.wait(timeout=30)
            status = engine.handle(req).status
        except BaseException as exc:  # reported below; a thread must not die silently
            with lock:
                failures.append(exc)
            return
        with lock:
            statuses.append(status)

    workers = [threading.Thread(target=attempt, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not failures
    assert all(not w.is_alive() for w in workers)
    assert sorted(statuses) == [200] * (threads - 1) + [201]
    assert engine.store.count("Patient") == 1


# -- found while writing these tests -----------------------------------------------------------


@pytest.mark.parametrize("query", [[("_summary", "maybe")], [("_elements", ",")]])
def test_respond_turns_a_bad_summary_or_elements_into_a_400(
        engine: Engine, query: list[tuple[str, str]]) -> None:
    wire = engine.respond(request("GET", "Patient/x", query=query))
    assert wire.status == 400


def test_write_with_a_bad_summary_parameter_stores_nothing(engine: Engine) -> None:
    # respond should not raise either (the test above); this one is judged on the store only
    with suppress(FhirError):
        engine.respond(request("POST", "Patient", patient(), query=[("_summary", "maybe")]))
    assert engine.store.count("Patient") == 0


def test_search_in_a_compartment_that_does_not_exist_is_refused(engine: Engine) -> None:
    response = engine.handle(request("GET", "Observation/o1/Patient"))
    assert response.status in (400, 404)


def test_purge_expired_forgets_only_records_older_than_the_window(engine: Engine) -> None:
    from fhirhub.store import RememberedResponse

    with engine.store.transaction() as tx:
        tx.remember(RememberedResponse("old", "d", 201, {}, b"", "2000-01-01T00:00:00.000000Z"))
        tx.remember(RememberedResponse("new", "d", 201, {}, b"", "2999-01-01T00:00:00.000000Z"))
    assert engine.purge_expired() == 1
    with engine.store.transaction() as tx:
        assert tx.remembered("new", "2000-01-01T00:00:00.000000Z") is not None
        assert tx.remembered("old", "1999-01-01T00:00:00.000000Z") is None
