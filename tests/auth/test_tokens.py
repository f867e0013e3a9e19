"""The access tokens this server issues and checks (fhirhub.auth.tokens): ES256 JWTs good
only at the base URL they were issued for, refused with ``WWW-Authenticate`` as RFC 6750
§3 says (https://www.rfc-editor.org/rfc/rfc6750#section-3), in the SMART Backend Services
flow (https://hl7.org/fhir/smart-app-launch/backend-services.html). A token naming any
other algorithm (``none``; ``HS256`` keyed with our public key) is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fhirhub.auth.keys import SigningKey, load_or_create_signing_key
from fhirhub.auth.tokens import AccessTokens, TokenRefused
from tests.auth_support import BASE

OTHER_BASE = "http://elsewhere.example/fhir"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: dict[str, Any]) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def forge(header: dict[str, Any], claims: dict[str, Any], hmac_secret: bytes | None = None) -> str:
    """A JWT built by hand: unsigned (alg none) or HMAC-signed with any secret at all."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    if hmac_secret is None:
        return f"{signing_input}."
    mac = hmac.new(hmac_secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return load_or_create_signing_key(tmp_path_factory.mktemp("keys") / "auth-key.pem")


@pytest.fixture
def tokens(key: SigningKey) -> AccessTokens:
    return AccessTokens(key, lifetime=300, skew=30)


def now() -> int:
    return int(time.time())


def claims_of(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def public_pem(key: SigningKey) -> bytes:
    return key.public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def test_issued_token_verifies_with_its_claims(tokens: AccessTokens, key: SigningKey) -> None:
    t = now()
    token = tokens.issue("app-1", "system/Patient.rs", BASE, t)
    claims = tokens.verify(token, BASE)
    assert claims["iss"] == claims["aud"] == BASE
    assert claims["sub"] == claims["client_id"] == "app-1"
    assert claims["scope"] == "system/Patient.rs"
    assert claims["iat"] == t and claims["exp"] == t + 300
    assert claims["jti"]
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}


def test_every_token_has_its_own_jti(tokens: AccessTokens) -> None:
    t = now()
    first = claims_of(tokens.issue("app-1", "system/Patient.rs", BASE, t))
    second = claims_of(tokens.issue("app-1", "system/Patient.rs", BASE, t))
    assert first["jti"] != second["jti"]


def test_lifetime_comes_from_the_setting(key: SigningKey) -> None:
    t = now()
    claims = claims_of(AccessTokens(key, lifetime=60, skew=0).issue("a", "system/*.rs", BASE, t))
    assert claims["exp"] - claims["iat"] == 60


def test_expired_token_is_refused(tokens: AccessTokens) -> None:
    token = tokens.issue("app-1", "system/Patient.rs", BASE, now() - 400)
    with pytest.raises(TokenRefused, match="has expired"):
        tokens.verify(token, BASE)


def test_token_just_past_exp_is_accepted_within_the_clock_skew(tokens: AccessTokens) -> None:
    token = tokens.issue("app-1", "system/Patient.rs", BASE, now() - 310)
    assert tokens.verify(token, BASE)["sub"] == "app-1"


def test_token_issued_in_the_future_is_refused(tokens: AccessTokens) -> None:
    token = tokens.issue("app-1", "system/Patient.rs", BASE, now() + 120)
    with pytest.raises(TokenRefused, match="not valid yet"):
        tokens.verify(token, BASE)


def test_token_issued_for_another_base_url_is_refused(tokens: AccessTokens) -> None:
    token = tokens.issue("app-1", "system/Patient.rs", OTHER_BASE, now())
    with pytest.raises(TokenRefused) as info:
        tokens.verify(token, BASE)
    assert 'error="invalid_token"' in info.value.headers["WWW-Authenticate"]


def test_token_issued_for_another_base_url_is_refused_naming_this_base_url(
        tokens: AccessTokens) -> None:
    token = tokens.issue("app-1", "system/Patient.rs", OTHER_BASE, now())
    with pytest.raises(TokenRefused, match=f"not issued for {BASE}"):
        tokens.verify(token, BASE)


def test_token_with_our_issuer_but_another_audience_is_refused_naming_this_base_url(
        tokens: AccessTokens, key: SigningKey) -> None:
    claims = claims_of(tokens.issue("app-1", "system/Patient.rs", BASE, now()))
    claims["aud"] = OTHER_BASE
    token = jwt.encode(claims, key.private, algorithm="ES256", headers={"kid": key.kid})
    with pytest.raises(TokenRefused, match=f"not issued for {BASE}"):
        tokens.verify(token, BASE)


def test_token_resigned_with_alg_none_is_refused(tokens: AccessTokens, key: SigningKey) -> None:
    claims = claims_of(tokens.issue("app-1", "system/Patient.rs", BASE, now()))
    forged = forge({"alg": "none", "kid": key.kid, "typ": "at+jwt"}, claims)
    with pytest.raises(TokenRefused, match="must be signed with ES256"):
        tokens.verify(forged, BASE)


def test_token_resigned_with_hs256_using_the_public_key_is_refused(tokens: AccessTokens,
                                                                   key: SigningKey) -> None:
    claims = claims_of(tokens.issue("app-1", "system/Patient.rs", BASE, now()))
    claims["scope"] = "system/*.cruds"
    for secret in (public_pem(key), json.dumps(key.jwk()).encode()):
        forged = forge({"alg": "HS256", "kid": key.kid, "typ": "JWT"}, claims, secret)
        with pytest.raises(TokenRefused, match="must be signed with ES256"):
            tokens.verify(forged, BASE)


def test_tampered_payload_is_refused(tokens: AccessTokens) -> None:
    token = tokens.issue("app-1", "system/Patient.rs", BASE, now())
    header, _, signature = token.split(".")
    claims = claims_of(token)
    claims["scope"] = "system/*.cruds"
    with pytest.raises(TokenRefused, match="Signature verification failed"):
        tokens.verify(f"{header}.{segment(claims)}.{signature}", BASE)


def test_token_signed_by_another_key_with_our_kid_is_refused(tokens: AccessTokens,
                                                              key: SigningKey) -> None:
    claims = claims_of(tokens.issue("app-1", "system/Patient.rs", BASE, now()))
    forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                        headers={"kid": key.kid, "typ": "at+jwt"})
    with pytest.raises(TokenRefused, match="Signature verification failed"):
        tokens.verify(forged, BASE)


