"""The audit log's part of the store contract, on every backend: appending to hash
chains, searching, kept bodies, group commit (fhirhub.store.audit)."""

from __future__ import annotations

import threading
import uuid

import pytest

from fhirhub.audit.record import AuditRecord, Entity, PatientRef, entry_of
from fhirhub.store import Store
from fhirhub.store.audit import GENESIS, AuditQuery, link_hash


def _record(i: int = 0, **kw: object) -> AuditRecord:
    values: dict[str, object] = {
        "id": str(uuid.uuid4()), "recorded": f"2026-11-24T10:00:{i % 60:02d}.{i:06d}Z",
        "kind": "rest", "interaction": "read", "outcome": "0", "request_id": f"req-{i}"}
    values.update(kw)
    return AuditRecord(**values)  # type: ignore[arg-type]


def _append(store: Store, records: list[AuditRecord]) -> None:
    store.run([], lambda tx: tx.append_audit([entry_of(r) for r in records]))


def test_appended_records_form_a_hash_chain_from_genesis(store: Store) -> None:
    _append(store, [_record(1), _record(2)])
    _append(store, [_record(3)])
    (head,) = [h for h in store.audit_heads() if h.chain_seq]
    rows = store.audit_chain(head.chain, 0, 10)
    assert [r.chain_seq for r in rows] == [1, 2, 3]
    prev = GENESIS
    for row in rows:
        assert row.prev_hash == prev
        assert row.hash == link_hash(prev, row.chain, row.chain_seq, row.record)
        prev = row.hash
    assert head.hash == prev and head.chain_seq == 3


def test_records_are_found_by_each_searchable_value(store: Store) -> None:
    a = _record(1, client="app-a", user="u1", correlation_id="c1", interaction="create",
                patients=(PatientRef("Patient/p1", "9434765919"),),
                entities=(Entity("Observation/o1", 2),))
    b = _record(2, client="app-b", outcome="4")
    _append(store, [a, b])

    def ids(**kw: object) -> list[str]:
        return [r.id for r in store.audit_search(AuditQuery(**kw)).rows]  # type: ignore[arg-type]

    assert ids(request_ids=("req-1",)) == [a.id]
    assert ids(correlation_ids=("c1",)) == [a.id]
    assert ids(clients=("app-b",)) == [b.id]
    assert ids(users=("u1",)) == [a.id]
    assert ids(outcomes=("4",)) == [b.id]
    assert ids(interactions=("create",)) == [a.id]
    assert ids(refs=(("nhs:9434765919",),)) == [a.id]
    assert ids(refs=(("patient:Patient/p1", "patient:Patient/zz"),)) == [a.id]
    assert ids(refs=(("entity:Observation/o1",),)) == [a.id]
    assert ids(recorded=((">", a.recorded),)) == [b.id]
    assert ids(ids=(b.id,)) == [b.id]
    assert ids() == [b.id, a.id]  # newest first
    assert ids(oldest_first=True) == [a.id, b.id]


def test_search_pages_by_cursor_without_repeats(store: Store) -> None:
    records = [_record(i) for i in range(7)]
    _append(store, records)
    seen: list[str] = []
    query = AuditQuery(count=3, oldest_first=True)
    while True:
        page = store.audit_search(query)
        seen += [r.id for r in page.rows]
        if page.next_cursor is None:
            break
        query = AuditQuery(count=3, oldest_first=True, cursor=page.next_cursor)
    assert seen == [r.id for r in records]
    assert store.audit_count(AuditQuery()) == 7


def test_a_cursor_that_is_not_ours_is_a_value_error(store: Store) -> None:
    with pytest.raises(ValueError, match="cursor"):
        store.audit_search(AuditQuery(cursor="bm9wZQ"))


def test_kept_bodies_are_read_back_and_purged_after_their_retention(store: Store) -> None:
    rec = _record(1)
    entry = entry_of(rec, bodies=(("request", "full", b"{}"), ("response", "full", b"[]")),
                     body_expires="2026-01-01T00:00:00.000000Z")
    store.run([], lambda tx: tx.append_audit([entry]))
    row = store.audit_search(AuditQuery(ids=(rec.id,))).rows[0]
    assert [(b.part, b.content) for b in store.audit_bodies(row.chain, row.chain_seq)] == [
        ("request", b"{}"), ("response", b"[]")]
    assert store.purge_audit_bodies("2026-06-01T00:00:00.000000Z") == 2
    assert store.audit_bodies(row.chain, row.chain_seq) == []
    assert store.audit_search(AuditQuery(ids=(rec.id,))).rows  # the record stays


def test_submitted_units_commit_together_and_each_future_completes(store: Store) -> None:
    entries = [entry_of(_record(i)) for i in range(20)]
    futures = [store.submit(lambda tx, e=e: tx.append_audit([e])) for e in entries]
    for future in futures:
        assert future.result(timeout=30) is None
    assert store.audit_count(AuditQuery()) == 20


def test_a_failing_submitted_unit_fails_alone(store: Store) -> None:
    def boom(tx: object) -> None:
        raise RuntimeError("no")

    good = store.submit(lambda tx: tx.append_audit([entry_of(_record(1))]))
    bad = store.submit(boom)
    with pytest.raises(RuntimeError):
        bad.result(timeout=30)
    good.result(timeout=30)
    assert store.audit_count(AuditQuery()) == 1


def test_concurrent_appends_keep_every_chain_contiguous(store: Store) -> None:
    def work(n: int) -> None:
        for i in range(15):
            _append(store, [_record(n * 100 + i), _record(n * 100 + i + 50)])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = 0
    for head in store.audit_heads():
        rows = store.audit_chain(head.chain, 0, 1000)
        assert [r.chain_seq for r in rows] == list(range(1, head.chain_seq + 1))
        prev = GENESIS
        for row in rows:
            assert row.prev_hash == prev
            prev = row.hash
        total += len(rows)
    assert total == 120
