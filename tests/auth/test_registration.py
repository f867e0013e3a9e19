"""Registering backend client applications (fhirhub.auth.registration): a name, public
keys as a JWK Set with a ``kid`` each or a JWKS URL on the allow-list, ``system/`` scopes
and a rate limit, each change audited with who made it. SMART Backend Services,
registration (https://hl7.org/fhir/smart-app-launch/backend-services.html#registering-a-smart-backend-service-communicating-public-keys);
JWK Sets are RFC 7517 §5. Run against every backend.
"""

from __future__ import annotations

import getpass
import json
from typing import Any

import orjson
import pytest

from fhirhub.auth.registration import RegistrationError, register, set_status
from fhirhub.config import Settings
from fhirhub.store import Store
from fhirhub.store.audit import AuditQuery, AuditRow
from tests.auth_support import ec_key, public_jwks, rsa_key

SCOPES = "system/Patient.rs system/Observation.cruds"


def jwks(*keys: tuple[Any, str]) -> str:
    return json.dumps({"keys": [k for key, kid in keys for k in public_jwks(key, kid)["keys"]]})


def good_jwks() -> str:
    return jwks((ec_key(), "es"), (rsa_key(), "rsa"))


def audit_rows(store: Store, client_id: str) -> list[AuditRow]:
    return store.audit_search(AuditQuery(clients=(client_id,), oldest_first=True)).rows


def refused(store: Store, settings: Settings, **kw: Any) -> str:
    args: dict[str, Any] = {"name": "App", "scopes": SCOPES, "jwks": good_jwks(), **kw}
    with pytest.raises(RegistrationError) as info:
        register(store, settings, **args)
    assert store.clients() == []  # nothing kept
    return str(info.value)


# -- registering ------------------------------------------------------------------------------


def test_registered_client_is_stored(store: Store, settings: Settings) -> None:
    client = register(store, settings, name="  Lab system ", scopes=SCOPES, jwks=good_jwks(),
                      rate_limit=120)
    assert store.client(client.id) == client
    assert client.name == "Lab system"
    assert client.scopes == ("system/Patient.rs", "system/Observation.cruds")
    assert client.rate_limit == 120
    assert client.status == "active"
    assert client.jwks_url is None
    assert client.created == client.updated
    assert len(client.id) == 36  # a new UUID


def test_registration_is_audited_with_client_and_cli_user(store: Store,
                                                          settings: Settings) -> None:
    client = register(store, settings, name="Lab system", scopes=SCOPES, jwks=good_jwks())
    rows = audit_rows(store, client.id)
    assert len(rows) == 1
    assert rows[0].client == client.id
    assert rows[0].user == getpass.getuser()
    assert rows[0].interaction == "create"
    assert rows[0].outcome == "0"
    record = orjson.loads(rows[0].record)
    assert "Lab system" in json.dumps(record) and "system/Patient.rs" in json.dumps(record)


def test_client_id_may_be_chosen(store: Store, settings: Settings) -> None:
    client = register(store, settings, name="App", scopes=SCOPES, jwks=good_jwks(),
                      client_id="lab-system")
    assert client.id == "lab-system"
    assert store.client("lab-system") == client


def test_v1_scopes_are_kept_in_their_v2_form_and_other_scopes_dropped(
        store: Store, settings: Settings) -> None:
    client = register(store, settings, name="App", scopes="system/Patient.read openid "
                      "system/*.read", jwks=good_jwks())
    assert client.scopes == ("system/Patient.rs", "system/*.rs")


def test_inline_keys_are_stored_as_canonical_json(store: Store, settings: Settings) -> None:
    given = json.loads(good_jwks())
    spaced = json.dumps(given, indent=4)
    client = register(store, settings, name="App", scopes=SCOPES, jwks=spaced)
    assert client.jwks is not None
    assert json.loads(client.jwks) == given
    assert client.jwks == json.dumps(given, separators=(",", ":"), sort_keys=True)


def test_jwks_url_on_the_allow_list_is_registered(store: Store, settings: Settings) -> None:
    allowing = settings.with_(auth_jwks_urls="https://keys.example/apps/")
    url = "https://keys.example/apps/lab/jwks.json"
    client = register(store, allowing, name="App", scopes=SCOPES, jwks_url=url)
    assert client.jwks_url == url and client.jwks is None


# -- refused ----------------------------------------------------------------------------------


def test_private_key_in_the_jwk_set_is_refused(store: Store, settings: Settings) -> None:
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    for private in (json.loads(ECAlgorithm.to_jwk(ec_key())),
                    json.loads(RSAAlgorithm.to_jwk(rsa_key()))):
        message = refused(store, settings, jwks=json.dumps({"keys": [{**private, "kid": "k"}]}))
        assert "private key" in message


def test_key_without_a_kid_is_refused(store: Store, settings: Settings) -> None:
    keys = json.loads(good_jwks())
    del keys["keys"][1]["kid"]
    assert "needs a kid" in refused(store, settings, jwks=json.dumps(keys))


