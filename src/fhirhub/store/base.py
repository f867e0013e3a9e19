"""The storage contract every backend implements, and tests run against each of them.

A store keeps every version of every resource, the current version's search index, the
responses remembered for idempotent retries, the audit log, and the registered OAuth2
clients with the client-assertion ids they have used (:mod:`fhirhub.store.clients`). It
knows nothing of HTTP or of FHIR interactions: the engine decides what to write; the
store writes it atomically.

Writes happen inside :meth:`Store.transaction`, a unit of work that commits on a clean exit
and rolls back on an exception. ``lock_keys`` serialise writers that must not interleave
(two conditional creates with the same criteria, two updates of one resource): each backend
honours them its own way (SQLite takes the database write lock; PostgreSQL takes
transaction-scoped advisory locks), so the engine never needs to know which.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypeVar

from fhirhub.search.types import Access, IndexRows, SearchQuery
from fhirhub.store.audit import (
    AuditBody,
    AuditEntry,
    AuditPage,
    AuditQuery,
    AuditRow,
    ChainHead,
    Checkpoint,
)
from fhirhub.store.clients import ClientRecord

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One version of one resource as stored."""

    resource_type: str
    id: str
    version_id: int
    last_updated: str  # FHIR instant, UTC, e.g. 2026-11-24T05:40:00.123456Z
    deleted: bool
    body: bytes | None  # the resource's JSON (meta filled in); None for a deletion
    method: str = "PUT"  # POST, PUT, PATCH or DELETE: how this version came to be


@dataclass(frozen=True, slots=True)
class HistoryPage:
    versions: list[StoredVersion]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class SearchPage:
    matches: list[StoredVersion]
    included: list[StoredVersion]
    total: int | None
    next_cursor: str | None
    previous_cursor: str | None = None  # set when there are matches before this page


@dataclass(frozen=True, slots=True)
class RememberedResponse:
    """A response kept so that a retried POST with the same X-Request-ID gets it again."""

    request_id: str
    body_digest: str
    status: int
    headers: dict[str, str]
    body: bytes
    created: str


class Reader(abc.ABC):
    """What can be read, both outside and inside a transaction."""

    @abc.abstractmethod
    def read(self, resource_type: str, resource_id: str) -> StoredVersion | None:
        """The current version (possibly a deletion), or None if it never existed."""

    @abc.abstractmethod
    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredVersion | None:
        """One version, or None."""

    @abc.abstractmethod
    def search(self, query: SearchQuery) -> SearchPage:
        """Current, non-deleted resources matching ``query``, one page of them."""

    @abc.abstractmethod
    def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        *,
        since: str | None = None,
        at: str | None = None,
        count: int = 20,
        cursor: str | None = None,
        access: Access | None = None,
    ) -> HistoryPage:
        """Versions newest first: of one resource, one type (resource_type only) or all;
        with ``access``, only of resources the caller may see now."""

    @abc.abstractmethod
    def current_page(self, after: tuple[str, str] | None = None, *,
                     types: Sequence[str] = (), count: int = 200) -> list[StoredVersion]:
        """Up to ``count`` current, non-deleted versions in (resource type, id) order:
        those after the position ``after`` (a (type, id), itself excluded), of ``types``
        only when given. Walks every resource page by page while writes go on (reindex)."""

    # -- the audit log (fhirhub.store.audit) ---------------------------------------------

    @abc.abstractmethod
    def audit_search(self, query: AuditQuery) -> AuditPage:
        """Audit records matching ``query``, newest first unless it says otherwise."""

    @abc.abstractmethod
    def audit_count(self, query: AuditQuery) -> int:
        """How many audit records match ``query`` (its paging ignored)."""

    @abc.abstractmethod
    def audit_chain(self, chain: int, after: int, count: int) -> list[AuditRow]:
        """Up to ``count`` records of one chain after position ``after``, in chain order."""

    @abc.abstractmethod
    def audit_heads(self) -> list[ChainHead]:
        """Every chain's last position and digest."""

    @abc.abstractmethod
    def audit_bodies(self, chain: int, chain_seq: int) -> list[AuditBody]:
        """The bodies kept beside one record (none once purged, or when not kept)."""

    @abc.abstractmethod
    def audit_checkpoints(self, after: int = 0, count: int = 1000) -> list[Checkpoint]:
        """Signed checkpoints after ``after`` (their own sequence), oldest first."""

    @abc.abstractmethod
    def audit_last_checkpoint(self) -> Checkpoint | None:
        """The newest signed checkpoint."""

    # -- OAuth2 clients (fhirhub.store.clients) --------------------------------------------

    @abc.abstractmethod
    def client(self, client_id: str) -> ClientRecord | None:
        """The registered client ``client_id`` (active or not), or None."""

    @abc.abstractmethod
    def clients(self) -> list[ClientRecord]:
        """Every registered client, ordered by ``created`` then ``id``."""


