"""The store contract's support for reindexing (fhirhub.store.base: ``current_page``,
``Transaction.replace_index``, ``read_meta``/``write_meta``), run against every backend.

Reindexing (``fhirhub reindex``, README "Custom search parameters and reindex") rebuilds the
index rows of current resources while the server keeps writing
(https://hl7.org/fhir/R4/searchparameter.html: a server's own parameters apply to data
already stored once it has been reindexed).
"""

from __future__ import annotations

import threading
import time

from fhirhub.search.types import (
    DateRow,
    IndexRows,
    Predicate,
    RangeValue,
    SearchQuery,
    StringRow,
    TokenRow,
    TokenValue,
    UriRow,
)
from fhirhub.store import Store, StoredVersion

from .test_contract import put, version

MOTHER = "mothers-maiden-name"


def keys(page: list[StoredVersion]) -> list[tuple[str, str]]:
    return [(v.resource_type, v.id) for v in page]


def found(store: Store, predicate: Predicate, rtype: str = "Patient") -> list[str]:
    return sorted(m.id for m in store.search(SearchQuery((rtype,), (predicate,))).matches)


def by_mother(store: Store, name: str) -> list[str]:
    return found(store, Predicate(MOTHER, "string", None, (name,)))


def mother(name: str) -> IndexRows:
    return IndexRows(string=[StringRow(MOTHER, name.lower(), name)])


# -- current_page ---------------------------------------------------------------------------


def test_current_page_walks_current_resources_in_type_and_id_order(store: Store) -> None:
    for rtype, rid in [("Patient", "b"), ("Observation", "z"), ("Patient", "a"),
                       ("Encounter", "m"), ("Patient", "c")]:
        put(store, version(rid, rtype=rtype))
    walked: list[tuple[str, str]] = []
    after: tuple[str, str] | None = None
    while page := store.current_page(after, count=2):
        assert len(page) <= 2
        walked += keys(page)
        after = walked[-1]
    assert walked == [("Encounter", "m"), ("Observation", "z"), ("Patient", "a"),
                      ("Patient", "b"), ("Patient", "c")]


def test_current_page_leaves_out_deleted_resources_and_gives_bodies(store: Store) -> None:
    put(store, version("a", 1))
    put(store, version("a", 2))
    put(store, version("gone", 1))
    put(store, version("gone", 2, deleted=True))
    [only] = store.current_page()
    assert (only.id, only.version_id, only.deleted) == ("a", 2, False)
    assert only.body == b'{"resourceType":"Patient","id":"a","v":2}'


def test_current_page_keeps_to_the_types_given(store: Store) -> None:
    for rtype in ("Patient", "Observation", "Encounter"):
        put(store, version("x", rtype=rtype))
    assert keys(store.current_page(types=("Patient", "Encounter"))) == [
        ("Encounter", "x"), ("Patient", "x")]
    assert keys(store.current_page(("Encounter", "x"), types=("Patient", "Encounter"))) == [
        ("Patient", "x")]


def test_current_page_is_also_read_inside_a_transaction(store: Store) -> None:
    put(store, version("a"))
    with store.transaction() as tx:
        tx.write(version("b"), IndexRows())
        assert keys(tx.current_page(("Patient", "a"))) == [("Patient", "b")]


# -- replace_index ---------------------------------------------------------------------------


def test_replace_index_replaces_the_rows_of_every_kind(store: Store) -> None:
    old = IndexRows(token=[TokenRow("identifier", "s", "1")],
                    string=[StringRow("family", "old", "Old")],
                    date=[DateRow("birthdate", "2000-01-01T00:00:00.000000",
                                  "2000-01-01T23:59:59.999999")],
                    uri=[UriRow("url", "http://old")])
    put(store, version("a"), old)
    new = IndexRows(token=[TokenRow("identifier", "s", "2")], string=mother("Smith").string)
    with store.transaction() as tx:
        assert tx.replace_index("Patient", "a", 1, new) is True
    day = RangeValue("eq", "2000-01-01T00:00:00.000000", "2000-01-01T23:59:59.999999")
    assert found(store, Predicate("identifier", "token", None, (TokenValue("s", "1"),))) == []
    assert found(store, Predicate("family", "string", None, ("old",))) == []
    assert found(store, Predicate("birthdate", "date", None, (day,))) == []
    assert found(store, Predicate("url", "uri", None, ("http://old",))) == []
    assert found(store, Predicate("identifier", "token", None, (TokenValue("s", "2"),))) == ["a"]
    assert by_mother(store, "smi") == ["a"]


