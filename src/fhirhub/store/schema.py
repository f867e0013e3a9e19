"""The tables, the same on every backend but for a few type names.

``resources`` holds the current version of each resource (its body too, so a read is one
primary-key lookup); ``history`` holds every version, in commit order (``seq``). The
``idx_*`` tables hold the search index of current versions only; their value indexes lead
with the parameter code, so one index serves type-level and system-level searches alike. Timestamps are
fixed-width UTC ISO text so that text order is time order on both backends.

Every statement is idempotent and runs each time a store opens, so a database created by
an older release gains the tables added since (``auth_client`` and ``auth_jti``, say).
"""

from __future__ import annotations

from dataclasses import dataclass

from fhirhub.store.audit import GENESIS, PG_CHAINS, SQLITE_CHAINS

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Dialect:
    name: str
    blob: str
    serial_pk: str
    real: str
    text: str  # byte-order collation on both, so that both sort and compare alike


SQLITE = Dialect("sqlite", "BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT", "REAL", "TEXT")
POSTGRES = Dialect(
    "postgresql", "BYTEA", "BIGSERIAL PRIMARY KEY", "DOUBLE PRECISION", 'TEXT COLLATE "C"'
)

INDEX_TABLES: dict[str, tuple[str, ...]] = {
    "idx_token": ("param", "system", "code", "text"),
    "idx_string": ("param", "norm", "exact"),
    "idx_reference": ("param", "ref_type", "ref_id", "url"),
    "idx_date": ("param", "lo", "hi"),
    "idx_number": ("param", "lo", "hi"),
    "idx_quantity": ("param", "lo", "hi", "system", "code", "unit"),
    "idx_uri": ("param", "value"),
    "idx_composite": ("param", "combo", "pos", "system", "code", "lo", "hi", "dlo", "dhi"),
    "idx_text": ("param", "words"),
}


