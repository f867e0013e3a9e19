"""Attacks on authentication and authorisation, each refused (docs/security.md).

Every case here is a malicious request, and each must be refused with the right status,
an OperationOutcome (for the token endpoint: the OAuth error and its ``outcome``
OperationOutcome) and an audit record of the refusal, found by the X-Request-ID sent;
a search that must not disclose another patient's data answers 200 with nothing of
theirs, in its Bundle, its total and its audit record. The cases are registered in
:data:`ATTACKS` (``@attack``) and counted by the last test, so that docs/security.md can
state how many malicious requests were tried and how many were accepted. A case that a
known bug still lets through is marked ``@bug(...)``: a strict xfail, counted in
:data:`ACCEPTED`.

The servers are module-scoped (one per backend, seeded once with two patients, Alice and
Bob, and their Observations): the cases only read what is seeded, or write to resources
of their own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import ECAlgorithm
from psycopg import sql
from starlette.testclient import TestClient

from fhirhub.audit.record import SUCCESS, AuditRecord, instant
from fhirhub.auth.authenticator import Authenticator
from fhirhub.auth.registration import set_status
from fhirhub.config import Settings
from fhirhub.engine import Engine
from fhirhub.store import Store
from fhirhub.store.audit import AuditQuery
from fhirhub.store.clients import ClientRecord
from tests.auth_support import (
    ALICE_NHS,
    AUDIENCE,
    BASE,
    BOB_NHS,
    NHS_LOGIN,
    NHS_NUMBER,
    Client,
    add_client,
    bearer,
    ec_key,
    issuers_file,
    other_rsa_key,
    patient_token,
    rsa_key,
)
from tests.conftest import BACKENDS

if TYPE_CHECKING:
    from httpx2 import Response  # what starlette's TestClient answers with

FHIR_JSON = "application/fhir+json"
FORM = "application/x-www-form-urlencoded"
JSON_PATCH = "application/json-patch+json"
PG_ADMIN_URL = os.environ.get("FHIRHUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
LOINC = "http://loinc.org"

# -- the register of attack cases ----------------------------------------------------------

ATTACKS: list[str] = []  # every malicious request tried here, by name
ACCEPTED: dict[str, str] = {}  # the attacks a known bug still lets through -> the bug


def _case_ids(fn: Callable[..., Any]) -> list[str]:
    """``fn``'s name, or one name per case when it is parametrized (by its ``ids``)."""
    name = fn.__name__.removeprefix("test_")
    ids = [str(i) for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"
           for i in m.kwargs["ids"]]
    return [f"{name}[{i}]" for i in ids] or [name]


def attack(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register a test as an attack case (each parametrized case as one)."""
    names = _case_ids(fn)
    ATTACKS.extend(names)
    known = getattr(fn, "bug", None)
    for name in names:
        if known:
            ACCEPTED[name] = known[0]
    return fn


def bug(reason: str, *, backends: tuple[str, ...] = tuple(BACKENDS)
        ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A known source bug (``reason``) makes this test fail on ``backends``: it is a
    strict xfail there (:func:`mark_known_bug`). On an attack, put it below ``@attack``:
    the attack counts as accepted."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.bug = (reason, backends)  # type: ignore[attr-defined]
        return fn

    return mark


def mark_known_bug(request: pytest.FixtureRequest) -> None:
    """Mark the running test a strict xfail when a :func:`bug` applies to its backend
    (the ``world`` fixture's parameter). Call it from an autouse fixture."""
    found = getattr(request.function, "bug", None)
    callspec = getattr(request.node, "callspec", None)
    backend = callspec.params.get("world") if callspec is not None else None
    if found and backend in found[1]:
        request.applymarker(pytest.mark.xfail(strict=True, reason=found[0]))


# -- servers ----------------------------------------------------------------------------------


@contextmanager
def secured_server(request: pytest.FixtureRequest, backend: str, folder: Path, *,
                   staff_scopes: str = "user/*.cruds", **changes: Any) -> Iterator[TestClient]:
    """A server with authorisation on and the test issuers trusted (like conftest's
    ``secured``), on a database of its own: a fresh SQLite file, or a PostgreSQL database
    created for it (the shared test database is emptied by every function-scoped test)."""
    from fhirhub.api import create_app

    keys: dict[str, Any] = {"audit_signing_key": str(folder / "audit-key.pem"),
                            "auth_signing_key": str(folder / "auth-key.pem")}
    drop: str | None = None
    if backend == "sqlite":
        url = f"sqlite:///{folder}/fhirhub.sqlite3"
    else:
        shared: str = request.getfixturevalue("pg_database")  # skips, or fails in CI
        drop = f"fhirhub_sec_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(drop)))
        url = f"{shared.rpartition('/')[0]}/{drop}"
        keys["pg_pool_size"] = 8
    settings = Settings(database_url=url, auth="on",
                        auth_issuers=issuers_file(folder, staff_scopes=staff_scopes),
                        **keys).with_(**changes)
    try:
        with TestClient(create_app(settings), base_url="http://testserver") as http:
            yield http
    finally:
        if drop is not None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(drop)))