def test_replace_index_touches_neither_history_nor_the_version(store: Store) -> None:
    put(store, version("a"))
    with store.transaction() as tx:
        tx.replace_index("Patient", "a", 1, mother("Jones"))
    current = store.read("Patient", "a")
    assert current is not None and current.version_id == 1
    assert len(store.history("Patient", "a").versions) == 1


def test_replace_index_of_a_version_no_longer_current_changes_nothing(store: Store) -> None:
    put(store, version("a", 1), mother("First"))
    put(store, version("a", 2), mother("Second"))
    with store.transaction() as tx:
        assert tx.replace_index("Patient", "a", 1, mother("Stale")) is False
    assert by_mother(store, "stale") == []
    assert by_mother(store, "second") == ["a"]


def test_replace_index_of_a_deleted_or_unknown_resource_returns_false(store: Store) -> None:
    put(store, version("a", 1))
    put(store, version("a", 2, deleted=True))
    with store.transaction() as tx:
        assert tx.replace_index("Patient", "a", 2, mother("Ghost")) is False
        assert tx.replace_index("Patient", "never", 1, mother("Ghost")) is False
    assert by_mother(store, "ghost") == []


def test_replace_index_rolled_back_leaves_the_old_rows(store: Store) -> None:
    put(store, version("a"), mother("Kept"))
    try:
        with store.transaction() as tx:
            tx.replace_index("Patient", "a", 1, mother("Lost"))
            raise RuntimeError("interrupted")
    except RuntimeError:
        pass
    assert by_mother(store, "kept") == ["a"]
    assert by_mother(store, "lost") == []


def test_a_write_during_replace_index_waits_for_it_and_its_rows_win(store: Store) -> None:
    put(store, version("a", 1), mother("Before"))
    written = threading.Event()

    def writer() -> None:
        put(store, version("a", 2), mother("Writer"))
        written.set()

    with store.transaction() as tx:
        assert tx.replace_index("Patient", "a", 1, mother("Reindex"))
        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.3)
        assert not written.is_set(), "the write did not wait for the reindex to commit"
    thread.join(timeout=10)
    assert written.is_set()
    assert by_mother(store, "writer") == ["a"]
    assert by_mother(store, "reindex") == []


# -- meta values -----------------------------------------------------------------------------


def test_meta_values_are_written_replaced_and_removed(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.read_meta("reindex.checkpoint") is None
        tx.write_meta("reindex.checkpoint", '{"after": ["Patient", "a"]}')
    with store.transaction() as tx:
        assert tx.read_meta("reindex.checkpoint") == '{"after": ["Patient", "a"]}'
        tx.write_meta("reindex.checkpoint", "second")
    with store.transaction() as tx:
        assert tx.read_meta("reindex.checkpoint") == "second"
        tx.write_meta("reindex.checkpoint", None)
        tx.write_meta("never.set", None)
    with store.transaction() as tx:
        assert tx.read_meta("reindex.checkpoint") is None


def test_meta_value_of_a_rolled_back_transaction_is_not_kept(store: Store) -> None:
    try:
        with store.transaction() as tx:
            tx.write_meta("reindex.checkpoint", "lost")
            raise RuntimeError("interrupted")
    except RuntimeError:
        pass
    assert store.run([], lambda tx: tx.read_meta("reindex.checkpoint")) is None
