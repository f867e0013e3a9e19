"""What each token lets its holder do, interaction by interaction (docs/security.md):
SMART v2 letters for system clients (read, vread and instance history ``r``; search,
compartment and type or system history ``s``; create ``c``; update and patch ``u``;
delete ``d``; the conditional forms likewise; operations by their own rule), each Bundle
entry authorised, what may be seen filtered inside the search itself (``_include``,
system search, paging and totals), staff and their user/ scopes, rate limits, and how
the server tells clients about all this (CapabilityStatement, SMART configuration,
JWKS, the token endpoint's response and audit record).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from starlette.testclient import TestClient

from fhirhub.api import create_app
from fhirhub.audit.record import AuditRecord
from fhirhub.auth.smart import OAUTH_URIS, OFF_NOTE, SECURITY_SERVICE
from fhirhub.config import Settings
from fhirhub.store.audit import AuditQuery
from tests.api.test_security import (
    ALICE,
    BOB,
    FORM,
    JSON_PATCH,
    World,
    observation,
    outcome_of,
    patient,
    refused,
    secured_server,
)
from tests.auth_support import (
    ALICE_NHS,
    BASE,
    BOB_NHS,
    add_client,
    bearer,
    patient_token,
    staff_token,
)
from tests.conftest import BACKENDS

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER_CS = "http://hl7.org/fhir/administrative-gender"
STAFF_SCOPES = "user/Patient.rs user/Observation.crs"
PAGED = 25  # Observations each of Alice and Bob, code "paging"


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A secured server (staff get STAFF_SCOPES) with Alice and Bob, 25 paging
    Observations each, seeded by an administrator's token."""
    with secured_server(request, request.param, tmp_path_factory.mktemp("authz"),
                        staff_scopes=STAFF_SCOPES) as http:
        w = World(http, request.param)
        w.admin = w.token_for(w.client("system/*.cruds"), "system/*.cruds")
        w.put(patient(ALICE, ALICE_NHS, "Alison"))
        w.put(patient(BOB, BOB_NHS, "Bobson"))
        w.put(observation("a1", ALICE))
        entries = [{"fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": observation(None, who, "paging"),
                    "request": {"method": "POST", "url": "Observation"}}
                   for who in (ALICE, BOB) for _ in range(PAGED)]
        r, _ = w.call("POST", "", token=w.admin,
                      json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
        assert r.status_code == 200, r.text
        yield w


def token(w: World, scopes: str) -> str:
    """A token of the administrator's client with ``scopes`` (issued as the token endpoint
    would; the scopes are what is tested here, not the registration)."""
    return w.token_for(w.admin_client, scopes)


def letters(wanted: str) -> str:
    """SMART v2 permission letters in their canonical order."""
    return "".join(c for c in "cruds" if c in wanted)


# -- one interaction at a time ---------------------------------------------------------------


@dataclass
class Probe:
    """One request, and what must not have happened when it is refused."""

    method: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    target: str | None = None  # a resource that must be unchanged
    marker: str | None = None  # no Observation may carry this identifier


def _obs(w: World) -> tuple[str, str]:
    """A new Observation of Alice's: its id and the identifier value it is found by."""
    marker = str(uuid.uuid4())
    rid = str(uuid.uuid4())
    w.put(observation(rid, ALICE, identifier=[{"system": "urn:test", "value": marker}]))
    return rid, marker


def _ident(marker: str) -> str:
    return f"identifier=urn:test|{marker}"


def _body(marker: str | None = None, rid: str | None = None) -> dict[str, Any]:
    extra = {"identifier": [{"system": "urn:test", "value": marker}]} if marker else {}
    return {"json": observation(rid, ALICE, "3333-3", **extra)}


def _patch() -> dict[str, Any]:
    return {"content": json.dumps([{"op": "replace", "path": "/status", "value": "amended"}]),
            "headers": {"Content-Type": JSON_PATCH}}


def _read(w: World) -> Probe:
    rid, _ = _obs(w)
    return Probe("GET", f"Observation/{rid}")


def _vread(w: World) -> Probe:
    rid, _ = _obs(w)
    return Probe("GET", f"Observation/{rid}/_history/1")


def _history(w: World) -> Probe:
    rid, _ = _obs(w)
    return Probe("GET", f"Observation/{rid}/_history")


def _search(w: World) -> Probe:
    _, marker = _obs(w)
    return Probe("GET", f"Observation?{_ident(marker)}")


def _post_search(w: World) -> Probe:
    _, marker = _obs(w)
    return Probe("POST", "Observation/_search",
                 {"content": _ident(marker), "headers": {"Content-Type": FORM}})


def _system_search(w: World) -> Probe:
    rid, _ = _obs(w)
    return Probe("GET", f"?_type=Observation&_id={rid}")


def _create(w: World) -> Probe:
    marker = str(uuid.uuid4())
    return Probe("POST", "Observation", _body(marker), marker=marker)


def _update(w: World) -> Probe:
    rid, _ = _obs(w)
    return Probe("PUT", f"Observation/{rid}", _body(rid=rid), target=f"Observation/{rid}")


def _patch_probe(w: World) -> Probe:
    rid, _ = _obs(w)
    return Probe("PATCH", f"Observation/{rid}", _patch(), target=f"Observation/{rid}")


def _delete(w: World) -> Probe:
    rid, _ = _obs(w)
    return Probe("DELETE", f"Observation/{rid}", target=f"Observation/{rid}")


def _conditional_create(w: World) -> Probe:
    _, marker = _obs(w)  # it matches: nothing is created, the match is answered
    return Probe("POST", "Observation", {**_body(marker), "headers": {
        "If-None-Exist": _ident(marker)}})


def _conditional_update(w: World) -> Probe:
    rid, marker = _obs(w)
    return Probe("PUT", f"Observation?{_ident(marker)}", _body(marker),
                 target=f"Observation/{rid}")


def _conditional_patch(w: World) -> Probe:
    rid, marker = _obs(w)
    return Probe("PATCH", f"Observation?{_ident(marker)}", _patch(),
                 target=f"Observation/{rid}")


def _conditional_delete(w: World) -> Probe:
    rid, marker = _obs(w)
    return Probe("DELETE", f"Observation?{_ident(marker)}", target=f"Observation/{rid}")


def _validate_type(w: World) -> Probe:
    return Probe("POST", "Observation/$validate", _body())


def _validate_instance(w: World) -> Probe:
    rid, _ = _obs(w)
    return Probe("GET", f"Observation/{rid}/$validate")


def _expand(w: World) -> Probe:
    return Probe("GET", f"ValueSet/$expand?url={GENDER_VS}")


def _lookup(w: World) -> Probe:
    return Probe("GET", f"CodeSystem/$lookup?system={GENDER_CS}&code=male")


def _validate_code(w: World) -> Probe:
    return Probe("GET", f"ValueSet/$validate-code?url={GENDER_VS}&system={GENDER_CS}&code=male")


def _audit_search(w: World) -> Probe:
    return Probe("GET", "AuditEvent?_count=1")


def _audit_read(w: World) -> Probe:
    row = w.store.audit_search(AuditQuery(count=1)).rows[0]
    return Probe("GET", f"AuditEvent/{row.id}")


# name: (resource type, the letters any one of which allows it, letters both tokens get
# besides, the probe, the statuses of success)
INTERACTIONS: dict[str, tuple[str, str, str, Callable[[World], Probe], tuple[int, ...]]] = {
    "read": ("Observation", "r", "", _read, (200,)),
    "vread": ("Observation", "r", "", _vread, (200,)),
    "history-instance": ("Observation", "r", "", _history, (200,)),
    "search-type": ("Observation", "s", "", _search, (200,)),
    "search-type POST _search": ("Observation", "s", "", _post_search, (200,)),
    "search-system _type": ("Observation", "s", "", _system_search, (200,)),
    "compartment": ("Observation", "s", "",
                    lambda w: Probe("GET", f"Patient/{ALICE}/Observation"), (200,)),
    "history-type": ("Observation", "s", "",
                     lambda w: Probe("GET", "Observation/_history"), (200,)),
    "create": ("Observation", "c", "", _create, (201,)),
    "update": ("Observation", "u", "", _update, (200,)),
    "patch": ("Observation", "u", "", _patch_probe, (200,)),
    "delete": ("Observation", "d", "", _delete, (200, 204)),
    # The conditional forms find their match with a search: the caller must be able to
    # see it (r or s), or the criteria match nothing.
    "conditional-create": ("Observation", "c", "s", _conditional_create, (200,)),
    "conditional-update": ("Observation", "u", "s", _conditional_update, (200,)),
    "conditional-patch": ("Observation", "u", "s", _conditional_patch, (200,)),
    "conditional-delete": ("Observation", "d", "s", _conditional_delete, (200, 204)),
    "$validate (type)": ("Observation", "cur", "", _validate_type, (200,)),
    "$validate (instance)": ("Observation", "r", "", _validate_instance, (200,)),
    "$expand": ("ValueSet", "r", "", _expand, (200,)),
    "$validate-code": ("ValueSet", "r", "", _validate_code, (200,)),
    "$lookup": ("CodeSystem", "r", "", _lookup, (200,)),
    "AuditEvent search": ("AuditEvent", "s", "", _audit_search, (200,)),
    "AuditEvent read": ("AuditEvent", "r", "", _audit_read, (200,)),
}


def _unchanged(w: World, probe: Probe) -> None:
    if probe.target is not None:
        r = w.read(probe.target)
        assert r.status_code == 200 and r.json()["meta"]["versionId"] == "1", r.text
    if probe.marker is not None:
        assert "entry" not in w.read(f"Observation?{_ident(probe.marker)}").json()


@pytest.mark.parametrize("name", list(INTERACTIONS))
def test_each_interaction_needs_its_scope(world: World, name: str) -> None:
    rtype, needed, extra, build, ok = INTERACTIONS[name]
    others = "".join(c for c in "cruds" if c not in needed)
    probe = build(world)
    r, rid = world.call(probe.method, probe.path, token=token(world, f"system/{rtype}.{others}"),
                        **probe.kwargs)
    rec = refused(world, r, rid, 403)
    assert f"system/{rtype}." in r.json()["issue"][0]["diagnostics"]
    assert rec.client is not None
    _unchanged(world, probe)
    for letter in needed:  # any one of them will do
        probe = build(world)
        scope = f"system/{rtype}.{letters(letter + extra)}"
        r, rid = world.call(probe.method, probe.path, token=token(world, scope), **probe.kwargs)
        assert r.status_code in ok, (scope, r.text)
        assert world.record(rid).status == r.status_code
        if probe.target is not None and probe.method != "GET":
            changed = world.read(probe.target)
            assert changed.status_code == 410 or changed.json()["meta"]["versionId"] == "2"


def test_conditional_forms_match_only_what_the_caller_may_see(world: World) -> None:
    """Without r or s on the type the criteria find nothing: a conditional delete deletes
    nothing, a conditional patch finds nothing to patch."""
    rid, marker = _obs(world)
    r, _ = world.call("DELETE", f"Observation?{_ident(marker)}",
                      token=token(world, "system/Observation.d"))
    assert r.status_code in (200, 204, 404), r.text
    r, _ = world.call("PATCH", f"Observation?{_ident(marker)}",
                      token=token(world, "system/Observation.u"), **_patch())
    assert r.status_code in (404, 412), r.text
    assert world.read(f"Observation/{rid}").json()["meta"]["versionId"] == "1"


# -- Bundles ------------------------------------------------------------------------------------


def test_a_batch_authorises_each_entry(world: World) -> None:
    rid, _ = _obs(world)
    marker = str(uuid.uuid4())
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Observation/{rid}"}},
        {"resource": _body(marker)["json"], "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "DELETE", "url": f"Observation/{rid}"}},
        {"request": {"method": "GET", "url": f"Patient/{ALICE}"}}]}
    r, request_id = world.call("POST", "", token=token(world, "system/Observation.rs"),
                               json=bundle)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["200", "403", "403", "403"]
    for e in entries[1:]:
        outcome_of(e["response"]["outcome"])
    top = world.record(request_id)
    children = sorted((x for x in world.records(request_id) if x.parent == top.id),
                      key=lambda x: x.entry or 0)
    assert [x.status for x in children] == [200, 403, 403, 403]
    assert (top.interaction, top.status) == ("batch", 200)
    assert "entry" not in world.read(f"Observation?{_ident(marker)}").json()
    # With the letters, the same entries succeed (all but the Patient).
    r, _ = world.call("POST", "", token=token(world, "system/Observation.cruds"), json=bundle)
    statuses = [e["response"]["status"][:3] for e in r.json()["entry"]]
    assert statuses[:3] == ["200", "201", "204"] or statuses[:3] == ["200", "201", "200"]
    assert statuses[3] == "403"


