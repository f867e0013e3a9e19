"""The audit log's SQL, shared by both backends (``?`` placeholders; see session.py).

Appends take a chain head's row lock as the last thing before commit, so the lock is
held only for the inserts and the commit: on PostgreSQL ``FOR UPDATE SKIP LOCKED`` takes
any head no other transaction holds, and waits for one only when every head is busy.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from fhirhub.store.audit import (
    PG_CHAINS,
    AuditBody,
    AuditEntry,
    AuditPage,
    AuditQuery,
    AuditRow,
    ChainHead,
    Checkpoint,
    link_hash,
)

if TYPE_CHECKING:
    from fhirhub.store.session import Connection

_ROW = ("a.chain, a.chain_seq, a.id, a.recorded, a.record, a.prev_hash, a.hash, a.interaction,"
        " a.outcome, a.request_id, a.correlation_id, a.client, a.user_id")
_OPERATORS = frozenset({">=", ">", "<=", "<"})


def append(conn: Connection, dialect: str, entries: Sequence[AuditEntry]) -> None:
    """Append ``entries``, in order, to one chain."""
    if not entries:
        return
    chain, seq, prev = _take_head(conn, dialect)
    events: list[tuple[Any, ...]] = []
    refs: list[tuple[Any, ...]] = []
    bodies: list[tuple[Any, ...]] = []
    for e in entries:
        seq += 1
        digest = link_hash(prev, chain, seq, e.record)
        events.append((chain, seq, e.id, e.recorded, e.interaction, e.outcome, e.request_id,
                       e.correlation_id, e.client, e.user, e.record, prev, digest))
        refs += [(key, chain, seq, e.recorded) for key in e.refs]
        bodies += [(chain, seq, part, mode, content, e.body_expires)
                   for part, mode, content in e.bodies]
        prev = digest
    with conn.batch():
        _insert(conn, "audit_event (chain, chain_seq, id, recorded, interaction, outcome,"
                " request_id, correlation_id, client, user_id, record, prev_hash, hash)", events)
        _insert(conn, "audit_ref (key, chain, chain_seq, recorded)", refs)
        _insert(conn, "audit_body (chain, chain_seq, part, mode, content, expires)", bodies)
        conn.execute("UPDATE audit_chain SET chain_seq = ?, hash = ? WHERE chain = ?",
                     (seq, prev, chain))


_ROWS_PER_INSERT = 500


def _insert(conn: Connection, into: str, rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` with one multi-row statement per few hundred rows rather than one
    statement per row: a group of audit records is written in a handful of statements,
    which matters when the committer thread shares the interpreter with busy request
    threads (each statement gives the interpreter lock up and waits to get it back)."""
    if not rows:
        return
    width = len(rows[0])
    one = f"({', '.join('?' for _ in range(width))})"
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start:start + _ROWS_PER_INSERT]
        conn.execute(f"INSERT INTO {into} VALUES {', '.join(one for _ in chunk)}",
                     [v for row in chunk for v in row])


def _take_head(conn: Connection, dialect: str) -> tuple[int, int, str]:
    if dialect != "postgresql":
        row = conn.execute("SELECT chain, chain_seq, hash FROM audit_chain ORDER BY chain"
                           " LIMIT 1").fetchone()
    else:
        row = conn.execute("SELECT chain, chain_seq, hash FROM audit_chain"
                           " ORDER BY chain LIMIT 1 FOR UPDATE SKIP LOCKED").fetchone()
        if row is None:  # every head is held: wait for one, chosen at random
            row = conn.execute("SELECT chain, chain_seq, hash FROM audit_chain"
                               " WHERE chain = ? FOR UPDATE",
                               (random.randrange(PG_CHAINS),)).fetchone()  # noqa: S311
    return int(row[0]), int(row[1]), str(row[2])


def heads(conn: Connection) -> list[ChainHead]:
    rows = conn.execute("SELECT chain, chain_seq, hash FROM audit_chain ORDER BY chain").fetchall()
    return [ChainHead(int(r[0]), int(r[1]), str(r[2])) for r in rows]


def chain_rows(conn: Connection, chain: int, after: int, count: int) -> list[AuditRow]:
    """Records of one chain after position ``after``, in chain order."""
    rows = conn.execute(
        f"SELECT {_ROW} FROM audit_event a WHERE a.chain = ? AND a.chain_seq > ?"
        " ORDER BY a.chain_seq LIMIT ?", (chain, after, count)).fetchall()
    return _with_refs(conn, rows)


