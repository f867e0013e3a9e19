"""batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.api.helpers import FHIR_JSON, patient

H = {"Content-Type": FHIR_JSON}
PAT_URN = "urn:uuid:0b1d9b4e-4c5e-4bd0-9c6e-1a2b3c4d5e6f"


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def observation(subject: str) -> dict[str, Any]:
    """A heart rate: a vital sign, so it meets the R4 heart-rate profile too."""
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": subject}, "effectiveDateTime": "2026-11-24T09:00:00Z",
            "valueQuantity": {"value": 72, "unit": "beats/minute",
                              "system": "http://unitsofmeasure.org", "code": "/min"}}


def test_transaction_resolves_urn_uuid_references(client: TestClient) -> None:
    b = bundle("transaction",
               {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                "resource": observation(PAT_URN), "request": {"method": "POST", "url": "Observation"}},
               {"fullUrl": PAT_URN, "resource": patient(),
                "request": {"method": "POST", "url": "Patient"}})
    r = client.post("/fhir", json=b, headers=H)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    obs_loc = out["entry"][0]["response"]["location"]
    pat_loc = out["entry"][1]["response"]["location"]
    assert out["entry"][0]["response"]["status"].startswith("201")
    pat_id = pat_loc.split("/Patient/")[1].split("/")[0]
    obs = client.get(obs_loc.split("/_history")[0].replace("http://testserver", "")).json()
    assert obs["subject"]["reference"] == f"Patient/{pat_id}"


def test_transaction_is_all_or_nothing(client: TestClient) -> None:
    b = bundle("transaction",
               {"resource": patient(nhs="9000000041"), "request": {"method": "POST", "url": "Patient"}},
               {"resource": {"resourceType": "Patient", "birthDate": "not-a-date"},
                "request": {"method": "POST", "url": "Patient"}})
    r = client.post("/fhir", json=b, headers=H)
    assert r.status_code == 400
    assert "Bundle.entry[1]" in r.json()["issue"][0]["diagnostics"]
    assert "entry" not in client.get("/fhir/Patient", params={"identifier": "9000000041"}).json()


def test_transaction_processes_deletes_before_creates_and_reads_last(client: TestClient) -> None:
    client.put("/fhir/Patient/t1", json=patient(id="t1"), headers=H)
    b = bundle("transaction",
               {"request": {"method": "GET", "url": "Patient/t2"}},
               {"resource": patient(id="t2"), "request": {"method": "PUT", "url": "Patient/t2"}},
               {"request": {"method": "DELETE", "url": "Patient/t1"}})
    r = client.post("/fhir", json=b, headers=H)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["200", "201", "204"]
    assert entries[0]["resource"]["id"] == "t2"  # the read ran after the write
    assert client.get("/fhir/Patient/t1").status_code == 410


def test_transaction_touching_one_resource_twice_is_refused(client: TestClient) -> None:
    b = bundle("transaction",
               {"resource": patient(id="d"), "request": {"method": "PUT", "url": "Patient/d"}},
               {"request": {"method": "DELETE", "url": "Patient/d"}})
    r = client.post("/fhir", json=b, headers=H)
    assert r.status_code == 400
    assert "Patient/d" in r.json()["issue"][0]["diagnostics"]


def test_transaction_resolves_conditional_references(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json=patient(nhs="9000000068"), headers=H).json()
    b = bundle("transaction", {
        "resource": observation("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000068"),
        "request": {"method": "POST", "url": "Observation"}})
    r = client.post("/fhir", json=b, headers=H)
    assert r.status_code == 200, r.text
    loc = r.json()["entry"][0]["response"]["location"].replace("http://testserver", "")
    assert client.get(loc).json()["subject"]["reference"] == f"Patient/{created['id']}"


def test_unresolvable_conditional_reference_fails_the_transaction(client: TestClient) -> None:
    b = bundle("transaction", {"resource": observation("Patient?identifier=nobody"),
                               "request": {"method": "POST", "url": "Observation"}})
    r = client.post("/fhir", json=b, headers=H)
    assert r.status_code == 400


def test_transaction_conditional_create_reuses_existing(client: TestClient) -> None:
    existing = client.post("/fhir/Patient", json=patient(nhs="9000000076"), headers=H).json()
    b = bundle("transaction",
               {"fullUrl": PAT_URN, "resource": patient(nhs="9000000076"),
                "request": {"method": "POST", "url": "Patient",
                            "ifNoneExist": "identifier=9000000076"}},
               {"resource": observation(PAT_URN), "request": {"method": "POST", "url": "Observation"}})
    r = client.post("/fhir", json=b, headers=H)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"].startswith("200")
    loc = r.json()["entry"][1]["response"]["location"].replace("http://testserver", "")
    assert client.get(loc).json()["subject"]["reference"] == f"Patient/{existing['id']}"


def test_batch_entries_succeed_or_fail_independently(client: TestClient) -> None:
    b = bundle("batch",
               {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
               {"request": {"method": "GET", "url": "Patient/missing"}},
               {"resource": {"resourceType": "Patient", "gender": 5},
                "request": {"method": "POST", "url": "Patient"}})
    r = client.post("/fhir", json=b, headers=H)
    assert r.status_code == 200
    out = r.json()
    assert out["type"] == "batch-response"
    statuses = [e["response"]["status"][:3] for e in out["entry"]]
    assert statuses == ["201", "404", "400"]
    assert out["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"


def test_bundle_of_other_type_is_refused(client: TestClient) -> None:
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}, headers=H)
    assert r.status_code == 400


def test_duplicate_full_urls_are_refused_by_bdl_7(client: TestClient) -> None:
    e = {"fullUrl": PAT_URN, "resource": patient(), "request": {"method": "POST", "url": "Patient"}}
    r = client.post("/fhir", json=bundle("transaction", e, e), headers=H)
    assert r.status_code == 422
    assert "bdl-7" in r.json()["issue"][0]["diagnostics"]
