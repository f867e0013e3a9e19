"""Registering client applications (``fhirhub clients add|list|disable``).

A registration is checked before it is kept: a name, keys that are a usable JWK Set of
public keys with a ``kid`` each (or a JWKS URL on the deployment's allow-list), ``system/``
scopes, and a rate limit. Every change is written to the audit log with who made it.
"""

from __future__ import annotations

import getpass
import json
import uuid
from dataclasses import replace

from fhirhub import __version__
from fhirhub.audit.auditor import Auditor, Exchange
from fhirhub.audit.record import SUCCESS, AuditRecord, instant
from fhirhub.auth.jwks import NoKey, allowed_url, parse_jwks
from fhirhub.auth.scopes import Scope, ScopeError, parse_scopes
from fhirhub.config import Settings
from fhirhub.store import Store
from fhirhub.store.base import Transaction
from fhirhub.store.clients import ACTIVE, DISABLED, ClientRecord


class RegistrationError(ValueError):
    """A registration that cannot be kept; the message says what to change."""


def register(store: Store, settings: Settings, *, name: str, scopes: str,
             jwks: str | None = None, jwks_url: str | None = None, rate_limit: int = 0,
             client_id: str | None = None) -> ClientRecord:
    """Register a new client; its id is ``client_id`` or a new UUID."""
    if not name.strip():
        raise RegistrationError("a client needs a name")
    if (jwks is None) == (jwks_url is None):
        raise RegistrationError("give the client's public keys either inline (a JWK Set) or "
                                "as a JWKS URL, not both")
    if jwks is not None:
        jwks = _public_key_set(jwks)
    if jwks_url is not None and not allowed_url(jwks_url, settings.jwks_url_allowlist):
        raise RegistrationError(f"{jwks_url} is not on the JWKS URL allow-list "
                                "(FHIRHUB_AUTH_JWKS_URLS)")
    if rate_limit < 0:
        raise RegistrationError("the rate limit is requests a minute: 0 (none) or more")
    client_id = client_id or str(uuid.uuid4())
    if store.client(client_id) is not None:
        raise RegistrationError(f"a client {client_id!r} is already registered")
    now = instant()
    client = ClientRecord(id=client_id, name=name.strip(), jwks=jwks, jwks_url=jwks_url,
                          scopes=_system_scopes(scopes), rate_limit=rate_limit,
                          status=ACTIVE, created=now, updated=now)
    _save(store, settings, client, "create", f"client {client.id} ({client.name}) "
          f"registered for {' '.join(client.scopes)}")
    return client


def set_status(store: Store, settings: Settings, client_id: str, status: str) -> ClientRecord:
    """Disable (or enable again) a client; its tokens stop working within
    :data:`fhirhub.auth.authenticator.CLIENTS_SECONDS`."""
    if status not in (ACTIVE, DISABLED):
        raise RegistrationError(f"a client is {ACTIVE} or {DISABLED}")
    client = store.client(client_id)
    if client is None:
        raise RegistrationError(f"no client {client_id!r} is registered")
    changed = replace(client, status=status, updated=instant())
    _save(store, settings, changed, "update", f"client {client_id} ({client.name}) {status}")
    return changed


def _public_key_set(text: str) -> str:
    try:
        data = json.loads(text)
        keys = parse_jwks(data)
    except (ValueError, NoKey) as exc:
        raise RegistrationError(f"the keys are not a usable JWK Set: {exc}") from None
    for jwk in data.get("keys", []):
        if jwk.get("kty") not in ("RSA", "EC"):
            raise RegistrationError(f"key {jwk.get('kid')!r} is a {jwk.get('kty')!r} key: "
                                    "register RSA or EC public keys (RS384, RS512, ES384)")
        if "d" in jwk or "p" in jwk:
            raise RegistrationError("the JWK Set holds a private key: register only the "
                                    "public half")
        if not jwk.get("kid"):
            raise RegistrationError("every key needs a kid (the assertion's header names it)")
    if not keys.keys:
        raise RegistrationError("the JWK Set has no keys")
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _system_scopes(text: str) -> tuple[str, ...]:
    try:
        scopes = parse_scopes(text)
    except ScopeError as exc:
        raise RegistrationError(str(exc)) from None
    resource = [s for s in scopes if isinstance(s, Scope)]
    if not resource or any(s.context != "system" for s in resource):
        raise RegistrationError("a client application is registered for system/ scopes, "
                                "e.g. system/Patient.rs system/Observation.cruds")
    return tuple(str(s) for s in resource)


def _save(store: Store, settings: Settings, client: ClientRecord, interaction: str,
          detail: str) -> None:
    """Keep the registration and its audit record in one transaction."""
    record = AuditRecord(
        id=str(uuid.uuid4()), recorded=instant(), kind="system", interaction=interaction,
        outcome=SUCCESS, request_id=str(uuid.uuid4()), client=client.id,
        user=getpass.getuser(), user_agent=f"fhirhub-cli/{__version__}", detail=detail)
    auditor = Auditor(store, settings)

    def work(tx: Transaction) -> None:
        tx.save_client(client)
        auditor.append(tx, [Exchange(record)])

    store.run([f"client:{client.id}"], work)


__all__ = ["RegistrationError", "register", "set_status"]