def _transaction(marker: str, rid: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": _body(marker)["json"],
         "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "DELETE", "url": f"Observation/{rid}"}}]}


def test_a_transaction_with_one_forbidden_entry_is_refused_whole(world: World) -> None:
    rid, _ = _obs(world)
    marker = str(uuid.uuid4())
    r, request_id = world.call("POST", "", token=token(world, "system/Observation.crus"),
                               json=_transaction(marker, rid))
    refused(world, r, request_id, 403, entities=False)  # (see the audit test below)
    assert "Bundle.entry[1]" in r.json()["issue"][0]["diagnostics"]
    assert "entry" not in world.read(f"Observation?{_ident(marker)}").json()
    assert world.read(f"Observation/{rid}").status_code == 200


def test_a_transaction_with_every_entry_allowed_is_done(world: World) -> None:
    rid, _ = _obs(world)
    marker = str(uuid.uuid4())
    r, _ = world.call("POST", "", token=token(world, "system/Observation.cruds"),
                      json=_transaction(marker, rid))
    assert r.status_code == 200, r.text
    assert len(world.read(f"Observation?{_ident(marker)}").json()["entry"]) == 1
    assert world.read(f"Observation/{rid}").status_code == 410


def test_a_failed_transactions_audit_record_names_no_rolled_back_write(world: World
                                                                         ) -> None:
    marker = str(uuid.uuid4())
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": _body(marker)["json"],
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Patient", "id": "broken", "gender": "sometimes"},
         "request": {"method": "PUT", "url": "Patient/broken"}}]}
    r, request_id = world.call("POST", "", token=world.admin, json=bundle)
    assert r.status_code in (400, 422), r.text
    assert "entry" not in world.read(f"Observation?{_ident(marker)}").json()
    assert world.record(request_id).entities == ()


