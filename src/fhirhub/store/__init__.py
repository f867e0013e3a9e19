"""Storage: one contract (:mod:`fhirhub.store.base`), a SQLite and a PostgreSQL backend."""

from __future__ import annotations

from fhirhub.config import Settings
from fhirhub.store.base import (
    HistoryPage,
    RememberedResponse,
    SearchPage,
    Store,
    StoredVersion,
    Transaction,
)
from fhirhub.store.clients import ClientRecord


def open_store(settings: Settings) -> Store:
    """The backend the settings' ``database_url`` names."""
    if settings.backend == "postgresql":
        from fhirhub.store.postgres import PostgresStore

        return PostgresStore(settings.database_url, pool_size=settings.pg_pool_size)
    from fhirhub.store.sqlite import SqliteStore

    return SqliteStore(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)


__all__ = [
    "ClientRecord",
    "HistoryPage",
    "RememberedResponse",
    "SearchPage",
    "Store",
    "StoredVersion",
    "Transaction",
    "open_store",
]
