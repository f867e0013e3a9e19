"""Verifying the audit log (fhirhub.audit.verify) on every backend: a clean log passes,
and each kind of tampering done directly in the database, the way someone with write
access to it would, is reported as what it is and where."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fhirhub.audit.checkpoints import make_checkpoint
from fhirhub.audit.record import AuditRecord, Entity, PatientRef, entry_of
from fhirhub.audit.record import instant as now_instant
from fhirhub.audit.signing import load_or_create_key
from fhirhub.audit.verify import NOT_COVERED, Problem, VerifyReport, verify
from fhirhub.config import Settings
from fhirhub.store import Store
from fhirhub.store.audit import link_hash
from fhirhub.store.base import Transaction
from fhirhub.store.sqlite import path_from_url

# -- helpers ------------------------------------------------------------------------------------


def _record(i: int, **kw: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()), "recorded": f"2026-11-24T10:{i // 60 % 60:02d}:{i % 60:02d}.000000Z",
        "kind": "rest", "interaction": "read", "outcome": "0", "request_id": f"req-{i}",
        "client": "app-a", "user": "user-1", "path": f"Patient/p{i}",
        "patients": (PatientRef(f"Patient/p{i}", "9434765919"),),
        "entities": (Entity(f"Patient/p{i}", 1),)}
    values.update(kw)
    return AuditRecord(**values)


def _append(store: Store, records: Sequence[AuditRecord]) -> None:
    store.run([], lambda tx: tx.append_audit([entry_of(r) for r in records]))


def _log(store: Store, n: int) -> list[AuditRecord]:
    records = [_record(i) for i in range(1, n + 1)]
    _append(store, records)
    return records


def _append_and_wait(store: Store, record: AuditRecord,
                     barrier: threading.Barrier | None) -> None:
    """Append one record, holding the chain head until ``barrier`` lets every party go."""
    def work(tx: Transaction) -> None:
        tx.append_audit([entry_of(record)])
        if barrier is not None:
            barrier.wait(timeout=30)

    store.run([], work)


def _chain(store: Store) -> int:
    (chain,) = [h.chain for h in store.audit_heads() if h.chain_seq]
    return chain


@pytest.fixture
def key(settings: Settings) -> Ed25519PrivateKey:
    return load_or_create_key(settings.audit_key_path)


def _checkpoint(store: Store, key: Ed25519PrivateKey) -> None:
    make_checkpoint(store, key, now_instant(), force=True)


def _verify(store: Store, key: Ed25519PrivateKey) -> VerifyReport:
    return verify(store, [key.public_key()])


def _sql(settings: Settings, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run raw SQL (``?`` placeholders) on the test database, behind the store's back."""
    if settings.backend == "sqlite":
        conn = sqlite3.connect(path_from_url(settings.database_url), timeout=10)
        try:
            with conn:
                return conn.execute(statement, tuple(params)).fetchall()
        finally:
            conn.close()
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        cur = pg.execute(statement.replace("?", "%s"), tuple(params))
        return cur.fetchall() if cur.description else []


def _row(settings: Settings, chain: int, seq: int) -> tuple[Any, ...]:
    (row,) = _sql(settings, "SELECT id, record, prev_hash, hash FROM audit_event"
                  " WHERE chain = ? AND chain_seq = ?", (chain, seq))
    return row


def _relink(settings: Settings, chain: int, start: int) -> None:
    """Recompute the digests of a chain from position ``start`` and move its head, as an
    attacker covering their tracks would."""
    rows = _sql(settings, "SELECT chain_seq, record FROM audit_event WHERE chain = ?"
                " AND chain_seq >= ? ORDER BY chain_seq", (chain, start))
    prev = _row(settings, chain, start - 1)[3] if start > 1 else "0" * 64
    for seq, record in rows:
        digest = link_hash(prev, chain, seq, bytes(record))
        _sql(settings, "UPDATE audit_event SET prev_hash = ?, hash = ? WHERE chain = ?"
             " AND chain_seq = ?", (prev, digest, chain, seq))
        prev = digest
    _set_head(settings, chain, rows[-1][0], prev)


def _set_head(settings: Settings, chain: int, seq: int, digest: str) -> None:
    _sql(settings, "UPDATE audit_chain SET chain_seq = ?, hash = ? WHERE chain = ?",
         (seq, digest, chain))


def _delete(settings: Settings, chain: int, seq: int) -> None:
    for table in ("audit_ref", "audit_event"):
        _sql(settings, f"DELETE FROM {table} WHERE chain = ? AND chain_seq = ?", (chain, seq))


def _only(report: VerifyReport) -> Problem:
    assert not report.ok
    assert len(report.problems) == 1, report.problems
    return report.problems[0]


# -- a clean log ------------------------------------------------------------------------------