@dataclass
class World:
    """One secured server, an administrator's token, and ways to call it."""

    http: TestClient
    backend: str
    admin: str = ""  # a token with system/*.cruds

    @property
    def engine(self) -> Engine:
        return self.http.app.engine  # type: ignore[attr-defined,no-any-return]

    @property
    def store(self) -> Store:
        return self.engine.store

    @property
    def settings(self) -> Settings:
        return self.engine.settings

    @property
    def auth(self) -> Authenticator:
        return self.engine.authenticator

    @property
    def admin_client(self) -> str:
        """The id of the client the administrator's token was issued to."""
        return str(jwt.decode(self.admin, options={"verify_signature": False})["sub"])

    def call(self, method: str, path: str, *, token: str | None = None,
             headers: dict[str, str] | None = None, **kwargs: Any
             ) -> tuple[Response, str]:
        """``method [base]/path`` with a new X-Request-ID (returned with the response)."""
        rid = str(uuid.uuid4())
        sent = {"X-Request-ID": rid, **(bearer(token) if token else {}), **(headers or {})}
        if "json" in kwargs and "Content-Type" not in sent:
            sent["Content-Type"] = FHIR_JSON
        url = f"/fhir/{path}" if path else "/fhir"
        return self.http.request(method, url, headers=sent, **kwargs), rid

    def records(self, rid: str) -> list[AuditRecord]:
        rows = self.store.audit_search(AuditQuery(request_ids=(rid,), oldest_first=True,
                                                  count=100)).rows
        return [AuditRecord.from_json(r.record) for r in rows]

    def record(self, rid: str) -> AuditRecord:
        """The audit record of the request sent with X-Request-ID ``rid`` (not its
        Bundle entries')."""
        top = [r for r in self.records(rid) if r.parent is None]
        assert len(top) == 1, top
        return top[0]

    def client(self, scopes: str = "system/*.cruds", *, rate_limit: int = 0) -> Client:
        """A newly registered client."""
        return add_client(self.store, self.settings, scopes, rate_limit=rate_limit)

    def token_for(self, client: Client | str, scopes: str, *, base: str = BASE,
                  now: int | None = None) -> str:
        """An access token as the token endpoint would issue it (scopes unchecked)."""
        cid = client if isinstance(client, str) else client.id
        return self.auth.tokens.issue(cid, scopes, base, int(time.time()) if now is None
                                      else now)

    def ask_token(self, form: bytes) -> tuple[Response, str]:
        return self.call("POST", "auth/token", content=form, headers={"Content-Type": FORM})

    def put(self, resource: dict[str, Any]) -> None:
        r, _ = self.call("PUT", f"{resource['resourceType']}/{resource['id']}",
                         token=self.admin, json=resource)
        assert r.status_code in (200, 201), r.text

    def read(self, path: str) -> Response:
        r, _ = self.call("GET", path, token=self.admin)
        return r


