"""Keys, clients and tokens for the tests of authorisation. Every key is generated here,
per test run: no secret is ever committed."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from fhirhub.auth.registration import register
from fhirhub.config import Settings
from fhirhub.store import Store
from fhirhub.store.clients import ClientRecord

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
BASE = "http://testserver/fhir"
TOKEN_URL = f"{BASE}/auth/token"
NHS_LOGIN = "https://auth.login.example.nhs.uk"
CIS2 = "https://am.nhsidentity.example.nhs.uk/openam/oauth2/realms/root/realms/oidc"
AUDIENCE = "fhirhub-test-service"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
# Valid (Modulus 11) NHS numbers of the test patients.
ALICE_NHS, BOB_NHS = "9000000009", "9000000017"


@cache
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@cache
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwks(key: Any, kid: str) -> dict[str, Any]:
    algorithm = ECAlgorithm if isinstance(key, ec.EllipticCurvePrivateKey) else RSAAlgorithm
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    jwk["kid"] = kid
    return {"keys": [jwk]}


@dataclass(frozen=True)
class Client:
    """A registered backend client and its private keys (an ES384 key ``es`` and an RSA
    key ``rsa``)."""

    record: ClientRecord

    @property
    def id(self) -> str:
        return self.record.id

    def assertion(self, *, alg: str = "ES384", kid: str | None = None,
                  claims: dict[str, Any] | None = None, key: Any = None,
                  headers: dict[str, Any] | None = None) -> str:
        """A client assertion for the token endpoint; ``claims`` override the defaults."""
        now = int(time.time())
        body = {"iss": self.id, "sub": self.id, "aud": TOKEN_URL, "exp": now + 240,
                "iat": now, "jti": str(uuid.uuid4()), **(claims or {})}
        body = {k: v for k, v in body.items() if v is not None}
        signer = key if key is not None else (ec_key() if alg.startswith("ES") else rsa_key())
        return jwt.encode(body, signer, algorithm=alg,
                          headers={"kid": kid or ("es" if alg.startswith("ES") else "rsa"),
                                   **(headers or {})})

    def form(self, scope: str, assertion: str | None = None) -> bytes:
        return urlencode({"grant_type": "client_credentials",
                          "client_assertion_type": ASSERTION_TYPE,
                          "client_assertion": assertion or self.assertion(),
                          "scope": scope}).encode()


def add_client(store: Store, settings: Settings, scopes: str, *, rate_limit: int = 0,
               name: str = "test app") -> Client:
    """Register a client whose keys are an ES384 key (kid ``es``) and an RSA key (kid
    ``rsa``, for RS384 and RS512)."""
    jwks = {"keys": [*public_jwks(ec_key(), "es")["keys"], *public_jwks(rsa_key(), "rsa")["keys"]]}
    return Client(register(store, settings, name=name, scopes=scopes, jwks=json.dumps(jwks),
                           rate_limit=rate_limit))


def issuers_file(folder: Path, *, patient_scopes: str = "patient/*.cruds",
                 staff_scopes: str = "user/*.cruds", rate_limit: int = 0) -> str:
    """A trusted-issuers file: an NHS login style issuer for patients (kid ``nhslogin``)
    and a CIS2 style one for staff (kid ``cis2``), both RS512 with :func:`rsa_key`."""
    issuers = [
        {"issuer": NHS_LOGIN, "kind": "patient", "audience": AUDIENCE,
         "jwks": public_jwks(rsa_key(), "nhslogin"), "algorithms": ["RS512"],
         "scopes": patient_scopes.split(), "require": {"identity_proofing_level": "P9"},
         "rate_limit": rate_limit},
        {"issuer": CIS2, "kind": "staff", "audience": AUDIENCE,
         "jwks": public_jwks(rsa_key(), "cis2"), "algorithms": ["RS512"],
         "scopes": staff_scopes.split(),
         "claims": {"role": "nhsid_nrbac_roles.0.role_code",
                    "organization": "nhsid_nrbac_roles.0.org_code"}},
    ]
    path = folder / "issuers.json"
    path.write_text(json.dumps({"issuers": issuers}))
    return str(path)


def patient_token(nhs_number: str = ALICE_NHS, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": NHS_LOGIN, "aud": AUDIENCE, "sub": f"nhs-login-{nhs_number}",
            "exp": now + 300, "iat": now, "nhs_number": nhs_number,
            "identity_proofing_level": "P9", **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, rsa_key(),
                      algorithm="RS512", headers={"kid": "nhslogin"})


def staff_token(role: str = "R8000", org: str = "A12345", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": CIS2, "aud": AUDIENCE, "sub": "555021935107", "exp": now + 300,
            "iat": now, "nhsid_nrbac_roles": [{"role_code": role, "org_code": org}],
            **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, rsa_key(),
                      algorithm="RS512", headers={"kid": "cis2"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
