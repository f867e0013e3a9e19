"""NHS API conventions: X-Request-ID / X-Correlation-ID echoed, idempotent retries."""

from __future__ import annotations

import uuid

from starlette.testclient import TestClient

from tests.api.helpers import FHIR_JSON, patient

H = {"Content-Type": FHIR_JSON}


def test_request_and_correlation_ids_are_echoed(client: TestClient) -> None:
    rid, cid = str(uuid.uuid4()), "corr-1"
    r = client.get("/fhir/metadata", headers={"X-Request-ID": rid, "X-Correlation-ID": cid})
    assert r.headers["x-request-id"] == rid
    assert r.headers["x-correlation-id"] == cid


def test_a_request_id_is_made_when_none_is_sent(client: TestClient) -> None:
    r = client.get("/fhir/metadata")
    uuid.UUID(r.headers["x-request-id"])


def test_a_malformed_request_id_is_refused(client: TestClient) -> None:
    r = client.get("/fhir/metadata", headers={"X-Request-ID": "bad id with spaces"})
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"


def test_retried_post_with_same_request_id_returns_the_original(client: TestClient) -> None:
    headers = {**H, "X-Request-ID": str(uuid.uuid4())}
    first = client.post("/fhir/Patient", json=patient(), headers=headers)
    second = client.post("/fhir/Patient", json=patient(), headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert first.headers["location"] == second.headers["location"]
    assert second.headers["x-idempotent-replay"] == "true"
    found = client.get("/fhir/Patient", params={"identifier": "9000000009"}).json()
    assert len(found["entry"]) == 1


def test_same_request_id_with_a_different_body_is_a_conflict(client: TestClient) -> None:
    headers = {**H, "X-Request-ID": str(uuid.uuid4())}
    client.post("/fhir/Patient", json=patient(), headers=headers)
    r = client.post("/fhir/Patient", json=patient(family="Other"), headers=headers)
    assert r.status_code == 409


def test_different_request_ids_create_twice(client: TestClient) -> None:
    a = client.post("/fhir/Patient", json=patient(), headers={**H, "X-Request-ID": str(uuid.uuid4())})
    b = client.post("/fhir/Patient", json=patient(), headers={**H, "X-Request-ID": str(uuid.uuid4())})
    assert a.json()["id"] != b.json()["id"]


def test_status_endpoint_reports_the_backend(client: TestClient) -> None:
    r = client.get("/_status")
    assert r.status_code == 200 and r.json()["status"] == "pass"
