"""What the engine tells the audit log about each request (:mod:`fhirhub.audit`).

Every request gets an :class:`AuditTrail` when it arrives. Interactions note on it the
versions they read or wrote; the engine turns it into an :class:`AuditRecord` when the
answer is known. A write's record is appended inside the write's own transaction, after
the response has been rendered there, so the change and its record commit together; any
other request's record (reads, searches, refusals, failures) is committed through the
store's group commit before its response is sent. Entries of a batch or transaction get
trails of their own (children), linked to the Bundle's record.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any, cast

from fhirhub.audit import patients as patients_of
from fhirhub.audit.auditor import Exchange, sha256
from fhirhub.audit.record import AuditRecord, Entity, PatientRef, outcome_of
from fhirhub.engine.clock import now_instant
from fhirhub.engine.request import FhirRequest, FhirResponse
from fhirhub.engine.router import Route
from fhirhub.search.types import IndexRows
from fhirhub.store.base import StoredVersion, Transaction

Json = dict[str, Any]

_INTERACTIONS = {
    "conditional-update": "update", "conditional-delete": "delete",
    "conditional-patch": "patch", "search-type": "search", "search-system": "search",
    "compartment": "search", "history-instance": "history", "history-type": "history",
    "history-system": "history",
}


class AuditTrail:
    """What one request (or one Bundle entry) did, noted as it happens."""

    def __init__(self, parent: AuditTrail | None = None, entry: int | None = None) -> None:
        self.id = str(uuid.uuid4())
        self.parent = parent
        self.entry = entry
        self.route: Route | None = None
        self.bundle_type: str | None = None
        self.entities: dict[str, Entity] = {}
        self.patients: list[PatientRef] = []
        self.children: list[Exchange] = []  # entries' records, committed with this one
        # A top-level write renders its response inside its transaction (so the record
        # there can digest it): the renderer, and what it produced.
        self.render: Callable[[FhirResponse], Any] | None = None
        self.rendered: tuple[FhirResponse, Any] | None = None
        self.committed = False
        # Who made the request (an auth Principal, once the token is accepted; a Bundle
        # entry's is its Bundle's), or the client a refused token request claimed.
        self.principal: Any = parent.principal if parent is not None else None
        self.client: str | None = None
        self.sensitive = False  # its bodies are secrets (OAuth tokens): digests only

    def read(self, versions: Iterable[StoredVersion], *, role: str = "domain") -> None:
        for v in versions:
            self.entities.setdefault(f"{v.resource_type}/{v.id}",
                                     Entity(f"{v.resource_type}/{v.id}", v.version_id, role))
            self.patients += patients_of.of_body(v.resource_type, v.id, v.body)

    def wrote(self, version: StoredVersion, index: IndexRows | None,
              before: StoredVersion | None) -> None:
        key = f"{version.resource_type}/{version.id}"
        self.entities[key] = Entity(key, version.version_id)
        if version.deleted and before is not None:
            self.patients += patients_of.of_body(before.resource_type, before.id, before.body)
        else:
            self.patients += patients_of.of_index(version.resource_type, version.id, index)

    def child(self, entry: int) -> AuditTrail:
        return AuditTrail(self, entry)


class Recording:
    """A transaction that notes on a trail every version written through it (and the
    version each replaced). Anything else goes straight to the transaction."""

    def __init__(self, tx: Transaction, trail: AuditTrail) -> None:
        self._tx = tx
        self._trail = trail
        self._seen: dict[tuple[str, str], StoredVersion | None] = {}

    def read(self, resource_type: str, resource_id: str) -> StoredVersion | None:
        found = self._tx.read(resource_type, resource_id)
        self._seen[(resource_type, resource_id)] = found
        return found

    def write(self, version: StoredVersion, index: IndexRows | None) -> None:
        self._tx.write(version, index)
        self._trail.wrote(version, index, self._seen.get((version.resource_type, version.id)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


def recording(tx: Transaction, trail: AuditTrail | None) -> Transaction:
    return tx if trail is None else cast(Transaction, Recording(tx, trail))


def record(req: FhirRequest, trail: AuditTrail, status: int, *,
           outcome: Json | None = None, kind: str = "rest", request_sha256: str | None = None,
           response_sha256: str | None = None) -> AuditRecord:
    """The audit record of a request (or a Bundle entry) that was answered ``status``."""
    r = trail.route
    interaction = "unknown"
    if r is not None:
        interaction = _INTERACTIONS.get(r.interaction, r.interaction)
        if interaction == "transaction" and trail.bundle_type == "batch":
            interaction = "batch"
    parent = trail.parent
    who = trail.principal
    return AuditRecord(
        id=trail.id, recorded=now_instant(), kind=kind, interaction=interaction,
        outcome=outcome_of(status), status=status, request_id=req.request_id or None,
        correlation_id=req.correlation_id, parent=parent.id if parent else None,
        entry=trail.entry, method=req.method, path=req.path or None,
        query=_query(req) if interaction in ("search", "history", "operation") else None,
        resource_type=(r.resource_type if r else None), operation=(r.operation if r else None),
        source_ip=req.client_ip, user_agent=req.header("user-agent"),
        client=trail.client or (who.client if who is not None else None),
        user=who.user if who is not None else None,
        role=who.role if who is not None else None,
        organization=who.organization if who is not None else None,
        patients=tuple(patients_of.unique(trail.patients)),
        entities=tuple(trail.entities.values()),
        outcome_resource=outcome if status >= 400 else None,
        request_sha256=request_sha256, response_sha256=response_sha256,
    )


def exchange(req: FhirRequest, trail: AuditTrail, status: int, body: bytes,
             outcome: Json | None = None) -> Exchange:
    rec = record(req, trail, status, outcome=outcome, request_sha256=sha256(req.body or None),
                 response_sha256=sha256(body or None))
    if trail.sensitive:
        return Exchange(rec)
    return Exchange(rec, req.body or None, body or None)


def entry_exchange(req: FhirRequest, trail: AuditTrail, response: FhirResponse) -> Exchange:
    """A Bundle entry's record. Its bodies are parts of the Bundle's own (kept with the
    Bundle's record), so only their digests are kept here: the entry's resource and its
    response as JSON."""
    from fhirhub.fhir import json as fjson

    body = response.json_body
    if body is None and response.resource is not None:
        body = fjson.dumps(response.resource)
    sent = fjson.dumps(req.parsed) if isinstance(req.parsed, dict) else None
    outcome = response.resource if response.status >= 400 else None
    rec = record(req, trail, response.status, outcome=outcome, request_sha256=sha256(sent),
                 response_sha256=sha256(body))
    return Exchange(rec)


def _query(req: FhirRequest) -> str | None:
    from urllib.parse import urlencode

    params = list(req.query)
    if req.method == "POST" and req.content_type == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qsl

        params += parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True)
    return urlencode(params) if params else None


__all__ = ["AuditTrail", "Recording", "entry_exchange", "exchange", "record", "recording"]