def outcome_of(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("resourceType") == "OperationOutcome", body
    assert body["issue"] and body["issue"][0]["severity"] in ("error", "fatal"), body
    assert body["issue"][0].get("diagnostics"), body
    return body


def refused(w: World, r: Response, rid: str, status: int, *,
            oauth: str | None = None, entities: bool = True) -> AuditRecord:
    """``r`` is a refusal with ``status`` and an OperationOutcome (the OAuth error and
    its ``outcome``, from the token endpoint), and its audit record says so and shows
    that nothing was read or written (unless not ``entities``: a refused transaction's
    record names what its earlier entries wrote before it was rolled back, a known bug,
    tests/api/test_authorization.py)."""
    assert r.status_code == status, r.text
    body = r.json()
    if oauth is not None:
        assert body["error"] == oauth, body
        assert body["error_description"], body
        outcome = outcome_of(body["outcome"])
        assert r.headers["Cache-Control"] == "no-store"
        assert "access_token" not in body
    else:
        outcome = outcome_of(body)
    if status == 401 and oauth is None:
        challenge = r.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="fhirhub"'), challenge
        if r.request.headers.get("Authorization"):
            assert 'error="invalid_token"' in challenge, challenge
    rec = w.record(rid)
    assert rec.status == status and rec.outcome != SUCCESS, rec
    assert rec.outcome_resource == outcome
    if entities:
        assert rec.entities == (), rec.entities  # nothing read or written
    return rec


# -- the world: Alice and Bob -------------------------------------------------------------------

ALICE, BOB = "alice", "bob"
# Bob's Observations that the write attacks aim at (one each, so that a bug that lets one
# through cannot disturb another case).
BOB_TARGETS = ("b-put", "b-put-steal", "b-patch", "b-delete", "b-cond-put", "b-cond-delete",
               "b-cond-patch", "b-tx-put", "b-tx-delete")


def patient(rid: str, nhs: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": rid, "name": [{"family": family}],
            "identifier": [{"system": NHS_NUMBER, "value": nhs}]}


def observation(rid: str | None, subject: str, code: str = "1111-1",
                **extra: Any) -> dict[str, Any]:
    body = {"resourceType": "Observation", "id": rid, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{subject}"}, **extra}
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with secured_server(request, request.param, tmp_path_factory.mktemp("security")) as http:
        w = World(http, request.param)
        w.admin = w.token_for(w.client("system/*.cruds"), "system/*.cruds")
        w.put(patient(ALICE, ALICE_NHS, "Alison"))
        w.put(patient(BOB, BOB_NHS, "Bobson"))
        w.put(observation("a1", ALICE))
        # Alice's, with Bob as its performer: Bob must not be reachable through it.
        w.put(observation("a2", ALICE, "2222-2", performer=[{"reference": f"Patient/{BOB}"}]))
        w.put(observation("b1", BOB, "9999-9"))
        for rid in BOB_TARGETS:
            w.put(observation(rid, BOB, "9999-9"))
        yield w


@pytest.fixture
def alice() -> str:
    return patient_token(ALICE_NHS)


def _ref(entry_or_resource: dict[str, Any]) -> str:
    resource = entry_or_resource.get("resource", entry_or_resource)
    return f"{resource['resourceType']}/{resource['id']}"


def is_alices(resource: dict[str, Any]) -> bool:
    """Is ``resource`` in Alice's compartment (her Patient, or one that refers to it)?"""
    if resource["resourceType"] == "Patient":
        return bool(resource["id"] == ALICE)
    return f'"Patient/{ALICE}"' in json.dumps(resource)


def only_alices(w: World, r: Response, rid: str) -> list[str]:
    """``r`` is a 200 Bundle with nothing outside Alice's compartment, and its audit
    record names nothing else either (no resource, no patient of Bob's). The references
    returned."""
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle"
    found = [e["resource"] for e in bundle.get("entry", [])
             if e.get("resource", {}).get("resourceType") not in (None, "OperationOutcome")]
    assert all(is_alices(res) for res in found), [_ref(res) for res in found]
    refs = [_ref(res) for res in found]
    assert f"Patient/{BOB}" not in refs and "Observation/b1" not in refs
    for link in bundle.get("link", []):  # paging links stay on what was asked
        assert link["url"].startswith(BASE)
    rec = w.record(rid)
    assert rec.status == 200
    assert {e.reference for e in rec.entities} <= set(refs)
    # (Alice's a2 names Bob as its performer, so a record may name Patient/bob; never
    # with his NHS number, which only his Patient resource holds.)
    assert all(p.nhs_number != BOB_NHS for p in rec.patients), rec.patients
    return refs


def unchanged(w: World, path: str) -> None:
    """Bob's resource at ``path`` is still its first version, Bob's."""
    r = w.read(path)
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == "1", r.json()
    assert r.json()["subject"]["reference"] == f"Patient/{BOB}"


@contextmanager
def undoing(w: World, path: str) -> Iterator[None]:
    """Within: an attack that a known bug lets through may change Bob's resource at
    ``path``; if it did, the resource is deleted after, so that its new version cannot
    disturb the other cases (Alice's history would show its old, Bob's, version)."""
    try:
        yield
    finally:
        if w.read(path).json().get("meta", {}).get("versionId") != "1":
            w.call("DELETE", path, token=w.admin)


# -- forging helpers ------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def unsigned_jwt(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A JWT with ``alg: none`` and no signature."""
    return _segments({**header, "alg": "none"}, claims) + "."


def hs256_jwt(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """A JWT signed HS256 with ``secret`` (PyJWT refuses to use a public key as an HMAC
    secret, so it is signed by hand: the classic algorithm-confusion attack)."""
    signing_input = _segments({**header, "alg": "HS256"}, claims)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def pem(public_key: Any) -> bytes:
    return bytes(public_key.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo))


def assertion_claims(client: Client, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": client.id, "sub": client.id, "aud": f"{BASE}/auth/token",
            "exp": now + 240, "iat": now, "jti": str(uuid.uuid4()), **changes}


def access_claims(client_id: str, scope: str = "system/*.cruds") -> dict[str, Any]:
    now = int(time.time())
    return {"iss": BASE, "aud": BASE, "sub": client_id, "client_id": client_id,
            "scope": scope, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}


def user_claims(nhs: str = ALICE_NHS, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": NHS_LOGIN, "aud": AUDIENCE, "sub": f"nhs-login-{nhs}", "exp": now + 300,
            "iat": now, "nhs_number": nhs, "identity_proofing_level": "P9", **changes}




# == the token endpoint: client authentication ==================================================


@attack
def test_a_replayed_client_assertion_is_refused(world: World) -> None:
    client = world.client("system/Patient.rs")
    assertion = client.assertion()
    first, _ = world.ask_token(client.form("system/Patient.rs", assertion))
    assert first.status_code == 200, first.text
    r, rid = world.ask_token(client.form("system/Patient.rs", assertion))
    rec = refused(world, r, rid, 401, oauth="invalid_client")
    assert "jti" in r.json()["error_description"]
    assert rec.client == client.id and rec.interaction == "token"


@attack
def test_an_assertion_with_alg_none_is_refused(world: World) -> None:
    client = world.client("system/Patient.rs")
    assertion = unsigned_jwt({"kid": "es", "typ": "JWT"}, assertion_claims(client))
    r, rid = world.ask_token(client.form("system/Patient.rs", assertion))
    refused(world, r, rid, 401, oauth="invalid_client")


@attack
def test_an_assertion_signed_hs256_with_the_clients_public_key_is_refused(world: World
                                                                          ) -> None:
    client = world.client("system/Patient.rs")
    assertion = hs256_jwt({"kid": "es", "typ": "JWT"}, assertion_claims(client),
                          pem(ec_key().public_key()))
    r, rid = world.ask_token(client.form("system/Patient.rs", assertion))
    refused(world, r, rid, 401, oauth="invalid_client")


@attack
def test_an_assertion_for_another_token_url_is_refused(world: World) -> None:
    client = world.client("system/Patient.rs")
    assertion = client.assertion(claims={"aud": "https://elsewhere.example/fhir/auth/token"})
    r, rid = world.ask_token(client.form("system/Patient.rs", assertion))
    refused(world, r, rid, 401, oauth="invalid_client")
    assert "aud" in r.json()["error_description"]


@attack
def test_an_expired_assertion_is_refused(world: World) -> None:
    client = world.client("system/Patient.rs")
    now = int(time.time())
    assertion = client.assertion(claims={"iat": now - 600, "exp": now - 300})
    r, rid = world.ask_token(client.form("system/Patient.rs", assertion))
    refused(world, r, rid, 401, oauth="invalid_client")
    assert "expired" in r.json()["error_description"]


@attack
def test_an_assertion_not_valid_yet_is_refused(world: World) -> None:
    client = world.client("system/Patient.rs")
    assertion = client.assertion(claims={"nbf": int(time.time()) + 600})
    r, rid = world.ask_token(client.form("system/Patient.rs", assertion))
    refused(world, r, rid, 401, oauth="invalid_client")
    assert "not valid yet" in r.json()["error_description"]


@attack
def test_an_assertion_naming_an_unknown_kid_is_refused(world: World) -> None:
    client = world.client("system/Patient.rs")
    assertion = client.assertion(kid="not-registered")
    r, rid = world.ask_token(client.form("system/Patient.rs", assertion))
    refused(world, r, rid, 401, oauth="invalid_client")
    assert "not-registered" in r.json()["error_description"]


@attack
def test_an_assertion_signed_with_another_key_under_a_registered_kid_is_refused(
        world: World) -> None:
    client = world.client("system/Patient.rs")
    assertion = client.assertion(alg="RS384", kid="rsa", key=other_rsa_key())
    r, rid = world.ask_token(client.form("system/Patient.rs", assertion))
    refused(world, r, rid, 401, oauth="invalid_client")


@attack
def test_a_client_whose_jwks_url_is_not_allowed_is_refused(world: World) -> None:
    # Registration refuses such a URL (register()), so the record is written directly, as
    # if the allow-list had changed since: the keys must never be fetched from it.
    now = instant()
    record = ClientRecord(id=str(uuid.uuid4()), name="attacker", jwks=None,
                          jwks_url="https://attacker.example/jwks.json",
                          scopes=("system/*.cruds",), rate_limit=0, status="active",
                          created=now, updated=now)
    world.store.run([], lambda tx: tx.save_client(record))
    client = Client(record)
    r, rid = world.ask_token(client.form("system/*.cruds"))
    refused(world, r, rid, 401, oauth="invalid_client")
    assert "allow-list" in r.json()["error_description"]


@attack
def test_asking_for_scopes_beyond_the_registration_is_refused(world: World) -> None:
    client = world.client("system/Patient.rs")
    r, rid = world.ask_token(client.form("system/*.cruds"))
    refused(world, r, rid, 400, oauth="invalid_scope")


@attack
def test_a_disabled_client_gets_no_token(world: World) -> None:
    client = world.client("system/Patient.rs")
    set_status(world.store, world.settings, client.id, "disabled")
    r, rid = world.ask_token(client.form("system/Patient.rs"))
    refused(world, r, rid, 401, oauth="invalid_client")
    assert "disabled" in r.json()["error_description"]


# == access tokens ============================================================================


@attack
def test_an_access_token_with_alg_none_is_refused(world: World) -> None:
    client = world.client("system/Patient.rs")
    token = unsigned_jwt({"kid": world.auth.key.kid, "typ": "at+jwt"},
                         access_claims(client.id))
    r, rid = world.call("GET", "Patient", token=token)
    refused(world, r, rid, 401)


@attack
def test_an_access_token_signed_hs256_with_the_servers_public_key_is_refused(
        world: World) -> None:
    client = world.client("system/Patient.rs")
    jwk = world.http.get("/fhir/auth/jwks").json()["keys"][0]
    public = ECAlgorithm.from_jwk(json.dumps(jwk))
    token = hs256_jwt({"kid": jwk["kid"], "typ": "at+jwt"}, access_claims(client.id),
                      pem(public))
    r, rid = world.call("GET", "Patient", token=token)
    refused(world, r, rid, 401)


@attack
def test_an_access_token_with_an_edited_scope_is_refused(world: World) -> None:
    client = world.client("system/Patient.rs")
    header, payload, signature = world.token_for(client, "system/Patient.rs").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "system/*.cruds"
    token = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    r, rid = world.call("DELETE", f"Patient/{ALICE}", token=token)
    refused(world, r, rid, 401)


@attack
def test_an_access_token_issued_for_another_server_is_refused(world: World) -> None:
    client = world.client("system/*.cruds")
    token = world.token_for(client, "system/*.cruds", base="https://other.example/fhir")
    r, rid = world.call("GET", "Patient", token=token)
    refused(world, r, rid, 401)


@attack
def test_an_expired_access_token_is_refused(world: World) -> None:
    client = world.client("system/*.cruds")
    token = world.token_for(client, "system/*.cruds", now=int(time.time()) - 1000)
    r, rid = world.call("GET", "Patient", token=token)
    refused(world, r, rid, 401)
    assert "expired" in r.json()["issue"][0]["diagnostics"]


@attack
def test_a_token_from_an_untrusted_issuer_is_refused(world: World) -> None:
    token = jwt.encode(user_claims(iss="https://login.attacker.example"), rsa_key(),
                       algorithm="RS512", headers={"kid": "nhslogin"})
    r, rid = world.call("GET", "Patient", token=token)
    refused(world, r, rid, 401)


@attack
def test_a_trusted_issuers_token_signed_with_another_key_is_refused(world: World) -> None:
    token = jwt.encode(user_claims(), other_rsa_key(), algorithm="RS512",
                       headers={"kid": "nhslogin"})
    r, rid = world.call("GET", "Patient", token=token)
    refused(world, r, rid, 401)


@attack
def test_a_trusted_issuers_token_with_alg_none_is_refused(world: World) -> None:
    r, rid = world.call("GET", "Patient",
                        token=unsigned_jwt({"kid": "nhslogin"}, user_claims()))
    refused(world, r, rid, 401)


@attack
@pytest.mark.parametrize("level", [None, "P5"], ids=["no-proofing-level", "P5"])
def test_a_patient_token_without_the_required_identity_proofing_is_refused(
        world: World, level: str | None) -> None:
    r, rid = world.call("GET", "Patient",
                        token=patient_token(ALICE_NHS, identity_proofing_level=level))
    refused(world, r, rid, 401)
    assert "identity_proofing_level" in r.json()["issue"][0]["diagnostics"]


@attack
@pytest.mark.parametrize("claims", [{"exp": int(time.time()) - 600},
                                    {"nbf": int(time.time()) + 600}],
                         ids=["expired", "not valid yet"])
def test_a_patient_token_out_of_its_lifetime_is_refused(world: World,
                                                         claims: dict[str, int]) -> None:
    r, rid = world.call("GET", f"Patient/{ALICE}", token=patient_token(ALICE_NHS, **claims))
    refused(world, r, rid, 401)
    assert "invalid_token" in r.headers["WWW-Authenticate"]


@attack
def test_a_trusted_issuers_token_naming_an_unknown_kid_is_refused(world: World) -> None:
    now = int(time.time())
    token = jwt.encode({"iss": NHS_LOGIN, "aud": AUDIENCE, "sub": "x", "exp": now + 300,
                        "nhs_number": ALICE_NHS, "identity_proofing_level": "P9"},
                       other_rsa_key(), algorithm="RS512", headers={"kid": "rotated-away"})
    r, rid = world.call("GET", f"Patient/{ALICE}", token=token)
    refused(world, r, rid, 401)
    assert "rotated-away" in r.json()["issue"][0]["diagnostics"]


@attack
def test_a_disabled_clients_token_stops_working(world: World) -> None:
    client = world.client("system/Patient.rs")
    r, _ = world.ask_token(client.form("system/Patient.rs"))
    token = r.json()["access_token"]
    ok, _ = world.call("GET", "Patient", token=token)
    assert ok.status_code == 200
    set_status(world.store, world.settings, client.id, "disabled")
    world.auth.clients.forget()  # as if CLIENTS_SECONDS had passed (the directory's refresh)
    r, rid = world.call("GET", "Patient", token=token)
    refused(world, r, rid, 401)
    assert "disabled" in r.json()["issue"][0]["diagnostics"]


@attack
def test_a_client_assertion_is_not_an_access_token(world: World) -> None:
    client = world.client("system/*.cruds")
    r, rid = world.call("GET", "Patient", token=client.assertion(claims={"aud": BASE}))
    refused(world, r, rid, 401)


@attack
def test_an_authorization_header_that_is_not_bearer_is_refused(world: World) -> None:
    client = world.client("system/*.cruds")
    basic = base64.b64encode(f"{client.id}:secret".encode()).decode()
    r, rid = world.call("GET", "Patient", headers={"Authorization": f"Basic {basic}"})
    refused(world, r, rid, 401)


# == scopes at use ==============================================================================


@attack
@pytest.mark.parametrize(("method", "path"), [
    ("POST", "Patient"), ("GET", "Observation"), ("DELETE", f"Patient/{ALICE}")],
    ids=["POST Patient", "GET Observation", "DELETE Patient"])
def test_a_token_cannot_do_more_than_its_scopes(world: World, method: str, path: str
                                                ) -> None:
    client = world.client("system/Patient.rs")
    token = world.ask_token(client.form("system/Patient.rs"))[0].json()["access_token"]
    body = {"json": patient(str(uuid.uuid4()), "9434765919", "Mallory")} \
        if method == "POST" else {}
    r, rid = world.call(method, path, token=token, **body)
    refused(world, r, rid, 403)
    assert world.read(f"Patient/{ALICE}").status_code == 200




@attack
@pytest.mark.parametrize("path", ["", "?_count=5", f"Patient/{ALICE}/*"],
                         ids=["system search", "system search _count", "compartment *"])
def test_a_token_that_may_only_read_cannot_search(world: World, path: str) -> None:
    scopes = "system/Patient.r system/Observation.r"
    token = world.token_for(world.client(scopes), scopes)
    r, rid = world.call("GET", path, token=token)
    if r.status_code == 200:  # found nothing (the caller may search no type) ...
        assert "entry" not in r.json(), [_ref(e) for e in r.json()["entry"]]
        assert world.record(rid).entities == ()
    else:  # ... or refused
        refused(world, r, rid, 403)


@attack
def test_a_batch_entry_cannot_exceed_the_tokens_scopes(world: World) -> None:
    scopes = "system/Observation.crus"
    token = world.token_for(world.client(scopes), scopes)
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient(str(uuid.uuid4()), "9434765919", "Mallory"),
         "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": "Observation/b1"}},
        {"request": {"method": "GET", "url": f"Patient/{ALICE}"}}]}
    r, rid = world.call("POST", "", token=token, json=bundle)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"][:3] for e in r.json()["entry"]]
    assert statuses == ["403", "403", "403"]
    top = world.record(rid)
    children = sorted((x for x in world.records(rid) if x.parent == top.id),
                      key=lambda x: x.entry or 0)
    assert [x.status for x in children] == [403, 403, 403]
    assert all(x.entities == () for x in children)
    unchanged(world, "Observation/b1")


