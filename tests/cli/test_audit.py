"""``fhirhub audit …``: verify, export, patient, checkpoint, as an operator runs them."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from fhirhub.cli import main
from fhirhub.config import Settings
from fhirhub.engine import Engine, FhirRequest
from fhirhub.store.sqlite import path_from_url

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def _traffic(settings: Settings) -> list[str]:
    """A patient created and read, a search and a failure; their X-Request-IDs."""
    engine = Engine(settings)
    ids = [str(uuid.uuid4()) for _ in range(4)]
    try:
        body = orjson.dumps({"resourceType": "Patient", "identifier": [
            {"system": NHS, "value": "9434765919"}]})
        created = engine.respond(FhirRequest("POST", "Patient", body=body, request_id=ids[0],
                                             headers={"content-type": "application/fhir+json"}))
        pid = orjson.loads(created.body)["id"]
        engine.respond(FhirRequest("GET", f"Patient/{pid}", request_id=ids[1]))
        engine.respond(FhirRequest("GET", "Patient", query=[("_id", pid)], request_id=ids[2]))
        engine.respond(FhirRequest("GET", "Patient/missing", request_id=ids[3]))
    finally:
        engine.store.close()
    return ids


_KEY: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _signing_key(tmp_path: Path) -> None:
    """The commands' signing key in the test's own directory, never in ./data."""
    _KEY["FHIRHUB_AUDIT_SIGNING_KEY"] = str(tmp_path / "audit-key.pem")


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", *args], env=_KEY)
    return result.exit_code, result.output


def test_verify_says_an_untouched_log_is_intact(settings: Settings) -> None:
    _traffic(settings)
    assert _run("checkpoint", "--db", settings.database_url)[0] == 0
    code, out = _run("verify", "--db", settings.database_url)
    assert code == 0, out
    assert "4 records" in out and "intact" in out


def test_verify_exits_1_and_names_the_record_changed_out_of_band(tmp_path: object) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/a.sqlite3",
                        audit_signing_key=f"{tmp_path}/key.pem", auth="off")
    _traffic(settings)
    _run("checkpoint", "--db", settings.database_url)
    with sqlite3.connect(path_from_url(settings.database_url)) as conn:
        conn.execute("UPDATE audit_event SET outcome = '0' WHERE chain_seq = 4")
    code, out = _run("verify", "--db", settings.database_url)
    assert code == 1
    assert "changed" in out and "position 4" in out


def test_verify_without_a_key_says_how_to_give_one(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/b.sqlite3"
    code, out = _run("verify", "--db", url, "--public-key", "/nonexistent.pem")
    assert code != 0 and "nonexistent" in out


def test_export_writes_one_audit_event_a_line_since_a_date(settings: Settings,
                                                           tmp_path: object) -> None:
    _traffic(settings)
    out_file = f"{tmp_path}/audit.ndjson"
    code, out = _run("export", "--since", "2000-01-01", "-o", out_file, "--db",
                     settings.database_url)
    assert code == 0, out
    lines = Path(out_file).read_text(encoding="utf-8").splitlines()
    events = [orjson.loads(line) for line in lines]
    assert len(events) == 4 and {e["resourceType"] for e in events} == {"AuditEvent"}
    assert [e["recorded"] for e in events] == sorted(e["recorded"] for e in events)
    assert _run("export", "--since", "2999-01-01", "-o", out_file, "--db",
                settings.database_url)[0] == 0
    assert Path(out_file).read_text(encoding="utf-8") == ""


def test_export_of_raw_records_carries_their_chain_links(settings: Settings) -> None:
    _traffic(settings)
    code, out = _run("export", "--since", "2000-01-01", "--format", "record", "--db",
                     settings.database_url)
    assert code == 0
    first = orjson.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert {"record", "chain", "position", "prev_hash", "hash"} <= set(first)


def test_export_refuses_a_date_that_is_not_one(settings: Settings) -> None:
    code, out = _run("export", "--since", "yesterday", "--db", settings.database_url)
    assert code == 2 and "yesterday" in out


@pytest.mark.parametrize("who", ["9434765919", "by-reference"])
def test_patient_lists_who_touched_the_record(settings: Settings, who: str) -> None:
    ids = _traffic(settings)
    if who == "by-reference":
        engine = Engine(settings)
        pid = engine.store.iter_current("Patient").__next__().id
        engine.store.close()
        who = f"Patient/{pid}"
    code, out = _run("patient", who, "--json", "--db", settings.database_url)
    assert code == 0, out
    found = [orjson.loads(line)["request_id"] for line in out.splitlines()]
    assert found == ids[:3]  # create, read, search; not the failed read of another