# -- what a search may show -------------------------------------------------------------------


def test_include_of_a_type_without_r_or_s_is_left_out(world: World) -> None:
    path = "Observation?_id=a1&_include=Observation:subject"
    r, rid = world.call("GET", path, token=token(world, "system/Observation.rs"))
    assert r.status_code == 200, r.text
    assert [e["resource"]["resourceType"] for e in r.json()["entry"]] == ["Observation"]
    assert [e.reference for e in world.record(rid).entities] == ["Observation/a1"]
    r, _ = world.call("GET", path, token=token(world, "system/Observation.rs system/Patient.r"))
    assert [e["resource"]["resourceType"] for e in r.json()["entry"]] == ["Observation",
                                                                          "Patient"]


def test_a_system_search_without_type_returns_only_searchable_types(world: World) -> None:
    caller = token(world, "system/Observation.s system/Patient.r")
    r, _ = world.call("GET", "?_count=100&_total=accurate", token=caller)
    assert r.status_code == 200, r.text
    assert {e["resource"]["resourceType"] for e in r.json()["entry"]} == {"Observation"}
    assert r.json()["total"] == world.read("Observation?_total=accurate&_count=0").json()["total"]
    r, rid = world.call("GET", "?_type=Patient", token=caller)
    refused(world, r, rid, 403)
    r, rid = world.call("GET", "?_type=Observation,Patient", token=caller)
    refused(world, r, rid, 403)
    r, _ = world.call("GET", "_history?_count=100", token=caller)
    assert {e["resource"]["resourceType"] for e in r.json()["entry"] if "resource" in e} \
        == {"Observation"}


