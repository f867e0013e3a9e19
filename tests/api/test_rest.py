"""The RESTful interactions over HTTP, on both backends
(https://hl7.org/fhir/R4/http.html)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.api.helpers import FHIR_JSON, outcome_codes, patient
from tests.support import nhs_numbers

H = {"Content-Type": FHIR_JSON}


def create(client: TestClient, body: dict[str, object] | None = None) -> dict[str, object]:
    r = client.post("/fhir/Patient", json=body or patient(), headers=H)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_create_returns_201_with_location_etag_and_meta(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json=patient(id="ignored"), headers=H)
    assert r.status_code == 201
    body = r.json()
    assert body["id"] != "ignored"
    assert body["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{body['id']}/_history/1"
    assert r.headers["last-modified"].endswith("GMT")
    assert r.headers["content-type"].startswith("application/fhir+json")


def test_read_returns_the_created_resource(client: TestClient) -> None:
    created = create(client)
    r = client.get(f"/fhir/Patient/{created['id']}")
    assert r.status_code == 200
    assert r.json() == created
    assert r.headers["etag"] == 'W/"1"'


def test_head_answers_the_headers_of_get_without_a_body(client: TestClient) -> None:
    created = create(client)
    url = f"/fhir/Patient/{created['id']}"
    get = client.get(url)
    head = client.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["etag"] == get.headers["etag"]


def test_read_of_unknown_resource_returns_404_outcome(client: TestClient) -> None:
    r = client.get("/fhir/Patient/does-not-exist")
    assert r.status_code == 404
    assert outcome_codes(r.json()) == ("not-found", "RESOURCE_NOT_FOUND")


def test_update_with_client_id_creates_then_updates(client: TestClient) -> None:
    r = client.put("/fhir/Patient/9000000009", json=patient(id="9000000009"), headers=H)
    assert r.status_code == 201
    assert r.json()["meta"]["versionId"] == "1"
    r = client.put("/fhir/Patient/9000000009", json=patient(id="9000000009", gender="male"),
                   headers=H)
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "2"
    assert r.headers["etag"] == 'W/"2"'


def test_update_with_identical_content_makes_no_new_version(client: TestClient) -> None:
    client.put("/fhir/Patient/p1", json=patient(id="p1"), headers=H)
    r = client.put("/fhir/Patient/p1", json=patient(id="p1"), headers=H)
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "1"


def test_update_with_mismatched_id_returns_400(client: TestClient) -> None:
    r = client.put("/fhir/Patient/a", json=patient(id="b"), headers=H)
    assert r.status_code == 400
    assert outcome_codes(r.json()) == ("invalid", "INVALID_RESOURCE_ID")


def test_update_without_id_in_body_returns_400(client: TestClient) -> None:
    r = client.put("/fhir/Patient/a", json=patient(), headers=H)
    assert r.status_code == 400
    assert outcome_codes(r.json())[1] == "MISSING_VALUE"


def test_invalid_id_in_url_returns_400(client: TestClient) -> None:
    r = client.put("/fhir/Patient/bad_id!", json=patient(id="bad_id!"), headers=H)
    assert r.status_code == 400
    assert outcome_codes(r.json())[1] == "INVALID_RESOURCE_ID"


def test_vread_returns_old_versions(client: TestClient) -> None:
    client.put("/fhir/Patient/v", json=patient(id="v"), headers=H)
    client.put("/fhir/Patient/v", json=patient(id="v", gender="male"), headers=H)
    assert client.get("/fhir/Patient/v/_history/1").json()["gender"] == "female"
    assert client.get("/fhir/Patient/v/_history/2").json()["gender"] == "male"
    assert client.get("/fhir/Patient/v/_history/3").status_code == 404
    assert client.get("/fhir/Patient/v/_history/x").status_code == 404


def test_delete_then_read_returns_410_and_history_is_kept(client: TestClient) -> None:
    created = create(client)
    rid = created["id"]
    r = client.delete(f"/fhir/Patient/{rid}")
    assert r.status_code == 204
    r = client.get(f"/fhir/Patient/{rid}")
    assert r.status_code == 410
    assert outcome_codes(r.json())[0] == "deleted"
    assert client.get(f"/fhir/Patient/{rid}/_history/1").status_code == 200
    assert client.get(f"/fhir/Patient/{rid}/_history/2").status_code == 410
    history = client.get(f"/fhir/Patient/{rid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]


def test_delete_of_unknown_resource_is_204(client: TestClient) -> None:
    assert client.delete("/fhir/Patient/never-there").status_code == 204


def test_update_after_delete_recreates_with_next_version(client: TestClient) -> None:
    client.put("/fhir/Patient/r", json=patient(id="r"), headers=H)
    client.delete("/fhir/Patient/r")
    r = client.put("/fhir/Patient/r", json=patient(id="r"), headers=H)
    assert r.status_code == 201
    assert r.json()["meta"]["versionId"] == "3"


def test_if_match_with_stale_version_returns_412(client: TestClient) -> None:
    client.put("/fhir/Patient/m", json=patient(id="m"), headers=H)
    r = client.put("/fhir/Patient/m", json=patient(id="m", gender="male"),
                   headers={**H, "If-Match": 'W/"2"'})
    assert r.status_code == 412
    assert outcome_codes(r.json())[1] == "PRECONDITION_FAILED"
    r = client.put("/fhir/Patient/m", json=patient(id="m", gender="male"),
                   headers={**H, "If-Match": 'W/"1"'})
    assert r.status_code == 200


def test_if_none_match_and_if_modified_since_give_304(client: TestClient) -> None:
    created = create(client)
    url = f"/fhir/Patient/{created['id']}"
    assert client.get(url, headers={"If-None-Match": 'W/"1"'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": 'W/"9"'}).status_code == 200
    last_modified = client.get(url).headers["last-modified"]
    assert client.get(url, headers={"If-Modified-Since": last_modified}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.get(url, headers={"If-Modified-Since": old}).status_code == 200


def test_conditional_create_returns_existing_match(client: TestClient) -> None:
    first = create(client)
    criteria = "identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009"
    r = client.post("/fhir/Patient", json=patient(), headers={**H, "If-None-Exist": criteria})
    assert r.status_code == 200
    assert r.json()["id"] == first["id"]


def test_conditional_create_with_several_matches_returns_412(client: TestClient) -> None:
    create(client)
    create(client)
    r = client.post("/fhir/Patient", json=patient(),
                    headers={**H, "If-None-Exist": "identifier=9000000009"})
    assert r.status_code == 412


def test_concurrent_conditional_creates_never_duplicate(client: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    criteria = "identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919"
    body = patient(nhs="9434765919")

    def attempt(_: int) -> int:
        r = client.post("/fhir/Patient", json=body, headers={**H, "If-None-Exist": criteria})
        return r.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(attempt, range(16)))
    assert statuses.count(201) == 1
    assert set(statuses) == {200, 201}
    found = client.get("/fhir/Patient", params={"identifier": "9434765919"}).json()
    assert len(found["entry"]) == 1


def test_conditional_update_creates_updates_and_refuses_ambiguity(client: TestClient) -> None:
    url = "/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000017"
    r = client.put(url, json=patient(nhs="9000000017"), headers=H)
    assert r.status_code == 201
    rid = r.json()["id"]
    r = client.put(url, json=patient(nhs="9000000017", gender="male"), headers=H)
    assert r.status_code == 200
    assert r.json()["id"] == rid and r.json()["meta"]["versionId"] == "2"
    create(client, patient(nhs="9000000017"))
    assert client.put(url, json=patient(nhs="9000000017"), headers=H).status_code == 412


def test_conditional_delete_removes_the_single_match(client: TestClient) -> None:
    created = create(client, patient(nhs="9000000025"))
    r = client.delete("/fhir/Patient?identifier=9000000025")
    assert r.status_code == 204
    assert client.get(f"/fhir/Patient/{created['id']}").status_code == 410


def test_json_patch_changes_the_resource(client: TestClient) -> None:
    created = create(client)
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    r = client.patch(f"/fhir/Patient/{created['id']}", json=ops,
                     headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "male"
    assert r.json()["meta"]["versionId"] == "2"


def test_fhirpath_patch_changes_the_resource(client: TestClient) -> None:
    created = create(client)
    params = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "Patient.birthDate"},
        {"name": "value", "valueDate": "1981-01-01"}]}]}
    r = client.patch(f"/fhir/Patient/{created['id']}", json=params, headers=H)
    assert r.status_code == 200, r.text
    assert r.json()["birthDate"] == "1981-01-01"


def test_patch_that_breaks_the_resource_is_refused(client: TestClient) -> None:
    created = create(client)
    ops = [{"op": "replace", "path": "/gender", "value": 12}]
    r = client.patch(f"/fhir/Patient/{created['id']}", json=ops,
                     headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 400
    assert client.get(f"/fhir/Patient/{created['id']}").json()["meta"]["versionId"] == "1"


def test_conditional_patch_by_search(client: TestClient) -> None:
    create(client, patient(nhs="9000000033"))
    ops = [{"op": "add", "path": "/active", "value": True}]
    r = client.patch("/fhir/Patient?identifier=9000000033", json=ops,
                     headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200
    assert r.json()["active"] is True


@pytest.mark.parametrize("prefer", ["return=minimal", "return=representation",
                                    "return=OperationOutcome"])
def test_prefer_return_shapes_the_body(client: TestClient, prefer: str) -> None:
    r = client.post("/fhir/Patient", json=patient(), headers={**H, "Prefer": prefer})
    assert r.status_code == 201
    assert "location" in r.headers
    if prefer == "return=minimal":
        assert r.content == b""
    elif prefer == "return=representation":
        assert r.json()["resourceType"] == "Patient"
    else:
        assert r.json()["resourceType"] == "OperationOutcome"
        assert r.json()["issue"][0]["severity"] == "information"


def test_history_at_type_and_system_level_with_paging(client: TestClient) -> None:
    for _ in range(3):
        create(client)
    client.post("/fhir/Observation", headers=H, json={
        "resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    page = client.get("/fhir/Patient/_history", params={"_count": 2}).json()
    assert page["type"] == "history" and len(page["entry"]) == 2
    next_url = next(x["url"] for x in page["link"] if x["relation"] == "next")
    page2 = client.get(next_url).json()
    assert len(page2["entry"]) == 1
    system = client.get("/fhir/_history").json()
    assert {e["resource"]["resourceType"] for e in system["entry"]} == {"Patient", "Observation"}


def test_history_since_filters_by_time(client: TestClient) -> None:
    create(client)
    r = client.get("/fhir/_history", params={"_since": "2999-01-01T00:00:00Z"})
    assert r.status_code == 200 and "entry" not in r.json()
    assert client.get("/fhir/_history", params={"_since": "yesterday"}).status_code == 400


def test_write_is_visible_to_the_next_read_and_search(client: TestClient) -> None:
    numbers = nhs_numbers()
    for _ in range(20):
        nhs = next(numbers)
        created = create(client, patient(nhs=nhs))
        assert client.get(f"/fhir/Patient/{created['id']}").status_code == 200
        found = client.get("/fhir/Patient", params={"identifier": nhs}).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [created["id"]]


def test_search_by_id_returns_a_searchset(client: TestClient) -> None:
    created = create(client)
    r = client.get("/fhir/Patient", params={"_id": created["id"]})
    bundle = r.json()
    assert bundle["type"] == "searchset"
    assert bundle["entry"][0]["fullUrl"] == f"http://testserver/fhir/Patient/{created['id']}"
    assert bundle["entry"][0]["search"]["mode"] == "match"


def test_read_with_summary_and_elements(client: TestClient) -> None:
    created = create(client, patient(text={"status": "generated",
                                           "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}))
    url = f"/fhir/Patient/{created['id']}"
    summary = client.get(url, params={"_summary": "true"}).json()
    assert "text" not in summary and "name" in summary
    assert summary["meta"]["tag"][-1]["code"] == "SUBSETTED"
    elements = client.get(url, params={"_elements": "gender"}).json()
    assert set(elements) == {"resourceType", "id", "meta", "gender"}
    text = client.get(url, params={"_summary": "text"}).json()
    assert "text" in text and "name" not in text
    data = client.get(url, params={"_summary": "data"}).json()
    assert "text" not in data and "name" in data
    assert client.get(url, params={"_summary": "maybe"}).status_code == 400
