"""Client authentication by signed JWT (``private_key_jwt``, RFC 7523 §2.2 and §3), as
SMART Backend Services and the NHS API platform's signed-JWT pattern use it
(https://hl7.org/fhir/smart-app-launch/backend-services.html).

A client proves who it is with a JWT it signs with its private key: ``iss`` and ``sub``
are its client id, ``aud`` is this server's token URL, ``exp`` at most five minutes ahead,
``jti`` never used before within the assertion's lifetime, and the header names the
algorithm (RS384, ES384 or RS512: never ``none``, never an HMAC) and the ``kid`` of a key
in the client's registered JWK Set. Signature checking is PyJWT's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from fhirhub.auth.jwks import NoKey, RemoteKeys, find_key, parse_jwks
from fhirhub.errors import InvalidError, UnauthenticatedError
from fhirhub.store.clients import ClientRecord

ALGORITHMS = ("RS384", "ES384", "RS512")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class TokenRequestError(InvalidError):
    """A token request refused (400), with its RFC 6749 §5.2 error code."""

    def __init__(self, oauth_error: str, diagnostics: str) -> None:
        super().__init__(diagnostics, issue_code="invalid" if oauth_error != "invalid_scope"
                         else "security", spine_code="INVALID_REQUEST")
        self.oauth_error = oauth_error


class ClientRefused(UnauthenticatedError):
    """A client that could not be authenticated (401, ``invalid_client``)."""

    oauth_error = "invalid_client"

    def __init__(self, diagnostics: str, client: str | None = None) -> None:
        super().__init__(diagnostics, issue_code="security")
        self.client = client


@dataclass(frozen=True)
class Verified:
    client: ClientRecord
    jti: str
    expires: int


@dataclass(frozen=True)
class AssertionRules:
    token_url: str  # what aud must be
    now: int  # seconds since the epoch
    max_seconds: int  # how far ahead exp may be
    skew: int  # clock difference tolerated


def verify_assertion(assertion: str, rules: AssertionRules,
                     lookup: Callable[[str], ClientRecord | None],
                     remote: RemoteKeys) -> Verified:
    """The client ``assertion`` authenticates, or :class:`ClientRefused` saying why.
    (The ``jti`` is checked against earlier uses by the caller, which owns the store.)"""
    header, claimed = _unverified(assertion)
    client_id = claimed.get("iss")
    if not isinstance(client_id, str) or not client_id:
        raise ClientRefused("The client assertion has no iss (your client id)")
    client = lookup(client_id)
    if client is None:
        raise ClientRefused(f"No client {client_id!r} is registered here", client_id)
    if client.status != "active":
        raise ClientRefused(f"Client {client_id!r} is disabled", client_id)
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ALGORITHMS:
        raise ClientRefused(f"The client assertion is signed with {alg!r}; this server "
                            f"accepts {', '.join(ALGORITHMS)}", client_id)
    if not isinstance(kid, str) or not kid:
        raise ClientRefused("The client assertion's header has no kid naming the key that "
                            "signed it", client_id)
    key = _key(client, kid, remote)
    claims = _decode(assertion, key, str(alg), client_id, rules)
    if claims.get("sub") != client_id:
        raise ClientRefused("The client assertion's sub must be the client id, like iss",
                            client_id)
    if int(claims["exp"]) > rules.now + rules.max_seconds + rules.skew:
        raise ClientRefused(f"The client assertion's exp is more than {rules.max_seconds} "
                            "seconds ahead", client_id)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise ClientRefused("The client assertion needs a jti (a unique id, at most 255 "
                            "characters)", client_id)
    return Verified(client, jti, int(claims["exp"]))


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise ClientRefused(f"The client assertion is not a JWT: {exc}") from None
    return header, claims


def _key(client: ClientRecord, kid: str, remote: RemoteKeys) -> Any:
    try:
        if client.jwks:
            return find_key(parse_jwks(client.jwks), kid).key
        if client.jwks_url:
            return remote.key(client.jwks_url, kid).key
    except NoKey as exc:
        raise ClientRefused(f"Client {client.id!r}: {exc}", client.id) from None
    raise ClientRefused(f"Client {client.id!r} has no registered keys", client.id)


def _decode(assertion: str, key: Any, alg: str, client_id: str,
            rules: AssertionRules) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion, key, algorithms=[alg], audience=rules.token_url, issuer=client_id,
            leeway=rules.skew, options={"require": ["iss", "sub", "aud", "exp", "jti"]})
    except jwt.ExpiredSignatureError:
        raise ClientRefused("The client assertion has expired", client_id) from None
    except jwt.ImmatureSignatureError:
        raise ClientRefused("The client assertion is not valid yet (nbf or iat in the "
                            "future)", client_id) from None
    except jwt.InvalidAudienceError:
        raise ClientRefused(f"The client assertion's aud must be this server's token URL, "
                            f"{rules.token_url}", client_id) from None
    except jwt.PyJWTError as exc:
        raise ClientRefused(f"The client assertion was refused: {exc}", client_id) from None
    except (TypeError, ValueError):  # PyJWT: the key named by kid is not one for alg
        raise ClientRefused(f"The key the assertion's kid names cannot verify {alg}",
                            client_id) from None
    return claims


__all__ = ["ALGORITHMS", "ASSERTION_TYPE", "AssertionRules", "ClientRefused",
           "TokenRequestError", "Verified", "verify_assertion"]