def test_a_patients_totals_and_pages_count_only_their_own(world: World) -> None:
    alice = patient_token(ALICE_NHS)
    r, rid = world.call("GET", "Observation?code=paging&_count=10&_total=accurate",
                        token=alice)
    assert r.status_code == 200, r.text
    assert r.json()["total"] == PAGED
    seen: list[str] = []
    pages = 0
    bundle = r.json()
    while True:
        pages += 1
        for e in bundle.get("entry", []):
            assert e["resource"]["subject"]["reference"] == f"Patient/{ALICE}"
            seen.append(e["resource"]["id"])
        assert bundle["total"] == PAGED
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            break
        url = urlsplit(following[0])
        assert following[0].startswith(f"{BASE}/Observation?")
        bundle = world.http.get(f"{url.path}?{url.query}", headers=bearer(alice)).json()
    assert pages == 3 and len(seen) == len(set(seen)) == PAGED
    assert world.read("Observation?code=paging&_total=accurate").json()["total"] == 2 * PAGED
    assert world.record(rid).status == 200


# -- staff --------------------------------------------------------------------------------------


def test_staff_are_recorded_with_their_role_and_organisation(world: World) -> None:
    staff = staff_token(role="R8000", org="A12345")
    r, rid = world.call("GET", f"Patient/{ALICE}", token=staff)
    assert r.status_code == 200, r.text
    rec = world.record(rid)
    assert (rec.user, rec.role, rec.organization) == ("555021935107", "R8000", "A12345")
    r, rid = world.call("DELETE", f"Patient/{ALICE}", token=staff)
    rec = refused(world, r, rid, 403)
    assert (rec.user, rec.role, rec.organization) == ("555021935107", "R8000", "A12345")
    # ... and as AuditEvents, to whoever may read the audit log.
    r, _ = world.call("GET", f"AuditEvent/{rec.id}", token=world.admin)
    assert "R8000" in r.text and "A12345" in r.text


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", f"Patient/{ALICE}", 200), ("GET", "Observation?code=paging", 200),
    ("POST", "Observation", 201), ("POST", "Patient", 403), ("PUT", "Observation/a1", 403),
    ("DELETE", "Observation/a1", 403), ("GET", "Encounter", 403), ("GET", "AuditEvent", 403)])
