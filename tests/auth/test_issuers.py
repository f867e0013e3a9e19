"""Trusted OpenID Connect issuers (fhirhub.auth.issuers): user tokens of NHS login
(patients) and CIS2 (staff) checked offline against the issuers a deployment lists, and
the SMART scopes their users get
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html: ``patient/`` for a
patient's own compartment, ``user/`` for staff). A refused token is a 401 with a bearer
challenge (RFC 6750 §3, https://www.rfc-editor.org/rfc/rfc6750#section-3).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from fhirhub.auth.issuers import TrustedIssuer, load_issuers
from fhirhub.auth.principal import Principal
from fhirhub.auth.scopes import Scope
from fhirhub.auth.tokens import TokenRefused
from fhirhub.config import ConfigError
from tests.auth_support import (
    ALICE_NHS,
    AUDIENCE,
    BOB_NHS,
    CIS2,
    NHS_LOGIN,
    issuers_file,
    other_rsa_key,
    patient_token,
    public_jwks,
    rsa_key,
    staff_token,
)

SKEW = 30


@pytest.fixture
def issuers(tmp_path: Path) -> dict[str, TrustedIssuer]:
    return load_issuers(issuers_file(tmp_path))


def principal_of(issuers: dict[str, TrustedIssuer], token: str) -> Principal:
    claims = jwt.decode(token, options={"verify_signature": False})
    return issuers[claims["iss"]].principal(token, jwt.get_unverified_header(token), SKEW)


def refused(issuers: dict[str, TrustedIssuer], token: str) -> TokenRefused:
    with pytest.raises(TokenRefused) as info:
        principal_of(issuers, token)
    assert 'error="invalid_token"' in info.value.headers["WWW-Authenticate"]
    return info.value


def entry(**changes: Any) -> dict[str, Any]:
    """A good patient issuer entry, changed (a None value removes the field)."""
    base: dict[str, Any] = {"issuer": NHS_LOGIN, "kind": "patient", "audience": AUDIENCE,
                            "jwks": public_jwks(rsa_key(), "nhslogin"), "algorithms": ["RS512"],
                            "scopes": ["patient/*.rs"]}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def write(folder: Path, content: Any, name: str = "issuers.json") -> str:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def config_error(tmp_path: Path, content: Any) -> str:
    path = write(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        load_issuers(path)
    message = str(info.value)
    assert path in message
    return message


def signed(claims: dict[str, Any], *, alg: str = "RS512", kid: str = "nhslogin",
           key: Any = None) -> str:
    return jwt.encode(claims, key or rsa_key(), algorithm=alg, headers={"kid": kid})


def patient_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": NHS_LOGIN, "aud": AUDIENCE, "sub": "nhs-login-alice", "exp": now + 300,
              "iat": now, "nhs_number": ALICE_NHS, "identity_proofing_level": "P9", **changes}
    return {k: v for k, v in claims.items() if v is not None}


# -- loading ----------------------------------------------------------------------------------


def test_issuers_file_is_loaded_by_issuer(issuers: dict[str, TrustedIssuer]) -> None:
    assert set(issuers) == {NHS_LOGIN, CIS2}
    nhs, cis2 = issuers[NHS_LOGIN], issuers[CIS2]
    assert nhs.kind == "patient" and cis2.kind == "staff"
    assert nhs.audience == cis2.audience == AUDIENCE
    assert nhs.algorithms == ("RS512",)
    assert nhs.scopes == (Scope("patient", "*", "cruds"),)
    assert cis2.scopes == (Scope("user", "*", "cruds"),)
    assert nhs.require == {"identity_proofing_level": "P9"}
    assert cis2.claims["role"] == "nhsid_nrbac_roles.0.role_code"
    assert cis2.claims["user"] == "sub"  # the defaults stay beside the mapping given
    assert nhs.keys is not None and nhs.remote is None


def test_no_issuers_file_means_no_issuers() -> None:
    assert load_issuers("") == {}


def test_empty_issuer_list_means_no_issuers(tmp_path: Path) -> None:
    assert load_issuers(write(tmp_path, {"issuers": []})) == {}


def test_default_algorithms_are_rs256_and_rs512(tmp_path: Path) -> None:
    loaded = load_issuers(write(tmp_path, {"issuers": [entry(algorithms=None)]}))
    assert loaded[NHS_LOGIN].algorithms == ("RS256", "RS512")


def test_jwks_file_is_read_relative_to_the_issuers_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "nhs-login-jwks.json").write_text(json.dumps(public_jwks(rsa_key(), "nhslogin")))
    path = write(config, {"issuers": [entry(jwks=None, jwks_file="nhs-login-jwks.json")]})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_issuers(path)
    assert principal_of(loaded, patient_token()).nhs_number == ALICE_NHS


def test_jwks_url_issuer_fetches_only_from_its_own_url(tmp_path: Path) -> None:
    url = "https://auth.login.example.nhs.uk/.well-known/jwks.json"
    loaded = load_issuers(write(tmp_path, {"issuers": [entry(jwks=None, jwks_url=url)]}))
    issuer = loaded[NHS_LOGIN]
    assert issuer.keys is None and issuer.jwks_url == url
    assert issuer.remote is not None and issuer.remote.allowlist == (url,)


@pytest.mark.parametrize(("content", "problem"), [
    ({"issuers": {}}, "is not a JSON object with a list of issuers"),
    ([entry()], "is not a JSON object with a list of issuers"),
    ("not json", "could not be read"),
    ({"trusted": []}, "could not be read"),
])
def test_file_that_is_not_a_list_of_issuers_is_refused(tmp_path: Path, content: Any,
                                                        problem: str) -> None:
    assert problem in config_error(tmp_path, content)


def test_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = str(tmp_path / "nowhere.json")
    with pytest.raises(ConfigError, match="FHIRHUB_AUTH_ISSUERS") as info:
        load_issuers(path)
    assert path in str(info.value)


def test_issuer_entry_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    assert "issuers[1] is not an object" in config_error(tmp_path, {"issuers": [entry(), "x"]})


@pytest.mark.parametrize("field", ["issuer", "kind", "audience"])
def test_entry_missing_a_field_is_refused_naming_entry_and_field(tmp_path: Path,
                                                                  field: str) -> None:
    message = config_error(tmp_path, {"issuers": [entry(), entry(**{field: None})]})
    assert f"issuers[1] has no {field}" in message


def test_bad_kind_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"issuers": [entry(kind="robot")]})
    assert "issuers[0]: kind must be patient or staff" in message


def test_patient_issuer_with_a_non_patient_scope_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"issuers": [entry(scopes=["patient/*.rs", "user/*.rs"])]})
    assert "issuers[0]" in message and "user/*.rs are not patient/ scopes" in message


def test_staff_issuer_with_a_system_scope_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"issuers": [entry(kind="staff", scopes=["system/*.rs"])]})
    assert "system/*.rs are not user/ scopes" in message


def test_role_scopes_of_the_wrong_context_are_refused_naming_the_role(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"issuers": [entry(
        kind="staff", scopes=["user/*.rs"], role_scopes={"R8000": ["patient/*.rs"]})]})
    assert "issuers[0] role R8000" in message


def test_unparseable_scope_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"issuers": [entry(scopes=["patient/Observation.rs?x=1"])]})
    assert "issuers[0]" in message and "granular" in message


def test_issuer_without_keys_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"issuers": [entry(jwks=None)]})
    assert "issuers[0] needs jwks, jwks_file or jwks_url" in message


def test_issuer_with_unusable_inline_keys_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"issuers": [entry(jwks={"keys": []})]})
    assert "issuers[0]" in message and "JWK Set" in message


def test_issuer_whose_jwks_file_is_missing_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"issuers": [entry(jwks=None, jwks_file="gone.json")]})
    assert "issuers[0]" in message and "gone.json" in message


@pytest.mark.parametrize("algorithms", [["HS256"], ["RS512", "none"], [], ["ES512"]])
def test_bad_algorithms_are_refused(tmp_path: Path, algorithms: list[str]) -> None:
    message = config_error(tmp_path, {"issuers": [entry(algorithms=algorithms)]})
    assert "issuers[0]: algorithms must be among" in message


def test_bad_rate_limit_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"issuers": [entry(rate_limit="lots")]})
    assert "issuers[0]" in message


# -- patients ---------------------------------------------------------------------------------


def test_patient_token_gives_a_patient_principal_with_the_nhs_number(
        issuers: dict[str, TrustedIssuer]) -> None:
    token = patient_token(ALICE_NHS)
    p = principal_of(issuers, token)
    assert p.kind == "patient"
    assert p.nhs_number == ALICE_NHS
    assert p.user == f"nhs-login-{ALICE_NHS}"
    assert p.issuer == NHS_LOGIN
    assert p.rate_key == f"{NHS_LOGIN} nhs-login-{ALICE_NHS}"
    assert p.grants.scopes == (Scope("patient", "*", "cruds"),)
    assert p.expires == jwt.decode(token, options={"verify_signature": False})["exp"]
    assert p.role is None and p.organization is None


def test_patient_principal_carries_the_client_from_azp(issuers: dict[str, TrustedIssuer]) -> None:
    assert principal_of(issuers, patient_token(BOB_NHS, azp="nhs-app")).client == "nhs-app"


@pytest.mark.parametrize("nhs_number", ["9000000001", "123", "900000000X", None])
def test_patient_token_without_a_valid_nhs_number_is_refused(
        issuers: dict[str, TrustedIssuer], nhs_number: str | None) -> None:
    token = signed(patient_claims(nhs_number=nhs_number))
    assert "valid NHS number" in refused(issuers, token).diagnostics


@pytest.mark.parametrize("level", ["P5", None])
def test_required_claim_with_another_value_is_refused(issuers: dict[str, TrustedIssuer],
                                                      level: str | None) -> None:
    token = patient_token(identity_proofing_level=level)
    assert "identity_proofing_level must be P9" in refused(issuers, token).diagnostics


def test_token_without_a_user_is_refused(tmp_path: Path) -> None:
    loaded = load_issuers(write(tmp_path, {"issuers": [entry(claims={"user": "uid"})]}))
    assert "names no user" in refused(loaded, patient_token()).diagnostics


def test_token_for_another_audience_is_refused(issuers: dict[str, TrustedIssuer]) -> None:
    exc = refused(issuers, patient_token(aud="some-other-service"))
    assert f"aud must include {AUDIENCE}" in exc.diagnostics


def test_token_whose_aud_list_includes_the_service_is_accepted(
        issuers: dict[str, TrustedIssuer]) -> None:
    assert principal_of(issuers, patient_token(aud=["other", AUDIENCE])).kind == "patient"


def test_expired_token_is_refused(issuers: dict[str, TrustedIssuer]) -> None:
    exc = refused(issuers, patient_token(exp=int(time.time()) - 120))
    assert "expired" in exc.diagnostics


def test_token_not_valid_yet_is_refused(issuers: dict[str, TrustedIssuer]) -> None:
    exc = refused(issuers, patient_token(nbf=int(time.time()) + 120))
    assert "not valid yet" in exc.diagnostics


def test_token_signed_with_an_untrusted_algorithm_is_refused(
        issuers: dict[str, TrustedIssuer]) -> None:
    exc = refused(issuers, signed(patient_claims(), alg="RS256"))
    assert "must be signed with RS512, not 'RS256'" in exc.diagnostics


def test_unsigned_token_is_refused(issuers: dict[str, TrustedIssuer]) -> None:
    import base64

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = f"{part({'alg': 'none', 'kid': 'nhslogin'})}.{part(patient_claims())}."
    assert "not 'none'" in refused(issuers, token).diagnostics


def test_token_signed_by_another_key_with_the_issuer_kid_is_refused(
        issuers: dict[str, TrustedIssuer]) -> None:
    exc = refused(issuers, signed(patient_claims(), key=other_rsa_key()))
    assert "Signature verification failed" in exc.diagnostics


def test_token_naming_an_unknown_kid_is_refused(issuers: dict[str, TrustedIssuer]) -> None:
    exc = refused(issuers, signed(patient_claims(), kid="rotated-away"))
    assert NHS_LOGIN in exc.diagnostics and "rotated-away" in exc.diagnostics


def test_token_whose_alg_does_not_fit_the_key_its_kid_names_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    loaded = load_issuers(write(tmp_path, {"issuers": [entry(algorithms=["RS512", "ES256"])]}))
    token = signed(patient_claims(), alg="ES256", key=ec.generate_private_key(ec.SECP256R1()))
    assert refused(loaded, token).issue_code == "security"


# -- staff ------------------------------------------------------------------------------------


def test_staff_token_gives_role_and_organisation_from_dotted_claims(
        issuers: dict[str, TrustedIssuer]) -> None:
    p = principal_of(issuers, staff_token(role="R8000", org="A12345", azp="gp-system"))
    assert p.kind == "staff"
    assert p.role == "R8000" and p.organization == "A12345"
    assert p.user == "555021935107"
    assert p.client == "gp-system"
    assert p.nhs_number is None
    assert p.grants.scopes == (Scope("user", "*", "cruds"),)
    assert p.rate_key == f"{CIS2} 555021935107"


def test_staff_token_without_the_role_claim_has_no_role(issuers: dict[str, TrustedIssuer]) -> None:
    p = principal_of(issuers, staff_token(nhsid_nrbac_roles=[]))
    assert p.role is None and p.organization is None
    assert p.grants.scopes == (Scope("user", "*", "cruds"),)


def role_issuer(tmp_path: Path, **claims: str) -> dict[str, TrustedIssuer]:
    staff = entry(issuer=CIS2, kind="staff", jwks=public_jwks(rsa_key(), "cis2"),
                  scopes=["user/Patient.r"],
                  role_scopes={"R8000": ["user/*.rs"], "R0260": "user/Patient.cruds"},
                  claims={"role": "nhsid_nrbac_roles.0.role_code", **claims})
    return load_issuers(write(tmp_path, {"issuers": [staff]}))


def test_role_scopes_give_each_role_its_own_scopes(tmp_path: Path) -> None:
    loaded = role_issuer(tmp_path)
    assert principal_of(loaded, staff_token(role="R8000")).grants.scopes == (
        Scope("user", "*", "rs"),)
    assert principal_of(loaded, staff_token(role="R0260")).grants.scopes == (
        Scope("user", "Patient", "cruds"),)


def test_role_without_role_scopes_gets_the_issuer_scopes(tmp_path: Path) -> None:
    loaded = role_issuer(tmp_path)
    assert principal_of(loaded, staff_token(role="R9999")).grants.scopes == (
        Scope("user", "Patient", "r"),)


def test_scope_claim_is_intersected_with_the_configured_scopes(tmp_path: Path) -> None:
    loaded = load_issuers(write(tmp_path, {"issuers": [entry(
        scopes=["patient/*.rs"], claims={"scope": "scope"})]}))
    token = patient_token(scope="openid patient/Observation.rs patient/Patient.cruds "
                                "patient/Condition.r")
    assert principal_of(loaded, token).grants.scopes == (
        Scope("patient", "Observation", "rs"), Scope("patient", "Condition", "r"))


def test_scope_claim_may_be_a_list(tmp_path: Path) -> None:
    loaded = load_issuers(write(tmp_path, {"issuers": [entry(claims={"scope": "scp"})]}))
    token = patient_token(scp=["patient/Observation.read", "user/Patient.rs"])
    assert principal_of(loaded, token).grants.scopes == (Scope("patient", "Observation", "rs"),)


def test_token_without_its_scope_claim_gets_no_resource_scopes(tmp_path: Path) -> None:
    loaded = load_issuers(write(tmp_path, {"issuers": [entry(claims={"scope": "scope"})]}))
    assert principal_of(loaded, patient_token()).grants.scopes == ()


def test_unparseable_scope_claim_is_refused(tmp_path: Path) -> None:
    loaded = load_issuers(write(tmp_path, {"issuers": [entry(claims={"scope": "scope"})]}))
    exc = refused(loaded, patient_token(scope="patient/Observation.rs?category=lab"))
    assert "The token's scopes" in exc.diagnostics


def test_scope_claim_is_intersected_with_the_role_scopes(tmp_path: Path) -> None:
    loaded = role_issuer(tmp_path, scope="scope")
    token = staff_token(role="R8000", scope="user/Observation.r user/Patient.cruds")
    assert principal_of(loaded, token).grants.scopes == (Scope("user", "Observation", "r"),)


def test_rate_limit_comes_from_the_issuer(tmp_path: Path) -> None:
    loaded = load_issuers(issuers_file(tmp_path, rate_limit=600))
    assert principal_of(loaded, patient_token()).rate_limit == 600


def test_inline_keys_that_are_not_an_object_are_refused_naming_the_entry(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"issuers": [entry(jwks=[])]})
    assert "issuers[0]" in message