class Transaction(Reader):
    """A unit of work: reads see its own writes; everything commits or nothing does."""

    @abc.abstractmethod
    def write(self, version: StoredVersion, index: IndexRows | None) -> None:
        """Add ``version`` to history and make it current, replacing the search index
        (``index`` None or the version a deletion: the resource leaves the index)."""

    @abc.abstractmethod
    def remembered(self, request_id: str, not_before: str) -> RememberedResponse | None:
        """The response remembered for ``request_id`` since ``not_before``, if any."""

    @abc.abstractmethod
    def remember(self, response: RememberedResponse) -> None:
        """Remember a response for an idempotent retry (replacing an expired one)."""

    @abc.abstractmethod
    def replace_index(self, resource_type: str, resource_id: str, version_id: int,
                      index: IndexRows) -> bool:
        """Replace the search index of a resource whose current version is still
        ``version_id`` (and not a deletion), and keep any other write to it waiting until
        this transaction ends. False, changing nothing, when the resource has moved on or
        gone: its own write indexed it, and the caller may index the new current version."""

    @abc.abstractmethod
    def read_meta(self, name: str) -> str | None:
        """A value the server keeps about itself (e.g. a reindex checkpoint), or None."""

    @abc.abstractmethod
    def write_meta(self, name: str, value: str | None) -> None:
        """Set the value ``name`` (None removes it)."""

    @abc.abstractmethod
    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append audit records, in order, to the chain this transaction takes. Call it
        once, as the transaction's last step: it holds a chain head until commit."""

    @abc.abstractmethod
    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Keep a signed checkpoint."""

    @abc.abstractmethod
    def save_client(self, client: ClientRecord) -> None:
        """Register ``client``, replacing the registration with the same id if any."""

    @abc.abstractmethod
    def use_jti(self, client_id: str, jti: str, expires: str, now: str) -> bool:
        """Record that a client assertion of ``client_id`` with id ``jti``, acceptable until
        ``expires``, was used. True on its first use, or when its earlier use had expired
        (before ``now``; the record is replaced); False when it is a replay. Atomic: of
        concurrent transactions using one (client, jti), exactly one gets True."""


class Store(Reader):
    """A backend. Thread-safe: one instance serves every thread of a process."""

    backend: str = "abstract"

    @abc.abstractmethod
    def transaction(self, lock_keys: Sequence[str] = ()) -> AbstractContextManager[Transaction]:
        """A write transaction holding ``lock_keys`` until it ends."""

    def run(self, lock_keys: Sequence[str], work: Callable[[Transaction], T]) -> T:
        """Run ``work`` in a write transaction holding ``lock_keys`` and return its result
        once committed. Backends may run it on another thread and commit it together with
        other units (group commit); ``work`` must not start another write."""
        with self.transaction(lock_keys) as tx:
            return work(tx)

    def submit(self, work: Callable[[Transaction], T]) -> Future[T]:
        """Start ``work`` in a write transaction and return at once: the future completes
        once it is committed (or failed). Backends commit concurrently submitted units
        together (group commit), so that many small writes (audit records of reads) cost
        one commit; ``work`` must not start another write."""
        future: Future[T] = Future()
        try:
            future.set_result(self.run([], work))
        except BaseException as exc:
            future.set_exception(exc)
        return future

    @abc.abstractmethod
    def purge_audit_bodies(self, before: str) -> int:
        """Drop kept audit bodies whose retention ended before ``before``; how many."""

    @abc.abstractmethod
    def count(self, resource_type: str | None = None) -> int:
        """How many current, non-deleted resources (of one type, or all)."""

    @abc.abstractmethod
    def iter_current(self, resource_type: str | None = None) -> Iterator[StoredVersion]:
        """Every current non-deleted version (reindexing, export)."""

    @abc.abstractmethod
    def purge_remembered(self, before: str) -> int:
        """Forget idempotency records older than ``before``; returns how many."""

    @abc.abstractmethod
    def purge_jtis(self, before: str) -> int:
        """Forget used client-assertion ids that expired before ``before``; how many."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""


__all__ = [
    "HistoryPage",
    "Reader",
    "RememberedResponse",
    "SearchPage",
    "Store",
    "StoredVersion",
    "Transaction",
]
