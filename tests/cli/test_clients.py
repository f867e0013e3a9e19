"""``fhirhub clients add|list|disable|enable``: registering the backend client applications
that may ask for access tokens (SMART Backend Services,
https://hl7.org/fhir/smart-app-launch/backend-services.html#registering-a-smart-backend-service-communicating-public-keys),
as an operator runs the commands. Keys are generated in the tests; the database and
every key file live in the test's own directory.
"""

from __future__ import annotations

import dataclasses
import json
import stat
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import jwt
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from fhirhub.auth.assertion import AssertionRules, verify_assertion
from fhirhub.auth.jwks import RemoteKeys
from fhirhub.auth.keys import thumbprint
from fhirhub.cli import main
from fhirhub.config import Settings
from fhirhub.store import Store, open_store
from fhirhub.store.clients import ClientRecord
from tests.auth_support import TOKEN_URL, ec_key, public_jwks, rsa_key

SCOPES = "system/Patient.rs system/Observation.cruds"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str | None]:
    """Every FHIRHUB_* variable unset but the signing keys, which are in tmp_path; a wide
    console so that tables are not wrapped."""
    return {**{f"FHIRHUB_{f.name.upper()}": None for f in dataclasses.fields(Settings)},
            "FHIRHUB_AUDIT_SIGNING_KEY": str(tmp_path / "audit-key.pem"),
            "FHIRHUB_AUTH_SIGNING_KEY": str(tmp_path / "auth-key.pem"),
            "COLUMNS": "250"}


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/fhirhub.sqlite3"


class Run(Protocol):
    def __call__(self, *args: str, extra_env: dict[str, str] | None = None) -> Result: ...


@pytest.fixture
def cli(env: dict[str, str | None], db: str) -> Run:
    """``fhirhub clients ARGS --db DB``."""

    def run(*args: str, extra_env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, ["clients", *args, "--db", db],
                                  env={**env, **(extra_env or {})})
    return run


@pytest.fixture
def jwks_file(tmp_path: Path) -> Path:
    path = tmp_path / "app-jwks.json"
    keys = [*public_jwks(ec_key(), "es")["keys"], *public_jwks(rsa_key(), "rsa")["keys"]]
    path.write_text(json.dumps({"keys": keys}))
    return path


@contextmanager
def opened(db: str) -> Iterator[Store]:
    store = open_store(Settings(database_url=db))
    try:
        yield store
    finally:
        store.close()


def registered(db: str) -> list[ClientRecord]:
    with opened(db) as store:
        return store.clients()


