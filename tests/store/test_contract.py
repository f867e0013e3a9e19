"""The store contract (fhirhub.store.base), run against every backend.

Both backends must give the same answers to the same calls: these tests are parametrised
over SQLite and PostgreSQL through the ``store`` fixture.
"""

from __future__ import annotations

import contextvars
import threading
from decimal import Decimal

import pytest

from fhirhub.errors import FhirError
from fhirhub.search._ucum import canonical
from fhirhub.search.index import CANONICAL
from fhirhub.search.types import (
    DateRow,
    IndexRows,
    Predicate,
    QuantityRow,
    RangeValue,
    ReferenceRow,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringRow,
    TokenRow,
    TokenValue,
)
from fhirhub.store import Store, StoredVersion


def version(rid: str, v: int = 1, *, at: str = "2026-01-01T00:00:00.000000Z",
            rtype: str = "Patient", deleted: bool = False) -> StoredVersion:
    body = None if deleted else f'{{"resourceType":"{rtype}","id":"{rid}","v":{v}}}'.encode()
    return StoredVersion(rtype, rid, v, at, deleted, body, "DELETE" if deleted else "PUT")


def put(store: Store, v: StoredVersion, index: IndexRows | None = None) -> None:
    with store.transaction([f"res:{v.resource_type}/{v.id}"]) as tx:
        tx.write(v, index if index is not None else IndexRows())


def token_query(code: str, **kw: object) -> SearchQuery:
    pred = Predicate("identifier", "token", None, (TokenValue(None, code),))
    return SearchQuery(("Patient",), (pred,), **kw)  # type: ignore[arg-type]


def test_read_returns_the_version_written(store: Store) -> None:
    put(store, version("a"))
    got = store.read("Patient", "a")
    assert got is not None
    assert (got.id, got.version_id, got.deleted) == ("a", 1, False)
    assert got.body == b'{"resourceType":"Patient","id":"a","v":1}'


def test_read_of_unknown_resource_returns_none(store: Store) -> None:
    assert store.read("Patient", "nope") is None


def test_vread_returns_each_version_and_read_the_latest(store: Store) -> None:
    put(store, version("a", 1))
    put(store, version("a", 2, at="2026-01-02T00:00:00.000000Z"))
    assert store.vread("Patient", "a", 1).body.endswith(b'"v":1}')  # type: ignore[union-attr]
    assert store.vread("Patient", "a", 2).body.endswith(b'"v":2}')  # type: ignore[union-attr]
    assert store.vread("Patient", "a", 3) is None
    assert store.read("Patient", "a").version_id == 2  # type: ignore[union-attr]


def test_deletion_is_current_but_history_keeps_old_versions(store: Store) -> None:
    put(store, version("a", 1))
    put(store, version("a", 2, deleted=True))
    current = store.read("Patient", "a")
    assert current is not None and current.deleted and current.body is None
    assert store.vread("Patient", "a", 1) is not None
    assert [v.version_id for v in store.history("Patient", "a").versions] == [2, 1]


def test_transaction_that_raises_leaves_nothing_behind(store: Store) -> None:
    def fail() -> None:
        with store.transaction() as tx:
            tx.write(version("a"), IndexRows(token=[TokenRow("identifier", "s", "1")]))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail()
    assert store.read("Patient", "a") is None
    assert store.search(token_query("1")).matches == []


def test_reads_inside_a_transaction_see_its_own_writes(store: Store) -> None:
    with store.transaction() as tx:
        tx.write(version("a"), IndexRows(token=[TokenRow("identifier", "s", "1")]))
        assert tx.read("Patient", "a") is not None
        assert [m.id for m in tx.search(token_query("1")).matches] == ["a"]


def test_history_pages_newest_first_with_a_cursor(store: Store) -> None:
    for i in range(5):
        put(store, version(f"r{i}", at=f"2026-01-0{i + 1}T00:00:00.000000Z"))
    first = store.history("Patient", None, count=2)
    assert [v.id for v in first.versions] == ["r4", "r3"]
    second = store.history("Patient", None, count=2, cursor=first.next_cursor)
    assert [v.id for v in second.versions] == ["r2", "r1"]
    third = store.history("Patient", None, count=2, cursor=second.next_cursor)
    assert [v.id for v in third.versions] == ["r0"] and third.next_cursor is None


