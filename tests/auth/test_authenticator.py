"""Who a request comes from (fhirhub.auth.authenticator): a bearer token (RFC 6750 §2.1,
https://www.rfc-editor.org/rfc/rfc6750#section-2.1) that this server issued at its token
endpoint (SMART Backend Services,
https://hl7.org/fhir/smart-app-launch/backend-services.html) or that a trusted issuer
(NHS login, CIS2) signed. Refusals are 401s with a ``WWW-Authenticate: Bearer`` challenge
(RFC 6750 §3); a missing token's challenge has no error code (§3.1). Run against every
backend through the ``store`` fixture.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from fhirhub.auth.authenticator import Authenticator
from fhirhub.auth.issuers import TrustedIssuer
from fhirhub.auth.principal import UNCHECKED, Principal
from fhirhub.auth.ratelimit import RateLimiter
from fhirhub.auth.registration import set_status
from fhirhub.auth.scopes import Scope
from fhirhub.auth.tokens import AccessTokens, TokenRefused
from fhirhub.config import Settings
from fhirhub.errors import ThrottledError
from fhirhub.store import Store
from tests.auth_support import (
    ALICE_NHS,
    BASE,
    BOB_NHS,
    NHS_LOGIN,
    add_client,
    issuers_file,
    other_rsa_key,
    patient_token,
    staff_token,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def on(settings: Settings, tmp_path: Path) -> Settings:
    return settings.with_(auth="on", auth_signing_key=str(tmp_path / "auth-key.pem"),
                          auth_issuers=issuers_file(tmp_path, rate_limit=2))


@pytest.fixture
def auth(on: Settings, store: Store) -> Authenticator:
    a = Authenticator(on, store)
    a.limiter = RateLimiter(clock=Clock())
    return a


def our_token(auth: Authenticator, client_id: str, scope: str = "system/Patient.rs",
              base: str = BASE) -> str:
    return auth.tokens.issue(client_id, scope, base, int(time.time()))


def refused(auth: Authenticator, header: str | None, base: str = BASE) -> TokenRefused:
    with pytest.raises(TokenRefused) as info:
        auth.authenticate(header, base)
    return info.value


# -- no token, not a bearer token -------------------------------------------------------------


@pytest.mark.parametrize("header", [None, ""])
def test_missing_header_is_a_401_challenge_without_an_error(auth: Authenticator,
                                                            header: str | None) -> None:
    exc = refused(auth, header)
    assert exc.headers == {"WWW-Authenticate": 'Bearer realm="fhirhub"'}
    assert exc.issue_code == "login"
    assert "needs an access token" in exc.diagnostics
    assert "smart-configuration" in exc.diagnostics


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "Bearer", "Bearer    ",
                                    "abc"])
def test_header_that_is_not_bearer_and_a_token_is_refused(auth: Authenticator,
                                                          header: str) -> None:
    exc = refused(auth, header)
    assert "must be 'Bearer <access token>'" in exc.diagnostics
    assert exc.headers["WWW-Authenticate"].startswith('Bearer realm="fhirhub", error="invalid_token"')


def test_garbage_token_is_refused(auth: Authenticator) -> None:
    assert "not a JWT" in refused(auth, "Bearer not-a-token").diagnostics


# -- our own tokens ---------------------------------------------------------------------------


def test_our_token_gives_a_system_principal(auth: Authenticator, store: Store,
                                            settings: Settings) -> None:
    app = add_client(store, settings, "system/Patient.rs system/Observation.rs")
    token = our_token(auth, app.id, "system/Patient.rs")
    p = auth.authenticate(f"Bearer {token}", BASE)
    assert p.kind == "system"
    assert p.client == app.id
    assert p.grants.scopes == (Scope("system", "Patient", "rs"),)
    assert p.allows("Patient", "r") and not p.allows("Observation", "r")
    assert p.expires == jwt.decode(token, options={"verify_signature": False})["exp"]


def test_bearer_scheme_is_case_insensitive_and_spaces_are_trimmed(
        auth: Authenticator, store: Store, settings: Settings) -> None:
    app = add_client(store, settings, "system/Patient.rs")
    token = our_token(auth, app.id)
    assert auth.authenticate(f"  bearer   {token}  ", BASE).client == app.id


def test_our_token_at_another_base_url_is_refused(auth: Authenticator, store: Store,
                                                  settings: Settings) -> None:
    app = add_client(store, settings, "system/Patient.rs")
    token = our_token(auth, app.id, base="http://elsewhere.example/fhir")
    exc = refused(auth, f"Bearer {token}")
    assert 'error="invalid_token"' in exc.headers["WWW-Authenticate"]


def test_our_token_for_an_unregistered_client_is_refused(auth: Authenticator) -> None:
    exc = refused(auth, f"Bearer {our_token(auth, 'ghost')}")
    assert "'ghost' is not registered here" in exc.diagnostics


def test_token_of_a_disabled_client_stops_working(auth: Authenticator, store: Store,
                                                  settings: Settings) -> None:
    app = add_client(store, settings, "system/Patient.rs")
    header = f"Bearer {our_token(auth, app.id)}"
    assert auth.authenticate(header, BASE).client == app.id  # now checked and cached
    set_status(store, settings, app.id, "disabled")
    auth.clients.forget()
    exc = refused(auth, header)
    assert f"'{app.id}' is disabled" in exc.diagnostics


def test_token_of_a_disabled_client_is_refused_by_a_new_authenticator(
        on: Settings, store: Store, settings: Settings) -> None:
    auth = Authenticator(on, store)
    app = add_client(store, settings, "system/Patient.rs")
    header = f"Bearer {our_token(auth, app.id)}"
    set_status(store, settings, app.id, "disabled")
    assert "is disabled" in refused(Authenticator(on, store), header).diagnostics


def test_token_of_a_client_enabled_again_works_again(auth: Authenticator, store: Store,
                                                     settings: Settings) -> None:
    app = add_client(store, settings, "system/Patient.rs")
    header = f"Bearer {our_token(auth, app.id)}"
    set_status(store, settings, app.id, "disabled")
    auth.clients.forget()
    refused(auth, header)
    set_status(store, settings, app.id, "active")
    auth.clients.forget()
    assert auth.authenticate(header, BASE).client == app.id


def test_token_naming_our_kid_signed_by_another_key_is_refused(
        auth: Authenticator, store: Store, settings: Settings) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    app = add_client(store, settings, "system/Patient.rs")
    claims = jwt.decode(our_token(auth, app.id), options={"verify_signature": False})
    claims["scope"] = "system/*.cruds"
    forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                        headers={"kid": auth.key.kid})
    assert "Signature verification failed" in refused(auth, f"Bearer {forged}").diagnostics


def test_every_authenticator_of_a_deployment_reads_one_key(on: Settings, store: Store,
                                                           settings: Settings) -> None:
    app = add_client(store, settings, "system/Patient.rs")
    token = our_token(Authenticator(on, store), app.id)
    assert Authenticator(on, store).authenticate(f"Bearer {token}", BASE).client == app.id


# -- trusted issuers --------------------------------------------------------------------------


def test_patient_token_gives_a_patient_principal(auth: Authenticator) -> None:
    p = auth.authenticate(f"Bearer {patient_token(ALICE_NHS)}", BASE)
    assert p.kind == "patient" and p.nhs_number == ALICE_NHS and p.issuer == NHS_LOGIN


def test_staff_token_gives_a_staff_principal(auth: Authenticator) -> None:
    p = auth.authenticate(f"Bearer {staff_token(role='R8000', org='A12345')}", BASE)
    assert p.kind == "staff" and p.role == "R8000" and p.organization == "A12345"


def test_token_of_an_untrusted_issuer_is_refused(auth: Authenticator) -> None:
    now = int(time.time())
    token = jwt.encode({"iss": "https://idp.evil.example", "aud": "x", "sub": "mallory",
                        "exp": now + 300, "iat": now, "scope": "system/*.cruds"},
                       other_rsa_key(), algorithm="RS256", headers={"kid": "evil"})
    exc = refused(auth, f"Bearer {token}")
    assert "not issued by this server or an issuer it trusts" in exc.diagnostics


def test_token_of_a_trusted_issuer_signed_by_another_key_is_refused(auth: Authenticator) -> None:
    now = int(time.time())
    token = jwt.encode({"iss": NHS_LOGIN, "aud": "fhirhub-test-service", "sub": "x",
                        "exp": now + 300, "nhs_number": ALICE_NHS,
                        "identity_proofing_level": "P9"},
                       other_rsa_key(), algorithm="RS512", headers={"kid": "nhslogin"})
    assert "Signature verification failed" in refused(auth, f"Bearer {token}").diagnostics


def test_without_an_issuers_file_user_tokens_are_refused(settings: Settings,
                                                         store: Store) -> None:
    auth = Authenticator(settings.with_(auth="on"), store)
    assert auth.issuers == {}
    refused(auth, f"Bearer {patient_token()}")


# -- the cache --------------------------------------------------------------------------------


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens AccessTokens.verify checks (their signatures), in order."""
    calls: list[str] = []
    verify = AccessTokens.verify

    def counted(self: AccessTokens, token: str, base_url: str) -> dict[str, Any]:
        calls.append(token)
        return verify(self, token, base_url)

    monkeypatch.setattr(AccessTokens, "verify", counted)
    return calls