def test_token_without_a_scope_claim_is_refused(key: SigningKey, tokens: AccessTokens) -> None:
    claims = claims_of(tokens.issue("app-1", "system/Patient.rs", BASE, now()))
    del claims["scope"]
    token = jwt.encode(claims, key.private, algorithm="ES256", headers={"kid": key.kid})
    with pytest.raises(TokenRefused, match="scope"):
        tokens.verify(token, BASE)


def test_something_that_is_not_a_jwt_is_refused(tokens: AccessTokens) -> None:
    with pytest.raises(TokenRefused, match="was refused"):
        tokens.verify("not.a.jwt", BASE)


def test_refusal_carries_a_bearer_challenge_with_invalid_token() -> None:
    exc = TokenRefused("The access token has expired", realm="fhirhub")
    assert exc.headers["WWW-Authenticate"] == (
        'Bearer realm="fhirhub", error="invalid_token", '
        'error_description="The access token has expired"')
    assert exc.issue_code == "security"


def test_missing_token_challenge_has_no_error_code() -> None:
    exc = TokenRefused("This request needs an access token", missing=True)
    assert exc.headers["WWW-Authenticate"] == 'Bearer realm="fhirhub"'
    assert exc.issue_code == "login"


def test_challenge_description_cannot_break_out_of_its_quotes() -> None:
    exc = TokenRefused('bad "quoted" \\ value')
    challenge = exc.headers["WWW-Authenticate"]
    description = challenge.split('error_description="', 1)[1]
    assert description == "bad 'quoted' / value\""


def test_refusal_via_the_file_key_survives_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    token = AccessTokens(load_or_create_signing_key(path), 300, 30).issue(
        "app-1", "system/Patient.rs", BASE, now())
    reloaded = AccessTokens(load_or_create_signing_key(path), 300, 30)
    assert reloaded.verify(token, BASE)["sub"] == "app-1"
