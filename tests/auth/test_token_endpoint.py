"""The OAuth 2.0 token endpoint (fhirhub.auth.token_endpoint): ``client_credentials`` with
a signed-JWT client assertion, as SMART Backend Services asks
(https://hl7.org/fhir/smart-app-launch/backend-services.html#obtaining-an-access-token;
RFC 6749 §4.4 and §5.2, RFC 7523 §2.2 and §3: https://www.rfc-editor.org/rfc/rfc7523).
Replayed assertions (same ``jti``) are refused; scopes beyond the registration are
refused (``invalid_scope``), never narrowed. Run against every backend.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest

from fhirhub.auth.assertion import ASSERTION_TYPE, ClientRefused, TokenRequestError
from fhirhub.auth.authenticator import Authenticator
from fhirhub.auth.ratelimit import RateLimiter
from fhirhub.auth.registration import set_status
from fhirhub.auth.token_endpoint import claimed_client, token_response
from fhirhub.config import Settings
from fhirhub.errors import ThrottledError
from fhirhub.store import Store
from tests.auth_support import BASE, TOKEN_URL, Client, add_client


@pytest.fixture
def auth(settings: Settings, store: Store, tmp_path: Path) -> Authenticator:
    a = Authenticator(settings.with_(auth="on", auth_signing_key=str(tmp_path / "k.pem")), store)
    a.limiter = RateLimiter(clock=lambda: 0.0)
    return a


@pytest.fixture
def app(store: Store, settings: Settings) -> Client:
    return add_client(store, settings, "system/Patient.rs system/Observation.cruds")


def form(app: Client, scope: str | None = "system/Patient.rs", *,
         assertion: str | None = None, **changes: str | None) -> list[tuple[str, str]]:
    fields: dict[str, str | None] = {
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion if assertion is not None else app.assertion(),
        "scope": scope, **changes}
    return [(k, v) for k, v in fields.items() if v is not None]


def ask(auth: Authenticator, fields: list[tuple[str, str]]) -> tuple[dict[str, Any], str]:
    return token_response(auth, fields, TOKEN_URL, BASE)


def request_error(auth: Authenticator, fields: list[tuple[str, str]]) -> TokenRequestError:
    with pytest.raises(TokenRequestError) as info:
        ask(auth, fields)
    return info.value


# -- success ----------------------------------------------------------------------------------


def test_token_response_has_the_oauth_fields(auth: Authenticator, app: Client) -> None:
    body, client_id = ask(auth, form(app, "system/Patient.rs"))
    assert client_id == app.id
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "system/Patient.rs"


def test_issued_token_authenticates_the_client(auth: Authenticator, app: Client) -> None:
    body, _ = ask(auth, form(app, "system/Patient.rs system/Observation.rs"))
    p = auth.authenticate(f"Bearer {body['access_token']}", BASE)
    assert p.kind == "system" and p.client == app.id
    assert p.allows("Observation", "s") and not p.allows("Observation", "c")
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 300
    assert claims["aud"] == BASE


@pytest.mark.parametrize("alg", ["RS384", "ES384", "RS512"])
def test_each_accepted_algorithm_gets_a_token(auth: Authenticator, app: Client, alg: str) -> None:
    body, _ = ask(auth, form(app, assertion=app.assertion(alg=alg)))
    assert body["access_token"]


def test_v1_scopes_are_granted_in_their_v2_form(auth: Authenticator, app: Client) -> None:
    body, _ = ask(auth, form(app, "system/Patient.read system/Observation.*"))
    assert body["scope"] == "system/Patient.rs system/Observation.cruds"


def test_narrower_scope_than_registered_is_granted_as_asked(auth: Authenticator,
                                                            app: Client) -> None:
    body, _ = ask(auth, form(app, "system/Observation.r"))
    assert body["scope"] == "system/Observation.r"


def test_lifetime_follows_the_setting(settings: Settings, store: Store, tmp_path: Path,
                                     app: Client) -> None:
    auth = Authenticator(settings.with_(auth="on", auth_token_seconds=120,
                                        auth_signing_key=str(tmp_path / "k.pem")), store)
    body, _ = ask(auth, form(app))
    assert body["expires_in"] == 120


# -- replay -----------------------------------------------------------------------------------


def test_replayed_assertion_is_refused(auth: Authenticator, app: Client) -> None:
    assertion = app.assertion()
    ask(auth, form(app, assertion=assertion))
    with pytest.raises(ClientRefused, match="was used before") as info:
        ask(auth, form(app, assertion=assertion))
    assert info.value.client == app.id


def test_new_assertion_reusing_a_jti_is_refused(auth: Authenticator, app: Client) -> None:
    jti = str(uuid.uuid4())
    ask(auth, form(app, assertion=app.assertion(claims={"jti": jti})))
    with pytest.raises(ClientRefused, match=jti):
        ask(auth, form(app, assertion=app.assertion(alg="RS384", claims={"jti": jti})))


def test_jti_used_by_another_client_is_fine(auth: Authenticator, app: Client, store: Store,
                                            settings: Settings) -> None:
    other = add_client(store, settings, "system/Patient.rs", name="other app")
    jti = str(uuid.uuid4())
    ask(auth, form(app, assertion=app.assertion(claims={"jti": jti})))
    body, client_id = ask(auth, form(other, assertion=other.assertion(claims={"jti": jti})))
    assert client_id == other.id and body["access_token"]


# -- the request ------------------------------------------------------------------------------


@pytest.mark.parametrize("grant", ["authorization_code", "password", None])
def test_wrong_grant_type_is_unsupported_grant_type(auth: Authenticator, app: Client,
                                                    grant: str | None) -> None:
    exc = request_error(auth, form(app, grant_type=grant))
    assert exc.oauth_error == "unsupported_grant_type"
    assert "client_credentials" in exc.diagnostics


@pytest.mark.parametrize("kind", ["urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
                                  None])
def test_wrong_assertion_type_is_invalid_request(auth: Authenticator, app: Client,
                                                 kind: str | None) -> None:
    exc = request_error(auth, form(app, client_assertion_type=kind))
    assert exc.oauth_error == "invalid_request"
    assert ASSERTION_TYPE in exc.diagnostics


def test_missing_assertion_is_invalid_request(auth: Authenticator, app: Client) -> None:
    exc = request_error(auth, form(app, assertion="", client_assertion=None))
    assert exc.oauth_error == "invalid_request"
    assert "client_assertion" in exc.diagnostics and "missing" in exc.diagnostics


@pytest.mark.parametrize("repeated", ["scope", "grant_type", "client_assertion"])
def test_parameter_given_twice_is_invalid_request(auth: Authenticator, app: Client,
                                                  repeated: str) -> None:
    fields = form(app)
    fields.append((repeated, dict(fields)[repeated]))
    exc = request_error(auth, fields)
    assert exc.oauth_error == "invalid_request"
    assert f"{repeated} is given more than once" in exc.diagnostics


def test_bad_assertion_is_invalid_client(auth: Authenticator, app: Client) -> None:
    with pytest.raises(ClientRefused) as info:
        ask(auth, form(app, assertion=app.assertion(claims={"aud": "https://elsewhere/token"})))
    assert info.value.oauth_error == "invalid_client"


def test_disabled_client_gets_no_token(auth: Authenticator, app: Client, store: Store,
                                       settings: Settings) -> None:
    set_status(store, settings, app.id, "disabled")
    with pytest.raises(ClientRefused, match="is disabled"):
        ask(auth, form(app))


# -- scopes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["system/Patient.cruds", "system/Encounter.r", "system/*.r",
                                   "system/Patient.rs system/Condition.rs"])
def test_scope_beyond_the_registration_is_invalid_scope(auth: Authenticator, app: Client,
                                                        scope: str) -> None:
    exc = request_error(auth, form(app, scope))
    assert exc.oauth_error == "invalid_scope"
    assert exc.issue_code == "security"
    assert "not registered for" in exc.diagnostics


def test_escalation_names_what_was_refused(auth: Authenticator, app: Client) -> None:
    exc = request_error(auth, form(app, "system/Patient.rs system/Patient.cruds"))
    assert exc.diagnostics.endswith("system/Patient.cruds")


@pytest.mark.parametrize("scope", ["user/Patient.rs", "patient/Patient.rs",
                                   "system/Patient.rs patient/*.rs"])
def test_user_or_patient_scope_asked_by_a_backend_client_is_invalid_scope(
        auth: Authenticator, app: Client, scope: str) -> None:
    exc = request_error(auth, form(app, scope))
    assert exc.oauth_error == "invalid_scope"
    assert "system/ scopes only" in exc.diagnostics


@pytest.mark.parametrize("scope", ["", "openid", "launch/patient offline_access", None])
def test_request_without_a_resource_scope_is_invalid_scope(auth: Authenticator, app: Client,
                                                           scope: str | None) -> None:
    exc = request_error(auth, form(app, scope))
    assert exc.oauth_error == "invalid_scope"
    assert "at least one system/ resource scope" in exc.diagnostics


@pytest.mark.parametrize("scope", ["system/Patient.sr", "system/Patient.rs?x=1"])
def test_malformed_scope_is_invalid_scope(auth: Authenticator, app: Client, scope: str) -> None:
    assert request_error(auth, form(app, scope)).oauth_error == "invalid_scope"


# -- rate limit -------------------------------------------------------------------------------


def test_token_requests_beyond_the_client_rate_limit_are_throttled(
        auth: Authenticator, store: Store, settings: Settings) -> None:
    limited = add_client(store, settings, "system/Patient.rs", rate_limit=1)
    ask(auth, form(limited))
    with pytest.raises(ThrottledError) as info:
        ask(auth, form(limited))
    assert info.value.headers["Retry-After"] == "60"


# -- claimed_client ---------------------------------------------------------------------------


def test_claimed_client_is_the_unverified_iss(app: Client) -> None:
    assert claimed_client(form(app)) == app.id
    forged = Client(app.record).assertion(claims={"iss": "x" * 500})
    assert claimed_client(form(app, assertion=forged)) == "x" * 200


def test_claimed_client_is_none_without_a_usable_assertion(app: Client) -> None:
    assert claimed_client([("grant_type", "client_credentials")]) is None
    assert claimed_client([("client_assertion", "garbage")]) is None
    assert claimed_client(form(app, assertion=app.assertion(claims={"iss": None}))) is None
