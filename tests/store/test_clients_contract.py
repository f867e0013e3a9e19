"""The store's OAuth2 client registry and client-assertion replay protection
(fhirhub.store.clients), run against every backend through the ``store`` fixture.

A client authenticates with a signed JWT whose ``jti`` must not be accepted twice while
the assertion is still valid: RFC 7523 §3 (https://www.rfc-editor.org/rfc/rfc7523#section-3)
and SMART Backend Services
(https://hl7.org/fhir/smart-app-launch/backend-services.html#authenticating-to-the-token-endpoint).
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from fhirhub.config import Settings
from fhirhub.store import ClientRecord, Store, Transaction, open_store
from fhirhub.store.session import SqlSession

T0 = "2026-01-01T00:00:00.000000Z"
T1 = "2026-01-01T00:05:00.000000Z"
T2 = "2026-01-01T00:10:00.000000Z"
T3 = "2026-01-01T00:15:00.000000Z"


def a_client(cid: str = "app-1", *, created: str = T0, **kw: object) -> ClientRecord:
    record = ClientRecord(
        id=cid, name=f"App {cid}", jwks='{"keys":[{"kty":"EC","crv":"P-384","kid":"k1"}]}',
        jwks_url=None, scopes=("system/Patient.rs", "system/Observation.rs"), rate_limit=120,
        status="active", created=created, updated=created,
    )
    return replace(record, **kw)  # type: ignore[arg-type]


def save(store: Store, client: ClientRecord) -> None:
    store.run([], lambda tx: tx.save_client(client))


def use(store: Store, jti: str, *, client_id: str = "app-1", expires: str = T2,
        now: str = T1) -> bool:
    return store.run([], lambda tx: tx.use_jti(client_id, jti, expires, now))


# -- clients ----------------------------------------------------------------------------------


def test_saved_client_is_read_back_with_every_field(store: Store) -> None:
    client = a_client()
    save(store, client)
    assert store.client("app-1") == client


def test_client_with_a_key_url_and_no_scopes_is_read_back(store: Store) -> None:
    client = a_client(jwks=None, jwks_url="https://app.example/jwks.json", scopes=(),
                      rate_limit=0, status="disabled")
    save(store, client)
    assert store.client("app-1") == client


def test_saving_a_client_again_replaces_it(store: Store) -> None:
    save(store, a_client())
    changed = a_client(name="Renamed", scopes=("system/*.rs",), status="disabled", updated=T1)
    save(store, changed)
    assert store.client("app-1") == changed
    assert store.clients() == [changed]


def test_clients_are_listed_in_order_of_creation(store: Store) -> None:
    oldest, newest = a_client("z", created=T0), a_client("y", created=T2)
    tie_b, tie_a = a_client("b", created=T1), a_client("a", created=T1)
    for client in (newest, tie_b, oldest, tie_a):
        save(store, client)
    # Same creation instant: by id.
    assert [c.id for c in store.clients()] == ["z", "a", "b", "y"]


def test_unknown_client_is_none(store: Store) -> None:
    assert store.client("nobody") is None
    assert store.clients() == []


def test_a_transaction_reads_the_client_it_saved(store: Store) -> None:
    client = a_client()

    def work(tx: Transaction) -> ClientRecord | None:
        tx.save_client(client)
        return tx.client("app-1")

    assert store.run([], work) == client


def test_a_database_from_before_clients_gains_the_tables_on_open(
        store: Store, settings: Settings) -> None:
    def drop(tx: Transaction) -> None:
        # The tables as a database from before this release lacks them.
        assert isinstance(tx, SqlSession)
        tx.conn.execute("DROP TABLE auth_client")
        tx.conn.execute("DROP TABLE auth_jti")

    store.run([], drop)
    reopened = open_store(settings)
    try:
        save(reopened, a_client())
        assert reopened.client("app-1") == a_client()
        assert use(reopened, "j1")
    finally:
        reopened.close()


# -- client-assertion ids (jti) ---------------------------------------------------------------


def test_first_use_of_a_jti_is_accepted(store: Store) -> None:
    assert use(store, "j1")


def test_second_use_of_a_jti_within_its_lifetime_is_a_replay(store: Store) -> None:
    assert use(store, "j1", expires=T2, now=T0)
    assert not use(store, "j1", expires=T3, now=T1)
    assert not use(store, "j1", expires=T3, now=T2)  # expires is inclusive


def test_same_jti_from_another_client_is_not_a_replay(store: Store) -> None:
    assert use(store, "j1", client_id="app-1")
    assert use(store, "j1", client_id="app-2")


def test_jti_may_be_used_again_after_its_lifetime(store: Store) -> None:
    assert use(store, "j1", expires=T1, now=T0)
    assert use(store, "j1", expires=T3, now=T2)
    # The new use replaced the old one: it lives until its own expiry.
    assert not use(store, "j1", expires=T3, now=T3)


def test_concurrent_uses_of_one_jti_accept_exactly_one(store: Store) -> None:
    threads_n = 8
    barrier = threading.Barrier(threads_n)
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        accepted = use(store, "race")
        with lock:
            results.append(accepted)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * (threads_n - 1) + [True]


def test_a_jti_used_in_a_transaction_that_rolls_back_is_not_recorded(store: Store) -> None:
    class Abort(Exception):
        pass

    def work(tx: Transaction) -> None:
        assert tx.use_jti("app-1", "j1", T2, T1)
        raise Abort

    with pytest.raises(Abort):
        store.run([], work)
    assert use(store, "j1")


def test_purge_jtis_removes_only_expired(store: Store) -> None:
    assert use(store, "old", expires=T1, now=T0)
    assert use(store, "edge", expires=T2, now=T0)
    assert use(store, "live", expires=T3, now=T0)
    assert store.purge_jtis(T2) == 1
    # Those kept are still replays; the purged one is gone.
    assert not use(store, "edge", expires=T3, now=T0)
    assert not use(store, "live", expires=T3, now=T0)
    assert use(store, "old", expires=T3, now=T0)
