"""Every route the server exposes refuses a call without a token (401) and a call whose
token lacks the scope the route needs (403), with an OperationOutcome and an audit record.

The routes are enumerated from the server's own definitions: the interactions the
engine dispatches (checked against :func:`fhirhub.engine.router.route` and
``guard.NEEDS``), every operation of :func:`fhirhub.engine.operations.operations` at each
level it declares, the compartments, the conditional forms, HEAD, POST ``_search``, the
system-level routes, AuditEvent, and the CapabilityStatement's interactions and
operations; resource types are a sample over HTTP, with every R4 type checked for the
read and search routes and the router's and guard's decisions shown not to depend on
the type. Only the public endpoints answer without a token, and nothing outside /fhir
serves FHIR data.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from fhirhub.auth.principal import Principal
from fhirhub.auth.scopes import Grants, parse_scopes
from fhirhub.engine import guard
from fhirhub.engine.operations import operations
from fhirhub.engine.request import FhirRequest
from fhirhub.engine.router import route
from fhirhub.errors import ForbiddenError
from fhirhub.fhir.definitions import compartment_definitions
from tests.api.test_security import (
    FORM,
    JSON_PATCH,
    World,
    outcome_of,
    secured_server,
)
from tests.conftest import BACKENDS

if TYPE_CHECKING:
    from httpx2 import Response  # what starlette's TestClient answers with

ID = "x1"
# The types every route is tried on over HTTP: the commonest, the audit log, and the
# types that have operations of their own.
SAMPLE = ("Patient", "Observation", "AuditEvent")
# The routes that answer without a token (besides /_status, outside /fhir).
PUBLIC = frozenset({("GET", "metadata"), ("HEAD", "metadata"),
                    ("GET", ".well-known/smart-configuration"),
                    ("HEAD", ".well-known/smart-configuration"),
                    ("GET", "auth/jwks"), ("HEAD", "auth/jwks"), ("POST", "auth/token")})
# A token that may neither read nor search anything.
BLIND = "system/*.cud"


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A secured server holding a Patient and an Observation (so that a route that
    leaked would have something to show)."""
    with secured_server(request, request.param, tmp_path_factory.mktemp("routes")) as http:
        w = World(http, request.param)
        w.admin = w.token_for(w.client("system/*.cruds"), "system/*.cruds")
        w.put({"resourceType": "Patient", "id": ID, "name": [{"family": "Routes"}]})
        w.put({"resourceType": "Observation", "id": ID, "status": "final",
               "code": {"text": "x"}, "subject": {"reference": f"Patient/{ID}"}})
        yield w


@dataclass(frozen=True)
class Call:
    """One route: a request, the interaction the router must make of it, and the scope
    it needs (any one of ``needs`` on ``rtype``)."""

    method: str
    path: str  # below the base, with its query
    interaction: str
    rtype: str | None = None
    needs: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    label: str = ""

    @property
    def where(self) -> str:
        return self.path.split("?")[0]

    def __str__(self) -> str:
        return f"{self.method} [base]/{self.path}{' ' + self.label if self.label else ''}"


def _resource(rtype: str, rid: str | None = None) -> dict[str, Any]:
    return {"json": {"resourceType": rtype, **({"id": rid} if rid else {})}}


def _patch() -> dict[str, Any]:
    return {"content": json.dumps([{"op": "replace", "path": "/id", "value": ID}]),
            "headers": {"Content-Type": JSON_PATCH}}


def type_routes(t: str) -> list[Call]:
    """Every interaction on a resource type and on one of its instances."""
    return [
        Call("GET", f"{t}/{ID}", "read", t, "r"),
        Call("HEAD", f"{t}/{ID}", "read", t, "r"),
        Call("GET", f"{t}/{ID}/_history/1", "vread", t, "r"),
        Call("GET", f"{t}/{ID}/_history", "history-instance", t, "r"),
        Call("PUT", f"{t}/{ID}", "update", t, "u", _resource(t, ID)),
        Call("PATCH", f"{t}/{ID}", "patch", t, "u", _patch()),
        Call("DELETE", f"{t}/{ID}", "delete", t, "d"),
        Call("GET", t, "search-type", t, "s"),
        Call("GET", f"{t}?_id={ID}", "search-type", t, "s"),
        Call("HEAD", t, "search-type", t, "s"),
        Call("POST", f"{t}/_search", "search-type", t, "s",
             {"content": f"_id={ID}", "headers": {"Content-Type": FORM}}),
        Call("GET", f"{t}/_history", "history-type", t, "s"),
        Call("POST", t, "create", t, "c", _resource(t)),
        Call("POST", t, "create", t, "c",
             {**_resource(t), "headers": {"If-None-Exist": f"_id={ID}"}}, "conditional"),
        Call("PUT", f"{t}?_id={ID}", "conditional-update", t, "u", _resource(t)),
        Call("PATCH", f"{t}?_id={ID}", "conditional-patch", t, "u", _patch()),
        Call("DELETE", f"{t}?_id={ID}", "conditional-delete", t, "d"),
    ]