@attack
def test_a_transaction_entry_cannot_exceed_the_tokens_scopes(world: World) -> None:
    scopes = "system/Observation.crus"
    token = world.token_for(world.client(scopes), scopes)
    marker = str(uuid.uuid4())
    mallory = {**patient(str(uuid.uuid4()), "9434765919", "Mallory"),
               "identifier": [{"system": "urn:test", "value": marker}]}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}",
         "resource": observation(None, ALICE, identifier=mallory["identifier"]),
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": mallory, "request": {"method": "PUT", "url": f"Patient/{mallory['id']}"}}]}
    r, rid = world.call("POST", "", token=token, json=bundle)
    refused(world, r, rid, 403, entities=False)
    for rtype in ("Observation", "Patient"):
        found = world.read(f"{rtype}?identifier=urn:test|{marker}").json()
        assert "entry" not in found, f"nothing of the transaction was written ({rtype})"


# == a patient and another patient's record =====================================================


@attack
@pytest.mark.parametrize("path", [f"Patient/{BOB}", "Observation/b1",
                                  "Observation/b1/_history/1", "Observation/b1/_history"],
                         ids=["read Patient", "read Observation", "vread", "history"])
def test_a_patient_cannot_read_another_patients_resource(world: World, alice: str,
                                                         path: str) -> None:
    r, rid = world.call("GET", path, token=alice)
    refused(world, r, rid, 403)