def ddl(d: Dialect) -> list[str]:
    """Statements creating every table and index (idempotent)."""
    t = d.text
    key = "res_type TEXT NOT NULL, res_id TEXT NOT NULL"
    stmts = [
        "CREATE TABLE IF NOT EXISTS fhirhub_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS resources (
            {key}, version_id INTEGER NOT NULL, last_updated TEXT NOT NULL,
            deleted SMALLINT NOT NULL, body {d.blob},
            PRIMARY KEY (res_type, res_id))""",
        "CREATE INDEX IF NOT EXISTS resources_updated ON resources (res_type, last_updated, res_id)",
        # Live resources of a type, in id order: counts (_total) and unfiltered pages read
        # this index alone.
        "CREATE INDEX IF NOT EXISTS resources_live ON resources (res_type, res_id)"
        " WHERE deleted = 0",
        f"""CREATE TABLE IF NOT EXISTS history (
            seq {d.serial_pk}, {key}, version_id INTEGER NOT NULL, last_updated TEXT NOT NULL,
            method TEXT NOT NULL, deleted SMALLINT NOT NULL, body {d.blob},
            UNIQUE (res_type, res_id, version_id))""",
        "CREATE INDEX IF NOT EXISTS history_type ON history (res_type, seq)",
        "CREATE INDEX IF NOT EXISTS history_updated ON history (last_updated)",
        f"""CREATE TABLE IF NOT EXISTS idx_token ({key}, param TEXT NOT NULL,
            system TEXT, code TEXT, text TEXT)""",
        # By value, then the resource: a list of matches, and a one-seek check of one
        # resource (search_sql's correlated EXISTS for system|code).
        "DROP INDEX IF EXISTS idx_token_code",
        "CREATE INDEX IF NOT EXISTS idx_token_value"
        " ON idx_token (param, code, system, res_type, res_id)",
        "CREATE INDEX IF NOT EXISTS idx_token_res ON idx_token (res_type, res_id)",
        f"""CREATE TABLE IF NOT EXISTS idx_string ({key}, param TEXT NOT NULL,
            norm TEXT NOT NULL, exact TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS idx_string_norm ON idx_string (param, norm, res_type)",
        "CREATE INDEX IF NOT EXISTS idx_string_res ON idx_string (res_type, res_id)",
        f"""CREATE TABLE IF NOT EXISTS idx_reference ({key}, param TEXT NOT NULL,
            ref_type TEXT, ref_id TEXT, url TEXT)""",
        # By target: the id first (the most selective), then the parameter and the type of
        # the referring resource, which every reference search gives; the target's type,
        # which a bare id does not give, last.
        "DROP INDEX IF EXISTS idx_reference_target",
        "CREATE INDEX IF NOT EXISTS idx_reference_ref"
        " ON idx_reference (ref_id, param, res_type, ref_type)",
        "CREATE INDEX IF NOT EXISTS idx_reference_res ON idx_reference (res_type, res_id)",
        "CREATE INDEX IF NOT EXISTS idx_reference_url ON idx_reference (url, param, res_type)"
        " WHERE url IS NOT NULL",
        f"""CREATE TABLE IF NOT EXISTS idx_date ({key}, param TEXT NOT NULL,
            lo TEXT NOT NULL, hi TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS idx_date_lo ON idx_date (param, lo, res_type)",
        "CREATE INDEX IF NOT EXISTS idx_date_hi ON idx_date (param, hi, res_type)",
        "CREATE INDEX IF NOT EXISTS idx_date_res ON idx_date (res_type, res_id)",
        f"""CREATE TABLE IF NOT EXISTS idx_number ({key}, param TEXT NOT NULL,
            lo {d.real} NOT NULL, hi {d.real} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS idx_number_lo ON idx_number (param, lo, res_type)",
        "CREATE INDEX IF NOT EXISTS idx_number_res ON idx_number (res_type, res_id)",
        f"""CREATE TABLE IF NOT EXISTS idx_quantity ({key}, param TEXT NOT NULL,
            lo {d.real} NOT NULL, hi {d.real} NOT NULL, system TEXT, code TEXT, unit TEXT)""",
        "CREATE INDEX IF NOT EXISTS idx_quantity_lo ON idx_quantity (param, lo, res_type)",
        "CREATE INDEX IF NOT EXISTS idx_quantity_res ON idx_quantity (res_type, res_id)",
        f"""CREATE TABLE IF NOT EXISTS idx_uri ({key}, param TEXT NOT NULL,
            value TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS idx_uri_value ON idx_uri (param, value, res_type)",
        "CREATE INDEX IF NOT EXISTS idx_uri_res ON idx_uri (res_type, res_id)",
        f"""CREATE TABLE IF NOT EXISTS idx_composite ({key}, param TEXT NOT NULL,
            combo INTEGER NOT NULL, pos SMALLINT NOT NULL, system TEXT, code TEXT,
            lo {d.real}, hi {d.real}, dlo TEXT, dhi TEXT)""",
        "CREATE INDEX IF NOT EXISTS idx_composite_code"
        " ON idx_composite (param, pos, code, res_type)",
        "CREATE INDEX IF NOT EXISTS idx_composite_res ON idx_composite (res_type, res_id)",
        f"""CREATE TABLE IF NOT EXISTS idx_text ({key}, param TEXT NOT NULL,
            words TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS idx_text_res ON idx_text (res_type, res_id)",
        f"""CREATE TABLE IF NOT EXISTS idempotency (
            request_id TEXT PRIMARY KEY, body_digest TEXT NOT NULL, status INTEGER NOT NULL,
            headers TEXT NOT NULL, body {d.blob} NOT NULL, created TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created)",
        *_audit_ddl(d),
        *_auth_ddl(),
    ]
    # Every other TEXT column gets the dialect's collation too.
    return [s.replace(" TEXT", f" {t}") if t != "TEXT" else s for s in stmts]


def _audit_ddl(d: Dialect) -> list[str]:
    """The audit log (see :mod:`fhirhub.store.audit`): records in their chains, the chain
    heads, search keys, kept bodies and signed checkpoints. Secondary indexes are few and
    mostly partial: every request appends a record, so each index is a cost on every
    request."""
    chains = PG_CHAINS if d.name == "postgresql" else SQLITE_CHAINS
    pos = "chain INTEGER NOT NULL, chain_seq BIGINT NOT NULL"
    return [
        f"""CREATE TABLE IF NOT EXISTS audit_event (
            {pos}, id TEXT NOT NULL, recorded TEXT NOT NULL, interaction TEXT NOT NULL,
            outcome TEXT NOT NULL, request_id TEXT, correlation_id TEXT, client TEXT,
            user_id TEXT, record {d.blob} NOT NULL, prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL, PRIMARY KEY (chain, chain_seq))""",
        "CREATE UNIQUE INDEX IF NOT EXISTS audit_event_id ON audit_event (id)",
        "CREATE INDEX IF NOT EXISTS audit_event_recorded ON audit_event (recorded)",
        "CREATE INDEX IF NOT EXISTS audit_event_request ON audit_event (request_id)",
        "CREATE INDEX IF NOT EXISTS audit_event_correlation ON audit_event (correlation_id)"
        " WHERE correlation_id IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS audit_event_client ON audit_event (client, recorded)"
        " WHERE client IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS audit_event_user ON audit_event (user_id, recorded)"
        " WHERE user_id IS NOT NULL",
        f"""CREATE TABLE IF NOT EXISTS audit_ref (
            key TEXT NOT NULL, {pos}, recorded TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS audit_ref_key ON audit_ref (key, recorded)",
        "CREATE INDEX IF NOT EXISTS audit_ref_pos ON audit_ref (chain, chain_seq)",
        """CREATE TABLE IF NOT EXISTS audit_chain (
            chain INTEGER PRIMARY KEY, chain_seq BIGINT NOT NULL, hash TEXT NOT NULL)""",
        *(f"INSERT INTO audit_chain (chain, chain_seq, hash) VALUES ({c}, 0, '{GENESIS}')"
          " ON CONFLICT (chain) DO NOTHING" for c in range(chains)),
        f"""CREATE TABLE IF NOT EXISTS audit_body (
            {pos}, part TEXT NOT NULL, mode TEXT NOT NULL, content {d.blob} NOT NULL,
            expires TEXT, PRIMARY KEY (chain, chain_seq, part))""",
        "CREATE INDEX IF NOT EXISTS audit_body_expires ON audit_body (expires)"
        " WHERE expires IS NOT NULL",
        f"""CREATE TABLE IF NOT EXISTS audit_checkpoint (
            seq {d.serial_pk}, created TEXT NOT NULL, payload {d.blob} NOT NULL,
            signature TEXT NOT NULL)""",
    ]


def _auth_ddl() -> list[str]:
    """OAuth2 clients and the client-assertion ids they have used (see
    :mod:`fhirhub.store.clients`). The (client_id, jti) key is what makes a replay lose a
    race: concurrent uses of one jti collide on it."""
    return [
        """CREATE TABLE IF NOT EXISTS auth_client (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, jwks TEXT, jwks_url TEXT,
            scopes TEXT NOT NULL, rate_limit INTEGER NOT NULL, status TEXT NOT NULL,
            created TEXT NOT NULL, updated TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS auth_jti (
            client_id TEXT NOT NULL, jti TEXT NOT NULL, expires TEXT NOT NULL,
            PRIMARY KEY (client_id, jti))""",
        # The purge deletes by expiry.
        "CREATE INDEX IF NOT EXISTS auth_jti_expires ON auth_jti (expires)",
    ]


__all__ = ["INDEX_TABLES", "POSTGRES", "SCHEMA_VERSION", "SQLITE", "Dialect", "ddl"]
