"""The one way anything is audited: :class:`Auditor`.

Every channel, inbound or outbound, builds an :class:`AuditRecord` and hands it here,
with the bytes it received and sent. The auditor keeps their SHA-256 digests in the
record, keeps the bodies themselves as the deployment says (off, redacted or full, for a
retention period), and either appends the record to a transaction that is about to
commit (a change and its record commit together or not at all) or commits it on its own
through the store's group commit (reads, refusals, outbound messages), returning a
future that completes once the record is durable. Auditing has no off switch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from fhirhub.audit.record import AuditRecord, entry_of, instant
from fhirhub.audit.redact import redact
from fhirhub.config import Settings
from fhirhub.store.audit import AuditAppend, AuditEntry
from fhirhub.store.base import Store, Transaction


def sha256(body: bytes | None) -> str | None:
    return None if body is None else hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, slots=True)
class Exchange:
    """A record and the bodies that went each way."""

    record: AuditRecord
    request_body: bytes | None = None
    response_body: bytes | None = None


class Auditor:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.bodies = settings.audit_bodies
        self.retention = timedelta(days=settings.audit_body_retention_days)

    def entry(self, exchange: Exchange) -> AuditEntry:
        """The store's form of ``exchange``: the record with the bodies' digests filled
        in, and the bodies kept as configured."""
        record = exchange.record
        req, resp = exchange.request_body, exchange.response_body
        if (req and not record.request_sha256) or (resp and not record.response_sha256):
            record = replace(record, request_sha256=record.request_sha256 or sha256(req or None),
                             response_sha256=record.response_sha256 or sha256(resp or None))
        if self.bodies == "off" or not (req or resp):
            return entry_of(record)
        keep = (lambda b: b) if self.bodies == "full" else redact
        kept = tuple((part, self.bodies, keep(body)) for part, body in
                     (("request", req), ("response", resp)) if body)
        expires = instant(datetime.now(UTC) + self.retention)
        return entry_of(record, bodies=kept, body_expires=expires)

    def append(self, tx: Transaction, exchanges: Sequence[Exchange]) -> None:
        """Add records to ``tx``, which is about to commit: they stand or fall with it."""
        tx.append_audit([self.entry(e) for e in exchanges])

    def submit(self, exchanges: Sequence[Exchange]) -> Future[None]:
        """Commit records on their own (group commit); the future completes once they
        are durable, or fails if they could not be written."""
        return self.store.submit(AuditAppend([self.entry(e) for e in exchanges]))

    def log(self, exchanges: Sequence[Exchange]) -> None:
        """Commit records on their own and wait until they are durable."""
        self.submit(exchanges).result()

    def purge_bodies(self) -> int:
        """Drop kept bodies whose retention has ended."""
        return self.store.purge_audit_bodies(instant())


__all__ = ["Auditor", "Exchange", "sha256"]
