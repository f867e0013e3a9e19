"""SMART scopes as this server reads them (fhirhub.auth.scopes).

SMART App Launch, scopes and launch context:
https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html (v2 ``cruds`` letters
in that order; the v1 ``read``, ``write`` and ``*`` forms; ``patient/``, ``user/`` and
``system/`` contexts; non-resource scopes such as ``openid`` and ``launch/patient``).
"""

from __future__ import annotations

import pytest

from fhirhub.auth.scopes import Grants, Scope, ScopeError, beyond, parse_scope, parse_scopes


def scopes(text: str) -> list[Scope]:
    return [s for s in parse_scopes(text) if isinstance(s, Scope)]


def grants(text: str) -> Grants:
    return Grants.of(parse_scopes(text))


# -- v2 letters -------------------------------------------------------------------------------


@pytest.mark.parametrize("letters", ["c", "r", "u", "d", "s", "rs", "cu", "cruds", "crud", "rds"])
def test_v2_letters_in_order_are_kept_as_given(letters: str) -> None:
    assert parse_scope(f"system/Patient.{letters}") == Scope("system", "Patient", letters)


@pytest.mark.parametrize("context", ["patient", "user", "system"])
def test_every_smart_context_is_understood(context: str) -> None:
    parsed = parse_scope(f"{context}/Observation.rs")
    assert parsed == Scope(context, "Observation", "rs")
    assert str(parsed) == f"{context}/Observation.rs"


@pytest.mark.parametrize("letters", ["sr", "dc", "srudc", "rr", "crudss"])
def test_v2_letters_out_of_order_or_repeated_are_refused(letters: str) -> None:
    with pytest.raises(ScopeError, match="order"):
        parse_scope(f"system/Patient.{letters}")


@pytest.mark.parametrize("letters", ["x", "rx", "rw", "c*", "**"])
def test_letters_that_are_not_cruds_are_refused(letters: str) -> None:
    with pytest.raises(ScopeError, match="SMART v2 letters"):
        parse_scope(f"system/Patient.{letters}")


@pytest.mark.parametrize("text", ["system/Patient.READ", "system/Patient.RS", "system/patient.rs",
                                  "system/Patient", "system/Patient.", "patient/.rs",
                                  "user/P.rs"])
def test_malformed_resource_scopes_are_refused_by_name(text: str) -> None:
    with pytest.raises(ScopeError, match="not a SMART resource scope"):
        parse_scope(text)


# -- v1 forms ---------------------------------------------------------------------------------


def test_v1_read_scope_means_read_and_search() -> None:
    assert parse_scope("patient/Observation.read") == Scope("patient", "Observation", "rs")


def test_v1_write_scope_means_create_update_delete() -> None:
    assert parse_scope("user/Patient.write") == Scope("user", "Patient", "cud")


def test_v1_star_scope_means_every_permission() -> None:
    assert parse_scope("system/Patient.*") == Scope("system", "Patient", "cruds")


def test_v1_scope_is_written_back_in_its_v2_form() -> None:
    assert [str(s) for s in parse_scopes("system/*.read user/Patient.write")] == [
        "system/*.rs", "user/Patient.cud"]


def test_v1_and_v2_spellings_of_one_scope_are_one_scope() -> None:
    assert parse_scopes("system/Patient.read system/Patient.rs system/Patient.read") == (
        Scope("system", "Patient", "rs"),)


# -- wildcard types ---------------------------------------------------------------------------


def test_wildcard_type_scope_is_parsed_as_star() -> None:
    assert parse_scope("system/*.cruds") == Scope("system", "*", "cruds")


def test_wildcard_type_allows_every_resource_type() -> None:
    g = grants("patient/*.rs")
    assert g.allows("Observation", "r")
    assert g.allows("Patient", "s")
    assert not g.allows("Patient", "c")


def test_specific_type_allows_only_that_type_and_those_letters() -> None:
    g = grants("system/Patient.rs system/Observation.c")
    assert g.allows("Patient", "r") and g.allows("Patient", "s")
    assert not g.allows("Patient", "u")
    assert g.allows("Observation", "c")
    assert not g.allows("Observation", "r")
    assert not g.allows("Encounter", "r")


# -- covers / beyond --------------------------------------------------------------------------


