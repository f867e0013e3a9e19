"""The SQL both backends share: one :class:`SqlSession` over one open connection.

A session runs the contract's reads and writes with ``?`` placeholders; the PostgreSQL
backend's connection adapter rewrites them to ``%s``. Backend classes only open
connections, begin and end transactions and take locks.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import orjson

from fhirhub.search.types import Access, IndexRows, SearchQuery
from fhirhub.store import audit_sql
from fhirhub.store.audit import (
    AuditBody,
    AuditEntry,
    AuditPage,
    AuditQuery,
    AuditRow,
    ChainHead,
    Checkpoint,
)
from fhirhub.store.base import (
    HistoryPage,
    RememberedResponse,
    SearchPage,
    StoredVersion,
    Transaction,
)
from fhirhub.store.clients import ClientRecord
from fhirhub.store.schema import INDEX_TABLES
from fhirhub.store.search_sql import SearchCompiler, visible


class Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    @property
    def rowcount(self) -> int: ...


class Connection(Protocol):
    """The little of DB-API both our SQLite and psycopg adapters provide."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any: ...
    def batch(self) -> AbstractContextManager[Any]:
        """Statements inside need no answers until the end (PostgreSQL pipelines them)."""
        ...


ITERATE_ROUNDS = 8  # _include:iterate follows references this many steps at most
ESTIMATE_EXACT = 1000  # _total=estimate counts exactly up to this many matches
_COLUMNS = "res_type, res_id, version_id, last_updated, deleted, body"
_INSERTS = {
    "token": "INSERT INTO idx_token (res_type, res_id, param, system, code, text)"
             " VALUES (?, ?, ?, ?, ?, ?)",
    "string": "INSERT INTO idx_string (res_type, res_id, param, norm, exact) VALUES (?, ?, ?, ?, ?)",
    "reference": "INSERT INTO idx_reference (res_type, res_id, param, ref_type, ref_id, url)"
                 " VALUES (?, ?, ?, ?, ?, ?)",
    "date": "INSERT INTO idx_date (res_type, res_id, param, lo, hi) VALUES (?, ?, ?, ?, ?)",
    "number": "INSERT INTO idx_number (res_type, res_id, param, lo, hi) VALUES (?, ?, ?, ?, ?)",
    "quantity": "INSERT INTO idx_quantity (res_type, res_id, param, lo, hi, system, code, unit)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "uri": "INSERT INTO idx_uri (res_type, res_id, param, value) VALUES (?, ?, ?, ?)",
    "composite": "INSERT INTO idx_composite (res_type, res_id, param, combo, pos, system, code,"
                 " lo, hi, dlo, dhi) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "text": "INSERT INTO idx_text (res_type, res_id, param, words) VALUES (?, ?, ?, ?)",
}


_CLIENT_COLUMNS = "id, name, jwks, jwks_url, scopes, rate_limit, status, created, updated"


def row_to_version(row: Sequence[Any], method: str = "PUT") -> StoredVersion:
    body = row[5]
    return StoredVersion(
        resource_type=row[0],
        id=row[1],
        version_id=int(row[2]),
        last_updated=row[3],
        deleted=bool(row[4]),
        body=bytes(body) if body is not None else None,
        method=method,
    )


def _row_to_client(row: Sequence[Any]) -> ClientRecord:
    return ClientRecord(
        id=row[0], name=row[1], jwks=row[2], jwks_url=row[3],
        scopes=tuple(orjson.loads(row[4])), rate_limit=int(row[5]), status=row[6],
        created=row[7], updated=row[8],
    )


def _real(value: Any) -> float | None:
    return None if value is None else float(value)


