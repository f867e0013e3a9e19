"""Answering with the audit record: no change without its record, no answer without it
(docs/adr/0012-audit.md)."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from fhirhub.config import Settings
from fhirhub.engine import Engine, FhirRequest
from fhirhub.store.audit import AuditQuery


def _create(engine: Engine) -> Any:
    body = orjson.dumps({"resourceType": "Patient", "gender": "male"})
    return engine.respond(FhirRequest("POST", "Patient", body=body, request_id="r",
                                      headers={"content-type": "application/fhir+json"}))


def test_a_write_whose_record_cannot_be_appended_is_not_committed(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(tx: Any, exchanges: Any) -> None:
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(engine.auditor, "append", broken)
    wire = _create(engine)
    assert wire.status >= 500
    assert engine.store.count("Patient") == 0


def test_a_read_whose_record_cannot_be_committed_gets_503_not_the_data(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    pid = orjson.loads(_create(engine).body)["id"]

    def failing(exchanges: Any) -> Future[None]:
        future: Future[None] = Future()
        future.set_exception(RuntimeError("disk full"))
        return future

    monkeypatch.setattr(engine.auditor, "submit", failing)
    wire = engine.respond(FhirRequest("GET", f"Patient/{pid}", request_id="r2"))
    assert wire.status == 503
    assert pid.encode() not in wire.body
    assert b"audit log could not be written" in wire.body


def test_a_write_and_its_record_are_in_one_commit(engine: Engine) -> None:
    _create(engine)
    (row,) = engine.store.audit_search(AuditQuery(request_ids=("r",))).rows
    assert row.interaction == "create" and row.outcome == "0"


def test_the_server_signs_checkpoints_of_the_chain_heads_as_it_runs(settings: Settings) -> None:
    from fhirhub.api import create_app

    app = create_app(settings.with_(audit_checkpoint_seconds=1))
    with TestClient(app, base_url="http://testserver") as client:
        client.get("/fhir/metadata")
        store = app.engine.store
        deadline = time.monotonic() + 10
        heads = {(h.chain, h.chain_seq) for h in store.audit_heads() if h.chain_seq}
        while time.monotonic() < deadline:
            last = store.audit_last_checkpoint()
            signed = {tuple(h[:2]) for h in orjson.loads(last.payload)["heads"]} if last else set()
            if heads <= signed:
                break
            time.sleep(0.2)
        assert heads <= signed
    assert settings.audit_key_path.exists()
