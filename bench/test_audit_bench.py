"""Tests of the audit benchmark's tools that need no server: the stub really removes the
audit (in this process, and in a worker started as ``fhirhub serve`` starts them), and
``audit_bench.sh`` handles its arguments. ``pytest bench/test_audit_bench.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fhirhub_noaudit as noaudit

BENCH = Path(__file__).resolve().parent
SCRIPT = BENCH / "audit_bench.sh"
PATIENT = b'{"resourceType": "Patient", "name": [{"family": "Smith", "given": ["Ann"]}]}'


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Any]:
    from fhirhub.config import Settings
    from fhirhub.engine.engine import Engine

    settings = Settings(database_url=f"sqlite:///{tmp_path}/db.sqlite3",
                        audit_signing_key=str(tmp_path / "key.pem"), auth="off")
    engine = Engine(settings)
    try:
        yield engine
    finally:
        noaudit.uninstall()
        engine.store.close()


def _create_and_read(engine: Any) -> None:
    from fhirhub.engine.request import FhirRequest

    created = engine.respond(FhirRequest(
        method="POST", path="Patient", body=PATIENT,
        headers={"content-type": "application/fhir+json"}))
    assert created.status == 201, created.body
    pid = json.loads(created.body)["id"]
    read = engine.respond(FhirRequest(method="GET", path=f"Patient/{pid}"))
    assert read.status == 200
    assert pid.encode() in read.body
    missing = engine.respond(FhirRequest(method="GET", path="Patient/nope"))
    assert missing.status == 404


def test_the_stub_writes_no_audit_rows_and_the_real_build_does(sqlite_engine: Any) -> None:
    url = sqlite_engine.settings.database_url
    _create_and_read(sqlite_engine)
    assert noaudit.audit_rows(url) == 3  # create, read, refused read: one record each
    noaudit.install()
    assert noaudit.installed()
    _create_and_read(sqlite_engine)
    _create_and_read(sqlite_engine)
    assert noaudit.audit_rows(url) == 3
    noaudit.uninstall()
    assert not noaudit.installed()
    _create_and_read(sqlite_engine)
    assert noaudit.audit_rows(url) == 6


@pytest.mark.parametrize(("env", "expected"), [("1", True), ("0", False)])
def test_the_stub_reaches_spawned_workers(env: str, expected: bool) -> None:
    done = subprocess.run([sys.executable, str(BENCH / "fhirhub_noaudit.py"), "--selfcheck"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NOAUDIT": env}, check=False)
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert state == {"stub_enabled": expected, "parent": expected, "spawned_child": expected}
    assert ("noaudit: audit stubbed in pid" in done.stderr) is expected


def test_db_url_from_the_command_line() -> None:
    assert noaudit.db_url(["serve", "--db", "sqlite:///x", "--port", "1"]) == "sqlite:///x"
    assert noaudit.db_url(["serve", "--db=postgresql://h/d"]) == "postgresql://h/d"


# --- audit_bench.sh -------------------------------------------------------------------------


def _script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("BACKENDS", "ORDER", "CLIENTS", "CLIENTS_FIRST", "SCENARIOS")}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=60, env={**clean, **env}, check=False)


def test_dry_run_alternates_the_builds_and_adds_one_client_to_each_first_run() -> None:
    done = _script("--dry-run")
    assert done.returncode == 0, done.stderr
    runs = [line.split()[:4] for line in done.stdout.splitlines()[1:]]
    assert runs == [
        ["sqlite", "audit", "rep=1", 'clients="16'], ["sqlite", "stub", "rep=1", 'clients="16'],
        ["sqlite", "stub", "rep=2", 'clients="16"'], ["sqlite", "audit", "rep=2", 'clients="16"'],
        ["postgresql", "audit", "rep=1", 'clients="16'],
        ["postgresql", "stub", "rep=1", 'clients="16'],
        ["postgresql", "stub", "rep=2", 'clients="16"'],
        ["postgresql", "audit", "rep=2", 'clients="16"'],
    ]
    assert 'clients="16 1"' in done.stdout.splitlines()[1]


def test_dry_run_takes_the_settings() -> None:
    done = _script("-n", BACKENDS="postgresql", ORDER="stub audit", CLIENTS_FIRST="4")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [
        'postgresql stub rep=1 clients="4" scenarios="create read" duration=15 warmup=3 workers=2',
        'postgresql audit rep=1 clients="4" scenarios="create read" duration=15 warmup=3 workers=2',
    ]


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--bogus"], {}, "unknown argument"),
    (["--report"], {}, "needs a results file"),
    (["-n"], {"ORDER": "audit none"}, "only 'audit' and 'stub'"),
    (["-n"], {"BACKENDS": "mysql"}, "unknown backend"),
    (["-n"], {"CLIENTS": "many"}, "not a whole number"),
])
def test_bad_command_lines_exit_2(args: list[str], env: dict[str, str], message: str) -> None:
    done = _script(*args, **env)
    assert done.returncode == 2
    assert message in done.stderr


def _record(build: str, rep: int, scenario: str, rps: float) -> dict[str, Any]:
    return {"kind": "http", "scenario": scenario, "clients": 16, "label": "sqlite",
            "requests": int(rps * 15), "warmup_requests": 10, "errors": 0, "warmup_errors": 0,
            "rps": rps, "p50_ms": 1.0, "p99_ms": 5.0, "pool_size": 1000,
            "date": f"2026-11-24T10:0{rep}:{0 if build == 'audit' else 30}Z",
            "meta": {"workers": 2}}


def test_merge_and_report(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for build, rep, rows, rps in (("audit", 1, 1234, 800.0), ("stub", 1, 0, 1000.0),
                                  ("stub", 2, 0, 1000.0), ("audit", 2, 1200, 900.0)):
        d = runs / f"sqlite-{build}-{rep}"
        d.mkdir(parents=True)
        (d / "x.jsonl").write_text(json.dumps(_record(build, rep, "read", rps)) + "\n")
        (d / "x-sqlite-server.log").write_text(f"INFO: ...\nnoaudit: audit_event rows: {rows}\n")
    out = tmp_path / "all.jsonl"
    assert noaudit.merge(out, sorted(runs.iterdir())) == 4
    records = [json.loads(line) for line in out.read_text().splitlines()]
    metas = {(r["meta"]["build"], r["meta"]["rep"]): r["meta"] for r in records}
    assert metas["audit", 1]["audit_rows"] == 1234
    assert metas["stub", 2]["audit_rows"] == 0
    assert metas["audit", 1]["run_requests"] == 800 * 15 + 10 + 1000
    assert all(m["suite"] == "audit" for m in metas.values())

    done = _script("--report", str(out))
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| sqlite | read"))
    # mean audit 850, stub 1000: 15 %; by pair 20 % and 10 %
    assert "| 850 | 1,000 | 15 % | 20 %, 10 % |" in row
    assert row.endswith("| yes |")

    later = _record("audit", 1, "read", 500.0)
    later["meta"].update(suite="audit", build="audit", rep=1, series="re-check")
    with out.open("a") as f:
        f.write(json.dumps(later) + "\n")
    lines, clean = noaudit.report([json.loads(line) for line in out.read_text().splitlines()])
    assert clean
    assert any(line.startswith("| sqlite (re-check) | read | 16 | 500 | - |") for line in lines)
    assert "| 850 | 1,000 | 15 % |" in next(line for line in lines
                                               if line.startswith("| sqlite | read"))


@pytest.mark.parametrize("args", [["--profile"], ["--profile", "mysql"], ["--merge", "x"]])
def test_wrapper_usage_errors_exit_2(args: list[str]) -> None:
    assert noaudit.main(args) == 2