@attack
@pytest.mark.parametrize("query", [
    f"Observation?subject=Patient/{BOB}&_total=accurate",
    f"Observation?patient={BOB}&_total=accurate",
    f"Patient?_id={BOB}&_total=accurate",
    f"Patient?identifier={NHS_NUMBER}|{BOB_NHS}&_total=accurate",
    "Observation?code=9999-9&_total=accurate&_summary=count",
], ids=["subject", "patient", "_id", "NHS number", "_summary=count"])
def test_a_patients_search_finds_nothing_of_another_patient(world: World, alice: str,
                                                            query: str) -> None:
    r, rid = world.call("GET", query, token=alice)
    assert only_alices(world, r, rid) == []
    assert r.json()["total"] == 0


@attack
def test_include_brings_in_nothing_of_another_patient(world: World, alice: str) -> None:
    # Alice's Observation a2 names Bob as its performer; Bob's b1 is his own.
    r, rid = world.call("GET", "Observation?_include=Observation:subject&_include="
                        "Observation:performer&_total=accurate", token=alice)
    refs = only_alices(world, r, rid)
    assert {"Observation/a1", "Observation/a2", f"Patient/{ALICE}"} <= set(refs)
    included = [_ref(e) for e in r.json()["entry"] if e["search"]["mode"] == "include"]
    assert included == [f"Patient/{ALICE}"]


