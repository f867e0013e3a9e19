"""JSON and XML on the wire (https://hl7.org/fhir/R4/http.html#mime-type,
https://hl7.org/fhir/R4/xml.html)."""

from __future__ import annotations

from starlette.testclient import TestClient

from fhirhub.fhir.xml import dump_resource, parse_resource
from tests.api.helpers import FHIR_JSON, patient

XML = "application/fhir+xml"


def test_xml_create_and_json_read_are_lossless(client: TestClient) -> None:
    original = patient(_birthDate={"extension": [{
        "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
        "valueDateTime": "1980-02-29T10:00:00Z"}]})
    r = client.post("/fhir/Patient", content=dump_resource(original), headers={
        "Content-Type": XML, "Accept": XML})
    assert r.status_code == 201
    assert r.headers["content-type"].startswith(XML)
    created = parse_resource(r.content)
    as_json = client.get(f"/fhir/Patient/{created['id']}").json()
    assert as_json["_birthDate"] == original["_birthDate"]
    assert as_json["name"] == original["name"]


def test_format_parameter_wins_over_accept(client: TestClient) -> None:
    r = client.get("/fhir/metadata", params={"_format": "xml"}, headers={"Accept": FHIR_JSON})
    assert r.headers["content-type"].startswith(XML)
    assert r.content.lstrip().startswith(b"<")
    r = client.get("/fhir/metadata", params={"_format": "json"})
    assert r.json()["resourceType"] == "CapabilityStatement"


def test_pretty_output_is_indented(client: TestClient) -> None:
    r = client.get("/fhir/metadata", params={"_pretty": "true"})
    assert b"\n  " in r.content


def test_decimal_precision_survives(client: TestClient) -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "w"},
           "valueQuantity": {"value": 1.50, "unit": "kg"}}
    r = client.post("/fhir/Observation", content=b'{"resourceType": "Observation", "status": '
                    b'"final", "code": {"text": "w"}, "valueQuantity": {"value": 1.50}}',
                    headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 201
    assert b'"value":1.50' in client.get(f"/fhir/Observation/{r.json()['id']}").content
    assert obs["valueQuantity"]


def test_browser_accept_header_gets_json(client: TestClient) -> None:
    r = client.get("/fhir/metadata", headers={
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")


def test_capability_statement_describes_the_server(client: TestClient) -> None:
    cs = client.get("/fhir/metadata").json()
    assert cs["fhirVersion"] == "4.0.1"
    rest = cs["rest"][0]
    types = {r["type"] for r in rest["resource"]}
    assert {"Patient", "Observation", "Bundle"} <= types and len(types) == 145
    patient_res = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {"read", "vread", "update", "patch", "delete", "create", "search-type"} <= {
        i["code"] for i in patient_res["interaction"]}
    assert any(p["name"] == "identifier" for p in patient_res["searchParam"])
    assert {"transaction", "batch"} <= {i["code"] for i in rest["interaction"]}