def test_history_since_and_at(store: Store) -> None:
    put(store, version("a", 1, at="2026-01-01T00:00:00.000000Z"))
    put(store, version("a", 2, at="2026-01-03T00:00:00.000000Z"))
    since = store.history("Patient", "a", since="2026-01-02T00:00:00.000000Z")
    assert [v.version_id for v in since.versions] == [2]
    at = store.history("Patient", "a", at="2026-01-02T00:00:00.000000Z")
    assert [v.version_id for v in at.versions] == [1]


def test_system_history_spans_types(store: Store) -> None:
    put(store, version("a"))
    put(store, version("b", rtype="Observation"))
    assert {v.resource_type for v in store.history(None, None).versions} == {"Patient", "Observation"}


def test_token_search_matches_code_and_system(store: Store) -> None:
    put(store, version("a"), IndexRows(token=[TokenRow("identifier", "urn:s", "1")]))
    put(store, version("b"), IndexRows(token=[TokenRow("identifier", None, "1")]))
    def ids(value: TokenValue) -> list[str]:
        q = SearchQuery(("Patient",), (Predicate("identifier", "token", None, (value,)),))
        return sorted(m.id for m in store.search(q).matches)
    assert ids(TokenValue(None, "1")) == ["a", "b"]
    assert ids(TokenValue("urn:s", "1")) == ["a"]
    assert ids(TokenValue("", "1")) == ["b"]
    assert ids(TokenValue("urn:s", None)) == ["a"]


def test_string_search_is_a_prefix_match_and_exact_is_exact(store: Store) -> None:
    put(store, version("a"), IndexRows(string=[StringRow("family", "zoe", "Zoë")]))
    def ids(value: str, modifier: str | None = None) -> list[str]:
        q = SearchQuery(("Patient",), (Predicate("family", "string", modifier, (value,)),))
        return [m.id for m in store.search(q).matches]
    assert ids("ZO") == ["a"]
    assert ids("zoë") == ["a"]
    assert ids("oe", "contains") == ["a"]
    assert ids("Zoë", "exact") == ["a"]
    assert ids("zoe", "exact") == []


def test_date_prefixes_compare_ranges(store: Store) -> None:
    put(store, version("y2020"), IndexRows(date=[DateRow(
        "birthdate", "2020-01-01T00:00:00.000000", "2020-12-31T23:59:59.999999")]))
    put(store, version("d2021"), IndexRows(date=[DateRow(
        "birthdate", "2021-03-04T00:00:00.000000", "2021-03-04T23:59:59.999999")]))
    def ids(prefix: str, lo: str, hi: str) -> list[str]:
        value = RangeValue(prefix, lo, hi)  # type: ignore[arg-type]
        q = SearchQuery(("Patient",), (Predicate("birthdate", "date", None, (value,)),),
                        sort=(SortKey("_id"),))
        return [m.id for m in store.search(q).matches]
    year2021 = ("2021-01-01T00:00:00.000000", "2021-12-31T23:59:59.999999")
    assert ids("eq", *year2021) == ["d2021"]
    assert ids("lt", *year2021) == ["y2020"]
    assert ids("ge", *year2021) == ["d2021"]
    assert ids("ne", *year2021) == ["y2020"]


def test_quantity_search_with_units(store: Store) -> None:
    # As the indexer writes them: the value as written, and in canonical UCUM units.
    mg = canonical("mg")
    assert mg is not None
    put(store, version("o", rtype="Observation"), IndexRows(quantity=[
        QuantityRow("value-quantity", Decimal("5.35"), Decimal("5.45"),
                    "http://unitsofmeasure.org", "mg", "mg"),
        QuantityRow("value-quantity" + CANONICAL, mg.convert(Decimal("5.35")),
                    mg.convert(Decimal("5.45")), "http://unitsofmeasure.org", mg.unit, None)]))
    def ids(code: str | None) -> list[str]:
        value = RangeValue("gt", Decimal("4.95"), Decimal("5.05"),
                           "http://unitsofmeasure.org" if code else None, code)
        q = SearchQuery(("Observation",), (Predicate("value-quantity", "quantity", None, (value,)),))
        return [m.id for m in store.search(q).matches]
    assert ids("mg") == ["o"]
    assert ids("g") == []  # 5 g is not more than 5.4 mg
    assert ids("ug") == ["o"]  # 5.4 mg is more than 5 ug
    assert ids(None) == ["o"]


