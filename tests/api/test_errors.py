"""Every error a caller can cause is a FHIR OperationOutcome with the right status and an
NHS Spine error code (https://hl7.org/fhir/R4/operationoutcome.html)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.api.helpers import FHIR_JSON, outcome_codes, patient

H = {"Content-Type": FHIR_JSON}


def test_malformed_json_returns_400_saying_where(client: TestClient) -> None:
    r = client.post("/fhir/Patient", content=b'{"resourceType": "Patient",', headers=H)
    assert r.status_code == 400
    assert "line 1" in r.json()["issue"][0]["diagnostics"]


def test_malformed_xml_returns_400(client: TestClient) -> None:
    r = client.post("/fhir/Patient", content=b"<Patient xmlns='http://hl7.org/fhir'>",
                    headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"


def test_xml_with_a_dtd_is_refused(client: TestClient) -> None:
    body = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b'<Patient xmlns="http://hl7.org/fhir"><id value="&e;"/></Patient>')
    r = client.post("/fhir/Patient", content=body, headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 400
    assert "passwd" not in r.text or "root:" not in r.text


def test_unknown_resource_type_returns_404(client: TestClient) -> None:
    r = client.get("/fhir/Patientt/1")
    assert r.status_code == 404
    assert "Patientt" in r.json()["issue"][0]["diagnostics"]


def test_body_type_different_from_url_type_returns_400(client: TestClient) -> None:
    r = client.post("/fhir/Observation", json=patient(), headers=H)
    assert r.status_code == 400


def test_unknown_element_is_refused_with_its_path(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json=patient(colour="blue"), headers=H)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Patient.colour"]


def test_bad_primitive_format_is_refused(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json=patient(birthDate="29/02/1980"), headers=H)
    assert r.status_code == 400
    assert outcome_codes(r.json())[1] == "INVALID_VALUE"


def test_wrong_content_type_returns_415(client: TestClient) -> None:
    r = client.post("/fhir/Patient", content=b"name=x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert outcome_codes(r.json())[1] == "UNSUPPORTED_MEDIA_TYPE"


def test_unsupported_accept_returns_406(client: TestClient) -> None:
    r = client.get("/fhir/metadata", headers={"Accept": "application/pdf"})
    assert r.status_code == 406


def test_other_fhir_version_returns_406(client: TestClient) -> None:
    r = client.get("/fhir/metadata", headers={"Accept": "application/fhir+json; fhirVersion=5.0"})
    assert r.status_code == 406


def test_empty_body_returns_400(client: TestClient) -> None:
    r = client.post("/fhir/Patient", content=b"", headers=H)
    assert r.status_code == 400
    assert outcome_codes(r.json())[1] == "MISSING_VALUE"


def test_method_not_allowed_returns_405(client: TestClient) -> None:
    r = client.post("/fhir/Patient/123", json=patient(), headers=H)
    assert r.status_code == 405
    assert r.json()["resourceType"] == "OperationOutcome"


def test_unknown_operation_says_so(client: TestClient) -> None:
    r = client.get("/fhir/Patient/$nothing")
    assert r.status_code == 404
    assert "$nothing" in r.json()["issue"][0]["diagnostics"]


def test_oversized_body_returns_413(settings: object, tmp_path: object) -> None:
    from fhirhub.api import create_app
    from fhirhub.config import Settings

    assert isinstance(settings, Settings)
    small = settings.with_(max_body_bytes=1000)
    with TestClient(create_app(small)) as c:
        r = c.post("/fhir/Patient", json=patient(name=[{"family": "x" * 2000}]), headers=H)
    assert r.status_code == 413
    assert r.json()["resourceType"] == "OperationOutcome"


def test_a_server_fault_hides_the_stack_trace(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from fhirhub.engine import interactions

    def explode(*args: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(interactions, "read", explode)
    engine = client.app.engine  # type: ignore[attr-defined]
    monkeypatch.setitem(engine._handlers, "read", explode)
    r = client.get("/fhir/Patient/x", headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 500
    assert "secret" not in r.text and "Traceback" not in r.text
    assert "abc-123" in r.json()["issue"][0]["diagnostics"]
    assert outcome_codes(r.json())[1] == "INTERNAL_SERVER_ERROR"


def test_every_outcome_issue_carries_a_spine_coding(client: TestClient) -> None:
    r = client.get("/fhir/Patient/nope")
    coding = r.json()["issue"][0]["details"]["coding"][0]
    assert coding["system"] == "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode"


def test_bad_if_match_is_400(client: TestClient) -> None:
    client.put("/fhir/Patient/x", json=patient(id="x"), headers=H)
    r = client.put("/fhir/Patient/x", json=patient(id="x"), headers={**H, "If-Match": "banana"})
    assert r.status_code == 400
