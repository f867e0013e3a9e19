"""Shared fixtures: a store of each backend, an engine and an HTTP client over each.

PostgreSQL tests use a fresh database per test session on FHIRHUB_TEST_PG (default
postgresql://postgres@127.0.0.1:5432/postgres). When PostgreSQL cannot be reached they
skip on a developer machine, but FAIL when the CI variable is set: CI must run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from starlette.testclient import TestClient

from fhirhub.config import Settings
from fhirhub.engine import Engine
from fhirhub.store import Store, open_store

PG_ADMIN_URL = os.environ.get("FHIRHUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgresql"]


def _pg_unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI but unavailable: {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; its URL."""
    name = f"fhirhub_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        _pg_unavailable(str(exc).strip())
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def _truncate_pg(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]
        if tables:
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in tables)))


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for an empty database of each backend, with authorisation off: these
    fixtures serve the tests of what the server does; what it lets whom do is tested
    with authorisation on (tests/auth, tests/api/test_security.py)."""
    keys = {"audit_signing_key": str(tmp_path / "audit-key.pem"),
            "auth_signing_key": str(tmp_path / "auth-key.pem"), "auth": "off"}
    if request.param == "sqlite":
        return Settings(database_url=f"sqlite:///{tmp_path}/fhirhub.sqlite3", **keys)
    url: str = request.getfixturevalue("pg_database")
    _truncate_pg(url)
    return Settings(database_url=url, pg_pool_size=8, **keys)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = open_store(settings)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """An engine over an empty database of each backend, with no HTTP in front."""
    e = Engine(settings)
    try:
        yield e
    finally:
        e.store.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """An HTTP client on a fresh server of each backend (base http://testserver/fhir)."""
    from fhirhub.api import create_app

    app = create_app(settings)
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def secured_settings(settings: Settings, tmp_path: Path) -> Settings:
    """:func:`settings` with authorisation on, and the test NHS login and CIS2 issuers
    trusted (tests/auth_support.py)."""
    from tests.auth_support import issuers_file

    return settings.with_(auth="on", auth_issuers=issuers_file(tmp_path))


@pytest.fixture
def secured(secured_settings: Settings) -> Iterator[TestClient]:
    """An HTTP client on a fresh server with authorisation on, of each backend; the
    server's engine is ``secured.app.engine``."""
    from fhirhub.api import create_app

    app = create_app(secured_settings)
    with TestClient(app, base_url="http://testserver") as c:
        yield c
