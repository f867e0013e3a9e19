"""What a caller may see (:class:`fhirhub.search.types.Access`), applied by every backend
inside its queries: matches, counts, includes, chains, ``_has`` and history
(docs/adr/0013-auth.md; compartments: https://hl7.org/fhir/R4/compartmentdefinition.html).

Alice and Bob are Patients; each has an Observation (``oa``, ``ob``, subject them) and Bob
an Encounter; a Practitioner ``dr`` is referenced by both Observations. Alice's access is
the compartment of Patient ``alice``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from fhirhub.search.types import (
    Access,
    Include,
    IndexRows,
    Predicate,
    ReferenceRow,
    ReferenceValue,
    SearchQuery,
    StringRow,
    TokenRow,
    TokenValue,
)
from fhirhub.store import Store, StoredVersion

ALICE = Access(None, ("Patient", ("alice",)))
NOBODY = Access(None, ("Patient", ()))


def _put(store: Store, rtype: str, rid: str, index: IndexRows) -> None:
    body = f'{{"resourceType":"{rtype}","id":"{rid}"}}'.encode()
    version = StoredVersion(rtype, rid, 1, "2026-01-01T00:00:00.000000Z", False, body, "PUT")
    with store.transaction([f"res:{rtype}/{rid}"]) as tx:
        tx.write(version, index)


@pytest.fixture
def seeded(store: Store) -> Store:
    for who in ("alice", "bob"):
        _put(store, "Patient", who, IndexRows(string=[StringRow("name", who, who.title())]))
        _put(store, "Observation", f"o{who[0]}", IndexRows(
            reference=[ReferenceRow("subject", "Patient", who, None),
                       ReferenceRow("performer", "Practitioner", "dr", None)],
            token=[TokenRow("code", "http://loinc.org", "8867-4")]))
    _put(store, "Encounter", "eb", IndexRows(reference=[  # as the indexer writes it
        ReferenceRow("subject", "Patient", "bob", None),
        ReferenceRow("patient", "Patient", "bob", None)]))
    _put(store, "Practitioner", "dr", IndexRows())
    return store


def _ids(store: Store, query: SearchQuery) -> list[str]:
    return sorted(m.id for m in store.search(query).matches)


def test_a_compartment_access_sees_only_that_patients_resources(seeded: Store) -> None:
    everything = SearchQuery((), count=50, access=ALICE)
    assert _ids(seeded, everything) == ["alice", "oa"]


def test_counts_count_only_what_the_access_sees(seeded: Store) -> None:
    query = SearchQuery(("Observation",), total="accurate", access=ALICE)
    assert seeded.search(query).total == 1
    assert seeded.search(replace(query, access=None)).total == 2


def test_an_empty_compartment_sees_nothing(seeded: Store) -> None:
    assert _ids(seeded, SearchQuery((), count=50, access=NOBODY)) == []


def test_a_type_access_sees_only_those_types(seeded: Store) -> None:
    access = Access(frozenset({"Patient", "Encounter"}), None)
    assert _ids(seeded, SearchQuery((), count=50, access=access)) == ["alice", "bob", "eb"]
    assert _ids(seeded, SearchQuery((), count=50, access=Access(frozenset(), None))) == []


def test_includes_bring_in_only_what_the_access_sees(seeded: Store) -> None:
    query = SearchQuery(("Observation",), includes=(Include("Observation", "*"),),
                        access=ALICE)
    page = seeded.search(query)
    assert [m.id for m in page.matches] == ["oa"]
    # Practitioner dr is not in Alice's compartment, so it is not included either.
    assert [(v.resource_type, v.id) for v in page.included] == [("Patient", "alice")]


def test_revincludes_bring_in_only_what_the_access_sees(seeded: Store) -> None:
    query = SearchQuery(("Practitioner",), includes=(
        Include("Observation", "performer", reverse=True),))
    assert sorted(v.id for v in seeded.search(query).included) == ["oa", "ob"]
    by_type = Access(frozenset({"Practitioner", "Observation"}), None)
    seen = seeded.search(replace(query, access=replace(by_type, compartment=ALICE.compartment)))
    assert seen.matches == []  # the Practitioner is not Alice's
    revinclude = SearchQuery(("Patient",), includes=(
        Include("Observation", "subject", reverse=True),), access=ALICE)
    assert [v.id for v in seeded.search(revinclude).included] == ["oa"]


def test_a_chain_looks_only_through_what_the_access_sees(seeded: Store) -> None:
    bob = SearchQuery(("Patient",), (Predicate("name", "string", None, ("bob",)),))
    chained = SearchQuery(("Observation",), (Predicate("subject", "reference", None, (),
                                                       chain=bob),))
    assert _ids(seeded, chained) == ["ob"]
    # Even were an Observation of Alice's to point at Bob, his name is not seen through it.
    _put(seeded, "Observation", "oab", IndexRows(reference=[
        ReferenceRow("subject", "Patient", "alice", None),
        ReferenceRow("performer", "Patient", "bob", None)]))
    via_performer = SearchQuery(("Observation",), (Predicate(
        "performer", "reference", None, (), chain=bob),), access=ALICE)
    assert _ids(seeded, via_performer) == []


def test_has_looks_only_through_what_the_access_sees(seeded: Store) -> None:
    code = SearchQuery(("Encounter",))
    has = SearchQuery(("Patient",), (Predicate("subject", "reference", None, (), has=code),))
    assert _ids(seeded, has) == ["bob"]
    assert _ids(seeded, replace(has, access=Access(None, ("Patient", ("alice", "bob"))))) \
        == ["bob"]
    only_patients = Access(frozenset({"Patient"}), None)
    assert _ids(seeded, replace(has, access=only_patients)) == []  # Encounters unseen


def test_a_reference_search_cannot_reach_outside_the_access(seeded: Store) -> None:
    ref = Predicate("subject", "reference", None, (ReferenceValue("Patient", "bob"),))
    assert _ids(seeded, SearchQuery(("Observation",), (ref,), access=ALICE)) == []
    code = Predicate("code", "token", None, (TokenValue("http://loinc.org", "8867-4"),))
    assert _ids(seeded, SearchQuery(("Observation",), (code,), access=ALICE)) == ["oa"]


def test_history_shows_only_what_the_access_sees(seeded: Store) -> None:
    versions = seeded.history(None, None, count=50, access=ALICE).versions
    assert sorted(f"{v.resource_type}/{v.id}" for v in versions) == [
        "Observation/oa", "Patient/alice"]
    by_type = seeded.history(None, None, count=50, access=Access(frozenset({"Encounter"}),
                                                                 None)).versions
    assert [v.id for v in by_type] == ["eb"]
    assert seeded.history("Observation", "ob", access=ALICE).versions == []