def operation_routes() -> list[Call]:
    """Every operation at every level it is defined on (on its own types, or on the
    sample when it applies to every type)."""
    calls: list[Call] = []
    for op in operations():
        methods = ("POST",) if op.affects_state else ("GET", "POST")
        for level in sorted(op.levels):
            types: tuple[str | None, ...] = (None,) if level == "system" else \
                tuple(sorted(op.types)) or SAMPLE
            for t in types:
                path = {"system": f"${op.name}", "type": f"{t}/${op.name}",
                        "instance": f"{t}/{ID}/${op.name}"}[level]
                needs = "r" if level == "instance" else op.needs
                for method in methods:
                    body = _resource(t or "Parameters") if method == "POST" else {}
                    calls.append(Call(method, path, "operation", t, needs, body))
    return calls


def compartment_routes() -> list[Call]:
    calls: list[Call] = []
    for owner in sorted(compartment_definitions()):
        calls.append(Call("GET", f"{owner}/{ID}/*", "compartment"))  # see WHOLE below
        for t in SAMPLE:
            calls.append(Call("GET", f"{owner}/{ID}/{t}", "compartment", t, "s"))
    return calls


def _bundle(kind: str) -> dict[str, Any]:
    return {"json": {"resourceType": "Bundle", "type": kind, "entry": [
        {"request": {"method": "GET", "url": f"Patient/{ID}"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
         "request": {"method": "POST", "url": "Observation"}}]}}


def system_routes() -> list[Call]:
    return [
        Call("GET", "", "search-system"),
        Call("HEAD", "", "search-system"),
        Call("GET", "?_count=5", "search-system"),
        Call("GET", "?_type=Patient", "search-system", "Patient", "s"),
        Call("POST", "_search", "search-system", "Patient", "s",
             {"content": "_type=Patient", "headers": {"Content-Type": FORM}}),
        Call("GET", "_history", "history-system"),
        Call("POST", "", "transaction", kwargs=_bundle("transaction"), label="transaction"),
        Call("POST", "", "transaction", kwargs=_bundle("batch"), label="batch"),
        Call("GET", "metadata", "capabilities"),
        Call("HEAD", "metadata", "capabilities"),
        Call("GET", ".well-known/smart-configuration", "smart-configuration"),
        Call("HEAD", ".well-known/smart-configuration", "smart-configuration"),
        Call("GET", "auth/jwks", "jwks"),
        Call("HEAD", "auth/jwks", "jwks"),
        Call("POST", "auth/token", "token", kwargs={"content": b"",
                                                    "headers": {"Content-Type": FORM}}),
    ]


def all_routes() -> list[Call]:
    calls = [c for t in SAMPLE for c in type_routes(t)]
    return calls + operation_routes() + compartment_routes() + system_routes()


# Routes whose answer is filtered, not refused: a whole-server search or history, or a
# whole compartment, shows only the types the caller may search (with BLIND: nothing).
WHOLE = frozenset({"search-system", "history-system", "compartment"})


def _filtered(call: Call) -> bool:
    return call.interaction in WHOLE and call.rtype is None


# -- the routes are the server's ----------------------------------------------------------------


def test_the_routes_cover_every_interaction_and_operation(world: World) -> None:
    calls = all_routes()
    for call in calls:
        r = route(call.method, call.where)
        assert r.interaction == call.interaction, str(call)
        typed = call.where and call.where[0].isupper()
        assert r.resource_type == (call.where.split("/")[0] if typed else None), str(call)
    covered = {c.interaction for c in calls}
    # Every interaction the engine can dispatch, and every one the guard knows, is tried.
    dispatched = set(world.engine._handlers)
    assert covered == dispatched, (covered ^ dispatched)
    assert set(guard.NEEDS) | guard.PUBLIC <= covered
    assert {route(m, p).interaction for m, p in PUBLIC} == guard.PUBLIC
    # Every operation at every level it declares.
    tried = {(c.where.rsplit("$", 1)[1], _level(c.where)) for c in calls
             if c.interaction == "operation"}
    assert tried == {(op.name, level) for op in operations() for level in op.levels}
    # ... and everything the CapabilityStatement offers.
    rest = world.http.get("/fhir/metadata").json()["rest"][0]
    assert {i["code"] for i in rest["interaction"]} <= covered | {"batch"}
    offered = {i["code"] for res in rest["resource"] for i in res["interaction"]}
    assert offered <= covered
    names = {o["name"] for res in rest["resource"] for o in res.get("operation", [])}
    names |= {o["name"] for o in rest.get("operation", [])}
    assert names <= {name for name, _ in tried}


def _level(where: str) -> str:
    parts = where.split("/")
    return {1: "system", 2: "type", 3: "instance"}[len(parts)]


# -- no token -----------------------------------------------------------------------------------


def _send(w: World, call: Call, token: str | None = None,
          authorization: str | None = None) -> tuple[Response, str]:
    kwargs = dict(call.kwargs)
    headers = dict(kwargs.pop("headers", {}))
    if authorization is not None:
        headers["Authorization"] = authorization
    return w.call(call.method, call.path, token=token, headers=headers, **kwargs)


def _outcome(r: Response, call: Call) -> dict[str, Any] | None:
    """The OperationOutcome of a refusal (None for HEAD, which has no body)."""
    if call.method == "HEAD":
        assert r.content == b""
        return None
    return outcome_of(r.json())


def test_every_route_refuses_a_call_without_a_token(world: World) -> None:
    answering: set[tuple[str, str]] = set()
    for call in all_routes():
        r, rid = _send(world, call)
        if (call.method, call.where) in PUBLIC:
            assert r.status_code != 401, (str(call), r.text)
            answering.add((call.method, call.where))
            continue
        assert r.status_code == 401, (str(call), r.text)
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="fhirhub"', str(call)
        outcome = _outcome(r, call)
        if outcome is not None:
            assert outcome["issue"][0]["code"] == "login", str(call)
        rec = world.record(rid)
        assert rec.status == 401 and rec.entities == () and rec.client is None, str(call)
        if call.method != "HEAD":
            assert rec.outcome_resource == outcome
        # A token that is not one is refused the same way, saying so.
        r, _ = _send(world, call, authorization="Bearer not-a-token")
        assert r.status_code == 401, str(call)
        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"], str(call)
    # Exactly the public endpoints answer without a token.
    assert answering == PUBLIC


def test_the_public_endpoints_answer(world: World) -> None:
    for method, path in sorted(PUBLIC):
        if method in ("GET", "HEAD"):
            r, rid = world.call(method, path)
            assert r.status_code == 200, (method, path, r.text)
            assert world.record(rid).status == 200
    r, rid = world.call("POST", "auth/token", content=b"grant_type=client_credentials",
                        headers={"Content-Type": FORM})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert world.record(rid).status == 400


# -- a token without the scope ------------------------------------------------------------------


def _lacking(call: Call) -> str:
    """Scopes with every letter on the route's type but those that would allow it."""
    others = "".join(c for c in "cruds" if c not in call.needs)
    assert call.rtype is not None and others, call
    return f"system/{call.rtype}.{others}"


def test_every_route_refuses_a_token_without_its_scope(world: World) -> None:
    for call in all_routes():
        if (call.method, call.where) in PUBLIC or call.interaction == "transaction":
            continue  # public; Bundles: below
        # A system-wide or whole-compartment read has no one type: a token that may
        # search no type at all is refused it.
        scopes = BLIND if _filtered(call) else _lacking(call)
        r, rid = _send(world, call, token=world.token_for(world.admin_client, scopes))
        assert r.status_code == 403, (str(call), scopes, r.text)
        outcome = _outcome(r, call)
        rec = world.record(rid)
        assert rec.status == 403 and rec.entities == (), str(call)
        if outcome is not None:
            assert outcome["issue"][0]["code"] == "forbidden", str(call)
            assert rec.outcome_resource == outcome


def test_a_batch_refuses_each_entry_without_its_scope(world: World) -> None:
    batch = next(c for c in system_routes() if c.label == "batch")  # a GET and a POST
    r, rid = _send(world, batch, token=world.token_for(world.admin_client, "system/*.ud"))
    assert r.status_code == 200, r.text
    for entry in r.json()["entry"]:
        assert entry["response"]["status"].startswith("403"), entry
        outcome_of(entry["response"]["outcome"])
    top = world.record(rid)
    children = [x for x in world.records(rid) if x.parent == top.id]
    assert sorted(x.status or 0 for x in children) == [403, 403]


def test_a_transaction_refuses_an_entry_without_its_scope(world: World) -> None:
    transaction = next(c for c in system_routes() if c.label == "transaction")
    r, rid = _send(world, transaction,
                   token=world.token_for(world.admin_client, "system/Observation.cruds"))
    assert r.status_code == 403, r.text
    outcome = outcome_of(r.json())
    assert world.record(rid).outcome_resource == outcome


# -- every type -----------------------------------------------------------------------------------


def _all_types(w: World) -> list[str]:
    types = [res["type"] for res in w.http.get("/fhir/metadata").json()["rest"][0]["resource"]]
    assert len(types) > 140 and set(SAMPLE) <= set(types)
    return types


def test_the_routers_and_guards_decisions_do_not_depend_on_the_type(world: World) -> None:
    """For every R4 type, every route template routes to the same interaction on that
    type, and the guard refuses it without its letters and allows it with them."""
    templates = type_routes("Patient") + [
        c for c in operation_routes() if c.rtype == "Patient"] + [
        Call("GET", f"Patient/{ID}/Observation", "compartment", "Observation", "s")]
    for t in _all_types(world):
        for template in templates:
            path = template.path.replace("Patient", t, 1)
            if template.interaction == "compartment":
                if t not in compartment_definitions():
                    continue
                call = Call("GET", path, "compartment", "Observation", "s")
            else:
                call = Call(template.method, path, template.interaction, t, template.needs)
            r = route(call.method, call.where)
            assert (r.interaction, r.resource_type) == (call.interaction, t), str(call)
            for scopes, allowed in ((_lacking(call), False),
                                    (f"system/{call.rtype}.{call.needs[0]}", True)):
                principal = Principal("system", Grants.of(parse_scopes(scopes)), client="c")
                req = FhirRequest(call.method, call.where)
                with guard.granted(guard.grant_for(world.engine, principal)):
                    if allowed:
                        guard.authorize(world.engine, req, r)
                    else:
                        with pytest.raises(ForbiddenError):
                            guard.authorize(world.engine, req, r)


def test_every_type_is_secured_over_http(world: World) -> None:
    for t in _all_types(world):
        for path, letter in ((f"{t}/{ID}", "r"), (t, "s")):
            r, _ = world.call("GET", path)
            assert r.status_code == 401, (path, r.text)
            others = "".join(c for c in "cruds" if c != letter)
            r, _ = world.call("GET", path, token=world.token_for(world.admin_client,
                                                                 f"system/{t}.{others}"))
            assert r.status_code == 403, (path, r.text)


# -- outside /fhir ------------------------------------------------------------------------------

OUTSIDE = ("/", "/Patient", f"/Patient/{ID}", "/Observation", "/metadata", "/_history",
           "/AuditEvent", "/.well-known/smart-configuration", "/auth/token", "/auth/jwks",
           "/fhir2/Patient", "/fhirPatient", "/FHIR/Patient", "/api/fhir/Patient",
           "/_status/Patient", "/_status/../fhir/Patient", "/R4/Patient", "/fhir.json")


def test_nothing_outside_fhir_serves_fhir_data(world: World) -> None:
    for path in OUTSIDE:
        for method in ("GET", "POST", "PUT", "DELETE"):
            for headers in ({}, {"Authorization": f"Bearer {world.admin}"}):
                rid = str(uuid.uuid4())
                r = world.http.request(method, path, headers={**headers, "X-Request-ID": rid})
                if r.url.path.startswith("/fhir/"):  # the client normalised the path
                    continue
                assert r.status_code in (404, 405), (method, path, r.status_code, r.text)
                body = outcome_of(r.json())
                assert body["issue"][0]["code"] in ("not-found", "not-supported")
                assert world.record(rid).status == r.status_code
    # The health probe says whether the server is up, and nothing else.
    r = world.http.get("/_status", headers={"Authorization": f"Bearer {world.admin}"})
    assert r.status_code == 200 and set(r.json()) <= {"status", "backend"}
    assert "resourceType" not in r.text
