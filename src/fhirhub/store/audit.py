"""What the store keeps of the audit log, and the hash chain that makes it tamper-evident.

An audit record reaches the store as an :class:`AuditEntry`: its canonical bytes (what
the chain hashes) and the few values searches filter on, all of them derived from those
bytes (the audit layer re-derives them when it verifies, so an edited column is caught
as surely as an edited record). The store appends entries to a **chain**: each row
carries the digest of the row before it in the same chain (:func:`link_hash`), and the
chain's head (its last position and digest) lives in ``audit_chain``.

Appending takes the head's row lock, so appends to one chain are serial. SQLite has one
chain (its writes are serial anyway); PostgreSQL has :data:`PG_CHAINS`, and a transaction
takes whichever head no other transaction holds, so that commits of audited writes do not
queue behind one another. Every chain starts from :data:`GENESIS`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
SQLITE_CHAINS = 1
PG_CHAINS = 8


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit record, ready to append."""

    id: str  # the AuditEvent id
    recorded: str  # FHIR instant, fixed width (text order is time order)
    record: bytes  # canonical JSON: what the chain hashes
    interaction: str
    outcome: str  # AuditEvent.outcome: 0, 4, 8 or 12
    request_id: str | None = None
    correlation_id: str | None = None
    client: str | None = None
    user: str | None = None
    refs: tuple[str, ...] = ()  # search keys, "kind:value" (patient:Patient/1, nhs:9434765919)
    bodies: tuple[tuple[str, str, bytes], ...] = ()  # (part, mode, content) kept beside it
    body_expires: str | None = None  # when the kept bodies are purged


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit record as stored: its place in its chain and its links."""

    chain: int
    chain_seq: int
    id: str
    recorded: str
    record: bytes
    prev_hash: str
    hash: str
    interaction: str
    outcome: str
    request_id: str | None
    correlation_id: str | None
    client: str | None
    user: str | None
    refs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChainHead:
    chain: int
    chain_seq: int  # 0 when nothing has been appended
    hash: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement of every chain's head at one moment."""

    seq: int  # its place among checkpoints (0 before it is stored)
    created: str
    payload: bytes  # canonical JSON: created, heads, the previous checkpoint's digest, key id
    signature: str  # base64url


@dataclass(frozen=True, slots=True)
class AuditBody:
    part: str  # request or response
    mode: str  # full or redacted
    content: bytes
    expires: str | None


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which audit records, in the neutral terms every backend compiles: values within
    one field are alternatives (OR), fields are all required (AND)."""

    ids: tuple[str, ...] = ()
    request_ids: tuple[str, ...] = ()
    correlation_ids: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    interactions: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    refs: tuple[tuple[str, ...], ...] = ()  # each group: a ref key among these
    recorded: tuple[tuple[str, str], ...] = ()  # (operator, instant): >=, >, <=, <
    oldest_first: bool = False
    count: int = 20
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    rows: list[AuditRow]
    next_cursor: str | None
    total: int | None = None


class AuditAppend:
    """A unit of work that appends audit records: ``store.submit(AuditAppend(entries))``.
    A group committer merges the ones waiting together into a single append (one chain
    head, one insert per table), which is what keeps the records of many concurrent reads
    cheap; alone, it is an ordinary unit."""

    __slots__ = ("entries",)

    def __init__(self, entries: Sequence[AuditEntry]) -> None:
        self.entries = entries

    def __call__(self, tx: Any) -> None:
        tx.append_audit(self.entries)


def link_hash(prev_hash: str, chain: int, chain_seq: int, record: bytes) -> str:
    """The digest of one chain position: the one before it, where it stands, and what it
    holds. Moving, removing or inserting a record changes every digest after it."""
    h = hashlib.sha256()
    h.update(f"{prev_hash}:{chain}:{chain_seq}:".encode())
    h.update(record)
    return h.hexdigest()


__all__ = [
    "GENESIS",
    "PG_CHAINS",
    "SQLITE_CHAINS",
    "AuditAppend",
    "AuditBody",
    "AuditEntry",
    "AuditPage",
    "AuditQuery",
    "AuditRow",
    "ChainHead",
    "Checkpoint",
    "link_hash",
]
