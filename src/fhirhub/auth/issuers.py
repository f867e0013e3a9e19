"""Trusted OpenID Connect issuers: user tokens from NHS login (patients, IM1 Patient) and
CIS2 (health and care staff, IM1 Practice), checked offline.

The deployment lists the issuers it trusts in a JSON file (``FHIRHUB_AUTH_ISSUERS``)::

    {"issuers": [{
        "issuer": "https://auth.login.nhs.uk",          # the tokens' iss, exactly
        "kind": "patient",                              # patient | staff
        "audience": "my-service-client-id",             # the tokens' aud must include it
        "jwks_file": "nhs-login-jwks.json",             # or "jwks": {...} or "jwks_url"
        "algorithms": ["RS512"],
        "scopes": ["patient/*.cruds"],                  # what its users are granted
        "role_scopes": {"R8000": ["user/*.rs"]},        # staff: by role code, instead
        "claims": {"user": "sub", "nhs_number": "nhs_number", "role": "role_code",
                   "organization": "org_code", "client": "azp", "scope": "scope"},
        "require": {"identity_proofing_level": "P9"},   # claims that must have these values
        "rate_limit": 600                               # requests per minute per user
    }]}

Keys are read from the file, or fetched from ``jwks_url`` and cached (PyJWT's
:class:`~jwt.PyJWKClient`), so checking a token never calls the provider. A ``claims``
entry names the claim that holds each value (dotted for nested claims:
``nhsid_nrbac_roles.0.role_code``). When ``scope`` is mapped, a user gets the configured
scopes that the token's own scope claim also asks for; otherwise the configured ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWKSet

from fhirhub.auth.jwks import NoKey, RemoteKeys, find_key, parse_jwks
from fhirhub.auth.principal import Principal
from fhirhub.auth.scopes import Grants, Scope, ScopeError, parse_scopes
from fhirhub.auth.tokens import TokenRefused
from fhirhub.config import ConfigError

_CONTEXT = {"patient": "patient", "staff": "user"}
_DEFAULT_CLAIMS = {"user": "sub", "nhs_number": "nhs_number", "client": "azp"}
_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "PS512")


@dataclass(frozen=True)
class TrustedIssuer:
    issuer: str
    kind: str  # patient | staff
    audience: str
    scopes: tuple[Scope, ...]
    keys: PyJWKSet | None = None
    remote: RemoteKeys | None = None
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "RS512")
    role_scopes: dict[str, tuple[Scope, ...]] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)
    require: dict[str, str] = field(default_factory=dict)
    rate_limit: int = 0

    def principal(self, token: str, header: dict[str, Any], skew: int) -> Principal:
        """The user a token from this issuer stands for, or TokenRefused saying why."""
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise TokenRefused(f"Tokens from {self.issuer} must be signed with "
                               f"{', '.join(self.algorithms)}, not {alg!r}")
        claims = self._decode(token, str(alg), str(header.get("kid") or ""), skew)
        for name, value in self.require.items():
            if str(_claim(claims, name)) != value:
                raise TokenRefused(f"The token's {name} must be {value}")
        user = _text(claims, self.claims.get("user", "sub"))
        if not user:
            raise TokenRefused("The token names no user")
        grants = Grants(self._granted(claims))
        if self.kind == "patient":
            return self._patient(claims, user, grants)
        return Principal(
            "staff", grants, client=_text(claims, self.claims.get("client", "azp")),
            user=user, role=_text(claims, self.claims.get("role", "")),
            organization=_text(claims, self.claims.get("organization", "")),
            issuer=self.issuer, rate_key=f"{self.issuer} {user}", rate_limit=self.rate_limit,
            expires=int(claims["exp"]))

    def _patient(self, claims: dict[str, Any], user: str, grants: Grants) -> Principal:
        from fhirhub.audit.search import is_nhs_number

        nhs = _text(claims, self.claims.get("nhs_number", "nhs_number"))
        if not nhs or not is_nhs_number(nhs):
            raise TokenRefused("A patient's token must carry a valid NHS number")
        return Principal("patient", grants, client=_text(claims, self.claims.get("client", "azp")),
                         user=user, nhs_number=nhs, issuer=self.issuer,
                         rate_key=f"{self.issuer} {user}", rate_limit=self.rate_limit,
                         expires=int(claims["exp"]))

    def _decode(self, token: str, alg: str, kid: str, skew: int) -> dict[str, Any]:
        try:
            if self.keys is not None:
                key = find_key(self.keys, kid).key
            else:
                assert self.remote is not None and self.jwks_url is not None
                key = self.remote.key(self.jwks_url, kid).key
        except NoKey as exc:
            raise TokenRefused(f"{self.issuer}: {exc}") from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=skew, options={"require": ["iss", "aud", "exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise TokenRefused("The token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("The token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused(f"The token is not meant for this service (aud must include "
                               f"{self.audience})") from None
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"The token was refused: {exc}") from None
        except (TypeError, ValueError):  # PyJWT: the key named by kid is not one for alg
            raise TokenRefused(f"The key the token's kid names cannot verify {alg}") from None
        return claims

    def _granted(self, claims: dict[str, Any]) -> tuple[Scope, ...]:
        role = _text(claims, self.claims.get("role", ""))
        allowed = self.role_scopes.get(role, self.scopes) if role else self.scopes
        scope_claim = self.claims.get("scope")
        if not scope_claim:
            return allowed
        raw = _claim(claims, scope_claim)
        try:
            asked = parse_scopes(" ".join(raw) if isinstance(raw, list) else str(raw or ""))
        except ScopeError as exc:
            raise TokenRefused(f"The token's scopes: {exc}") from None
        return tuple(a for a in asked if isinstance(a, Scope)
                     and any(s.covers(a) for s in allowed))


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _text(claims: dict[str, Any], path: str) -> str | None:
    if not path:
        return None
    value = _claim(claims, path)
    return str(value) if isinstance(value, str | int) and str(value) else None


def load_issuers(path: str) -> dict[str, TrustedIssuer]:
    """The trusted issuers in the JSON file ``path`` (none when empty), by ``iss``.
    ConfigError names the file, the issuer and what is wrong."""
    if not path:
        return {}
    where = Path(path)
    try:
        data = json.loads(where.read_text())
        entries = data["issuers"] if isinstance(data, dict) else None
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"FHIRHUB_AUTH_ISSUERS: {path} could not be read: {exc}") from None
    if not isinstance(entries, list):
        raise ConfigError(f"FHIRHUB_AUTH_ISSUERS: {path} is not a JSON object with a list "
                          "of issuers")
    found: dict[str, TrustedIssuer] = {}
    for n, entry in enumerate(entries):
        issuer = _issuer(entry, where.parent, f"{path}: issuers[{n}]")
        found[issuer.issuer] = issuer
    return found


def _issuer(entry: Any, folder: Path, where: str) -> TrustedIssuer:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} is not an object")
    try:
        kind = str(entry["kind"])
        if kind not in _CONTEXT:
            raise ConfigError(f"{where}: kind must be patient or staff")
        context = _CONTEXT[kind]
        scopes = _scopes(entry.get("scopes", []), context, where)
        role_scopes = {str(role): _scopes(s, context, f"{where} role {role}")
                       for role, s in dict(entry.get("role_scopes", {})).items()}
        algorithms = tuple(str(a) for a in entry.get("algorithms", ("RS256", "RS512")))
        if not algorithms or any(a not in _ALGORITHMS for a in algorithms):
            raise ConfigError(f"{where}: algorithms must be among {', '.join(_ALGORITHMS)}")
        keys, url = _keys(entry, folder, where)
        return TrustedIssuer(
            issuer=str(entry["issuer"]), kind=kind, audience=str(entry["audience"]),
            scopes=scopes, keys=keys, jwks_url=url,
            remote=RemoteKeys((url,)) if url else None, algorithms=algorithms,
            role_scopes=role_scopes,
            claims={**_DEFAULT_CLAIMS, **{str(k): str(v) for k, v in
                                          dict(entry.get("claims", {})).items() if v}},
            require={str(k): str(v) for k, v in dict(entry.get("require", {})).items()},
            rate_limit=int(entry.get("rate_limit", 0)))
    except KeyError as exc:
        raise ConfigError(f"{where} has no {exc.args[0]}") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: {exc}") from None


def _scopes(raw: Any, context: str, where: str) -> tuple[Scope, ...]:
    try:
        parsed = parse_scopes(" ".join(raw) if isinstance(raw, list) else str(raw))
    except ScopeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    scopes = tuple(s for s in parsed if isinstance(s, Scope))
    wrong = [str(s) for s in scopes if s.context != context]
    if wrong:
        raise ConfigError(f"{where}: {', '.join(wrong)} are not {context}/ scopes")
    return scopes


def _keys(entry: dict[str, Any], folder: Path, where: str) -> tuple[PyJWKSet | None, str | None]:
    try:
        if "jwks" in entry:
            return parse_jwks(entry["jwks"]), None
        if "jwks_file" in entry:
            return parse_jwks((folder / str(entry["jwks_file"])).read_text()), None
    except (OSError, NoKey) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if "jwks_url" in entry:
        return None, str(entry["jwks_url"])
    raise ConfigError(f"{where} needs jwks, jwks_file or jwks_url")


__all__ = ["TrustedIssuer", "load_issuers"]