def test_wildcard_scope_covers_a_narrower_scope_of_the_same_context() -> None:
    assert Scope("system", "*", "cruds").covers(Scope("system", "Patient", "rs"))
    assert Scope("system", "Patient", "rs").covers(Scope("system", "Patient", "r"))


def test_scope_does_not_cover_more_letters_another_type_or_context() -> None:
    rs = Scope("system", "Patient", "rs")
    assert not rs.covers(Scope("system", "Patient", "rsu"))
    assert not rs.covers(Scope("system", "Observation", "r"))
    assert not rs.covers(Scope("user", "Patient", "r"))
    assert not rs.covers(Scope("system", "*", "r"))


def test_beyond_is_empty_when_everything_asked_is_covered() -> None:
    asked = parse_scopes("system/Patient.r system/Observation.rs")
    assert beyond(asked, parse_scopes("system/*.rs")) == []


def test_beyond_names_each_escalation() -> None:
    asked = parse_scopes("system/Patient.rs system/Patient.cruds system/Observation.r "
                         "user/Patient.r")
    assert beyond(asked, parse_scopes("system/Patient.rs")) == [
        "system/Patient.cruds", "system/Observation.r", "user/Patient.r"]


def test_beyond_treats_a_wildcard_request_as_escalation_of_a_specific_grant() -> None:
    assert beyond(parse_scopes("system/*.r"), parse_scopes("system/Patient.rs")) == ["system/*.r"]


def test_beyond_lets_non_resource_scopes_through_only_when_allowed() -> None:
    assert beyond(parse_scopes("openid system/Patient.r"),
                  parse_scopes("openid system/Patient.rs")) == []
    assert beyond(parse_scopes("openid fhirUser"), parse_scopes("openid")) == ["fhirUser"]


# -- non-resource and granular scopes ---------------------------------------------------------


@pytest.mark.parametrize("text", ["openid", "fhirUser", "launch/patient", "offline_access",
                                  "launch", "profile"])
def test_non_resource_scopes_are_kept_as_text(text: str) -> None:
    assert parse_scope(text) == text


def test_non_resource_scopes_grant_no_resource_access() -> None:
    g = grants("openid fhirUser launch/patient system/Patient.r")
    assert g.scopes == (Scope("system", "Patient", "r"),)
    assert str(g) == "system/Patient.r"


@pytest.mark.parametrize("text", ["patient/Observation.rs?category=laboratory",
                                  "user/Observation.rs?code=http://loinc.org|1234-5"])
def test_granular_scope_is_refused_by_name(text: str) -> None:
    with pytest.raises(ScopeError, match="granular"):
        parse_scope(text)


@pytest.mark.parametrize("text", ["no spaces!", "ü", "-dash-first", "a,b"])
def test_something_that_is_not_a_scope_is_refused(text: str) -> None:
    with pytest.raises(ScopeError, match="is not a scope"):
        parse_scope(text)


def test_parse_scopes_splits_on_any_whitespace() -> None:
    assert parse_scopes("  openid\tsystem/Patient.rs\n ") == (
        "openid", Scope("system", "Patient", "rs"))


def test_empty_scope_string_is_no_scopes() -> None:
    assert parse_scopes("") == ()
    assert grants("").types_with("r") == frozenset()


# -- Grants.types_with ------------------------------------------------------------------------


def test_types_with_lists_the_types_holding_any_of_the_letters() -> None:
    g = grants("system/Patient.rs system/Observation.c system/Encounter.d")
    assert g.types_with("r") == frozenset({"Patient"})
    assert g.types_with("s") == frozenset({"Patient"})
    assert g.types_with("cd") == frozenset({"Observation", "Encounter"})
    assert g.types_with("u") == frozenset()


def test_types_with_is_none_when_a_wildcard_grants_the_letters() -> None:
    g = grants("system/Patient.rs system/*.s")
    assert g.types_with("s") is None
    assert g.types_with("r") == frozenset({"Patient"})


def test_types_with_ignores_a_wildcard_without_the_letters() -> None:
    assert grants("system/*.c system/Patient.r").types_with("r") == frozenset({"Patient"})


def test_grants_covers_asks_each_scope_held() -> None:
    g = grants("system/Patient.rs system/Observation.cruds")
    assert g.covers(Scope("system", "Observation", "cu"))
    assert not g.covers(Scope("system", "Patient", "c"))