def test_an_empty_log_verifies_ok_without_warnings(store: Store, key: Ed25519PrivateKey) -> None:
    report = _verify(store, key)
    assert report.ok and report.records == 0 and report.problems == [] and report.warnings == []
    assert report.chains == len(store.audit_heads())


def test_a_clean_checkpointed_log_verifies_ok_without_warnings(
        store: Store, key: Ed25519PrivateKey) -> None:
    _log(store, 3)
    _append(store, [_record(4), _record(5)])
    _checkpoint(store, key)
    report = _verify(store, key)
    assert report == VerifyReport(ok=True, records=5, chains=len(store.audit_heads()),
                                  checkpoints=1, problems=[], warnings=[])


def test_records_without_any_checkpoint_are_a_warning_not_an_error(
        store: Store, key: Ed25519PrivateKey) -> None:
    _log(store, 3)
    report = _verify(store, key)
    assert report.ok and report.checkpoints == 0
    (warning,) = report.warnings
    assert NOT_COVERED in warning and "3 record(s)" in warning


def test_records_after_the_last_checkpoint_are_a_warning_not_an_error(
        store: Store, key: Ed25519PrivateKey) -> None:
    _log(store, 3)
    _checkpoint(store, key)
    _append(store, [_record(4), _record(5)])
    report = _verify(store, key)
    assert report.ok and report.records == 5
    (warning,) = report.warnings
    assert NOT_COVERED in warning and "2 record(s)" in warning


def test_progress_is_reported_every_thousand_records(store: Store, key: Ed25519PrivateKey) -> None:
    _log(store, 2500)
    seen: list[int] = []
    report = verify(store, [key.public_key()], progress=seen.append)
    assert report.ok and report.records == 2500
    assert seen == [1000, 2000]


def test_records_appended_concurrently_over_several_chains_verify_ok(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    threads, appends = 4, 25
    # On PostgreSQL the first appends hold their heads until all four have one, so that
    # they must take four different chains.
    barrier = threading.Barrier(threads) if settings.backend == "postgresql" else None
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(appends):
                _append_and_wait(store, _record(t * 100 + i), barrier if i == 0 else None)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=60)
    assert errors == []
    used = [h for h in store.audit_heads() if h.chain_seq]
    if settings.backend == "postgresql":
        assert len(used) == threads
    _checkpoint(store, key)
    report = _verify(store, key)
    assert report.ok, report.problems
    assert report.records == threads * appends and report.warnings == []


# -- tampering with records ---------------------------------------------------------------------