@attack
def test_revinclude_brings_in_nothing_of_another_patient(world: World, alice: str) -> None:
    r, rid = world.call("GET", "Patient?_revinclude=Observation:subject&_revinclude="
                        "Observation:performer", token=alice)
    refs = only_alices(world, r, rid)
    assert f"Patient/{ALICE}" in refs and "Observation/a1" in refs


@attack
@pytest.mark.parametrize("query", ["Observation?subject:Patient.family=Bobson",
                                   "Observation?performer:Patient.family=Bobson",
                                   f"Observation?subject:Patient.identifier={BOB_NHS}"],
                         ids=["subject", "performer", "identifier"])
def test_a_chain_cannot_reach_another_patient(world: World, alice: str, query: str) -> None:
    r, rid = world.call("GET", f"{query}&_total=accurate", token=alice)
    assert only_alices(world, r, rid) == [] and r.json()["total"] == 0
    # The same chain on her own name finds her Observations: chains work.
    own, _ = world.call("GET", "Observation?subject:Patient.family=Alison", token=alice)
    assert {"Observation/a1", "Observation/a2"} <= {_ref(e) for e in own.json()["entry"]}


@attack
def test_has_cannot_probe_another_patients_data(world: World, alice: str) -> None:
    r, rid = world.call("GET", "Patient?_has:Observation:subject:code=9999-9&_total=accurate",
                        token=alice)
    assert only_alices(world, r, rid) == [] and r.json()["total"] == 0
    own, _ = world.call("GET", "Patient?_has:Observation:subject:code=1111-1", token=alice)
    assert [_ref(e) for e in own.json()["entry"]] == [f"Patient/{ALICE}"]


