"""``fhirhub clients …``: the client applications allowed to ask for access tokens
(SMART Backend Services; docs/security.md).

- ``add NAME --scopes … (--jwks FILE | --jwks-url URL | --generate-key FILE)``
- ``list``
- ``disable CLIENT_ID`` / ``enable CLIENT_ID``
- ``token CLIENT_ID --key FILE --scope …``: get an access token from a running server
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fhirhub.cli._shared import settings_and_store

if TYPE_CHECKING:
    from fhirhub.store.clients import ClientRecord


_store = settings_and_store


@click.group()
def clients() -> None:
    """Client applications: register, list, disable."""


@clients.command()
@click.argument("name")
@click.option("--scopes", required=True,
              help='The system/ scopes it may be granted, e.g. "system/Patient.rs '
                   'system/Observation.cruds"')
@click.option("--jwks", "jwks_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file holding its public keys as a JWK Set")
@click.option("--jwks-url", help="Or the URL of its JWK Set (must be on FHIRHUB_AUTH_JWKS_URLS)")
@click.option("--generate-key", "key_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Or make a new ES384 key pair: the private key is written to this file "
                   "(for the client to sign with), the public half is registered")
@click.option("--rate-limit", type=click.IntRange(min=0), default=0, show_default=True,
              help="Requests a minute (0: no limit)")
@click.option("--id", "client_id", help="Its client id (default: a new UUID)")
@click.option("--db", "database_url", help="Database URL (as for serve)")
def add(name: str, scopes: str, jwks_file: Path | None, jwks_url: str | None,
        key_file: Path | None, rate_limit: int, client_id: str | None,
        database_url: str | None) -> None:
    """Register a client application NAME."""
    from fhirhub.auth.registration import RegistrationError, register

    given = [x for x in (jwks_file, jwks_url, key_file) if x is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --jwks, --jwks-url, --generate-key")
    jwks = jwks_file.read_text() if jwks_file else None
    if key_file is not None:
        jwks = _generate(key_file)
    settings, store = _store(database_url)
    try:
        client = register(store, settings, name=name, scopes=scopes, jwks=jwks,
                          jwks_url=jwks_url, rate_limit=rate_limit, client_id=client_id)
    except RegistrationError as exc:
        if key_file is not None:
            key_file.unlink(missing_ok=True)
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"Registered {client.name}: client_id {client.id}")
    click.echo(f"  scopes {' '.join(client.scopes)}")
    if key_file is not None:
        click.echo(f"  private key {key_file} (ES384; keep it secret: it is the client's "
                   "credential)")
        click.echo(f"  an access token: fhirhub clients token {client.id} --key {key_file} "
                   f"--scope \"{client.scopes[0]}\"")


def _generate(path: Path) -> str:
    """A new P-384 key pair: the private key written owner-only to ``path``, the public
    JWK Set returned."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    from fhirhub.audit.signing import create_key_file
    from fhirhub.auth.keys import thumbprint

    if path.exists():
        raise click.ClickException(f"{path} exists already; choose a new file")
    key = ec.generate_private_key(ec.SECP384R1())
    create_key_file(path, key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": thumbprint(jwk), "alg": "ES384", "use": "sig"})
    return json.dumps({"keys": [jwk]})


@clients.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line")
@click.option("--db", "database_url", help="Database URL (as for serve)")
def list_(as_json: bool, database_url: str | None) -> None:
    """List the registered client applications."""
    _, store = _store(database_url)
    try:
        found = store.clients()
    finally:
        store.close()
    if as_json:
        for c in found:
            click.echo(json.dumps(_json(c)))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "status", "scopes", "rate limit/min", "keys")
    table.add_column("client_id", no_wrap=True)
    for c in found:
        table.add_row(c.name, c.status, " ".join(c.scopes), str(c.rate_limit or "-"),
                      c.jwks_url or "inline", c.id)
    Console(highlight=False).print(table)


def _json(c: ClientRecord) -> dict[str, object]:
    return {"client_id": c.id, "name": c.name, "status": c.status, "scopes": list(c.scopes),
            "rate_limit": c.rate_limit, "jwks_url": c.jwks_url,
            "jwks": json.loads(c.jwks) if c.jwks else None, "created": c.created,
            "updated": c.updated}


@clients.command()
@click.argument("client_id")
@click.option("--key", "key_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The client's private key (PEM: EC P-384 for ES384, RSA for RS384)")
@click.option("--scope", "scopes", required=True, help='e.g. "system/*.rs"')
@click.option("--url", default="http://127.0.0.1:8080/fhir", show_default=True,
              help="The server's FHIR base URL")
@click.option("--kid", help="The key's kid (default: its RFC 7638 thumbprint, as "
                            "--generate-key registers it)")
def token(client_id: str, key_file: Path, scopes: str, url: str, kid: str | None) -> None:
    """Ask a server's token endpoint for an access token, as client CLIENT_ID would
    (SMART Backend Services), and print it."""
    import httpx

    from fhirhub.auth.client_assertion import make_assertion

    base = url.rstrip("/")
    try:
        assertion = make_assertion(key_file.read_bytes(), client_id, f"{base}/auth/token", kid)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    form = {"grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion, "scope": scopes}
    try:
        response = httpx.post(f"{base}/auth/token", data=form, timeout=30)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {base}/auth/token: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or "access_token" not in body:
        raise click.ClickException(f"{response.status_code}: "
                                   f"{body.get('error_description') or response.text[:300]}")
    click.echo(body["access_token"])


@clients.command()
@click.argument("client_id")
@click.option("--db", "database_url", help="Database URL (as for serve)")
def disable(client_id: str, database_url: str | None) -> None:
    """Disable a client: no new tokens, and its current ones stop working."""
    _status(client_id, "disabled", database_url)


@clients.command()
@click.argument("client_id")
@click.option("--db", "database_url", help="Database URL (as for serve)")
def enable(client_id: str, database_url: str | None) -> None:
    """Enable a disabled client again."""
    _status(client_id, "active", database_url)


def _status(client_id: str, status: str, database_url: str | None) -> None:
    from fhirhub.auth.registration import RegistrationError, set_status

    settings, store = _store(database_url)
    try:
        client = set_status(store, settings, client_id, status)
    except RegistrationError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"{client.name} ({client.id}) is {client.status}")


__all__ = ["clients"]
