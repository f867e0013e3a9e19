"""Client authentication by signed JWT (fhirhub.auth.assertion): RFC 7523 §2.2 and §3
(https://www.rfc-editor.org/rfc/rfc7523#section-3) as SMART Backend Services uses it
(https://hl7.org/fhir/smart-app-launch/backend-services.html#authenticating-to-the-token-endpoint):
``iss`` = ``sub`` = the client id, ``aud`` = the token URL, ``exp`` at most five minutes
ahead, a ``jti``, signed RS384, ES384 or RS512 with a key named by ``kid`` in the client's
registered JWK Set. Every refusal is :class:`ClientRefused` (401 ``invalid_client``)
saying what is wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import replace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fhirhub.auth.assertion import (
    ALGORITHMS,
    AssertionRules,
    ClientRefused,
    Verified,
    verify_assertion,
)
from fhirhub.auth.jwks import RemoteKeys
from fhirhub.store.clients import ClientRecord
from tests.auth.test_jwks import JwksServer
from tests.auth_support import (
    TOKEN_URL,
    Client,
    ec_key,
    other_rsa_key,
    public_jwks,
    rsa_key,
)

CLIENT_ID = "app-1"
T = "2026-01-01T00:00:00.000000Z"


def record(cid: str = CLIENT_ID, **changes: Any) -> ClientRecord:
    jwks = {"keys": [*public_jwks(ec_key(), "es")["keys"], *public_jwks(rsa_key(), "rsa")["keys"]]}
    base = ClientRecord(id=cid, name="Test app", jwks=json.dumps(jwks), jwks_url=None,
                        scopes=("system/Patient.rs",), rate_limit=0, status="active",
                        created=T, updated=T)
    return replace(base, **changes)


def rules(now: int | None = None, *, max_seconds: int = 300, skew: int = 30) -> AssertionRules:
    return AssertionRules(TOKEN_URL, int(time.time()) if now is None else now, max_seconds, skew)


def verify(assertion: str, *clients: ClientRecord, at: AssertionRules | None = None,
           remote: RemoteKeys | None = None) -> Verified:
    known = {c.id: c for c in (clients or (record(),))}
    return verify_assertion(assertion, at or rules(), known.get, remote or RemoteKeys(()))


def refused(assertion: str, *clients: ClientRecord, at: AssertionRules | None = None,
            remote: RemoteKeys | None = None) -> ClientRefused:
    with pytest.raises(ClientRefused) as info:
        verify(assertion, *clients, at=at, remote=remote)
    assert info.value.oauth_error == "invalid_client"
    assert info.value.issue_code == "security"
    return info.value


def app() -> Client:
    return Client(record())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], hmac_secret: bytes | None = None) -> str:
    """A JWT built by hand: unsigned (alg none) or HMAC-signed with any secret at all."""
    signing_input = ".".join(b64(json.dumps(part).encode()) for part in (header, claims))
    if hmac_secret is None:
        return f"{signing_input}."
    mac = hmac.new(hmac_secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def good_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": TOKEN_URL, "exp": now + 240, "iat": now,
            "jti": str(uuid.uuid4()), **changes}


# -- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS384", "ES384", "RS512"])
def test_assertion_signed_with_an_accepted_algorithm_is_verified(alg: str) -> None:
    jti = str(uuid.uuid4())
    exp = int(time.time()) + 200
    verified = verify(app().assertion(alg=alg, claims={"jti": jti, "exp": exp}))
    assert verified.client.id == CLIENT_ID
    assert verified.jti == jti
    assert verified.expires == exp


def test_accepted_algorithms_are_exactly_rs384_es384_rs512() -> None:
    assert ALGORITHMS == ("RS384", "ES384", "RS512")


def test_assertion_whose_aud_list_holds_the_token_url_is_accepted() -> None:
    assertion = app().assertion(claims={"aud": ["https://other.example/token", TOKEN_URL]})
    assert verify(assertion).client.id == CLIENT_ID


def test_assertion_expiring_exactly_at_the_limit_plus_skew_is_accepted() -> None:
    now = int(time.time())
    assertion = app().assertion(claims={"exp": now + 300 + 30})
    assert verify(assertion, at=rules(now)).expires == now + 330


def test_assertion_just_expired_within_the_skew_is_accepted() -> None:
    assertion = app().assertion(claims={"exp": int(time.time()) - 10})
    assert verify(assertion).client.id == CLIENT_ID


# -- algorithm --------------------------------------------------------------------------------


def test_assertion_with_alg_none_is_refused() -> None:
    exc = refused(forge({"alg": "none", "kid": "es", "typ": "JWT"}, good_claims()))
    assert "'none'" in exc.diagnostics
    assert exc.client == CLIENT_ID


def test_assertion_signed_with_hs256_using_the_public_key_is_refused() -> None:
    public_pem = rsa_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    exc = refused(forge({"alg": "HS256", "kid": "rsa", "typ": "JWT"}, good_claims(), public_pem))
    assert "'HS256'" in exc.diagnostics
    assert "RS384, ES384, RS512" in exc.diagnostics


def test_assertion_signed_with_hs384_using_the_registered_jwk_is_refused() -> None:
    secret = json.dumps(public_jwks(ec_key(), "es")["keys"][0]).encode()
    exc = refused(forge({"alg": "HS384", "kid": "es"}, good_claims(), secret))
    assert "'HS384'" in exc.diagnostics


@pytest.mark.parametrize("alg", ["RS256", "PS384"])
def test_assertion_signed_with_an_algorithm_not_accepted_is_refused(alg: str) -> None:
    exc = refused(app().assertion(alg=alg, kid="rsa", key=rsa_key()))
    assert f"'{alg}'" in exc.diagnostics


def test_assertion_signed_es256_is_refused() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    exc = refused(app().assertion(alg="ES256", kid="es", key=p256))
    assert "'ES256'" in exc.diagnostics


# -- keys -------------------------------------------------------------------------------------


def test_assertion_without_a_kid_is_refused() -> None:
    exc = refused(jwt.encode(good_claims(), ec_key(), algorithm="ES384"))
    assert "no kid" in exc.diagnostics


def test_assertion_naming_an_unknown_kid_is_refused() -> None:
    exc = refused(app().assertion(kid="nope"))
    assert "no key with kid 'nope'" in exc.diagnostics
    assert CLIENT_ID in exc.diagnostics


def test_signature_by_a_different_key_with_the_right_kid_is_refused() -> None:
    exc = refused(app().assertion(alg="RS384", kid="rsa", key=other_rsa_key()))
    assert "Signature verification failed" in exc.diagnostics


def test_signature_by_a_different_ec_key_with_the_right_kid_is_refused() -> None:
    stranger = ec.generate_private_key(ec.SECP384R1())
    exc = refused(app().assertion(alg="ES384", kid="es", key=stranger))
    assert "Signature verification failed" in exc.diagnostics


@pytest.mark.parametrize(("alg", "kid"), [("ES384", "rsa"), ("RS384", "es"), ("RS512", "es")])
def test_assertion_naming_a_key_of_another_type_than_its_alg_is_refused(alg: str,
                                                                        kid: str) -> None:
    exc = refused(app().assertion(alg=alg, kid=kid))
    assert exc.client == CLIENT_ID


def test_client_with_no_registered_keys_is_refused() -> None:
    exc = refused(app().assertion(), record(jwks=None))
    assert "has no registered keys" in exc.diagnostics


def test_client_with_a_jwks_url_off_the_allow_list_is_refused() -> None:
    client = record(jwks=None, jwks_url="https://keys.example/app.json")
    exc = refused(app().assertion(), client, remote=RemoteKeys(("https://other.example/",)))
    assert "allow-list" in exc.diagnostics


def test_client_with_a_jwks_url_is_verified_with_the_fetched_keys() -> None:
    jwks = {"keys": [*public_jwks(ec_key(), "es")["keys"], *public_jwks(rsa_key(), "rsa")["keys"]]}
    with JwksServer(jwks) as server:
        client = record(jwks=None, jwks_url=server.url)
        remote = RemoteKeys((server.url,))
        assert verify(app().assertion(alg="RS512"), client, remote=remote).client == client
        assert verify(app().assertion(alg="ES384"), client, remote=remote).client == client
        assert server.requests == ["/jwks.json"]


# -- claims -----------------------------------------------------------------------------------


def test_assertion_for_another_audience_is_refused_naming_the_token_url() -> None:
    exc = refused(app().assertion(claims={"aud": "https://elsewhere.example/token"}))
    assert "aud" in exc.diagnostics and TOKEN_URL in exc.diagnostics


def test_assertion_whose_sub_is_not_its_iss_is_refused() -> None:
    exc = refused(app().assertion(claims={"sub": "someone-else"}))
    assert "sub must be the client id" in exc.diagnostics


def test_assertion_without_sub_is_refused() -> None:
    exc = refused(app().assertion(claims={"sub": None}))
    assert '"sub"' in exc.diagnostics


def test_assertion_without_iss_is_refused() -> None:
    exc = refused(app().assertion(claims={"iss": None}))
    assert "no iss" in exc.diagnostics
    assert exc.client is None


def test_expired_assertion_is_refused() -> None:
    exc = refused(app().assertion(claims={"exp": int(time.time()) - 120}))
    assert "expired" in exc.diagnostics


def test_assertion_with_nbf_in_the_future_is_refused() -> None:
    exc = refused(app().assertion(claims={"nbf": int(time.time()) + 120}))
    assert "not valid yet" in exc.diagnostics


def test_assertion_issued_in_the_future_is_refused() -> None:
    exc = refused(app().assertion(claims={"iat": int(time.time()) + 120}))
    assert "not valid yet" in exc.diagnostics


def test_assertion_expiring_too_far_ahead_is_refused() -> None:
    now = int(time.time())
    exc = refused(app().assertion(claims={"exp": now + 300 + 30 + 1}), at=rules(now))
    assert "more than 300 seconds ahead" in exc.diagnostics


def test_how_far_ahead_exp_may_be_is_the_configured_maximum() -> None:
    now = int(time.time())
    exc = refused(app().assertion(claims={"exp": now + 120}), at=rules(now, max_seconds=60, skew=0))
    assert "more than 60 seconds ahead" in exc.diagnostics


def test_assertion_without_exp_is_refused() -> None:
    exc = refused(app().assertion(claims={"exp": None}))
    assert '"exp"' in exc.diagnostics


def test_assertion_without_jti_is_refused() -> None:
    exc = refused(app().assertion(claims={"jti": None}))
    assert "jti" in exc.diagnostics


@pytest.mark.parametrize("jti", ["", "x" * 256, 42])
def test_assertion_with_an_unusable_jti_is_refused(jti: object) -> None:
    exc = refused(app().assertion(claims={"jti": jti}))
    assert "jti" in exc.diagnostics or "JWT ID" in exc.diagnostics


def test_jti_of_255_characters_is_accepted() -> None:
    assert verify(app().assertion(claims={"jti": "j" * 255})).jti == "j" * 255


# -- the client -------------------------------------------------------------------------------


def test_assertion_of_an_unknown_client_is_refused() -> None:
    stranger = Client(record("stranger"))
    exc = refused(stranger.assertion())
    assert "No client 'stranger' is registered" in exc.diagnostics
    assert exc.client == "stranger"


def test_assertion_of_a_disabled_client_is_refused() -> None:
    exc = refused(app().assertion(), record(status="disabled"))
    assert f"Client '{CLIENT_ID}' is disabled" in exc.diagnostics


def test_assertion_of_one_client_cannot_pass_as_another() -> None:
    other = record("app-2")
    assertion = app().assertion(claims={"iss": "app-2"})  # sub stays app-1
    exc = refused(assertion, record(), other)
    assert "sub must be the client id" in exc.diagnostics


def test_something_that_is_not_a_jwt_is_refused() -> None:
    exc = refused("not-a-jwt")
    assert "not a JWT" in exc.diagnostics
