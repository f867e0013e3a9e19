"""Rebuilding the search index of the current resources (``fhirhub reindex``).

A resource's index rows are made when it is written, by the search parameters in force
then. A SearchParameter added later (or changed, or retired) applies to the resources
written from then on; a reindex brings the others up to date, using the engine's registry
(the official parameters and the custom ones stored in the database).

The resources are walked in (type, id) order, a batch at a time. For each batch the page is
read and its index rows computed outside any transaction (the CPU work holds no lock), then
one transaction replaces each resource's rows and records the position reached.

**Resumable.** The checkpoint (the last (type, id) done, how many were done, and what the
run is for: its types and a fingerprint of the custom SearchParameters) is in
``fhirhub_meta`` and commits with its batch, so an interrupted run (Ctrl-C, kill, crash)
loses no finished batch and redoes none when run again. A finished run removes it. A run
for other types refuses to touch another run's checkpoint; if the custom SearchParameters
changed since the interruption, what was done is stale, and the run starts over.

**Safe while the server runs.** Each batch is its own short transaction. Index rows are
only ever written for the version they were computed from: ``Transaction.replace_index``
checks, inside the transaction, that the version read is still current, and holds the
resource against other writers until the commit (SQLite: the database write lock;
PostgreSQL: a row lock, which also covers conditional writes that do not take the
``res:`` lock key). A resource that changed since its page was read is indexed again from
its current body in the transaction; one written after its batch rebuilt its rows itself.
What a reindex cannot fix: a worker process that has not yet seen a new SearchParameter
(it looks every 5 s) indexes its writes without it, so start a reindex after that.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fhirhub.engine import Engine
from fhirhub.errors import BusyError, ConflictError, FaultError, FhirError, InvalidError
from fhirhub.fhir import json as fjson
from fhirhub.fhir.model import element_model
from fhirhub.search.types import IndexRows
from fhirhub.store import StoredVersion, Transaction

CHECKPOINT = "reindex.checkpoint"
BATCH = 200
BUSY_RETRIES = 3  # a batch that meets a busy database (or a PostgreSQL deadlock) is retried
CHANGE_RETRIES = 10  # a resource that keeps changing under the reindex gives up after this


@dataclass(frozen=True)
class Checkpoint:
    """Where a run is, and what it is for."""

    types: tuple[str, ...]  # () for every type
    parameters: str  # fingerprint of the custom SearchParameters it indexes with
    after: tuple[str, str] | None = None  # the last (type, id) done
    done: int = 0  # resources done so far

    def dumps(self) -> str:
        return json.dumps({"types": list(self.types), "parameters": self.parameters,
                           "after": list(self.after) if self.after else None,
                           "done": self.done})

    @classmethod
    def loads(cls, text: str) -> Checkpoint | None:
        """The checkpoint in ``text``, or None when it is not one (then it is ignored)."""
        try:
            data = json.loads(text)
            after = data["after"]
            return cls(types=tuple(str(t) for t in data["types"]),
                       parameters=str(data["parameters"]),
                       after=(str(after[0]), str(after[1])) if after else None,
                       done=int(data["done"]))
        except (ValueError, KeyError, TypeError, IndexError):
            return None

    def describe(self) -> str:
        return ", ".join(self.types) if self.types else "every resource type"


@dataclass
class ReindexReport:
    resources: Counter[str] = field(default_factory=Counter)  # reindexed, by type

    @property
    def total(self) -> int:
        return sum(self.resources.values())


class Reindexer:
    """Rebuilds the index of the current resources of ``types`` (every type when empty).

    :meth:`start` says where the run begins (a fresh start, or an interrupted run's
    checkpoint); :meth:`run` does it, calling ``progress(n)`` after each committed batch
    of ``n`` resources."""

    def __init__(self, engine: Engine, *, types: Sequence[str] = (), batch: int = BATCH,
                 progress: Callable[[int], None] | None = None) -> None:
        check_types(types)
        if batch < 1:
            raise InvalidError(f"The batch size must be at least 1, not {batch}")
        self.engine = engine
        self.store = engine.store
        self.types = tuple(sorted(set(types)))
        self.batch = batch
        self.progress = progress or (lambda n: None)
        self.note: str | None = None  # why :meth:`start` did not resume, when it did not

    def total(self) -> int:
        """How many resources the run covers (those there now)."""
        if not self.types:
            return self.store.count()
        return sum(self.store.count(t) for t in self.types)

    def start(self, *, restart: bool = False) -> Checkpoint:
        """Where this run begins: the checkpoint of an interrupted run for the same types
        and parameters, else the beginning (``restart``: always the beginning)."""
        self.engine.refresh_definitions()
        fresh = Checkpoint(self.types, self._fingerprint())
        saved = self.saved()
        if saved is None:
            return fresh
        if restart:
            self._clear()
            return fresh
        if saved.types != self.types:
            raise ConflictError(
                f"An interrupted reindex of {saved.describe()} is not finished: resume it by "
                "running that reindex again, or discard it with --restart")
        if saved.parameters != fresh.parameters:
            self.note = ("The custom SearchParameters changed since the interrupted reindex: "
                         "starting over")
            return fresh
        return saved

    def run(self, start: Checkpoint) -> ReindexReport:
        """Reindex from ``start`` to the end; the checkpoint is removed when done."""
        report = ReindexReport()
        position = start
        while True:
            page = self.store.current_page(position.after, types=self.types,
                                           count=self.batch)
            if not page:
                break
            position = replace(position, after=(page[-1].resource_type, page[-1].id),
                               done=position.done + len(page))
            report.resources.update(self._commit([(v, self._index(v)) for v in page],
                                                 position))
            self.progress(len(page))
        self._clear()
        return report

    # -- one batch -----------------------------------------------------------------------------

    def _commit(self, prepared: list[tuple[StoredVersion, IndexRows]],
                checkpoint: Checkpoint) -> Counter[str]:
        def work(tx: Transaction) -> Counter[str]:
            done: Counter[str] = Counter()
            for version, rows in prepared:
                if self._replace(tx, version, rows):
                    done[version.resource_type] += 1
            tx.write_meta(CHECKPOINT, checkpoint.dumps())
            return done

        attempts = 0
        while True:
            try:
                return self.store.run([], work)
            except BusyError:
                attempts += 1
                if attempts == BUSY_RETRIES:
                    raise
                time.sleep(0.2 * attempts)

    def _replace(self, tx: Transaction, version: StoredVersion, rows: IndexRows) -> bool:
        """Replace one resource's rows; False when it was deleted meanwhile."""
        for _ in range(CHANGE_RETRIES):
            if tx.replace_index(version.resource_type, version.id, version.version_id, rows):
                return True
            current = tx.read(version.resource_type, version.id)
            if current is None or current.deleted:
                return False
            version, rows = current, self._index(current)
        raise BusyError(f"{version.resource_type}/{version.id} kept changing while it was "
                        "reindexed; run the reindex again")

    def _index(self, version: StoredVersion) -> IndexRows:
        try:
            return self.engine.index(fjson.loads(version.body or b"{}"))
        except FhirError:
            raise
        except Exception as exc:  # name the resource: the run stops at its batch
            raise FaultError(f"Indexing {version.resource_type}/{version.id} failed: "
                             f"{exc}") from exc

    # -- the checkpoint --------------------------------------------------------------------------

    def _fingerprint(self) -> str:
        custom = sorted(fjson.dumps(_definition(r)).decode()
                        for r in self.engine.search_params.resources())
        return hashlib.sha256("\n".join(custom).encode()).hexdigest()[:16]

    def saved(self) -> Checkpoint | None:
        """The checkpoint of an unfinished run, if there is one."""
        text = self.store.run([], lambda tx: tx.read_meta(CHECKPOINT))
        return Checkpoint.loads(text) if text is not None else None

    def _clear(self) -> None:
        self.store.run([], lambda tx: tx.write_meta(CHECKPOINT, None))


def check_types(types: Sequence[str]) -> None:
    """Refuse names that are not resource types (before anything is opened)."""
    unknown = sorted(set(types) - element_model().resource_types)
    if unknown:
        raise InvalidError(f"Not a FHIR R4 resource type: {', '.join(unknown)}")


def _definition(resource: dict[str, Any]) -> dict[str, Any]:
    """What of a SearchParameter changes its index rows (not its text or its meta)."""
    keys = ("url", "code", "base", "type", "expression", "target", "component")
    return {k: resource[k] for k in keys if k in resource}


__all__ = ["CHECKPOINT", "Checkpoint", "ReindexReport", "Reindexer", "check_types"]