def test_staff_are_held_to_their_user_scopes(world: World, method: str, path: str,
                                             status: int) -> None:
    body = {}
    if method in ("POST", "PUT"):
        rtype = path.split("/", maxsplit=1)[0]
        body = {"json": patient(str(uuid.uuid4()), "9434765919", "New") if rtype == "Patient"
                else observation("a1" if method == "PUT" else None, ALICE)}
    r, rid = world.call(method, path, token=staff_token(), **body)
    if status >= 400:
        refused(world, r, rid, status)
        assert "user/" in r.json()["issue"][0]["diagnostics"]
    else:
        assert r.status_code == status, r.text


# -- rate limits --------------------------------------------------------------------------------


def test_a_client_over_its_rate_limit_gets_429(world: World) -> None:
    client = world.client("system/Patient.rs", rate_limit=3)
    caller = world.token_for(client, "system/Patient.rs")
    for _ in range(3):
        r, _ = world.call("GET", f"Patient/{ALICE}", token=caller)
        assert r.status_code == 200, r.text
    r, rid = world.call("GET", f"Patient/{ALICE}", token=caller)
    refused(world, r, rid, 429)
    assert int(r.headers["Retry-After"]) >= 1
    assert "Rate limit" in r.json()["issue"][0]["diagnostics"]
    # Others are not held back by it.
    assert world.call("GET", f"Patient/{ALICE}", token=world.admin)[0].status_code == 200


def test_a_throttled_requests_audit_record_names_the_client(world: World) -> None:
    client = world.client("system/Patient.rs", rate_limit=1)
    caller = world.token_for(client, "system/Patient.rs")
    assert world.call("GET", f"Patient/{ALICE}", token=caller)[0].status_code == 200
    r, rid = world.call("GET", f"Patient/{ALICE}", token=caller)
    assert r.status_code == 429
    assert world.record(rid).client == client.id