def client_id_of(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output.split("client_id ", 1)[1].split()[0]


# -- add --------------------------------------------------------------------------------------


def test_add_with_a_jwks_file_registers_the_client(cli: Run, db: str, jwks_file: Path) -> None:
    result = cli("add", "Lab system", "--scopes", SCOPES, "--jwks", str(jwks_file),
                 "--rate-limit", "120")
    cid = client_id_of(result)
    assert "Registered Lab system" in result.output
    assert f"scopes {SCOPES}" in result.output
    [client] = registered(db)
    assert client.id == cid and client.name == "Lab system"
    assert client.scopes == tuple(SCOPES.split())
    assert client.rate_limit == 120 and client.status == "active"
    assert client.jwks is not None
    assert json.loads(client.jwks) == json.loads(jwks_file.read_text())


def test_add_with_a_chosen_id(cli: Run, db: str, jwks_file: Path) -> None:
    assert client_id_of(cli("add", "App", "--scopes", SCOPES, "--jwks", str(jwks_file),
                            "--id", "lab-1")) == "lab-1"
    assert [c.id for c in registered(db)] == ["lab-1"]


def test_add_with_generate_key_writes_an_owner_only_private_key(cli: Run, db: str,
                                                                tmp_path: Path) -> None:
    key_file = tmp_path / "client-key.pem"
    result = cli("add", "Generated", "--scopes", SCOPES, "--generate-key", str(key_file))
    cid = client_id_of(result)
    assert f"private key {key_file}" in result.output
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.curve.name == "secp384r1"

    [client] = registered(db)
    assert client.id == cid and client.jwks is not None
    [jwk] = json.loads(client.jwks)["keys"]
    assert "d" not in jwk
    assert jwk["alg"] == "ES384" and jwk["use"] == "sig"
    assert jwk["kid"] == thumbprint(jwk)
    public = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    assert (jwk["x"], jwk["y"], jwk["crv"]) == (public["x"], public["y"], public["crv"])


def test_generated_key_signs_assertions_the_server_accepts(cli: Run, db: str,
                                                           tmp_path: Path) -> None:
    key_file = tmp_path / "client-key.pem"
    cid = client_id_of(cli("add", "Generated", "--scopes", SCOPES, "--generate-key",
                           str(key_file)))
    [client] = registered(db)
    assert client.jwks is not None
    kid = json.loads(client.jwks)["keys"][0]["kid"]
    private = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    now = int(time.time())
    assertion = jwt.encode({"iss": cid, "sub": cid, "aud": TOKEN_URL, "exp": now + 200,
                            "jti": str(uuid.uuid4())}, private, algorithm="ES384",
                           headers={"kid": kid})
    verified = verify_assertion(assertion, AssertionRules(TOKEN_URL, now, 300, 30),
                                {cid: client}.get, RemoteKeys(()))
    assert verified.client.id == cid


def test_generate_key_refuses_to_overwrite_a_file(cli: Run, db: str, tmp_path: Path) -> None:
    key_file = tmp_path / "existing.pem"
    key_file.write_text("keep me")
    result = cli("add", "App", "--scopes", SCOPES, "--generate-key", str(key_file))
    assert result.exit_code == 1
    assert "exists already" in result.output
    assert key_file.read_text() == "keep me"
    assert registered(db) == []


def test_generated_key_is_removed_when_the_registration_is_refused(cli: Run, db: str,
                                                                   tmp_path: Path) -> None:
    key_file = tmp_path / "client-key.pem"
    result = cli("add", "App", "--scopes", "user/Patient.rs", "--generate-key", str(key_file))
    assert result.exit_code == 1
    assert "system/ scopes" in result.output
    assert not key_file.exists()
    assert registered(db) == []


def test_add_with_a_jwks_url_on_the_allow_list(cli: Run, db: str) -> None:
    url = "https://keys.example/apps/lab.json"
    result = cli("add", "App", "--scopes", SCOPES, "--jwks-url", url,
                 extra_env={"FHIRHUB_AUTH_JWKS_URLS": "https://keys.example/apps/"})
    client_id_of(result)
    [client] = registered(db)
    assert client.jwks_url == url and client.jwks is None


def test_add_with_a_jwks_url_off_the_allow_list_fails_clearly(cli: Run, db: str) -> None:
    result = cli("add", "App", "--scopes", SCOPES, "--jwks-url", "https://evil.example/k.json")
    assert result.exit_code == 1
    assert "https://evil.example/k.json is not on the JWKS URL allow-list" in result.output
    assert registered(db) == []


def test_add_needs_one_source_of_keys(cli: Run, db: str) -> None:
    result = cli("add", "App", "--scopes", SCOPES)
    assert result.exit_code == 2
    assert "give exactly one of --jwks, --jwks-url, --generate-key" in result.output


def test_add_refuses_two_sources_of_keys(cli: Run, db: str, jwks_file: Path,
                                         tmp_path: Path) -> None:
    key_file = tmp_path / "k.pem"
    for extra in (["--jwks-url", "https://keys.example/k.json"],
                  ["--generate-key", str(key_file)]):
        result = cli("add", "App", "--scopes", SCOPES, "--jwks", str(jwks_file), *extra)
        assert result.exit_code == 2
        assert "exactly one of" in result.output
    assert not key_file.exists()
    assert registered(db) == []


def test_add_without_scopes_is_a_usage_error(cli: Run, jwks_file: Path) -> None:
    result = cli("add", "App", "--jwks", str(jwks_file))
    assert result.exit_code == 2 and "--scopes" in result.output


def test_add_with_a_private_key_fails_clearly(cli: Run, db: str, tmp_path: Path) -> None:
    private = json.loads(ECAlgorithm.to_jwk(ec_key()))
    path = tmp_path / "private.json"
    path.write_text(json.dumps({"keys": [{**private, "kid": "k"}]}))
    result = cli("add", "App", "--scopes", SCOPES, "--jwks", str(path))
    assert result.exit_code == 1
    assert "private key" in result.output and "public half" in result.output
    assert registered(db) == []


def test_add_with_a_missing_jwks_file_is_a_usage_error(cli: Run, tmp_path: Path) -> None:
    result = cli("add", "App", "--scopes", SCOPES, "--jwks", str(tmp_path / "none.json"))
    assert result.exit_code == 2 and "none.json" in result.output


def test_add_with_a_negative_rate_limit_is_a_usage_error(cli: Run, jwks_file: Path) -> None:
    result = cli("add", "App", "--scopes", SCOPES, "--jwks", str(jwks_file), "--rate-limit", "-1")
    assert result.exit_code == 2 and "--rate-limit" in result.output


def test_add_of_a_duplicate_id_fails_clearly(cli: Run, db: str, jwks_file: Path) -> None:
    client_id_of(cli("add", "One", "--scopes", SCOPES, "--jwks", str(jwks_file), "--id", "app"))
    result = cli("add", "Two", "--scopes", SCOPES, "--jwks", str(jwks_file), "--id", "app")
    assert result.exit_code == 1
    assert "'app' is already registered" in result.output
    assert [c.name for c in registered(db)] == ["One"]


def test_bad_setting_is_a_usage_error(cli: Run, jwks_file: Path) -> None:
    result = cli("add", "App", "--scopes", SCOPES, "--jwks", str(jwks_file),
                 extra_env={"FHIRHUB_AUTH_JWKS_URLS": "ftp://keys.example/"})
    assert result.exit_code == 2 and "FHIRHUB_AUTH_JWKS_URLS" in result.output


# -- list -------------------------------------------------------------------------------------


def test_list_shows_a_table_of_clients(cli: Run, jwks_file: Path) -> None:
    client_id_of(cli("add", "Lab system", "--scopes", SCOPES, "--jwks", str(jwks_file),
                     "--id", "lab-1", "--rate-limit", "60"))
    client_id_of(cli("add", "Pharmacy", "--scopes", "system/MedicationRequest.rs", "--jwks-url",
                     "https://keys.example/pharmacy.json", "--id", "pharm-1",
                     extra_env={"FHIRHUB_AUTH_JWKS_URLS": "https://keys.example/"}))
    result = cli("list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("client_id" in line and "status" in line and "scopes" in line for line in lines)
    lab = next(line for line in lines if "lab-1" in line)
    assert "Lab system" in lab and "active" in lab and SCOPES in lab and "60" in lab
    assert "inline" in lab
    pharmacy = next(line for line in lines if "pharm-1" in line)
    assert "https://keys.example/pharmacy.json" in pharmacy and " - " in pharmacy


def test_list_of_no_clients_is_an_empty_table(cli: Run) -> None:
    result = cli("list")
    assert result.exit_code == 0 and "client_id" in result.output


def test_list_json_is_one_object_a_line(cli: Run, jwks_file: Path) -> None:
    client_id_of(cli("add", "One", "--scopes", SCOPES, "--jwks", str(jwks_file), "--id", "a-1"))
    client_id_of(cli("add", "Two", "--scopes", "system/*.rs", "--jwks", str(jwks_file),
                     "--id", "a-2", "--rate-limit", "10"))
    result = cli("list", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["client_id"] for r in rows] == ["a-1", "a-2"]
    one, two = rows
    assert set(one) == {"client_id", "name", "status", "scopes", "rate_limit", "jwks_url",
                        "jwks", "created", "updated"}
    assert one["name"] == "One" and one["scopes"] == SCOPES.split()
    assert one["status"] == "active" and one["rate_limit"] == 0 and one["jwks_url"] is None
    assert one["jwks"] == json.loads(jwks_file.read_text())
    assert two["scopes"] == ["system/*.rs"] and two["rate_limit"] == 10


# -- disable / enable -------------------------------------------------------------------------


def test_disable_and_enable_a_client(cli: Run, db: str, jwks_file: Path) -> None:
    client_id_of(cli("add", "App", "--scopes", SCOPES, "--jwks", str(jwks_file), "--id", "app"))
    result = cli("disable", "app")
    assert result.exit_code == 0, result.output
    assert "App (app) is disabled" in result.output
    assert [c.status for c in registered(db)] == ["disabled"]
    assert json.loads(cli("list", "--json").output)["status"] == "disabled"
    result = cli("enable", "app")
    assert result.exit_code == 0 and "App (app) is active" in result.output
    assert [c.status for c in registered(db)] == ["active"]


@pytest.mark.parametrize("command", ["disable", "enable"])
def test_status_of_an_unknown_client_fails_clearly(cli: Run, command: str) -> None:
    result = cli(command, "ghost")
    assert result.exit_code == 1
    assert "no client 'ghost' is registered" in result.output


def test_nothing_is_written_outside_the_test_directory(cli: Run, jwks_file: Path,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    client_id_of(cli("add", "App", "--scopes", SCOPES, "--jwks", str(jwks_file)))
    assert cli("disable", registered_id(cli)).exit_code == 0
    assert list(workdir.iterdir()) == []


def registered_id(cli: Run) -> str:
    row: dict[str, str] = json.loads(cli("list", "--json").output.splitlines()[0])
    return row["client_id"]