def test_checked_token_is_remembered(auth: Authenticator, store: Store, settings: Settings,
                                     verified: list[str]) -> None:
    app = add_client(store, settings, "system/Patient.rs")
    header = f"Bearer {our_token(auth, app.id)}"
    calls = verified
    first = auth.authenticate(header, BASE)
    second = auth.authenticate(header, BASE)
    assert first is second
    assert len(calls) == 1


def test_checked_user_token_is_remembered(auth: Authenticator,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    principal = TrustedIssuer.principal

    def counted(self: TrustedIssuer, token: str, header: dict[str, Any], skew: int) -> Principal:
        calls.append(token)
        return principal(self, token, header, skew)

    monkeypatch.setattr(TrustedIssuer, "principal", counted)
    header = f"Bearer {patient_token()}"
    assert auth.authenticate(header, BASE) is auth.authenticate(header, BASE)
    assert len(calls) == 1


def test_remembered_token_is_checked_again_at_another_base_url(
        auth: Authenticator, store: Store, settings: Settings) -> None:
    app = add_client(store, settings, "system/Patient.rs")
    header = f"Bearer {our_token(auth, app.id)}"
    assert auth.authenticate(header, BASE).client == app.id
    exc = refused(auth, header, "http://elsewhere.example/fhir")
    assert 'error="invalid_token"' in exc.headers["WWW-Authenticate"]


def test_remembered_principal_past_its_expiry_is_checked_again(
        auth: Authenticator, store: Store, settings: Settings, verified: list[str]) -> None:
    app = add_client(store, settings, "system/Patient.rs")
    # exp 10 s ago: still accepted within the 30 s clock skew, but never served from the
    # cache, whose entries last until the token's exp.
    stale = auth.tokens.issue(app.id, "system/Patient.rs", BASE, int(time.time()) - 310)
    calls = verified
    assert auth.authenticate(f"Bearer {stale}", BASE).client == app.id
    assert auth.authenticate(f"Bearer {stale}", BASE).client == app.id
    assert len(calls) == 2


# -- authorisation off ------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "Bearer garbage", "Basic abc"])
def test_with_auth_off_everyone_is_unchecked(settings: Settings, store: Store,
                                             header: str | None) -> None:
    auth = Authenticator(settings, store)
    assert settings.auth == "off" and not auth.enabled
    p = auth.authenticate(header, BASE)
    assert p is UNCHECKED
    assert p.unchecked and p.allows("Anything", "d") and p.types_with("s") is None


# -- rate limits ------------------------------------------------------------------------------


def test_client_over_its_rate_limit_is_throttled_with_retry_after(
        auth: Authenticator, store: Store, settings: Settings) -> None:
    app = add_client(store, settings, "system/Patient.rs", rate_limit=2)
    p = auth.authenticate(f"Bearer {our_token(auth, app.id)}", BASE)
    auth.limit(p)
    auth.limit(p)
    with pytest.raises(ThrottledError) as info:
        auth.limit(p)
    assert info.value.headers == {"Retry-After": "30"}  # 2 a minute: one every 30 s
    assert app.id in info.value.diagnostics and "2 requests a minute" in info.value.diagnostics


def test_client_without_a_rate_limit_is_never_throttled(auth: Authenticator, store: Store,
                                                        settings: Settings) -> None:
    app = add_client(store, settings, "system/Patient.rs")
    p = auth.authenticate(f"Bearer {our_token(auth, app.id)}", BASE)
    for _ in range(1000):
        auth.limit(p)
    assert auth.limiter.take(app.id, 0) is None


def test_users_are_limited_each_on_their_own(auth: Authenticator) -> None:
    alice = auth.authenticate(f"Bearer {patient_token(ALICE_NHS)}", BASE)
    bob = auth.authenticate(f"Bearer {patient_token(BOB_NHS)}", BASE)
    assert alice.rate_limit == 2
    auth.limit(alice)
    auth.limit(alice)
    with pytest.raises(ThrottledError) as info:
        auth.limit(alice)
    assert info.value.headers["Retry-After"] == "30"
    auth.limit(bob)  # Bob's allowance is his own


def test_unchecked_principal_is_never_limited(auth: Authenticator) -> None:
    for _ in range(100):
        auth.limit(UNCHECKED)
    assert UNCHECKED.rate_key is None


def test_token_requests_count_against_the_client_limit(auth: Authenticator, store: Store,
                                                       settings: Settings) -> None:
    app = add_client(store, settings, "system/Patient.rs", rate_limit=1)
    auth.limit_client(app.record)
    with pytest.raises(ThrottledError, match="Rate limit of 1 requests a minute") as info:
        auth.limit_client(app.record)
    assert info.value.headers["Retry-After"] == "60"