def test_chained_and_reverse_chained_search(store: Store) -> None:
    put(store, version("p"), IndexRows(string=[StringRow("name", "smith", "Smith")]))
    put(store, version("o", rtype="Observation"), IndexRows(
        reference=[ReferenceRow("subject", "Patient", "p", None)],
        token=[TokenRow("code", "http://loinc.org", "1234-5")]))
    chain = SearchQuery(("Patient",), (Predicate("name", "string", None, ("smi",)),))
    q = SearchQuery(("Observation",), (Predicate("subject", "reference", None, (), chain=chain),))
    assert [m.id for m in store.search(q).matches] == ["o"]
    has = SearchQuery(("Observation",), (Predicate("code", "token", None,
                                                    (TokenValue(None, "1234-5"),)),))
    q2 = SearchQuery(("Patient",), (Predicate("subject", "reference", None, (), has=has),))
    assert [m.id for m in store.search(q2).matches] == ["p"]


def test_reference_search_and_includes(store: Store) -> None:
    put(store, version("p"))
    put(store, version("o", rtype="Observation"), IndexRows(
        reference=[ReferenceRow("subject", "Patient", "p", None)]))
    from fhirhub.search.types import Include

    ref = Predicate("subject", "reference", None, (ReferenceValue("Patient", "p"),))
    q = SearchQuery(("Observation",), (ref,), includes=(Include("Observation", "subject"),))
    page = store.search(q)
    assert [m.id for m in page.matches] == ["o"]
    assert [(v.resource_type, v.id) for v in page.included] == [("Patient", "p")]
    rev = SearchQuery(("Patient",), includes=(Include("Observation", "subject", reverse=True),))
    assert [(v.resource_type, v.id) for v in store.search(rev).included] == [("Observation", "o")]


def test_search_pages_by_keyset_and_counts_total(store: Store) -> None:
    for i in range(7):
        put(store, version(f"p{i}", at=f"2026-01-0{i + 1}T00:00:00.000000Z"))
    q = SearchQuery(("Patient",), sort=(SortKey("_lastUpdated", descending=True),), count=3,
                    total="accurate")
    seen: list[str] = []
    cursor = None
    while True:
        from dataclasses import replace

        page = store.search(replace(q, cursor=cursor))
        assert page.total == 7
        seen += [m.id for m in page.matches]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"p{i}" for i in reversed(range(7))]


def test_a_forged_cursor_is_refused(store: Store) -> None:
    with pytest.raises(FhirError):
        store.search(SearchQuery(("Patient",), cursor="not-a-cursor"))


def test_deleted_resources_are_not_found_by_search(store: Store) -> None:
    put(store, version("a"), IndexRows(token=[TokenRow("identifier", "s", "1")]))
    put(store, version("a", 2, deleted=True), None)
    assert store.search(token_query("1")).matches == []
    assert store.count("Patient") == 0


def test_remembered_responses_expire_by_time(store: Store) -> None:
    from fhirhub.store import RememberedResponse

    with store.transaction() as tx:
        tx.remember(RememberedResponse("req-1", "d", 201, {"Location": "x"}, b"{}",
                                       "2026-01-01T00:00:00.000000Z"))
    with store.transaction() as tx:
        got = tx.remembered("req-1", "2025-12-31T00:00:00.000000Z")
        assert got is not None and got.headers == {"Location": "x"} and got.status == 201
        assert tx.remembered("req-1", "2026-01-02T00:00:00.000000Z") is None
    assert store.purge_remembered("2026-01-02T00:00:00.000000Z") == 1


def test_transactions_with_the_same_lock_key_never_interleave(store: Store) -> None:
    """Check-then-create under one key from many threads creates exactly one resource."""
    created: list[str] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        with store.transaction(["cond:Patient?identifier=x"]) as tx:
            if not tx.search(token_query("x")).matches:
                tx.write(version(f"w{n}"), IndexRows(token=[TokenRow("identifier", "s", "x")]))
                created.append(f"w{n}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 1
    assert len(store.search(token_query("x")).matches) == 1


def test_iter_current_yields_every_live_resource(store: Store) -> None:
    put(store, version("a"))
    put(store, version("b"))
    put(store, version("b", 2, deleted=True))
    assert [v.id for v in store.iter_current("Patient")] == ["a"]


_CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="nobody")


def test_a_units_work_runs_in_the_callers_context(store: Store) -> None:
    """Whichever thread commits it (SQLite's writer), a unit of work sees its caller's
    context variables: the engine's access grant travels that way."""
    token = _CALLER.set("alice")
    try:
        assert store.run([], lambda tx: _CALLER.get()) == "alice"
    finally:
        _CALLER.reset(token)
    assert store.run([], lambda tx: _CALLER.get()) == "nobody"
