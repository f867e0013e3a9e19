"""What the store keeps for OAuth2 clients: their registrations, and the client-assertion
ids (``jti``) already used, so that a replayed assertion is refused.

A client authenticates with a signed JWT (RFC 7523, SMART Backend Services); its keys
are either inline (``jwks``, a JWK Set as JSON text) or fetched from ``jwks_url``. Every
assertion carries a ``jti`` the client must not use twice while the assertion could
still be accepted: the store records each one until its ``expires`` and answers, in
the transaction that records it, whether it was already there. Instants are fixed-width
UTC text (``2026-11-24T05:40:00.123456Z``), so that text order is time order.
"""

from __future__ import annotations

from dataclasses import dataclass

ACTIVE = "active"
DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """One registered OAuth2 client."""

    id: str  # the OAuth client_id
    name: str
    jwks: str | None  # a JWK Set as JSON text (inline keys), or None
    jwks_url: str | None  # or a URL the keys are fetched from
    scopes: tuple[str, ...]  # the SMART scopes the client may be granted
    rate_limit: int  # requests per minute; 0 means no limit
    status: str  # ACTIVE or DISABLED
    created: str  # FHIR instant, UTC, fixed width
    updated: str


__all__ = ["ACTIVE", "DISABLED", "ClientRecord"]