def test_token_requests_count_against_the_rate_limit(world: World) -> None:
    client = world.client("system/Patient.rs", rate_limit=2)
    for _ in range(2):
        assert world.ask_token(client.form("system/Patient.rs"))[0].status_code == 200
    r, rid = world.ask_token(client.form("system/Patient.rs"))
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) >= 1
    body = r.json()
    outcome = outcome_of(body.get("outcome", body))
    rec = world.record(rid)
    assert rec.status == 429 and rec.outcome_resource == outcome
    assert rec.client == client.id


def test_a_throttled_token_request_answers_in_oauth_json(world: World) -> None:
    client = world.client("system/Patient.rs", rate_limit=1)
    assert world.ask_token(client.form("system/Patient.rs"))[0].status_code == 200
    r, _ = world.ask_token(client.form("system/Patient.rs"))
    assert r.status_code == 429
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers.get("Cache-Control") == "no-store"
    assert r.json()["error"] and r.json()["outcome"]["resourceType"] == "OperationOutcome"


# -- clients -----------------------------------------------------------------------------------


def test_a_new_clients_token_works_at_once(world: World) -> None:
    assert world.call("GET", "metadata", token=world.admin)[0].status_code == 200
    assert world.call("GET", f"Patient/{ALICE}", token=world.admin)[0].status_code == 200
    client = add_client(world.store, world.settings, "system/Patient.rs")  # not forgotten
    r, _ = world.ask_token(client.form("system/Patient.rs"))
    assert r.status_code == 200, r.text
    r, _ = world.call("GET", f"Patient/{ALICE}", token=r.json()["access_token"])
    assert r.status_code == 200, r.text


# -- telling clients ----------------------------------------------------------------------------


def test_with_auth_off_every_response_says_so(client: TestClient) -> None:
    for method, path in [("GET", "/fhir/metadata"), ("GET", "/fhir/Patient"),
                         ("GET", "/fhir/Patient/nope"), ("POST", "/fhir/auth/token"),
                         ("GET", "/elsewhere")]:
        r = client.request(method, path)
        assert r.headers["X-Fhirhub-Auth"] == "off", (method, path)
    security = client.get("/fhir/metadata").json()["rest"][0]["security"]
    assert security["description"] == OFF_NOTE
    assert "SWITCHED OFF" in security["description"] and "service" not in security


def test_with_auth_on_the_capability_statement_describes_smart(world: World) -> None:
    r = world.http.get("/fhir/metadata")
    assert r.status_code == 200 and "X-Fhirhub-Auth" not in r.headers
    security = r.json()["rest"][0]["security"]
    codings = [c for s in security["service"] for c in s["coding"]]
    assert {"system": SECURITY_SERVICE, "code": "SMART-on-FHIR",
            "display": "SMART-on-FHIR"} in codings
    uris = next(e for e in security["extension"] if e["url"] == OAUTH_URIS)
    assert {"url": "token", "valueUri": f"{BASE}/auth/token"} in uris["extension"]
    assert "SWITCHED OFF" not in security["description"]


def test_the_smart_configuration(world: World) -> None:
    r = world.http.get("/fhir/.well-known/smart-configuration")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    conf = r.json()
    assert conf["token_endpoint"] == f"{BASE}/auth/token"
    assert conf["jwks_uri"] == f"{BASE}/auth/jwks"
    assert conf["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert set(conf["token_endpoint_auth_signing_alg_values_supported"]) == {
        "RS384", "ES384", "RS512"}
    assert conf["grant_types_supported"] == ["client_credentials"]
    assert "client-confidential-asymmetric" in conf["capabilities"]
    assert "permission-v2" in conf["capabilities"]