def test_verify_reports_an_edited_record_as_changed_at_its_position(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    records = _log(store, 5)
    _checkpoint(store, key)
    chain = _chain(store)
    record = bytes(_row(settings, chain, 3)[1])
    _sql(settings, "UPDATE audit_event SET record = ? WHERE chain = ? AND chain_seq = 3",
         (record.replace(b'"path":"Patient/p3"', b'"path":"Patient/p9"'), chain))
    problem = _only(_verify(store, key))
    assert (problem.kind, problem.chain, problem.chain_seq) == ("changed", chain, 3)
    assert problem.record_id == records[2].id
    assert records[2].id in problem.message and "position 3" in problem.message


@pytest.mark.parametrize(("column", "named"), [
    ("outcome", "outcome"), ("request_id", "request_id"), ("client", "client"),
    ("user_id", "user"), ("interaction", "interaction"), ("recorded", "recorded"),
    ("correlation_id", "correlation_id")])
def test_verify_reports_an_edited_search_column_as_changed(
        store: Store, settings: Settings, key: Ed25519PrivateKey, column: str, named: str) -> None:
    records = _log(store, 4)
    _checkpoint(store, key)
    chain = _chain(store)
    _sql(settings, f"UPDATE audit_event SET {column} = 'forged' WHERE chain = ? AND chain_seq = 2",
         (chain,))
    problem = _only(_verify(store, key))
    assert (problem.kind, problem.chain_seq, problem.record_id) == ("changed", 2, records[1].id)
    assert named in problem.message


def test_verify_reports_a_forged_or_dropped_search_key_as_changed(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    _log(store, 4)
    chain = _chain(store)
    _sql(settings, "INSERT INTO audit_ref (key, chain, chain_seq, recorded) VALUES (?, ?, 2, ?)",
         ("patient:Patient/someone-else", chain, "2026-11-24T10:00:02.000000Z"))
    _sql(settings, "DELETE FROM audit_ref WHERE chain = ? AND chain_seq = 4 AND key = ?",
         (chain, "nhs:9434765919"))
    problem = _only(_verify(store, key))
    assert (problem.kind, problem.chain_seq) == ("changed", 2)
    assert "refs" in problem.message and "1 later failure" in problem.message


def test_verify_reports_a_deleted_record_as_removed_at_its_position(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    records = _log(store, 5)
    _checkpoint(store, key)
    chain = _chain(store)
    _delete(settings, chain, 3)
    problem = _only(_verify(store, key))
    assert (problem.kind, problem.chain, problem.chain_seq) == ("removed", chain, 3)
    assert problem.record_id is None
    assert "position 3" in problem.message and records[3].id in problem.message


def test_verify_reports_a_deleted_record_as_removed_even_when_the_rest_were_renumbered(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    records = _log(store, 5)
    chain = _chain(store)
    _delete(settings, chain, 3)
    for seq in (4, 5):
        for table in ("audit_ref", "audit_event"):
            _sql(settings, f"UPDATE {table} SET chain_seq = ? WHERE chain = ? AND chain_seq = ?",
                 (seq - 1, chain, seq))
    _set_head(settings, chain, 4, _row(settings, chain, 4)[3])
    problem = _only(_verify(store, key))
    assert (problem.kind, problem.chain_seq, problem.record_id) == ("removed", 3, records[3].id)
    assert "removed and the rest renumbered" in problem.message


def test_verify_reports_a_forged_record_with_a_wrong_link_as_inserted(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    _log(store, 3)
    chain = _chain(store)
    forged = _record(9, interaction="delete")
    wrong = "f" * 64
    digest = link_hash(wrong, chain, 4, forged.canonical())
    _sql(settings, "INSERT INTO audit_event (chain, chain_seq, id, recorded, interaction, outcome,"
         " request_id, client, user_id, record, prev_hash, hash)"
         " VALUES (?, 4, ?, ?, 'delete', '0', 'req-9', 'app-a', 'user-1', ?, ?, ?)",
         (chain, forged.id, forged.recorded, forged.canonical(), wrong, digest))
    for ref in entry_of(forged).refs:
        _sql(settings, "INSERT INTO audit_ref (key, chain, chain_seq, recorded) VALUES (?, ?, 4, ?)",
             (ref, chain, forged.recorded))
    _set_head(settings, chain, 4, digest)
    problem = _only(_verify(store, key))
    assert (problem.kind, problem.chain_seq, problem.record_id) == ("inserted", 4, forged.id)


def test_verify_reports_a_record_slipped_into_the_middle_as_inserted(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    """The forger moves records 3-5 up one place, links a record of their own at 3 to
    record 2 with a correct digest, and moves the head: record 3's old self, now at 4,
    gives it away."""
    records = _log(store, 5)
    chain = _chain(store)
    for seq in (5, 4, 3):
        for table in ("audit_ref", "audit_event"):
            _sql(settings, f"UPDATE {table} SET chain_seq = ? WHERE chain = ? AND chain_seq = ?",
                 (seq + 1, chain, seq))
    forged = _record(9)
    prev = _row(settings, chain, 2)[3]
    _sql(settings, "INSERT INTO audit_event (chain, chain_seq, id, recorded, interaction, outcome,"
         " request_id, client, user_id, record, prev_hash, hash)"
         " VALUES (?, 3, ?, ?, 'read', '0', 'req-9', 'app-a', 'user-1', ?, ?, ?)",
         (chain, forged.id, forged.recorded, forged.canonical(), prev,
          link_hash(prev, chain, 3, forged.canonical())))
    for ref in entry_of(forged).refs:
        _sql(settings, "INSERT INTO audit_ref (key, chain, chain_seq, recorded) VALUES (?, ?, 3, ?)",
             (ref, chain, forged.recorded))
    _set_head(settings, chain, 6, _row(settings, chain, 6)[3])
    problem = _only(_verify(store, key))
    assert (problem.kind, problem.chain_seq, problem.record_id) == ("inserted", 4, records[2].id)
    assert "inserted before it" in problem.message


def test_verify_reports_a_record_that_does_not_parse_as_unreadable(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    records = _log(store, 3)
    chain = _chain(store)
    _sql(settings, "UPDATE audit_event SET record = ? WHERE chain = ? AND chain_seq = 3",
         (b"not a record", chain))
    _relink(settings, chain, 3)
    problem = _only(_verify(store, key))
    assert (problem.kind, problem.chain_seq, problem.record_id) == ("unreadable", 3, records[2].id)


def test_only_the_first_problem_of_a_chain_is_listed_with_later_ones_counted(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    _log(store, 5)
    chain = _chain(store)
    for seq in (2, 4):
        _sql(settings, "UPDATE audit_event SET outcome = '12' WHERE chain = ? AND chain_seq = ?",
             (chain, seq))
    problem = _only(_verify(store, key))
    assert (problem.kind, problem.chain_seq) == ("changed", 2)
    assert "1 later failure" in problem.message


def test_a_truncated_tail_whose_head_was_left_alone_is_reported_at_the_head(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    records = _log(store, 5)
    chain = _chain(store)
    _delete(settings, chain, 5)
    _delete(settings, chain, 4)
    problem = _only(_verify(store, key))
    assert (problem.kind, problem.chain, problem.chain_seq) == ("head", chain, 4)
    assert records[2].id in problem.message and "position 5" in problem.message


def test_a_chain_whose_head_was_deleted_is_still_walked_and_reported(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    records = _log(store, 3)
    chain = _chain(store)
    _sql(settings, "DELETE FROM audit_chain WHERE chain = ?", (chain,))
    report = _verify(store, key)
    problem = _only(report)
    assert (problem.kind, problem.chain, problem.chain_seq) == ("head", chain, 3)
    assert records[2].id in problem.message and report.records == 3


def test_a_truncated_tail_with_a_rewound_head_is_caught_by_the_checkpoint(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    _log(store, 5)
    _checkpoint(store, key)
    chain = _chain(store)
    _delete(settings, chain, 5)
    _delete(settings, chain, 4)
    _set_head(settings, chain, 3, _row(settings, chain, 3)[3])
    problem = _only(_verify(store, key))
    assert (problem.kind, problem.chain, problem.chain_seq) == ("checkpoint", chain, 5)
    assert "truncated" in problem.message


def test_a_chain_rewritten_consistently_after_a_checkpoint_is_caught_by_the_checkpoint(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    records = _log(store, 5)
    _checkpoint(store, key)
    chain = _chain(store)
    record = bytes(_row(settings, chain, 3)[1])
    _sql(settings, "UPDATE audit_event SET record = ? WHERE chain = ? AND chain_seq = 3",
         (record.replace(b'"path":"Patient/p3"', b'"path":"Patient/p9"'), chain))
    _relink(settings, chain, 3)  # every digest and the head recomputed: the chain is whole
    problem = _only(_verify(store, key))
    assert (problem.kind, problem.chain, problem.chain_seq) == ("checkpoint", chain, 5)
    assert problem.record_id == records[4].id and "rewritten" in problem.message


# -- tampering with checkpoints ---------------------------------------------------------------


def _checkpoints(store: Store, key: Ed25519PrivateKey, n: int) -> None:
    for i in range(n):
        _append(store, [_record(i)])
        _checkpoint(store, key)


def test_a_checkpoint_with_an_altered_signature_is_reported(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    _checkpoints(store, key, 2)
    (signature,) = _sql(settings, "SELECT signature FROM audit_checkpoint WHERE seq = 1")[0]
    altered = ("B" if signature[0] == "A" else "A") + signature[1:]
    _sql(settings, "UPDATE audit_checkpoint SET signature = ? WHERE seq = 1", (altered,))
    report = _verify(store, key)
    assert not report.ok and report.checkpoints == 2
    assert {p.kind for p in report.problems} == {"checkpoint"}
    assert any("checkpoint 1's signature does not verify" in p.message for p in report.problems)


def test_a_checkpoint_with_an_edited_payload_is_reported(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    _checkpoints(store, key, 1)
    (payload,) = _sql(settings, "SELECT payload FROM audit_checkpoint WHERE seq = 1")[0]
    _sql(settings, "UPDATE audit_checkpoint SET payload = ? WHERE seq = 1",
         (bytes(payload).replace(b'"created":"2', b'"created":"1'),))
    report = _verify(store, key)
    assert not report.ok
    assert any("signature does not verify" in p.message for p in report.problems)


def test_a_deleted_checkpoint_is_reported_at_the_one_after_it(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    _checkpoints(store, key, 3)
    _sql(settings, "DELETE FROM audit_checkpoint WHERE seq = 2")
    problem = _only(_verify(store, key))
    assert problem.kind == "checkpoint" and problem.chain is None
    assert "checkpoint 3 does not follow checkpoint 1" in problem.message


def test_a_deleted_first_checkpoint_is_reported(
        store: Store, settings: Settings, key: Ed25519PrivateKey) -> None:
    _checkpoints(store, key, 2)
    _sql(settings, "DELETE FROM audit_checkpoint WHERE seq = 1")
    problem = _only(_verify(store, key))
    assert problem.kind == "checkpoint" and "earlier checkpoints were removed" in problem.message


def test_a_checkpoint_signed_with_a_key_not_given_is_reported(
        store: Store, key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    _append(store, [_record(1)])
    _checkpoint(store, other)
    problem = _only(_verify(store, key))
    assert problem.kind == "checkpoint" and "not among the public keys given" in problem.message


def test_checkpoints_signed_before_a_key_rotation_verify_with_both_keys(
        store: Store, key: Ed25519PrivateKey) -> None:
    old = Ed25519PrivateKey.generate()
    _append(store, [_record(1)])
    _checkpoint(store, old)
    _append(store, [_record(2)])
    _checkpoint(store, key)
    report = verify(store, [key.public_key(), old.public_key()])
    assert report.ok and report.checkpoints == 2 and report.warnings == []