def test_both_keys_and_url_are_refused(store: Store, settings: Settings) -> None:
    allowing = settings.with_(auth_jwks_urls="https://keys.example/")
    message = refused(store, allowing, jwks_url="https://keys.example/jwks.json")
    assert "either inline" in message


def test_neither_keys_nor_url_is_refused(store: Store, settings: Settings) -> None:
    assert "either inline" in refused(store, settings, jwks=None)


def test_jwks_url_off_the_allow_list_is_refused(store: Store, settings: Settings) -> None:
    allowing = settings.with_(auth_jwks_urls="https://keys.example/apps")
    for url in ("https://keys.example/apps/x.json", "https://evil.example/jwks.json"):
        message = refused(store, allowing, jwks=None, jwks_url=url)
        assert url in message and "allow-list" in message


def test_jwks_url_without_any_allow_list_is_refused(store: Store, settings: Settings) -> None:
    message = refused(store, settings, jwks=None, jwks_url="https://keys.example/jwks.json")
    assert "FHIRHUB_AUTH_JWKS_URLS" in message


@pytest.mark.parametrize("scopes", ["patient/Patient.rs", "user/*.rs",
                                    "system/Patient.rs user/Patient.rs", "openid", ""])
def test_scopes_other_than_system_are_refused(store: Store, settings: Settings,
                                              scopes: str) -> None:
    assert "system/ scopes" in refused(store, settings, scopes=scopes)


@pytest.mark.parametrize("scopes", ["system/Patient.sr", "system/Patient.rs?x=1"])
def test_malformed_scopes_are_refused(store: Store, settings: Settings, scopes: str) -> None:
    assert scopes in refused(store, settings, scopes=scopes)


def test_duplicate_client_id_is_refused(store: Store, settings: Settings) -> None:
    first = register(store, settings, name="One", scopes=SCOPES, jwks=good_jwks(), client_id="app")
    with pytest.raises(RegistrationError, match="'app' is already registered"):
        register(store, settings, name="Two", scopes=SCOPES, jwks=good_jwks(), client_id="app")
    assert store.clients() == [first]


@pytest.mark.parametrize("name", ["", "   "])
def test_client_without_a_name_is_refused(store: Store, settings: Settings, name: str) -> None:
    assert "needs a name" in refused(store, settings, name=name)


def test_negative_rate_limit_is_refused(store: Store, settings: Settings) -> None:
    assert "rate limit" in refused(store, settings, rate_limit=-1)


@pytest.mark.parametrize("text", ["not json", '{"keys": []}', '{"keys": [{"kty": "nope"}]}'])
def test_keys_that_are_not_a_usable_jwk_set_are_refused(store: Store, settings: Settings,
                                                        text: str) -> None:
    assert "not a usable JWK Set" in refused(store, settings, jwks=text)


def test_keys_that_are_json_but_not_an_object_are_refused(store: Store,
                                                          settings: Settings) -> None:
    assert "not a usable JWK Set" in refused(store, settings, jwks="[]")


def test_symmetric_key_is_refused(store: Store, settings: Settings) -> None:
    secret = {"kty": "oct", "k": "c2hhcmVkLXNlY3JldC1zaGFyZWQtc2VjcmV0", "kid": "hmac"}
    assert "key" in refused(store, settings, jwks=json.dumps({"keys": [secret]}))


# -- status -----------------------------------------------------------------------------------


def test_client_is_disabled_and_enabled_again(store: Store, settings: Settings) -> None:
    client = register(store, settings, name="App", scopes=SCOPES, jwks=good_jwks())
    disabled = set_status(store, settings, client.id, "disabled")
    assert disabled.status == "disabled"
    assert store.client(client.id) == disabled
    assert disabled.updated >= client.updated and disabled.created == client.created
    enabled = set_status(store, settings, client.id, "active")
    assert store.client(client.id) == enabled and enabled.status == "active"


def test_status_changes_are_audited(store: Store, settings: Settings) -> None:
    client = register(store, settings, name="App", scopes=SCOPES, jwks=good_jwks())
    set_status(store, settings, client.id, "disabled")
    set_status(store, settings, client.id, "active")
    rows = audit_rows(store, client.id)
    assert [r.interaction for r in rows] == ["create", "update", "update"]
    assert {r.user for r in rows} == {getpass.getuser()}
    assert b"disabled" in rows[1].record and b"active" in rows[2].record


def test_status_of_an_unknown_client_is_refused(store: Store, settings: Settings) -> None:
    with pytest.raises(RegistrationError, match="no client 'ghost' is registered"):
        set_status(store, settings, "ghost", "disabled")


def test_unknown_status_is_refused(store: Store, settings: Settings) -> None:
    client = register(store, settings, name="App", scopes=SCOPES, jwks=good_jwks())
    with pytest.raises(RegistrationError, match="active or disabled"):
        set_status(store, settings, client.id, "suspended")
    assert store.client(client.id) == client
