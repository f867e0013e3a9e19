"""The ``fhirhub`` command line: ``--version``, ``import``, ``reindex`` and ``serve``'s start-up checks
(README.md, "Running it"; the files imported are FHIR NDJSON, https://hl7.org/fhir/R4/nd-json.html,
and Bundles, https://hl7.org/fhir/R4/bundle.html; Bundles run as in
https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import dataclasses
import gc
import gzip
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fhirhub import __version__
from fhirhub.bulk.reindex import Reindexer
from fhirhub.cli import main
from fhirhub.config import Settings
from fhirhub.engine import Engine
from fhirhub.search.types import IndexRows
from fhirhub.store import Store, open_store
from tests.support import body_of, engine_request

# Every FHIRHUB_* variable unset while a command runs (and restored after: ``serve`` writes
# its options into os.environ for its workers); a wide console so messages are not wrapped.
ENV: dict[str, str | None] = {
    **{f"FHIRHUB_{f.name.upper()}": None for f in dataclasses.fields(Settings)},
    "COLUMNS": "250",
}
URN_PATIENT = "urn:uuid:7d3b1f0e-3b8a-4a36-9a0c-2f8b7f7e3c01"


@pytest.fixture(autouse=True)
def _undo_process_wide_side_effects() -> Iterator[None]:
    """``import`` freezes the GC and may configure root logging: undo both after each test."""
    handlers = list(logging.getLogger().handlers)
    yield
    gc.unfreeze()
    for handler in list(logging.getLogger().handlers):
        if handler not in handlers:
            logging.getLogger().removeHandler(handler)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/import.sqlite3"


@contextmanager
def opened(db: str) -> Iterator[Store]:
    """The imported database, opened after the command has run."""
    s = open_store(Settings(database_url=db))
    try:
        yield s
    finally:
        s.close()


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=ENV)


def fhirhub_import(db: str, *files: Path) -> Result:
    return run("import", *map(str, files), "--db", db)


def ndjson(path: Path, *lines: Any) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines))
    return path


def patient(rid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": rid, "name": [{"family": rid.upper()}], **extra}


def observation(rid: str, subject: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": rid, "status": "final",
            "code": {"text": "weight"}, "subject": {"reference": subject}}


def transaction_bundle() -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": URN_PATIENT, "resource": {"resourceType": "Patient", "gender": "male"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "bp"},
                      "subject": {"reference": URN_PATIENT}},
         "request": {"method": "POST", "url": "Observation"}},
    ]}


def stored(store: Store, rtype: str, rid: str) -> dict[str, Any]:
    version = store.read(rtype, rid)
    assert version is not None and version.body is not None, f"{rtype}/{rid} not stored"
    body: dict[str, Any] = json.loads(version.body)
    return body


# -- --version ------------------------------------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"fhirhub, version {__version__}"


# -- import ---------------------------------------------------------------------------------------


@pytest.fixture
def mixed_file(tmp_path: Path) -> Path:
    return ndjson(
        tmp_path / "mixed.ndjson",
        patient("p1"),
        patient("p2"),
        '{"resourceType": "Patient", "id": "broken"',  # line 3: not JSON
        patient("p3", bogus=True),  # line 4: not a valid Patient
        observation("o1", "Patient/p1"),
        patient("p4"),
    )


def test_import_keeps_good_lines_and_reports_bad_ones_by_line_number(
        db: str, mixed_file: Path) -> None:
    result = fhirhub_import(db, mixed_file)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a reported failure, not a crash
    assert "Traceback" not in result.output
    assert "2 error(s)" in result.output
    assert "mixed.ndjson line 3: The body is not valid JSON" in result.output
    assert "line 4: " in result.output and "'bogus'" in result.output
    assert "Imported 4 resources" in result.output
    with opened(db) as s:
        assert s.count("Patient") == 3 and s.count("Observation") == 1
        assert {"p1", "p2", "p4"} == {v.id for v in s.iter_current("Patient")}
        assert s.read("Patient", "p3") is None
        assert stored(s, "Observation", "o1")["subject"] == {"reference": "Patient/p1"}


def test_import_of_a_transaction_bundle_file_runs_it_as_a_transaction(
        db: str, tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(transaction_bundle(), indent=2))  # one pretty-printed document
    result = fhirhub_import(db, path)
    assert result.exit_code == 0, result.output
    assert "Imported 2 resources" in result.output
    with opened(db) as s:
        [pat] = list(s.iter_current("Patient"))
        [obs] = list(s.iter_current("Observation"))
        assert json.loads(obs.body or b"{}")["subject"] == {"reference": f"Patient/{pat.id}"}


def test_importing_the_same_ndjson_twice_changes_nothing(db: str, tmp_path: Path) -> None:
    path = ndjson(tmp_path / "same.ndjson", patient("s1"), patient("s2", gender="female"),
                  observation("s3", "Patient/s1"))
    for _ in range(2):
        result = fhirhub_import(db, path)
        assert result.exit_code == 0, result.output
    with opened(db) as s:
        versions = {(v.resource_type, v.id): v.version_id for v in s.iter_current()}
        assert versions == {("Patient", "s1"): 1, ("Patient", "s2"): 1, ("Observation", "s3"): 1}
        assert len(s.history(None, None, count=100).versions) == 3


def test_import_reads_gzipped_ndjson(db: str, tmp_path: Path) -> None:
    plain = ndjson(tmp_path / "plain.ndjson", *(patient(f"g{i}") for i in range(5)),
                   transaction_bundle())
    packed = tmp_path / "data.ndjson.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    result = fhirhub_import(db, packed)
    assert result.exit_code == 0, result.output
    assert "Imported 7 resources" in result.output
    with opened(db) as s:
        assert s.count("Patient") == 6 and s.count("Observation") == 1
        assert stored(s, "Patient", "g4")["name"] == [{"family": "G4"}]


def test_import_of_several_files_adds_them_up(db: str, tmp_path: Path) -> None:
    a = ndjson(tmp_path / "a.ndjson", patient("a1"), patient("a2"))
    b = ndjson(tmp_path / "b.ndjson", observation("b1", "Patient/a1"))
    result = fhirhub_import(db, a, b)
    assert result.exit_code == 0, result.output
    assert "Imported 3 resources" in result.output
    with opened(db) as s:
        assert s.count() == 3


def test_import_of_a_missing_file_is_a_usage_error(db: str, tmp_path: Path) -> None:
    result = fhirhub_import(db, tmp_path / "nope.ndjson")
    assert result.exit_code == 2
    assert "nope.ndjson" in result.output and "does not exist" in result.output


def test_import_errors_name_the_file_they_are_in(db: str, tmp_path: Path) -> None:
    a = ndjson(tmp_path / "first.ndjson", patient("f1"))
    b = ndjson(tmp_path / "second.ndjson", patient("f2", bogus=True))
    result = fhirhub_import(db, a, b)
    assert result.exit_code == 1
    assert "second.ndjson line 1" in result.output


def test_urn_references_resolve_across_files(db: str, tmp_path: Path) -> None:
    a = ndjson(tmp_path / "bundles.ndjson", transaction_bundle())
    b = ndjson(tmp_path / "more.ndjson", observation("later", URN_PATIENT))
    result = fhirhub_import(db, a, b)
    assert result.exit_code == 0, result.output
    with opened(db) as s:
        [pat] = list(s.iter_current("Patient"))
        assert stored(s, "Observation", "later")["subject"] == {"reference": f"Patient/{pat.id}"}


# -- serve: start-up checks -------------------------------------------------------------------


def test_serve_with_an_unknown_database_scheme_exits_with_a_clear_message() -> None:
    result = run("serve", "--db", "mysql://root@localhost/fhir")
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "'mysql://root@localhost/fhir' is neither a sqlite:/// path nor a postgresql:// URL" \
        in result.output
    assert "Traceback" not in result.output


def test_serve_with_a_database_it_cannot_open_exits_with_a_clear_message(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    url = f"sqlite:///{blocker}/db.sqlite3"
    result = run("serve", "--db", url)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert f"Error: cannot open the database {url}" in result.output
    assert "Traceback" not in result.output


# -- reindex --------------------------------------------------------------------------------------

MAIDEN_NAME = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName"
MAIDEN_NAME_PARAMETER = {
    "resourceType": "SearchParameter", "id": "mothers-maiden-name",
    "url": "https://fhir.example.org/SearchParameter/mothers-maiden-name",
    "name": "MothersMaidenName", "status": "active", "description": "The mother's maiden name",
    "code": "mothers-maiden-name", "base": ["Patient"], "type": "string",
    "expression": f"Patient.extension.where(url='{MAIDEN_NAME}').value"}


@pytest.fixture
def seeded(db: str) -> Iterator[Engine]:
    """An engine on ``db`` holding five Patients and an Observation stored before the
    custom SearchParameter (searches through it see what the command did: no caches)."""
    engine = Engine(Settings(database_url=db, auth="off"))
    try:
        for resource in [*(patient(f"p{n}", extension=[
                {"url": MAIDEN_NAME, "valueString": f"Robinson{n}"}]) for n in range(5)),
                observation("o1", "Patient/p1"), MAIDEN_NAME_PARAMETER]:
            path = f"{resource['resourceType']}/{resource['id']}"
            assert engine.handle(engine_request("PUT", path, resource)).status == 201
        yield engine
    finally:
        engine.store.close()


def by_maiden_name(engine: Engine) -> list[str]:
    bundle = body_of(engine.handle(engine_request(
        "GET", "Patient", query=[("mothers-maiden-name", "robinson")])))
    return sorted(e["resource"]["id"] for e in bundle.get("entry", [])
                  if e["search"]["mode"] == "match")


def test_reindex_makes_resources_stored_before_a_parameter_findable(
        db: str, seeded: Engine) -> None:
    assert by_maiden_name(seeded) == []
    result = run("reindex", "--db", db, "--type", "Observation", "--type", "SearchParameter")
    assert result.exit_code == 0, result.output
    assert "Reindexed 2 resources in" in result.output
    assert "Patient" not in result.output
    assert by_maiden_name(seeded) == []  # not a type it was asked for
    result = run("reindex", "--db", db)
    assert result.exit_code == 0, result.output
    assert "Reindexed 7 resources in" in result.output
    assert "Patient                      5" in result.output
    assert "Resuming" not in result.output
    assert by_maiden_name(seeded) == ["p0", "p1", "p2", "p3", "p4"]


def test_an_interrupted_reindex_says_where_it_stopped_and_resumes_from_there(
        db: str, seeded: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    index = Engine.index

    def interrupted(self: Engine, resource: dict[str, Any]) -> IndexRows:
        calls.append(resource["id"])
        if len(calls) == 6:  # the second batch of three, as Ctrl-C would
            raise KeyboardInterrupt
        return index(self, resource)

    monkeypatch.setattr(Engine, "index", interrupted)
    result = run("reindex", "--db", db, "--batch", "3")
    assert result.exit_code == 130, result.output
    assert ("Interrupted after Patient/p1 (3 resources done); run the same command again "
            "to continue from there") in result.output
    monkeypatch.undo()
    result = run("reindex", "--db", db, "--batch", "3")
    assert result.exit_code == 0, result.output
    assert ("Resuming the interrupted reindex of every resource type after Patient/p1 "
            "(3 resources done)") in result.output
    assert "Reindexed 4 resources in" in result.output
    assert "after 3 done by the interrupted run" in result.output
    assert by_maiden_name(seeded) == ["p0", "p1", "p2", "p3", "p4"]


def test_reindex_refuses_another_runs_checkpoint_until_restart(
        db: str, seeded: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def interrupted(resource: dict[str, Any]) -> IndexRows:
        calls.append(resource["id"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return Engine.index(seeded, resource)

    monkeypatch.setattr(seeded, "index", interrupted)
    reindexer = Reindexer(seeded, types=["Patient"], batch=2)
    with pytest.raises(KeyboardInterrupt):
        reindexer.run(reindexer.start())
    result = run("reindex", "--db", db)
    assert result.exit_code == 1
    assert "An interrupted reindex of Patient is not finished" in result.output
    assert "Traceback" not in result.output
    result = run("reindex", "--db", db, "--restart")
    assert result.exit_code == 0, result.output
    assert "Reindexed 7 resources" in result.output


def test_reindex_of_an_unknown_type_is_a_usage_error(db: str) -> None:
    result = run("reindex", "--db", db, "--type", "Patients")
    assert result.exit_code == 2
    assert "Error: Not a FHIR R4 resource type: Patients" in result.output
