"""Outbound messages are audited through the same API as inbound requests, linked to
the request that caused them (ISNFR02: "ALL messages ... over ALL transports")."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from fhirhub.audit.outbound import (
    Cause,
    OutboundMessage,
    Reply,
    acknowledged,
    send,
)
from fhirhub.audit.record import AuditRecord
from fhirhub.cli import main
from fhirhub.config import Settings
from fhirhub.engine import Engine, FhirRequest, FhirResponse
from fhirhub.store.audit import AuditQuery


class RecordingChannel:
    """A test double for a webhook channel: keeps what it was given, answers as told."""

    name = "webhook"

    def __init__(self, reply: Reply | None = None, fail: Exception | None = None) -> None:
        self.sent: list[OutboundMessage] = []
        self.reply = reply or Reply(202, b'{"ok":true}')
        self.fail = fail

    def deliver(self, message: OutboundMessage) -> Reply:
        self.sent.append(message)
        if self.fail is not None:
            raise self.fail
        return self.reply


def _create(engine: Engine, request_id: str) -> None:
    body = orjson.dumps({"resourceType": "Patient", "gender": "female"})
    wire = engine.respond(FhirRequest("POST", "Patient", body=body, request_id=request_id,
                                      headers={"content-type": "application/fhir+json",
                                               "x-request-id": request_id}))
    assert wire.status == 201


def _records(engine: Engine, request_id: str) -> list[AuditRecord]:
    rows = engine.store.audit_search(AuditQuery(request_ids=(request_id,), oldest_first=True,
                                                count=50)).rows
    return [AuditRecord.from_json(r.record) for r in rows]


def test_a_message_caused_by_a_write_is_audited_and_linked_to_the_request(
        engine: Engine) -> None:
    channel = RecordingChannel()

    def notify(cause: Cause, req: FhirRequest, response: FhirResponse) -> None:
        send(engine.auditor, channel, OutboundMessage(
            "https://example.org/hook", b'{"event":"created"}', "rest-hook notification"), cause)

    engine.listeners.append(notify)
    rid = str(uuid.uuid4())
    _create(engine, rid)
    inbound, outbound = _records(engine, rid)
    assert (inbound.kind, inbound.interaction) == ("rest", "create")
    assert (outbound.kind, outbound.interaction, outbound.channel) == ("outbound", "send",
                                                                       "webhook")
    assert outbound.parent == inbound.id
    assert outbound.destination == "https://example.org/hook"
    assert outbound.status == 202 and outbound.outcome == "0"
    assert outbound.request_sha256 == hashlib.sha256(b'{"event":"created"}').hexdigest()
    assert outbound.response_sha256 == hashlib.sha256(b'{"ok":true}').hexdigest()
    assert len(channel.sent) == 1


def test_a_delivery_that_fails_is_audited_as_a_failure_and_raised(engine: Engine) -> None:
    channel = RecordingChannel(fail=ConnectionError("refused"))
    cause = Cause("parent-id", "req-x", "corr-x")
    with pytest.raises(ConnectionError):
        send(engine.auditor, channel, OutboundMessage("https://example.org/hook", b"{}"), cause)
    (record,) = _records(engine, "req-x")
    assert record.outcome == "12" and record.status is None
    assert record.detail is not None and "refused" in record.detail
    assert record.correlation_id == "corr-x"


def test_an_acknowledgement_that_comes_later_is_linked_to_its_message(engine: Engine) -> None:
    cause = Cause("parent-id", "req-ack")
    send(engine.auditor, RecordingChannel(Reply(200)), OutboundMessage("mailbox:X26", b"m"),
         cause)
    (message,) = _records(engine, "req-ack")
    acknowledged(engine.auditor, "mesh", message.id, cause, 200, b"ack", "delivered")
    _, ack = _records(engine, "req-ack")
    assert (ack.interaction, ack.parent) == ("ack", message.id)


def test_audit_show_tells_the_whole_story_of_a_request_in_order(settings: Settings) -> None:
    engine = Engine(settings)
    try:
        channel = RecordingChannel()
        engine.listeners.append(lambda cause, req, resp: send(
            engine.auditor, channel, OutboundMessage("https://example.org/hook", b"{}"), cause))
        rid = str(uuid.uuid4())
        _create(engine, rid)
    finally:
        engine.store.close()
    result = CliRunner().invoke(main, ["audit", "show", rid, "--db", settings.database_url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    first = next(i for i, line in enumerate(lines) if "POST /Patient" in line)
    second = next(i for i, line in enumerate(lines) if "send over webhook" in line)
    assert first < second
    json_lines = CliRunner().invoke(main, ["audit", "show", rid, "--json", "--db",
                                           settings.database_url]).output.splitlines()
    kinds: list[Any] = [orjson.loads(line)["kind"] for line in json_lines]
    assert kinds == ["rest", "outbound"]


def test_audit_show_of_an_unknown_request_id_says_so(settings: Settings) -> None:
    result = CliRunner().invoke(main, ["audit", "show", "nope", "--db", settings.database_url])
    assert result.exit_code != 0 and "no audit record" in result.output