@attack
@pytest.mark.parametrize("path", ["_history", "Observation/_history", "Patient/_history",
                                  "?_type=Patient,Observation", ""],
                         ids=["system history", "Observation history", "Patient history",
                              "system search _type", "system search"])
def test_history_and_system_search_show_only_the_patients_own(world: World, alice: str,
                                                              path: str) -> None:
    r, rid = world.call("GET", path, token=alice)
    refs = only_alices(world, r, rid)
    assert refs, "Alice sees her own"


@attack
@pytest.mark.parametrize("path", [f"Patient/{BOB}/*", f"Patient/{BOB}/Observation",
                                  f"Patient/{BOB}/Patient"],
                         ids=["*", "Observation", "Patient"])
def test_a_patient_cannot_search_another_patients_compartment(world: World, alice: str,
                                                              path: str) -> None:
    r, rid = world.call("GET", path, token=alice)
    refused(world, r, rid, 403)


@attack
def test_a_batch_entry_cannot_read_another_patients_record(world: World, alice: str) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{BOB}"}},
        {"request": {"method": "GET", "url": "Observation?subject=Patient/bob"}},
        {"request": {"method": "GET", "url": f"Patient/{ALICE}"}}]}
    r, rid = world.call("POST", "", token=alice, json=bundle)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"].startswith("403")
    outcome_of(entries[0]["response"]["outcome"])
    assert "entry" not in entries[1]["resource"]  # the search found nothing
    assert entries[2]["response"]["status"].startswith("200")
    records = world.records(rid)
    top = world.record(rid)
    first = next(x for x in records if x.parent == top.id and x.entry == 0)
    assert first.status == 403 and first.outcome_resource == entries[0]["response"]["outcome"]
    assert first.entities == ()
    assert all(e.reference != f"Patient/{BOB}" for x in records for e in x.entities)


@attack
def test_a_transaction_entry_cannot_read_another_patients_record(world: World,
                                                                 alice: str) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{ALICE}"}},
        {"request": {"method": "GET", "url": "Observation/b1"}}]}
    r, rid = world.call("POST", "", token=alice, json=bundle)
    refused(world, r, rid, 403)


@attack
def test_a_transaction_cannot_write_into_another_patients_record(world: World,
                                                                 alice: str) -> None:
    marker = str(uuid.uuid4())
    ident = [{"system": "urn:test", "value": marker}]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}",
         "resource": observation(None, ALICE, identifier=ident),
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": observation("b-tx-put", ALICE, "6666-6"),
         "request": {"method": "PUT", "url": "Observation/b-tx-put"}},
        {"request": {"method": "DELETE", "url": "Observation/b-tx-delete"}},
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}",
         "resource": observation(None, BOB, identifier=ident),
         "request": {"method": "POST", "url": "Observation"}}]}
    r, rid = world.call("POST", "", token=alice, json=bundle)
    with undoing(world, "Observation/b-tx-put"):
        refused(world, r, rid, 403, entities=False)
        unchanged(world, "Observation/b-tx-put")
        unchanged(world, "Observation/b-tx-delete")
        found = world.read(f"Observation?identifier=urn:test|{marker}").json()
        assert "entry" not in found, "nothing of the transaction was written"


@attack
def test_a_transaction_cannot_resolve_a_conditional_reference_to_another_patient(
        world: World, alice: str) -> None:
    marker = str(uuid.uuid4())
    entry = observation(None, ALICE, identifier=[{"system": "urn:test", "value": marker}])
    entry["subject"] = {"reference": f"Patient?identifier={NHS_NUMBER}|{BOB_NHS}"}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": entry,
         "request": {"method": "POST", "url": "Observation"}}]}
    r, rid = world.call("POST", "", token=alice, json=bundle)
    assert 400 <= r.status_code < 500, r.text
    outcome_of(r.json())
    rec = world.record(rid)
    assert rec.status == r.status_code and rec.outcome_resource == r.json()
    found = world.read(f"Observation?identifier=urn:test|{marker}").json()
    assert "entry" not in found


@attack
@pytest.mark.parametrize("extra", [{}, {"performer": [{"reference": f"Patient/{BOB}"}]}],
                         ids=["subject", "subject and performer"])
def test_a_patient_cannot_create_in_another_patients_record(world: World, alice: str,
                                                            extra: dict[str, Any]) -> None:
    r, rid = world.call("POST", "Observation", token=alice,
                        json=observation(None, BOB, **extra))
    refused(world, r, rid, 403)


@attack
def test_a_patient_cannot_plant_data_in_another_patients_record_as_its_performer(
        world: World, alice: str) -> None:
    marker = str(uuid.uuid4())
    body = observation(None, BOB, performer=[{"reference": f"Patient/{ALICE}"}],
                       identifier=[{"system": "urn:test", "value": marker}])
    r, rid = world.call("POST", "Observation", token=alice, json=body)
    try:
        refused(world, r, rid, 403)
    finally:
        if r.status_code == 201:  # keep the world as it was for the other cases
            world.call("DELETE", f"Observation/{r.json()['id']}", token=world.admin)


