"""AuditEvent search parameters to an AuditQuery (fhirhub.audit.search)."""

from __future__ import annotations

import pytest

from fhirhub.audit.search import is_nhs_number, parse
from fhirhub.errors import InvalidError


def _parse(*params: tuple[str, str], strict: bool = False) -> object:
    return parse(list(params), count=20, strict=strict,
                 patients_with_nhs=lambda n: ["Patient/from-nhs"] if n == "9434765919" else [])


def test_support_desk_values_map_to_their_fields() -> None:
    q = _parse(("request-id", "r1,r2"), ("correlation-id", "c"), ("client", "app"),
               ("user", "u"), ("outcome", "4")).query  # type: ignore[attr-defined]
    assert (q.request_ids, q.correlation_ids, q.clients, q.users, q.outcomes) == (
        ("r1", "r2"), ("c",), ("app",), ("u",), ("4",))


def test_a_date_range_becomes_two_bounds_on_the_recorded_instant() -> None:
    q = _parse(("date", "ge2026-11-01"), ("date", "lt2026-11-02")).query  # type: ignore[attr-defined]
    assert q.recorded == ((">=", "2026-11-01T00:00:00.000000Z"), ("<", "2026-11-02T00:00:00.000000Z"))
    day = _parse(("date", "2026-11-01")).query  # type: ignore[attr-defined]
    assert day.recorded == ((">=", "2026-11-01T00:00:00.000000Z"),
                            ("<=", "2026-11-01T23:59:59.999999Z"))


def test_a_patient_by_nhs_number_matches_the_number_and_every_patient_holding_it() -> None:
    q = _parse(("patient", "9434765919")).query  # type: ignore[attr-defined]
    assert set(q.refs[0]) == {"patient:Patient/9434765919", "nhs:9434765919",
                              "patient:Patient/from-nhs"}
    q = _parse(("patient:identifier", "https://fhir.nhs.uk/Id/nhs-number|9434765919")).query  # type: ignore[attr-defined]
    assert set(q.refs[0]) == {"nhs:9434765919", "patient:Patient/from-nhs"}


def test_subtype_and_action_narrow_the_interactions_together() -> None:
    q = _parse(("subtype", "search-type"), ("action", "E")).query  # type: ignore[attr-defined]
    assert q.interactions == ("search",)
    assert _parse(("subtype", "read"), ("action", "C")).query.interactions == ("\x00none",)  # type: ignore[attr-defined]


def test_unknown_parameters_are_ignored_or_refused_when_strict() -> None:
    assert _parse(("colour", "red")).ignored == ["colour"]  # type: ignore[attr-defined]
    with pytest.raises(InvalidError, match="colour"):
        _parse(("colour", "red"), strict=True)


@pytest.mark.parametrize(("key", "value"), [
    ("date", "ne2026-01-01"), ("date", "yesterday"), ("entity", "nope"), ("_sort", "outcome"),
    ("subtype", "http://other|read"), ("patient:identifier", "http://other|1"),
    ("request-id:exact", "x"),
])
def test_values_that_cannot_be_searched_are_a_clear_error(key: str, value: str) -> None:
    with pytest.raises(InvalidError):
        _parse((key, value))


@pytest.mark.parametrize(("number", "valid"), [("9434765919", True), ("9434765918", False),
                                               ("943476591", False), ("abcdefghij", False)])
def test_nhs_numbers_are_checked_by_modulus_11(number: str, valid: bool) -> None:
    assert is_nhs_number(number) is valid