def test_the_jwks_verifies_the_tokens_issued(world: World) -> None:
    client = world.client("system/Patient.rs system/Observation.rs")
    r, rid = world.ask_token(client.form("system/Patient.rs"))
    assert r.status_code == 200, r.text
    issued = r.json()
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Pragma"] == "no-cache"
    assert issued["token_type"].lower() == "bearer"
    assert issued["expires_in"] == 300 and issued["scope"] == "system/Patient.rs"
    keys = world.http.get("/fhir/auth/jwks").json()["keys"]
    assert all("d" not in k for k in keys)  # the public half only
    kid = jwt.get_unverified_header(issued["access_token"])["kid"]
    jwk = next(k for k in keys if k["kid"] == kid)
    claims = jwt.decode(issued["access_token"], jwt.PyJWK(jwk).key, algorithms=["ES256"],
                        audience=BASE, issuer=BASE)
    assert claims["sub"] == client.id and claims["scope"] == "system/Patient.rs"
    assert claims["exp"] - claims["iat"] == 300
    rec = world.record(rid)
    assert (rec.interaction, rec.status, rec.client) == ("token", 200, client.id)


@pytest.fixture
def keeping_bodies(secured_settings: Settings) -> Iterator[World]:
    """A secured server keeping the audit records' bodies in full."""
    app = create_app(secured_settings.with_(audit_bodies="full"))
    with TestClient(app, base_url="http://testserver") as http:
        w = World(http, "")
        w.admin = w.token_for(w.client("system/*.cruds"), "system/*.cruds")
        yield w


def _bodies(w: World, rid: str) -> tuple[AuditRecord, list[Any]]:
    row = next(r for r in w.store.audit_search(AuditQuery(request_ids=(rid,))).rows)
    return AuditRecord.from_json(row.record), w.store.audit_bodies(row.chain, row.chain_seq)


def test_token_requests_are_audited_without_their_bodies(keeping_bodies: World) -> None:
    w = keeping_bodies
    client = w.client("system/Patient.rs")
    assertion = client.assertion()
    r, rid = w.ask_token(client.form("system/Patient.rs", assertion))
    assert r.status_code == 200, r.text
    token_text = r.json()["access_token"]
    rec, bodies = _bodies(w, rid)
    assert bodies == []
    assert rec.client == client.id and rec.status == 200
    text = rec.canonical().decode()
    assert token_text not in text and assertion not in text
    # A refused one too (the replayed assertion: a secret all the same).
    r, rid = w.ask_token(client.form("system/Patient.rs", assertion))
    assert r.status_code == 401
    rec, bodies = _bodies(w, rid)
    assert bodies == [] and rec.client == client.id
    # Other requests' bodies are kept.
    r, rid = w.call("POST", "Patient", token=w.admin, json=patient(str(uuid.uuid4()),
                                                                    "9434765919", "Keepme"))
    assert r.status_code == 201
    assert {b.part for b in _bodies(w, rid)[1]} == {"request", "response"}


def test_the_token_endpoint_wants_a_form_and_client_credentials(world: World) -> None:
    client = world.client("system/Patient.rs")
    cases = [
        (client.form("system/Patient.rs").replace(b"client_credentials", b"password"),
         FORM, "unsupported_grant_type", 400),
        (client.form("system/Patient.rs"), "application/json", "invalid_request", 400),
        (client.form("system/Patient.rs") + b"&scope=system/*.cruds", FORM,
         "invalid_request", 400),
        (client.form("user/Patient.rs"), FORM, "invalid_scope", 400),
    ]
    for body, media, error, status in cases:
        r, rid = world.call("POST", "auth/token", content=body,
                            headers={"Content-Type": media})
        refused(world, r, rid, status, oauth=error)


def test_tokens_live_no_longer_than_configured(world: World) -> None:
    client = world.client("system/Patient.rs")
    issued = world.ask_token(client.form("system/Patient.rs"))[0].json()["access_token"]
    claims = jwt.decode(issued, options={"verify_signature": False})
    assert claims["exp"] - int(time.time()) <= world.settings.auth_token_seconds
    assert claims["aud"] == BASE and claims["iss"] == BASE


def test_the_public_endpoints_need_no_token(world: World) -> None:
    for path in ("metadata", ".well-known/smart-configuration", "auth/jwks"):
        r, rid = world.call("GET", path)
        assert r.status_code == 200, (path, r.text)
        assert world.record(rid).status == 200