@attack
@pytest.mark.parametrize("target", ["b-put", "b-put-steal"], ids=["as Bob's", "as Alice's"])
def test_a_patient_cannot_update_another_patients_resource(world: World, alice: str,
                                                           target: str) -> None:
    subject = BOB if target == "b-put" else ALICE  # also: moving it into her own record
    r, rid = world.call("PUT", f"Observation/{target}", token=alice,
                        json=observation(target, subject, "6666-6"))
    refused(world, r, rid, 403)
    unchanged(world, f"Observation/{target}")


@attack
def test_a_patient_cannot_move_her_resource_into_another_patients_record(
        world: World, alice: str) -> None:
    r, rid = world.call("PUT", "Observation/a1", token=alice, json=observation("a1", BOB))
    refused(world, r, rid, 403)
    assert world.read("Observation/a1").json()["subject"]["reference"] == f"Patient/{ALICE}"


@attack
def test_a_patient_cannot_patch_another_patients_resource(world: World, alice: str) -> None:
    r, rid = world.call("PATCH", "Observation/b-patch", token=alice,
                        content=json.dumps([{"op": "replace", "path": "/status",
                                             "value": "entered-in-error"}]),
                        headers={"Content-Type": JSON_PATCH})
    refused(world, r, rid, 403)
    unchanged(world, "Observation/b-patch")


@attack
def test_a_patient_cannot_delete_another_patients_resource(world: World, alice: str) -> None:
    r, rid = world.call("DELETE", "Observation/b-delete", token=alice)
    refused(world, r, rid, 403)
    unchanged(world, "Observation/b-delete")


@attack
def test_a_conditional_update_cannot_overwrite_another_patients_resource(
        world: World, alice: str) -> None:
    r, rid = world.call("PUT", "Observation?_id=b-cond-put", token=alice,
                        json=observation("b-cond-put", ALICE, "6666-6"))
    with undoing(world, "Observation/b-cond-put"):
        assert r.status_code in (400, 403, 409, 412), r.text
        outcome_of(r.json())
        assert world.record(rid).status == r.status_code
        unchanged(world, "Observation/b-cond-put")


@attack
@pytest.mark.parametrize("method", ["DELETE", "PATCH"], ids=["delete", "patch"])
def test_a_conditional_write_cannot_reach_another_patients_resource(
        world: World, alice: str, method: str) -> None:
    target = "b-cond-delete" if method == "DELETE" else "b-cond-patch"
    kwargs: dict[str, Any] = {}
    if method == "PATCH":
        kwargs = {"content": json.dumps([{"op": "replace", "path": "/status",
                                          "value": "entered-in-error"}]),
                  "headers": {"Content-Type": JSON_PATCH}}
    r, rid = world.call(method, f"Observation?_id={target}", token=alice, **kwargs)
    # Bob's resource is not among what Alice's criteria can match: nothing to change.
    assert r.status_code in (204, 404, 412), r.text
    assert world.record(rid).entities == ()
    unchanged(world, f"Observation/{target}")


@attack
def test_a_patient_cannot_create_a_patient_holding_another_nhs_number(world: World,
                                                                      alice: str) -> None:
    r, rid = world.call("POST", "Patient", token=alice,
                        json=patient(str(uuid.uuid4()), BOB_NHS, "Bobson"))
    refused(world, r, rid, 403)


@attack
def test_a_patient_cannot_run_an_operation_on_another_patients_resource(
        world: World, alice: str) -> None:
    r, rid = world.call("POST", f"Patient/{BOB}/$validate", token=alice,
                        json=patient(BOB, BOB_NHS, "Bobson"))
    refused(world, r, rid, 403)


@attack
@pytest.mark.parametrize("path", ["AuditEvent", f"Patient/{ALICE}/AuditEvent",
                                  f"AuditEvent?patient=Patient/{ALICE}"],
                         ids=["search", "compartment", "own patient"])
def test_a_patient_cannot_read_the_audit_log(world: World, alice: str, path: str) -> None:
    r, rid = world.call("GET", path, token=alice)
    refused(world, r, rid, 403)


# == the count =================================================================================

DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"
STATEMENT = re.compile(r"malicious requests accepted:\s*\**\s*(\d+)\s+of\s+(\d+)", re.I)


def test_the_attack_cases_are_counted() -> None:
    """Every attack above is registered once; docs/security.md states their count (and
    as accepted, the attacks a known bug still lets through) and lists each."""
    assert len(ATTACKS) == len(set(ATTACKS)), "attack names must be unique"
    assert len(ATTACKS) >= 40
    assert set(ACCEPTED) <= set(ATTACKS)
    text = DOCS.read_text()
    found = STATEMENT.search(text)
    assert found is not None, "docs/security.md states: malicious requests accepted: N of M"
    assert (int(found[1]), int(found[2])) == (len(ACCEPTED), len(ATTACKS)), (
        f"docs/security.md: malicious requests accepted: {len(ACCEPTED)} of {len(ATTACKS)}")
    unlisted = [name for name in ATTACKS if f"`{name}`" not in text]
    assert not unlisted, f"docs/security.md does not list {unlisted}"
