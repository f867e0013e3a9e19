"""FHIR search over HTTP, as a consumer's FHIR client uses it (both backends):
https://hl7.org/fhir/R4/search.html"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from tests.api.helpers import FHIR_JSON, outcome_codes, patient

Json = dict[str, Any]
LOINC = "http://example.org/lab-codes"  # not LOINC: no vital-signs profile applies
UCUM = "http://unitsofmeasure.org"


def put(client: TestClient, resource: Json) -> Json:
    rtype, rid = resource["resourceType"], resource["id"]
    r = client.put(f"/fhir/{rtype}/{rid}", json=resource, headers={"Content-Type": FHIR_JSON})
    assert r.status_code in (200, 201), r.text
    body: Json = r.json()
    return body


def search(client: TestClient, url: str, **headers: str) -> Json:
    r = client.get(f"/fhir/{url}", headers=headers)
    assert r.status_code == 200, r.text
    body: Json = r.json()
    assert body["type"] == "searchset"
    return body


def ids(bundle: Json, mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def link(bundle: Json, relation: str) -> str | None:
    for item in bundle["link"]:
        if item["relation"] == relation:
            return str(item["url"])
    return None


def relative(url: str) -> str:
    parts = urlsplit(url)
    return parts.path.removeprefix("/fhir/") + (f"?{parts.query}" if parts.query else "")


def observation(oid: str, subject: str, code: str, value: float, unit: str, when: str,
                **extra: Any) -> Json:
    return {
        "resourceType": "Observation", "id": oid, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        **extra,
    }


def blood_pressure(oid: str, subject: str, systolic: float, diastolic: float) -> Json:
    def part(code: str, value: float) -> Json:
        return {"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM,
                                  "code": "mm[Hg]"}}

    return {
        "resourceType": "Observation", "id": oid, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": "2024-01-01",
        "component": [part("8480-6", systolic), part("8462-4", diastolic)],
    }


@pytest.fixture
def people(client: TestClient) -> TestClient:
    put(client, {"resourceType": "Practitioner", "id": "gp", "name": [{"family": "House"}]})
    put(client, patient("9000000009", "Smith", id="p1", birthDate="1980-02-29",
                        generalPractitioner=[{"reference": "Practitioner/gp"}]))
    put(client, patient("9000000017", "Smyth", id="p2", birthDate="1975-06-01"))
    put(client, patient("9000000025", "Zoë", id="p3", birthDate="1990"))
    put(client, observation("o1", "p1", "29463-7", 72.5, "kg", "2024-03-01T10:00:00Z"))
    put(client, observation("o2", "p1", "29463-7", 1500, "g", "2023-01-01"))
    put(client, observation("o3", "p2", "8867-4", 60, "/min", "2024-05-05"))
    return client


def test_sorting_by_a_string_parameter_puts_missing_values_last(people: TestClient) -> None:
    put(people, {"resourceType": "Patient", "id": "nameless"})
    assert ids(search(people, "Patient?_sort=family")) == ["p1", "p2", "p3", "nameless"]
    assert ids(search(people, "Patient?_sort=-family")) == ["p3", "p2", "p1", "nameless"]


def test_sorting_by_several_keys_and_by_date(people: TestClient) -> None:
    assert ids(search(people, "Patient?_sort=-birthdate")) == ["p3", "p1", "p2"]
    assert ids(search(people, "Observation?_sort=subject,-date")) == ["o1", "o2", "o3"]


def test_unsortable_parameter_is_refused_when_strict(people: TestClient) -> None:
    r = people.get("/fhir/Observation?_sort=code-value-quantity",
                   headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    assert "code-value-quantity" in r.json()["issue"][0]["diagnostics"]


def test_paging_links_go_forward_and_back_and_stay_stable(people: TestClient) -> None:
    for n in range(7):
        put(people, patient(id=f"q{n}", family=f"Page{n}"))
    first = search(people, "Patient?family=page&_sort=family&_count=3")
    assert ids(first) == ["q0", "q1", "q2"]
    assert link(first, "previous") is None
    assert link(first, "first") is not None
    second_url = link(first, "next")
    assert second_url is not None
    # A new resource sorting before the page does not shift what the next page holds.
    put(people, patient(id="q-early", family="Page"))
    second = search(people, relative(second_url))
    assert ids(second) == ["q3", "q4", "q5"]
    previous = link(second, "previous")
    assert previous is not None
    back = search(people, relative(previous))
    assert ids(back) == ["q0", "q1", "q2"]
    assert link(back, "previous") is not None  # q-early is before it now
    third = search(people, relative(link(second, "next") or ""))
    assert ids(third) == ["q6"]
    assert link(third, "next") is None


def test_self_link_shows_only_parameters_used(people: TestClient) -> None:
    bundle = search(people, "Patient?family=smith&bogus=1")
    query = parse_qs(urlsplit(link(bundle, "self") or "").query)
    assert query["family"] == ["smith"]
    assert "bogus" not in query
    assert bundle["entry"][-1]["search"]["mode"] == "outcome"


def test_unknown_parameter_is_400_when_strict(people: TestClient) -> None:
    r = people.get("/fhir/Patient?bogus=1", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    assert outcome_codes(r.json())[0] == "not-supported"
    assert "bogus" in r.json()["issue"][0]["diagnostics"]


def test_total_accurate_and_estimate(people: TestClient) -> None:
    assert search(people, "Observation?_total=accurate&_count=1")["total"] == 3
    assert search(people, "Observation?_total=estimate&_count=1")["total"] == 3
    assert "total" not in search(people, "Observation?_count=1")
    counted = search(people, "Observation?_summary=count")
    assert counted["total"] == 3
    assert "entry" not in counted


def test_quantity_search_compares_equivalent_ucum_units(people: TestClient) -> None:
    assert ids(search(people, f"Observation?value-quantity=1.5|{UCUM}|kg")) == ["o2"]
    assert sorted(ids(search(people, f"Observation?value-quantity=gt1000|{UCUM}|g"))) == [
        "o1", "o2"]
    assert ids(search(people, f"Observation?value-quantity=1|{UCUM}|/s")) == ["o3"]
    # Without units, a number is compared with the value as written.
    assert ids(search(people, "Observation?value-quantity=1500")) == ["o2"]


def test_composite_matches_code_and_value_of_the_same_component(client: TestClient) -> None:
    put(client, patient(id="p"))
    put(client, blood_pressure("bp1", "p", 150, 95))
    put(client, blood_pressure("bp2", "p", 110, 150))
    high_systolic = f"component-code-value-quantity={LOINC}|8480-6$gt140"
    assert ids(search(client, f"Observation?{high_systolic}")) == ["bp1"]
    assert ids(search(client, f"Observation?component-code-value-quantity=8462-4$gt140"
                              f"|{UCUM}|mm[Hg]")) == ["bp2"]
    assert ids(search(client, "Observation?combo-code-value-quantity=8462-4$lt100")) == ["bp1"]


def test_text_and_content_search_words(client: TestClient) -> None:
    put(client, patient(id="t1", text={"status": "generated",
                                       "div": '<div xmlns="http://www.w3.org/1999/xhtml">'
                                              "Lives with <b>daughter</b>; uses a wheelchair</div>"}))
    put(client, patient(id="t2", family="Wheeler"))
    assert ids(search(client, "Patient?_text=wheel")) == ["t1"]
    assert ids(search(client, "Patient?_text=daughter wheelchair")) == ["t1"]
    assert ids(search(client, "Patient?_text=daughter nobody")) == []
    assert sorted(ids(search(client, "Patient?_content=wheel"))) == ["t1", "t2"]
    assert sorted(ids(search(client, "Patient?_content=nobody OR wheeler"))) == ["t2"]


def test_list_parameter_finds_the_items_of_a_list(people: TestClient) -> None:
    put(people, {"resourceType": "List", "id": "l1", "status": "current", "mode": "working",
                 "entry": [{"item": {"reference": "Patient/p2"}},
                           {"item": {"reference": "Patient/p3"}}]})
    assert sorted(ids(search(people, "Patient?_list=l1"))) == ["p2", "p3"]
    assert ids(search(people, "Patient?_list=unknown")) == []


def test_token_in_value_set_and_below_a_code(client: TestClient) -> None:
    put(client, patient(id="f", gender="female"))
    put(client, patient(id="m", gender="male"))
    put(client, patient(id="u", gender="unknown"))
    vs = "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert sorted(ids(search(client, f"Patient?gender:in={vs}"))) == ["f", "m", "u"]
    assert ids(search(client, f"Patient?gender:not-in={vs}")) == []
    # v3 ActCode is packaged with its hierarchy: _ActEncounterCode is above AMB.
    act = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    put(client, {"resourceType": "Encounter", "id": "e1", "status": "finished",
                 "class": {"system": act, "code": "AMB"}})
    assert ids(search(client, f"Encounter?class:below={act}|_ActEncounterCode")) == ["e1"]
    assert ids(search(client, f"Encounter?class:above={act}|AMB")) == ["e1"]
    assert ids(search(client, f"Encounter?class:below={act}|IMP")) == []


def test_unknown_value_set_is_a_clear_400(client: TestClient) -> None:
    r = client.get("/fhir/Patient?gender:in=http://example.org/no-such-vs")
    assert r.status_code == 400
    assert "http://example.org/no-such-vs" in r.json()["issue"][0]["diagnostics"]


def test_value_set_stored_on_the_server_serves_in(client: TestClient) -> None:
    put(client, {"resourceType": "ValueSet", "id": "vs1", "url": "http://example.org/vs/f",
                 "status": "active",
                 "compose": {"include": [{"system": "http://hl7.org/fhir/administrative-gender",
                                          "concept": [{"code": "female"}]}]}})
    put(client, patient(id="f", gender="female"))
    put(client, patient(id="m", gender="male"))
    assert ids(search(client, "Patient?gender:in=http://example.org/vs/f")) == ["f"]


def test_chains_has_and_includes(people: TestClient) -> None:
    assert sorted(ids(search(people, "Observation?subject:Patient.general-practitioner"
                                     ":Practitioner.name=house"))) == ["o1", "o2"]
    assert ids(search(people, f"Patient?_has:Observation:subject:code={LOINC}|8867-4")) == ["p2"]
    bundle = search(people, "Observation?_id=o3&_include=Observation:subject")
    assert ids(bundle) == ["o3"]
    assert ids(bundle, "include") == ["p2"]
    bundle = search(people, "Patient?_id=p1&_revinclude=Observation:subject"
                            "&_include:iterate=Patient:general-practitioner")
    assert sorted(ids(bundle, "include")) == ["gp", "o1", "o2"]


def test_compartment_and_system_search(people: TestClient) -> None:
    assert sorted(ids(search(people, "Patient/p1/Observation"))) == ["o1", "o2"]
    assert sorted(ids(search(people, "Patient/p1/*"))) == ["o1", "o2"]
    assert sorted(ids(search(people, "?_type=Practitioner,Patient&_id=gp,p2"))) == ["gp", "p2"]


def test_post_search_with_a_form_body(people: TestClient) -> None:
    r = people.post("/fhir/Patient/_search", content=b"family=smi",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    assert sorted(ids(r.json())) == ["p1"]


def test_approximately_widens_by_ten_percent(people: TestClient) -> None:
    assert ids(search(people, "Observation?value-quantity=ap55")) == ["o3"]
    assert ids(search(people, "Observation?value-quantity=ap50")) == []


def test_search_finds_a_write_as_soon_as_it_returns(client: TestClient) -> None:
    for n in range(5):
        put(client, patient(id=f"c{n}", family=f"Current{n}"))
        assert ids(search(client, f"Patient?family:exact=Current{n}")) == [f"c{n}"]


def test_include_and_revinclude_follow_canonical_references(client: TestClient) -> None:
    put(client, {"resourceType": "Questionnaire", "id": "q", "status": "active",
                 "url": "http://example.org/Questionnaire/phq9"})
    put(client, {"resourceType": "QuestionnaireResponse", "id": "qr", "status": "completed",
                 "questionnaire": "http://example.org/Questionnaire/phq9|1.0"})
    forward = search(client, "QuestionnaireResponse?_include=QuestionnaireResponse:questionnaire")
    assert ids(forward, "include") == ["q"]
    back = search(client, "Questionnaire?_revinclude=QuestionnaireResponse:questionnaire")
    assert ids(back, "include") == ["qr"]