def search(conn: Connection, query: AuditQuery) -> AuditPage:
    where, params = _where(query)
    direction = "ASC" if query.oldest_first else "DESC"
    if query.cursor is not None:
        recorded, chain, seq = _decode(query.cursor)
        op = ">" if query.oldest_first else "<"
        where.append(f"(a.recorded, a.chain, a.chain_seq) {op} (?, ?, ?)")
        params += [recorded, chain, seq]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_ROW} FROM audit_event a {clause} ORDER BY a.recorded {direction},"
        f" a.chain {direction}, a.chain_seq {direction} LIMIT ?",
        (*params, query.count + 1)).fetchall()
    page = _with_refs(conn, rows[: query.count])
    more = len(rows) > query.count
    cursor = _encode(page[-1]) if more and page else None
    return AuditPage(page, cursor)


def count(conn: Connection, query: AuditQuery) -> int:
    where, params = _where(query)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return int(conn.execute(f"SELECT COUNT(*) FROM audit_event a {clause}",
                            params).fetchone()[0])


def _where(q: AuditQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for column, values in (("a.id", q.ids), ("a.request_id", q.request_ids),
                           ("a.correlation_id", q.correlation_ids), ("a.client", q.clients),
                           ("a.user_id", q.users), ("a.interaction", q.interactions),
                           ("a.outcome", q.outcomes)):
        if values:
            where.append(f"{column} IN ({', '.join('?' for _ in values)})")
            params += values
    for group in q.refs:
        where.append("EXISTS (SELECT 1 FROM audit_ref r WHERE r.chain = a.chain"
                     " AND r.chain_seq = a.chain_seq"
                     f" AND r.key IN ({', '.join('?' for _ in group)}))")
        params += group
    for op, instant in q.recorded:
        if op not in _OPERATORS:
            raise ValueError(f"not a comparison: {op}")
        where.append(f"a.recorded {op} ?")
        params.append(instant)
    return where, params


def _with_refs(conn: Connection, rows: list[Any]) -> list[AuditRow]:
    if not rows:
        return []
    found: dict[tuple[int, int], list[str]] = {}
    by_chain: dict[int, list[int]] = {}
    for r in rows:
        by_chain.setdefault(int(r[0]), []).append(int(r[1]))
    for chain, seqs in by_chain.items():
        for key, c, s in conn.execute(
                "SELECT key, chain, chain_seq FROM audit_ref WHERE chain = ? AND chain_seq"
                f" IN ({', '.join('?' for _ in seqs)})", (chain, *seqs)).fetchall():
            found.setdefault((int(c), int(s)), []).append(str(key))
    return [AuditRow(int(r[0]), int(r[1]), str(r[2]), str(r[3]), bytes(r[4]), str(r[5]),
                     str(r[6]), str(r[7]), str(r[8]), r[9], r[10], r[11], r[12],
                     tuple(sorted(found.get((int(r[0]), int(r[1])), ()))))
            for r in rows]


def bodies(conn: Connection, chain: int, chain_seq: int) -> list[AuditBody]:
    rows = conn.execute("SELECT part, mode, content, expires FROM audit_body WHERE chain = ?"
                        " AND chain_seq = ? ORDER BY part", (chain, chain_seq)).fetchall()
    return [AuditBody(str(r[0]), str(r[1]), bytes(r[2]), r[3]) for r in rows]


def purge_bodies(conn: Connection, before: str) -> int:
    cur = conn.execute("DELETE FROM audit_body WHERE expires IS NOT NULL AND expires < ?",
                       (before,))
    return int(getattr(cur, "rowcount", 0) or 0)


def add_checkpoint(conn: Connection, checkpoint: Checkpoint) -> None:
    conn.execute("INSERT INTO audit_checkpoint (created, payload, signature) VALUES (?, ?, ?)",
                 (checkpoint.created, checkpoint.payload, checkpoint.signature))


def checkpoints(conn: Connection, after: int, count: int) -> list[Checkpoint]:
    rows = conn.execute("SELECT seq, created, payload, signature FROM audit_checkpoint"
                        " WHERE seq > ? ORDER BY seq LIMIT ?", (after, count)).fetchall()
    return [Checkpoint(int(r[0]), str(r[1]), bytes(r[2]), str(r[3])) for r in rows]


def last_checkpoint(conn: Connection) -> Checkpoint | None:
    row = conn.execute("SELECT seq, created, payload, signature FROM audit_checkpoint"
                       " ORDER BY seq DESC LIMIT 1").fetchone()
    return None if row is None else Checkpoint(int(row[0]), str(row[1]), bytes(row[2]),
                                               str(row[3]))


def _encode(row: AuditRow) -> str:
    raw = orjson.dumps([row.recorded, row.chain, row.chain_seq])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, int, int]:
    """The position of ``cursor``; ValueError when it is not one of ours."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (orjson.JSONDecodeError, ValueError, UnicodeError) as exc:
        raise ValueError("cursor is not ours") from exc
    if (not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], str)
            or not all(isinstance(v, int) for v in value[1:])):
        raise ValueError("cursor is not ours")
    return value[0], value[1], value[2]


__all__ = ["add_checkpoint", "append", "bodies", "chain_rows", "checkpoints", "count", "heads",
           "last_checkpoint", "purge_bodies", "search"]
