"""Where public keys come from: a JWK Set held inline, or one fetched from a URL that the
deployment allows (``FHIRHUB_AUTH_JWKS_URLS``) and cached.

Fetching and caching are PyJWT's (:class:`jwt.PyJWKClient`): a key set is fetched at
most once per :data:`CACHE_SECONDS` per URL, and again when a token names a ``kid`` the
cached set does not have (a key rotation), though not within PyJWT's cool-down of 30
seconds after a fetch.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

CACHE_SECONDS = 300
FETCH_TIMEOUT_SECONDS = 5


class NoKey(Exception):
    """No usable key: the message says why, in words a client developer can act on."""


def allowed_url(url: str, allowlist: tuple[str, ...]) -> bool:
    """Is ``url`` on the allow-list (equal to an entry, or under an entry ending in /)?"""
    return any(url == entry or (entry.endswith("/") and url.startswith(entry))
               for entry in allowlist)


def parse_jwks(text: str | dict[str, Any]) -> PyJWKSet:
    """A JWK Set from its JSON (text or parsed); NoKey when it is not one."""
    try:
        data = json.loads(text) if isinstance(text, str) else text
    except ValueError as exc:
        raise NoKey(f"not a usable JWK Set: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise NoKey('not a usable JWK Set: it must be a JSON object {"keys": [...]}')
    try:
        return PyJWKSet.from_dict(data)
    except (ValueError, TypeError, AttributeError, jwt.PyJWTError) as exc:
        raise NoKey(f"not a usable JWK Set: {exc}") from None


def find_key(keys: PyJWKSet, kid: str) -> PyJWK:
    for key in keys.keys:
        if key.key_id == kid:
            return key
    raise NoKey(f"no key with kid {kid!r} in the registered key set")


class RemoteKeys:
    """Key sets fetched from allow-listed URLs, one cached client per URL."""

    def __init__(self, allowlist: tuple[str, ...]) -> None:
        self.allowlist = allowlist
        self._clients: dict[str, PyJWKClient] = {}
        self._lock = threading.Lock()

    def key(self, url: str, kid: str) -> PyJWK:
        if not allowed_url(url, self.allowlist):
            raise NoKey(f"the JWKS URL {url} is not on this server's allow-list "
                            "(FHIRHUB_AUTH_JWKS_URLS)")
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                client = self._clients[url] = PyJWKClient(
                    url, cache_jwk_set=True, lifespan=CACHE_SECONDS,
                    timeout=FETCH_TIMEOUT_SECONDS)
        try:
            return client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            raise NoKey(f"the key set at {url} could not be fetched: {exc}") from None
        except jwt.PyJWKClientError as exc:
            raise NoKey(f"{url}: {exc}") from None


__all__ = ["CACHE_SECONDS", "NoKey", "RemoteKeys", "allowed_url", "find_key", "parse_jwks"]
