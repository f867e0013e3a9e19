"""Who a request comes from: :class:`Authenticator` turns an ``Authorization`` header into
a :class:`~fhirhub.auth.principal.Principal`, or refuses it (401).

A bearer token is one of ours (its ``kid`` is our signing key's: an application's token
from the token endpoint) or a trusted issuer's (its ``iss`` is configured: a patient's or
a member of staff's). Anything else is refused, whatever it claims. A token checked once
is remembered until it expires, so a client calling many times with one token pays for
the signature check once; a disabled client's tokens stop working within
:data:`CLIENTS_SECONDS` all the same, because the client's status is looked up on every
request from a directory refreshed that often.
"""

from __future__ import annotations

import threading
import time
from functools import cached_property

import jwt

from fhirhub.auth.issuers import TrustedIssuer, load_issuers
from fhirhub.auth.jwks import RemoteKeys
from fhirhub.auth.keys import SigningKey, load_or_create_signing_key
from fhirhub.auth.principal import UNCHECKED, Principal
from fhirhub.auth.ratelimit import RateLimiter, retry_after
from fhirhub.auth.scopes import Grants, ScopeError, parse_scopes
from fhirhub.auth.tokens import AccessTokens, TokenRefused
from fhirhub.config import Settings
from fhirhub.errors import ThrottledError
from fhirhub.store import Store
from fhirhub.store.clients import ClientRecord

CLIENTS_SECONDS = 5.0
CACHE_ENTRIES = 10_000
HELP = "see {base}/.well-known/smart-configuration"


class ClientDirectory:
    """The registered clients, read again from the store every few seconds (so that
    other processes' registrations and disablings are seen)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._clients: dict[str, ClientRecord] = {}
        self._read_at = -CLIENTS_SECONDS
        self._lock = threading.Lock()

    def get(self, client_id: str) -> ClientRecord | None:
        """The client, as read at most :data:`CLIENTS_SECONDS` ago; one registered since
        the last read is looked up on its own (callers ask only for the clients of
        tokens this server signed, so a miss is a new client, not a guess)."""
        now = time.monotonic()
        if now - self._read_at >= CLIENTS_SECONDS:
            with self._lock:
                if now - self._read_at >= CLIENTS_SECONDS:
                    self._clients = {c.id: c for c in self.store.clients()}
                    self._read_at = now
        found = self._clients.get(client_id)
        if found is None:
            found = self.store.client(client_id)
            if found is not None:
                self._clients = {**self._clients, client_id: found}
        return found

    def forget(self) -> None:
        """Read the store again at the next look (after a change made here)."""
        self._read_at = -CLIENTS_SECONDS


class Authenticator:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.enabled = settings.auth == "on"
        self.store = store
        self.clients = ClientDirectory(store)
        self.remote = RemoteKeys(settings.jwks_url_allowlist)
        self.issuers: dict[str, TrustedIssuer] = load_issuers(settings.auth_issuers)
        self.limiter = RateLimiter(settings.workers)
        self._checked: dict[str, Principal] = {}

    @cached_property
    def key(self) -> SigningKey:
        """The access-token signing key, read (or created) when first needed."""
        return load_or_create_signing_key(self.settings.auth_key_path)

    @cached_property
    def tokens(self) -> AccessTokens:
        return AccessTokens(self.key, self.settings.auth_token_seconds,
                            self.settings.auth_clock_skew_seconds)

    def authenticate(self, authorization: str | None, base_url: str) -> Principal:
        """The caller an ``Authorization`` header stands for, or TokenRefused."""
        if not self.enabled:
            return UNCHECKED
        scheme, _, token = (authorization or "").strip().partition(" ")
        if not authorization:
            raise TokenRefused(f"This request needs an access token (Authorization: Bearer "
                               f"<token>; {HELP.format(base=base_url)})", missing=True)
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRefused("The Authorization header must be 'Bearer <access token>'")
        token = token.strip()
        cache_key = f"{base_url} {token}"
        principal = self._checked.get(cache_key)
        if principal is None or principal.expires <= time.time():
            self._checked.pop(cache_key, None)
            principal = self._check(token, base_url)
            if len(self._checked) >= CACHE_ENTRIES:
                self._checked.clear()
            self._checked[cache_key] = principal
        if principal.kind == "system":
            self._still_active(principal)
        return principal

    def limit(self, principal: Principal) -> None:
        """Count a request against the caller's rate limit: ThrottledError (429) when it
        is spent."""
        if principal.kind == "system":
            client = self.clients.get(principal.client or "")
            self._take(principal.client or "", client.rate_limit if client else 0)
        elif principal.rate_key is not None:
            self._take(principal.rate_key, principal.rate_limit)

    def limit_client(self, client: ClientRecord) -> None:
        """Count a token request against the client's rate limit."""
        self._take(client.id, client.rate_limit)

    def _take(self, key: str, per_minute: int) -> None:
        wait = self.limiter.take(key, per_minute)
        if wait is not None:
            seconds = retry_after(wait)
            raise ThrottledError(
                f"Rate limit of {per_minute} requests a minute reached for {key}; retry "
                f"after {seconds} seconds", headers={"Retry-After": seconds})

    def _check(self, token: str, base_url: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            claimed = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRefused("The access token is not a JWT") from None
        if header.get("kid") == self.key.kid:
            return self._ours(token, base_url)
        issuer = self.issuers.get(str(claimed.get("iss")))
        if issuer is None:
            raise TokenRefused(f"The access token was not issued by this server or an "
                               f"issuer it trusts ({HELP.format(base=base_url)})")
        return issuer.principal(token, header, self.settings.auth_clock_skew_seconds)

    def _ours(self, token: str, base_url: str) -> Principal:
        claims = self.tokens.verify(token, base_url)
        client = self.clients.get(str(claims["sub"]))
        if client is None:
            raise TokenRefused(f"The client {claims['sub']!r} is not registered here")
        try:
            grants = Grants.of(parse_scopes(str(claims["scope"])))
        except ScopeError as exc:
            raise TokenRefused(f"The access token's scopes: {exc}") from None
        return Principal("system", grants, client=client.id, expires=int(claims["exp"]))

    def _still_active(self, principal: Principal) -> None:
        client = self.clients.get(principal.client or "")
        if client is None or client.status != "active":
            raise TokenRefused(f"The client {principal.client!r} is disabled")


__all__ = ["CLIENTS_SECONDS", "Authenticator", "ClientDirectory"]