def encode_cursor(values: Sequence[Any], *, backward: bool = False) -> str:
    """An opaque keyset position: the sort values of a row, and whether the page wanted is
    the one before that row (``previous``) or after it (``next``)."""
    payload = {"b" if backward else "a": list(values)}
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[list[Any], bool]:
    """The sort values and direction of ``cursor``; ValueError when it is not one of ours."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        value = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (orjson.JSONDecodeError, ValueError, UnicodeError) as exc:
        raise ValueError("cursor is not ours") from exc
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError("cursor is not ours")
    ((key, values),) = value.items()
    if key not in ("a", "b") or not isinstance(values, list):
        raise ValueError("cursor is not ours")
    return values, key == "b"


class SqlSession(Transaction):
    """Contract reads and writes over one connection (inside or outside a transaction)."""

    def __init__(self, conn: Connection, compiler: SearchCompiler) -> None:
        self.conn = conn
        self.compiler = compiler

    # -- reads ----------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredVersion | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM resources WHERE res_type = ? AND res_id = ?",
            (resource_type, resource_id),
        ).fetchone()
        return None if row is None else row_to_version(row)

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredVersion | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS}, method FROM history"
            " WHERE res_type = ? AND res_id = ? AND version_id = ?",
            (resource_type, resource_id, version_id),
        ).fetchone()
        return None if row is None else row_to_version(row, row[6])

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
        where: list[str] = []
        params: list[Any] = []
        if access is not None:
            sql, restriction = visible(access, "h")
            where.append(sql)
            params.extend(restriction)
        if resource_type is not None:
            where.append("h.res_type = ?")
            params.append(resource_type)
        if resource_id is not None:
            where.append("h.res_id = ?")
            params.append(resource_id)
        if since is not None:
            where.append("h.last_updated >= ?")
            params.append(since)
        if at is not None:
            # The version current at ``at``: written by then and not yet replaced by then.
            where.append("h.last_updated <= ?")
            where.append(
                "NOT EXISTS (SELECT 1 FROM history n WHERE n.res_type = h.res_type"
                " AND n.res_id = h.res_id AND n.version_id > h.version_id"
                " AND n.last_updated <= ?)"
            )
            params.extend([at, at])
        if cursor is not None:
            where.append("h.seq < ?")
            params.append(int(cursor))
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = self.conn.execute(
            f"SELECT h.res_type, h.res_id, h.version_id, h.last_updated, h.deleted, h.body,"
            f" h.method, h.seq FROM history h {clause} ORDER BY h.seq DESC LIMIT ?",
            (*params, count + 1),
        ).fetchall()
        versions = [row_to_version(r, r[6]) for r in rows[:count]]
        next_cursor = str(rows[count - 1][7]) if len(rows) > count else None
        return HistoryPage(versions, next_cursor)

    def search(self, query: SearchQuery) -> SearchPage:
        compiled = self.compiler.compile(query)
        rows = self.conn.execute(compiled.sql, compiled.params).fetchall()
        page = rows[: query.count]
        more = len(rows) > query.count  # beyond the page, in the direction read
        if compiled.backward:
            page.reverse()  # read backwards from the cursor: put back in order
        matches = [row_to_version(r) for r in page]
        # Read forwards: more rows means a next page, and a cursor means rows before.
        # Read backwards from a cursor: the cursor's row and those after it follow, and
        # more rows means a previous page.
        has_after = more or compiled.backward
        has_before = more if compiled.backward else query.cursor is not None
        next_cursor = previous_cursor = None
        if page and has_after:
            next_cursor = encode_cursor(compiled.cursor_values(page[-1]))
        if page and has_before:
            previous_cursor = encode_cursor(compiled.cursor_values(page[0]), backward=True)
        total = None
        if query.total == "accurate":
            count_sql, count_params = self.compiler.count(query)
            total = int(self.conn.execute(count_sql, count_params).fetchone()[0])
        elif query.total == "estimate":
            total = self._estimate(query)
        included = self._included(query, matches)
        return SearchPage(matches, included, total, next_cursor, previous_cursor)

    def _estimate(self, query: SearchQuery) -> int:
        """``_total=estimate``: exact up to ESTIMATE_EXACT matches (cheap: the count stops
        there), the backend's estimate beyond."""
        sql, params = self.compiler.count(query, limit=ESTIMATE_EXACT + 1)
        found = int(self.conn.execute(sql, params).fetchone()[0])
        if found <= ESTIMATE_EXACT:
            return found
        if self.compiler.dialect == "postgresql":
            sql, params = self.compiler.matching(query)
            plan = self.conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()[0]
            if isinstance(plan, str):
                plan = orjson.loads(plan)
            return max(int(plan[0]["Plan"]["Plan Rows"]), found)
        # SQLite has no row estimates to offer: count.
        sql, params = self.compiler.count(query)
        return int(self.conn.execute(sql, params).fetchone()[0])

    def _included(self, query: SearchQuery, matches: list[StoredVersion]) -> list[StoredVersion]:
        if not query.includes or not matches:
            return []
        seen = {(m.resource_type, m.id) for m in matches}
        found: list[StoredVersion] = []
        frontier = list(seen)
        for depth in range(ITERATE_ROUNDS):
            new: list[StoredVersion] = []
            for include in query.includes:
                if depth > 0 and not include.iterate:
                    continue
                sql, params = self.compiler.include(include, frontier, query.access)
                for row in self.conn.execute(sql, params).fetchall():
                    key = (row[0], row[1])
                    if key not in seen:
                        seen.add(key)
                        new.append(row_to_version(row))
            if not new:
                break
            new.sort(key=lambda v: (v.resource_type, v.id))
            found.extend(new)
            frontier = [(v.resource_type, v.id) for v in new]
        return found

    # -- writes ---------------------------------------------------------------------------

    def write(self, version: StoredVersion, index: IndexRows | None) -> None:
        with self.conn.batch():
            self._write(version, index)

    def _write(self, version: StoredVersion, index: IndexRows | None) -> None:
        v = version
        deleted = 1 if v.deleted else 0
        self.conn.execute(
            "INSERT INTO history (res_type, res_id, version_id, last_updated, method, deleted,"
            " body) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (v.resource_type, v.id, v.version_id, v.last_updated, v.method, deleted, v.body),
        )
        self.conn.execute(
            f"INSERT INTO resources ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (res_type, res_id) DO UPDATE SET version_id = excluded.version_id,"
            " last_updated = excluded.last_updated, deleted = excluded.deleted,"
            " body = excluded.body",
            (v.resource_type, v.id, v.version_id, v.last_updated, deleted, v.body),
        )
        if v.version_id > 1:
            self._clear_index(v.resource_type, v.id)
        if index is not None and not v.deleted:
            self._write_index(v.resource_type, v.id, index)

    def _clear_index(self, resource_type: str, resource_id: str) -> None:
        """Remove the resource's rows from every index table."""
        for table in INDEX_TABLES:
            self.conn.execute(f"DELETE FROM {table} WHERE res_type = ? AND res_id = ?",
                              (resource_type, resource_id))

    def _write_index(self, resource_type: str, resource_id: str, index: IndexRows) -> None:
        t, i = resource_type, resource_id
        tables: dict[str, list[tuple[Any, ...]]] = {
            "token": [(t, i, r.param, r.system, r.code, r.text) for r in index.token],
            "string": [(t, i, r.param, r.norm, r.exact) for r in index.string],
            "reference": [(t, i, r.param, r.ref_type, r.ref_id, r.url) for r in index.reference],
            "date": [(t, i, r.param, r.lo, r.hi) for r in index.date],
            "number": [(t, i, r.param, float(r.lo), float(r.hi)) for r in index.number],
            "quantity": [(t, i, r.param, float(r.lo), float(r.hi), r.system, r.code, r.unit)
                         for r in index.quantity],
            "uri": [(t, i, r.param, r.value) for r in index.uri],
            "composite": [(t, i, r.param, r.combo, r.pos, r.system, r.code, _real(r.lo),
                           _real(r.hi), r.dlo, r.dhi) for r in index.composite],
            "text": [(t, i, r.param, r.words) for r in index.text],
        }
        for kind, rows in tables.items():
            if rows:
                self.conn.executemany(_INSERTS[kind], rows)

    def remembered(self, request_id: str, not_before: str) -> RememberedResponse | None:
        row = self.conn.execute(
            "SELECT request_id, body_digest, status, headers, body, created FROM idempotency"
            " WHERE request_id = ? AND created >= ?",
            (request_id, not_before),
        ).fetchone()
        if row is None:
            return None
        return RememberedResponse(
            request_id=row[0], body_digest=row[1], status=int(row[2]),
            headers=orjson.loads(row[3]), body=bytes(row[4]), created=row[5],
        )

    def remember(self, response: RememberedResponse) -> None:
        r = response
        self.conn.execute(
            "INSERT INTO idempotency (request_id, body_digest, status, headers, body, created)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO UPDATE SET"
            " body_digest = excluded.body_digest, status = excluded.status,"
            " headers = excluded.headers, body = excluded.body, created = excluded.created",
            (r.request_id, r.body_digest, r.status, orjson.dumps(r.headers).decode(), r.body,
             r.created),
        )

    # -- OAuth2 clients and their used assertion ids ------------------------------------------

    def client(self, client_id: str) -> ClientRecord | None:
        row = self.conn.execute(
            f"SELECT {_CLIENT_COLUMNS} FROM auth_client WHERE id = ?", (client_id,)
        ).fetchone()
        return None if row is None else _row_to_client(row)

    def clients(self) -> list[ClientRecord]:
        rows = self.conn.execute(
            f"SELECT {_CLIENT_COLUMNS} FROM auth_client ORDER BY created, id"
        ).fetchall()
        return [_row_to_client(r) for r in rows]

    def save_client(self, client: ClientRecord) -> None:
        c = client
        self.conn.execute(
            f"INSERT INTO auth_client ({_CLIENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, jwks = excluded.jwks,"
            " jwks_url = excluded.jwks_url, scopes = excluded.scopes,"
            " rate_limit = excluded.rate_limit, status = excluded.status,"
            " created = excluded.created, updated = excluded.updated",
            (c.id, c.name, c.jwks, c.jwks_url, orjson.dumps(list(c.scopes)).decode(),
             c.rate_limit, c.status, c.created, c.updated),
        )

    def use_jti(self, client_id: str, jti: str, expires: str, now: str) -> bool:
        # One statement, so that concurrent uses race on the primary key rather than on a
        # read-then-write: a second inserter waits for the first to commit, then finds a
        # live row, updates nothing and changes no row. A row whose lifetime has ended is
        # taken over (the WHERE), which counts as a first use.
        cur = self.conn.execute(
            "INSERT INTO auth_jti (client_id, jti, expires) VALUES (?, ?, ?)"
            " ON CONFLICT (client_id, jti) DO UPDATE SET expires = excluded.expires"
            " WHERE auth_jti.expires < ?",
            (client_id, jti, expires, now),
        )
        return cur.rowcount == 1

    # -- reindexing: walking the current versions, replacing one's index, meta values -----

    def current_page(self, after: tuple[str, str] | None = None, *,
                     types: Sequence[str] = (), count: int = 200) -> list[StoredVersion]:
        where = ["deleted = 0"]
        params: list[Any] = []
        if types:
            where.append(f"res_type IN ({', '.join('?' for _ in types)})")
            params += types
        if after is not None:
            # A row value: both backends walk the primary key from there.
            where.append("(res_type, res_id) > (?, ?)")
            params += after
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM resources WHERE {' AND '.join(where)}"
            " ORDER BY res_type, res_id LIMIT ?",
            (*params, count),
        ).fetchall()
        return [row_to_version(r) for r in rows]

    def replace_index(self, resource_type: str, resource_id: str, version_id: int,
                      index: IndexRows) -> bool:
        # PostgreSQL: the row lock makes a concurrent write of this resource wait for our
        # commit (and, if it came first, the re-checked version no longer matches). SQLite
        # needs none: the transaction holds the database write lock.
        lock = " FOR UPDATE" if self.compiler.dialect == "postgresql" else ""
        row = self.conn.execute(
            "SELECT version_id FROM resources WHERE res_type = ? AND res_id = ?"
            f" AND version_id = ? AND deleted = 0{lock}",
            (resource_type, resource_id, version_id),
        ).fetchone()
        if row is None:
            return False
        with self.conn.batch():
            self._clear_index(resource_type, resource_id)
            self._write_index(resource_type, resource_id, index)
        return True

    def read_meta(self, name: str) -> str | None:
        row = self.conn.execute("SELECT value FROM fhirhub_meta WHERE name = ?",
                                (name,)).fetchone()
        return None if row is None else str(row[0])

    def write_meta(self, name: str, value: str | None) -> None:
        if value is None:
            self.conn.execute("DELETE FROM fhirhub_meta WHERE name = ?", (name,))
            return
        self.conn.execute(
            "INSERT INTO fhirhub_meta (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    # -- the audit log: SQL in audit_sql --------------------------------------------------

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        audit_sql.append(self.conn, self.compiler.dialect, entries)

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        audit_sql.add_checkpoint(self.conn, checkpoint)

    def audit_search(self, query: AuditQuery) -> AuditPage:
        return audit_sql.search(self.conn, query)

    def audit_count(self, query: AuditQuery) -> int:
        return audit_sql.count(self.conn, query)

    def audit_chain(self, chain: int, after: int, count: int) -> list[AuditRow]:
        return audit_sql.chain_rows(self.conn, chain, after, count)

    def audit_heads(self) -> list[ChainHead]:
        return audit_sql.heads(self.conn)

    def audit_bodies(self, chain: int, chain_seq: int) -> list[AuditBody]:
        return audit_sql.bodies(self.conn, chain, chain_seq)

    def audit_checkpoints(self, after: int = 0, count: int = 1000) -> list[Checkpoint]:
        return audit_sql.checkpoints(self.conn, after, count)

    def audit_last_checkpoint(self) -> Checkpoint | None:
        return audit_sql.last_checkpoint(self.conn)


class SessionReads:
    """The audit reads of a backend, each on a session of its own (``_reading``)."""

    def _reading(self) -> AbstractContextManager[SqlSession]:
        raise NotImplementedError

    def audit_search(self, query: AuditQuery) -> AuditPage:
        with self._reading() as s:
            return s.audit_search(query)

    def audit_count(self, query: AuditQuery) -> int:
        with self._reading() as s:
            return s.audit_count(query)

    def audit_chain(self, chain: int, after: int, count: int) -> list[AuditRow]:
        with self._reading() as s:
            return s.audit_chain(chain, after, count)

    def audit_heads(self) -> list[ChainHead]:
        with self._reading() as s:
            return s.audit_heads()

    def audit_bodies(self, chain: int, chain_seq: int) -> list[AuditBody]:
        with self._reading() as s:
            return s.audit_bodies(chain, chain_seq)

    def audit_checkpoints(self, after: int = 0, count: int = 1000) -> list[Checkpoint]:
        with self._reading() as s:
            return s.audit_checkpoints(after, count)

    def audit_last_checkpoint(self) -> Checkpoint | None:
        with self._reading() as s:
            return s.audit_last_checkpoint()


__all__ = ["Connection", "SessionReads", "SqlSession", "decode_cursor", "encode_cursor", "row_to_version"]
