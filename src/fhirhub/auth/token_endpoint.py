"""The OAuth 2.0 token endpoint: ``client_credentials`` with a signed-JWT client assertion
(SMART Backend Services; RFC 6749 §4.4, RFC 7523 §2.2).

A request is a form: ``grant_type=client_credentials``,
``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``,
``client_assertion=<the signed JWT>``, ``scope=system/Patient.rs system/Observation.rs``.
The answer is ``{"access_token", "token_type": "bearer", "expires_in", "scope"}``. The
scopes asked for must be ``system/`` scopes the client is registered for: asking for
more is refused (``invalid_scope``), never quietly narrowed, so that a client learns at
once that its registration does not match what it does.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fhirhub.audit.record import instant
from fhirhub.auth.assertion import (
    ASSERTION_TYPE,
    AssertionRules,
    ClientRefused,
    TokenRequestError,
    verify_assertion,
)
from fhirhub.auth.authenticator import Authenticator
from fhirhub.auth.scopes import Scope, ScopeError, beyond, parse_scopes


def token_response(auth: Authenticator, form: list[tuple[str, str]], token_url: str,
                   base_url: str) -> tuple[dict[str, Any], str]:
    """The token response to ``form`` and the client it was issued to; ClientRefused
    (401) or TokenRequestError (400) saying why not."""
    params = _single(form)
    if params.get("grant_type") != "client_credentials":
        raise TokenRequestError("unsupported_grant_type", "grant_type must be "
                                "client_credentials (SMART Backend Services)")
    if params.get("client_assertion_type") != ASSERTION_TYPE:
        raise TokenRequestError("invalid_request", f"client_assertion_type must be "
                                f"{ASSERTION_TYPE}")
    assertion = params.get("client_assertion")
    if not assertion:
        raise TokenRequestError("invalid_request", "client_assertion (a JWT signed with "
                                "your private key) is missing")
    now = int(time.time())
    rules = AssertionRules(token_url, now, auth.settings.auth_assertion_max_seconds,
                           auth.settings.auth_clock_skew_seconds)
    verified = verify_assertion(assertion, rules, auth.store.client, auth.remote)
    client = verified.client
    first_use = auth.store.run([], lambda tx: tx.use_jti(
        client.id, verified.jti, _instant(verified.expires + rules.skew), _instant(now)))
    if not first_use:
        raise ClientRefused(f"The client assertion's jti {verified.jti!r} was used before; "
                            "every assertion needs a new one", client.id)
    scopes = _scopes(params.get("scope", ""), client.scopes)
    auth.limit_client(client)
    token = auth.tokens.issue(client.id, scopes, base_url, now)
    return ({"access_token": token, "token_type": "bearer",
             "expires_in": auth.settings.auth_token_seconds, "scope": scopes}, client.id)


def claimed_client(form: list[tuple[str, str]]) -> str | None:
    """The client id a token request claims (unverified: for the audit record of a
    refused request)."""
    import jwt

    assertion = dict(form).get("client_assertion")
    if not assertion:
        return None
    try:
        iss = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return None
    return str(iss)[:200] if iss else None


def _single(form: list[tuple[str, str]]) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in form:
        if key in params:
            raise TokenRequestError("invalid_request", f"{key} is given more than once")
        params[key] = value
    return params


def _scopes(asked: str, registered: tuple[str, ...]) -> str:
    try:
        requested = parse_scopes(asked)
        allowed = parse_scopes(" ".join(registered))
    except ScopeError as exc:
        raise TokenRequestError("invalid_scope", str(exc)) from None
    if not any(isinstance(s, Scope) for s in requested):
        raise TokenRequestError("invalid_scope", "scope must ask for at least one system/ "
                                "resource scope, e.g. system/Patient.rs")
    wrong = [str(s) for s in requested if isinstance(s, Scope) and s.context != "system"]
    if wrong:
        raise TokenRequestError("invalid_scope", f"{', '.join(wrong)}: a backend client "
                                "asks for system/ scopes only")
    refused = beyond(requested, allowed)
    if refused:
        raise TokenRequestError("invalid_scope", f"The client is not registered for "
                                f"{', '.join(refused)}")
    return " ".join(str(s) for s in requested)


def _instant(seconds: int) -> str:
    return instant(datetime.fromtimestamp(seconds, UTC))


__all__ = ["claimed_client", "token_response"]
