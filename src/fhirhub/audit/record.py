"""One audit record: what happened, to what, for whom, by whom, with what result.

A record is transport-neutral: an inbound FHIR request over HTTP, an entry of a batch
or transaction Bundle, an outbound message (a webhook delivery, an email, a MESH
transfer, a call to a national service) and its acknowledgement, a command-line import,
are all one :class:`AuditRecord`. Its canonical JSON (:meth:`AuditRecord.canonical`) is
what the store's hash chain covers; every searchable value the store keeps is derived
from it again by :func:`entry_of`, so that verifying the chain also verifies them.
FHIR ``AuditEvent`` resources are rendered from records (:mod:`fhirhub.audit.balp`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import orjson

from fhirhub.store.audit import AuditEntry

Json = dict[str, Any]

# AuditEvent.outcome (http://hl7.org/fhir/audit-event-outcome)
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = "0", "4", "8", "12"
# AuditEvent.action (http://hl7.org/fhir/audit-event-action)
ACTIONS = {"create": "C", "read": "R", "vread": "R", "search": "E", "history": "R",
           "update": "U", "patch": "U", "delete": "D", "operation": "E", "transaction": "E",
           "batch": "E", "capabilities": "R", "send": "E", "ack": "E", "import": "C",
           "token": "E", "jwks": "R", "smart-configuration": "R"}
KINDS = ("rest", "outbound", "system")


@dataclass(frozen=True, slots=True)
class Entity:
    """A resource a record concerns, at the version touched (when one was)."""

    reference: str  # Type/id
    version: int | None = None
    role: str = "domain"  # domain (the resource acted on), query, patient, ...


@dataclass(frozen=True, slots=True)
class PatientRef:
    reference: str | None  # Patient/id, when known
    nhs_number: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: str
    recorded: str  # FHIR instant, UTC, fixed width
    kind: str  # rest (inbound API), outbound (a message sent), system (CLI, housekeeping)
    interaction: str  # read, vread, search, history, create, update, patch, delete,
    #                   operation, transaction, batch, capabilities; outbound: send
    outcome: str  # SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE or MAJOR_FAILURE
    status: int | None = None  # HTTP status (or the outbound channel's answer)
    request_id: str | None = None  # X-Request-ID (the server's own when the client sent none)
    correlation_id: str | None = None  # X-Correlation-ID
    parent: str | None = None  # the record this one is part of or was caused by
    entry: int | None = None  # position in a batch/transaction Bundle
    method: str | None = None  # HTTP method
    path: str | None = None  # below the FHIR base: "Patient/123/_history/2"
    query: str | None = None  # the query string as sent (searches)
    resource_type: str | None = None  # the type the interaction addressed
    operation: str | None = None  # "$validate", ...
    client: str | None = None  # the client application's id
    user: str | None = None  # the person, when there is one (NHS login, CIS2)
    role: str | None = None  # their role (CIS2 role code)
    organization: str | None = None  # their organisation's ODS code
    purpose: str | None = None  # purpose of use, when the caller states one
    source_ip: str | None = None
    user_agent: str | None = None
    channel: str | None = None  # outbound: the transport (webhook, email, mesh, ...)
    destination: str | None = None  # outbound: where the message went
    patients: tuple[PatientRef, ...] = ()
    entities: tuple[Entity, ...] = ()
    request_sha256: str | None = None
    response_sha256: str | None = None
    outcome_resource: Json | None = field(default=None)  # the OperationOutcome on failure
    detail: str | None = None  # a short human description (outbound: what was sent)

    @property
    def action(self) -> str:
        return ACTIONS.get(self.interaction, "E")

    def canonical(self) -> bytes:
        """The record's canonical JSON: sorted keys, no whitespace, no empty values."""
        return orjson.dumps(self.to_json(), option=orjson.OPT_SORT_KEYS)

    def to_json(self) -> Json:
        out: Json = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if value is None or value == ():
                continue
            if name == "patients":
                value = [_compact({"reference": p.reference, "nhs_number": p.nhs_number})
                         for p in value]
            elif name == "entities":
                value = [_compact({"reference": e.reference, "version": e.version,
                                   "role": e.role}) for e in value]
            out[name] = value
        return out

    @classmethod
    def from_json(cls, data: bytes | Json) -> AuditRecord:
        raw: Json = orjson.loads(data) if isinstance(data, bytes) else data
        values = dict(raw)
        values["patients"] = tuple(PatientRef(**p) for p in raw.get("patients", ()))
        values["entities"] = tuple(Entity(**e) for e in raw.get("entities", ()))
        return cls(**values)


def _compact(value: Json) -> Json:
    return {k: v for k, v in value.items() if v is not None}


_FIELDS = tuple(f.name for f in fields(AuditRecord))


def instant(moment: datetime | None = None) -> str:
    """``moment`` (default now) as a FHIR instant, UTC, fixed width (text order is time
    order): 2026-11-24T05:40:00.123456Z."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def outcome_of(status: int) -> str:
    """AuditEvent.outcome for an HTTP status: a client error is a minor failure (the
    request was refused, nothing went wrong), a server error a serious one."""
    if status < 400:
        return SUCCESS
    return MINOR_FAILURE if status < 500 else SERIOUS_FAILURE


def ref_keys(record: AuditRecord) -> tuple[str, ...]:
    """The search keys of a record: its patients (reference and NHS number), the
    resources it concerns, and its parent."""
    keys: set[str] = set()
    for p in record.patients:
        if p.reference:
            keys.add(f"patient:{p.reference}")
        if p.nhs_number:
            keys.add(f"nhs:{p.nhs_number}")
    for e in record.entities:
        keys.add(f"entity:{e.reference}")
    if record.parent:
        keys.add(f"parent:{record.parent}")
    return tuple(sorted(keys))


def entry_of(record: AuditRecord, canonical: bytes | None = None, *,
             bodies: tuple[tuple[str, str, bytes], ...] = (),
             body_expires: str | None = None) -> AuditEntry:
    """What the store keeps of ``record``: its canonical bytes and the values searched."""
    return AuditEntry(
        id=record.id, recorded=record.recorded,
        record=canonical if canonical is not None else record.canonical(),
        interaction=record.interaction, outcome=record.outcome,
        request_id=record.request_id, correlation_id=record.correlation_id,
        client=record.client, user=record.user, refs=ref_keys(record),
        bodies=bodies, body_expires=body_expires,
    )


__all__ = ["ACTIONS", "KINDS", "MAJOR_FAILURE", "MINOR_FAILURE", "SERIOUS_FAILURE", "SUCCESS",
           "AuditRecord", "Entity", "PatientRef", "entry_of", "instant", "outcome_of",
           "ref_keys"]
