"""Outbound messages, audited the way inbound requests are.

Every channel that sends something out of the server (webhook deliveries, emails, FHIR
messages, MESH transfers, calls to national services) sends through :func:`send`: it
delivers the message over the channel, then commits one audit record holding the
message's digest, the answer's digest and status, where it went, and the record of the
request that caused it (:class:`Cause`: its AuditEvent id, X-Request-ID and
X-Correlation-ID), so that ``fhirhub audit show REQUEST_ID`` tells the whole story.
An acknowledgement that arrives later (a MESH or FHIR messaging ack) is recorded with
:func:`acknowledged`, linked to the message's record.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Protocol

from fhirhub.audit.auditor import Auditor, Exchange
from fhirhub.audit.record import (
    MAJOR_FAILURE,
    SERIOUS_FAILURE,
    AuditRecord,
    instant,
    outcome_of,
)

log = logging.getLogger("fhirhub.audit.outbound")


@dataclass(frozen=True, slots=True)
class Cause:
    """The request (or other record) that made the server send something."""

    record_id: str | None
    request_id: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    destination: str  # a URL, an email address, a MESH mailbox, ...
    body: bytes
    detail: str | None = None  # what it is, in a few words ("rest-hook notification")


@dataclass(frozen=True, slots=True)
class Reply:
    """What the other end answered: a status (HTTP, or the channel's own mapped to one),
    its body, or the error that meant no answer came."""

    status: int | None
    body: bytes = b""
    error: str | None = None


class Channel(Protocol):
    name: str  # webhook, email, mesh, fhir-message, pds, ...

    def deliver(self, message: OutboundMessage) -> Reply: ...


def send(auditor: Auditor, channel: Channel, message: OutboundMessage, cause: Cause) -> Reply:
    """Deliver ``message`` over ``channel`` and audit it (durably) before returning the
    reply. A channel that raises is a delivery that failed: recorded, then re-raised."""
    record_id = str(uuid.uuid4())
    try:
        reply = channel.deliver(message)
    except Exception as exc:
        auditor.log([Exchange(_record(record_id, channel.name, message, cause,
                                      Reply(None, error=f"{type(exc).__name__}: {exc}")),
                              message.body)])
        raise
    auditor.log([Exchange(_record(record_id, channel.name, message, cause, reply),
                          message.body, reply.body or None)])
    return reply


def acknowledged(auditor: Auditor, channel: str, message_record_id: str, cause: Cause,
                 status: int, body: bytes = b"", detail: str | None = None) -> str:
    """Record an acknowledgement that came back later for a message sent earlier."""
    record = AuditRecord(
        id=str(uuid.uuid4()), recorded=instant(), kind="outbound", interaction="ack",
        outcome=outcome_of(status), status=status, request_id=cause.request_id,
        correlation_id=cause.correlation_id, parent=message_record_id, channel=channel,
        detail=detail)
    auditor.log([Exchange(record, None, body or None)])
    return record.id


def _record(record_id: str, channel: str, message: OutboundMessage, cause: Cause,
            reply: Reply) -> AuditRecord:
    if reply.status is None:
        outcome = MAJOR_FAILURE if reply.error else SERIOUS_FAILURE
    else:
        outcome = outcome_of(reply.status)
    detail = message.detail
    if reply.error:
        detail = f"{detail}: {reply.error}" if detail else reply.error
    return AuditRecord(
        id=record_id, recorded=instant(), kind="outbound", interaction="send",
        outcome=outcome, status=reply.status, request_id=cause.request_id,
        correlation_id=cause.correlation_id, parent=cause.record_id, channel=channel,
        destination=message.destination, detail=detail)


__all__ = ["Cause", "Channel", "OutboundMessage", "Reply", "acknowledged", "send"]
