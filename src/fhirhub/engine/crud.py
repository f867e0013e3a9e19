"""The write interactions over one store transaction: create, update, delete, patch, and
their conditional forms (https://hl7.org/fhir/R4/http.html). Batches and transactions call
the same functions, so a Bundle entry behaves exactly like the single request."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhirhub.engine.clock import now_instant
from fhirhub.errors import (
    GoneError,
    InvalidError,
    NotFoundError,
    PreconditionFailedError,
)
from fhirhub.fhir import json as fjson
from fhirhub.search.types import IndexRows, SearchQuery
from fhirhub.store.base import StoredVersion, Transaction

Json = dict[str, Any]
Checker = Callable[[Any, str | None], None]
Indexer = Callable[[Json], IndexRows]


@dataclass
class Written:
    version: StoredVersion
    resource: Json | None  # None for a deletion
    created: bool  # a new resource (201) rather than a new version (200)


@dataclass
class WriteContext:
    check: Checker  # raises InvalidError/UnprocessableError with the issues
    index: Indexer
    parse_criteria: Callable[[str, str], SearchQuery]  # (type, query string) -> query


def etag(version_id: int) -> str:
    return f'W/"{version_id}"'


def parse_etag(value: str) -> int:
    raw = value.strip()
    if raw.startswith("W/"):
        raw = raw[2:]
    raw = raw.strip('"')
    if not raw.isdigit():
        raise InvalidError(
            f"If-Match must be a version ETag like W/\"3\", not {value!r}",
            spine_code="INVALID_VALUE",
        )
    return int(raw)


def _stamp(resource: Json, rid: str, version_id: int, now: str, method: str) -> tuple[Json, StoredVersion]:
    stamped = dict(resource)
    stamped["id"] = rid
    meta = {k: v for k, v in (resource.get("meta") or {}).items()
            if k not in ("versionId", "lastUpdated")}
    stamped["meta"] = {"versionId": str(version_id), "lastUpdated": now, **meta}
    # resourceType first, then id and meta, as FHIR examples order them.
    ordered = {"resourceType": stamped.pop("resourceType"), "id": stamped.pop("id"),
               "meta": stamped.pop("meta"), **stamped}
    body = fjson.dumps(ordered)
    return ordered, StoredVersion(ordered["resourceType"], rid, version_id, now, False, body, method)


@dataclass
class Prepared:
    """A new resource made ready outside the transaction: the CPU work (checks, JSON,
    index rows) is done before the database write lock is taken."""

    written: Written
    index: IndexRows

    def write(self, tx: Transaction) -> Written:
        tx.write(self.written.version, self.index)
        return self.written


def prepare_create(ctx: WriteContext, resource: Json, rtype: str,
                   rid: str | None = None) -> Prepared:
    """A new resource with a server id (``rid`` is given only when a transaction assigned
    one for a urn:uuid entry)."""
    ctx.check(resource, rtype)
    new_id = rid or str(uuid.uuid4())
    stamped, version = _stamp(resource, new_id, 1, now_instant(), "POST")
    return Prepared(Written(version, stamped, True), ctx.index(stamped))


def create(ctx: WriteContext, tx: Transaction, resource: Json, rtype: str,
           rid: str | None = None) -> Written:
    return prepare_create(ctx, resource, rtype, rid).write(tx)


@dataclass
class PreparedUpdate:
    """An update made ready outside the transaction against the version read then
    (``base``); inside, :func:`commit_update` reuses the work if that is still current."""

    rtype: str
    rid: str
    resource: Json
    method: str
    index: IndexRows
    base: StoredVersion | None
    unchanged: bool  # identical to ``base``: no new version
    stamped: Json
    version: StoredVersion


def prepare_update(ctx: WriteContext, rtype: str, rid: str, resource: Json,
                   base: StoredVersion | None, method: str = "PUT") -> PreparedUpdate:
    """Checks, index rows and the new body, computed before the write lock is taken."""
    ctx.check(resource, rtype)
    body_id = resource.get("id")
    if body_id is None:
        raise InvalidError(
            f"The resource must carry an id, and it must be '{rid}' as in the URL",
            spine_code="MISSING_VALUE", expression=(f"{rtype}.id",),
        )
    if body_id != rid:
        raise InvalidError(
            f"The resource id '{body_id}' does not match the id '{rid}' in the URL",
            spine_code="INVALID_RESOURCE_ID", expression=(f"{rtype}.id",),
        )
    unchanged, stamped, version = _next_version(resource, rid, base, method)
    return PreparedUpdate(rtype, rid, resource, method, ctx.index(stamped), base, unchanged,
                          stamped, version)


def _next_version(resource: Json, rid: str, base: StoredVersion | None,
                  method: str) -> tuple[bool, Json, StoredVersion]:
    """The version that follows ``base``, and whether it would change nothing.

    An update that changes nothing makes no new version (as HAPI does): re-importing the
    same data, or a client retrying a PUT, leaves history clean. The index rows do not
    depend on the version, so only this part is redone when ``base`` turns out stale."""
    unchanged = False
    if base is not None and not base.deleted:
        _, same = _stamp(resource, rid, base.version_id, base.last_updated, method)
        unchanged = same.body == base.body
    next_version = 1 if base is None else base.version_id + 1
    stamped, version = _stamp(resource, rid, next_version, now_instant(), method)
    return unchanged, stamped, version


def commit_update(tx: Transaction, pre: PreparedUpdate, if_match: str | None) -> Written:
    """Write a prepared update, redoing the version-dependent part if another write came
    between preparing and now."""
    current = tx.read(pre.rtype, pre.rid)
    if if_match is not None:
        check_if_match(current, pre.rtype, pre.rid, if_match)
    base = pre.base
    same_base = (current is None and base is None) or (
        current is not None and base is not None and current.version_id == base.version_id)
    if not same_base:
        unchanged, stamped, version = _next_version(pre.resource, pre.rid, current, pre.method)
        pre = PreparedUpdate(pre.rtype, pre.rid, pre.resource, pre.method, pre.index, current,
                             unchanged, stamped, version)
    if pre.unchanged and current is not None:
        return Written(current, None, False)
    tx.write(pre.version, pre.index)
    created = current is None or current.deleted
    return Written(pre.version, pre.stamped, created)


def update(ctx: WriteContext, tx: Transaction, rtype: str, rid: str, resource: Json,
           if_match: str | None = None, method: str = "PUT") -> Written:
    """Prepare and commit in one go (inside a transaction already)."""
    pre = prepare_update(ctx, rtype, rid, resource, tx.read(rtype, rid), method)
    return commit_update(tx, pre, if_match)


def check_if_match(current: StoredVersion | None, rtype: str, rid: str, if_match: str) -> None:
    """412 unless ``If-Match`` names the current version."""
    wanted = parse_etag(if_match)
    if current is None or current.deleted or current.version_id != wanted:
        have = "no current version" if current is None or current.deleted else \
            f"version {current.version_id}"
        raise PreconditionFailedError(
            f"If-Match asked for version {wanted} of {rtype}/{rid}, but the server has "
            f"{have}; read it again and reapply your change",
            spine_code="PRECONDITION_FAILED",
        )


def delete(tx: Transaction, rtype: str, rid: str) -> Written | None:
    """Delete ``rtype/rid``; None when there was nothing to delete (still a success)."""
    current = tx.read(rtype, rid)
    if current is None or current.deleted:
        return None
    version = StoredVersion(rtype, rid, current.version_id + 1, now_instant(), True, None, "DELETE")
    tx.write(version, None)
    return Written(version, None, False)


def current_resource(tx: Transaction, rtype: str, rid: str) -> tuple[StoredVersion, Json]:
    current = tx.read(rtype, rid)
    if current is None:
        raise NotFoundError(f"{rtype}/{rid} does not exist", spine_code="RESOURCE_NOT_FOUND")
    if current.deleted or current.body is None:
        raise GoneError(f"{rtype}/{rid} was deleted", spine_code="RESOURCE_NOT_FOUND")
    return current, fjson.loads(current.body)


def matches(ctx: WriteContext, tx: Transaction, rtype: str, criteria: str) -> list[StoredVersion]:
    """Up to two current resources matching conditional criteria (two is enough to know
    the criteria are not selective)."""
    if not criteria.strip():
        raise InvalidError(
            "Conditional criteria are empty: give search parameters, e.g. identifier=system|value",
            spine_code="INVALID_SEARCH_DATA",
        )
    query = ctx.parse_criteria(rtype, criteria)
    return tx.search(query).matches


def single_match(ctx: WriteContext, tx: Transaction, rtype: str, criteria: str) -> StoredVersion | None:
    found = matches(ctx, tx, rtype, criteria)
    if len(found) > 1:
        raise PreconditionFailedError(
            f"The criteria '{criteria}' match more than one {rtype}; make them more selective",
            spine_code="PRECONDITION_FAILED",
        )
    return found[0] if found else None


def conditional_key(rtype: str, criteria: str) -> str:
    """The lock key that serialises conditional writes with the same criteria."""
    params = sorted(p for p in criteria.split("&") if p)
    return f"cond:{rtype}?{'&'.join(params)}"


def resource_key(rtype: str, rid: str) -> str:
    return f"res:{rtype}/{rid}"


__all__ = [
    "Prepared",
    "PreparedUpdate",
    "WriteContext",
    "Written",
    "check_if_match",
    "commit_update",
    "conditional_key",
    "create",
    "current_resource",
    "delete",
    "etag",
    "matches",
    "parse_etag",
    "prepare_create",
    "prepare_update",
    "resource_key",
    "single_match",
    "update",
]
