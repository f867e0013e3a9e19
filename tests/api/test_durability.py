"""The crash guarantee of README.md ("Durability and data currency"): a 2xx means the write is
committed and survives a crash of the server process. The real server runs as a child process
on loopback, takes 50 creates, is killed with SIGKILL (no shutdown of any kind), is started
again on the same database, and must return every resource it acknowledged
(https://hl7.org/fhir/R4/http.html#create, https://hl7.org/fhir/R4/http.html#read).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

CREATES = 50
START_TIMEOUT = 20.0
REQUEST_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as resp:
            status: int = resp.status
            raw = resp.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
        error.close()
    return status, (json.loads(raw) if raw else {})


@contextmanager
def server(db_url: str, workdir: Path, log_name: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The fhirhub server on a free loopback port, in its own process group; always killed."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIRHUB_")}
    env["FHIRHUB_PG_POOL_SIZE"] = "2"
    env["FHIRHUB_AUTH"] = "off"  # what is under test is durability, not who may write
    env["FHIRHUB_LOAD_DEFINITIONS"] = "false"  # not what is under test; keeps start-up short
    log_path = workdir / log_name
    command = [sys.executable, "-c", "from fhirhub.cli import main; main()", "serve",
               "--db", db_url, "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--log-level", "warning"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        _wait_until_ready(proc, base, log_path)
        yield base, proc
    finally:
        _kill(proc)


def _wait_until_ready(proc: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if call("GET", f"{base}/metadata")[0] == 200:
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.1)
    pytest.fail(f"the server did not answer /metadata within {START_TIMEOUT} s:\n"
                f"{log_path.read_text()}")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server's whole process group (its own session, so only it)."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):  # it may die between poll() and killpg()
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def patient(n: int) -> dict[str, Any]:
    return {"resourceType": "Patient",
            "identifier": [{"system": "https://example.org/fhirhub/crash-test", "value": f"{n:010d}"}],
            "name": [{"family": f"Crash{n}", "given": ["Test"]}]}


def acknowledged_writes_survive_sigkill(db_url: str, workdir: Path) -> None:
    acknowledged: dict[str, int] = {}
    with server(db_url, workdir, "first.log") as (base, proc):
        for n in range(CREATES):
            status, body = call("POST", f"{base}/Patient", patient(n))
            assert status == 201, body
            acknowledged[body["id"]] = n
        # The crash: right after the last 2xx, with no chance to flush or shut down.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
    assert len(acknowledged) == CREATES

    with server(db_url, workdir, "second.log") as (base, _):
        for rid, n in acknowledged.items():
            status, body = call("GET", f"{base}/Patient/{rid}")
            assert status == 200, (rid, body)
            assert body["name"][0]["family"] == f"Crash{n}"
            assert body["meta"]["versionId"] == "1"
            # ... and so did its audit record, committed with it.
            status, found = call("GET", f"{base}/AuditEvent?entity=Patient/{rid}&subtype=create")
            assert status == 200 and len(found.get("entry", [])) == 1, (rid, found)


def test_acknowledged_creates_survive_sigkill_on_sqlite(tmp_path: Path) -> None:
    acknowledged_writes_survive_sigkill(f"sqlite:///{tmp_path}/db.sqlite3", tmp_path)


@pytest.mark.postgres
def test_acknowledged_creates_survive_sigkill_on_postgresql(pg_database: str, tmp_path: Path) -> None:
    acknowledged_writes_survive_sigkill(pg_database, tmp_path)
