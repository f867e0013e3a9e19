"""UCUM canonical units for quantity search.

Spec: https://hl7.org/fhir/R4/search.html#quantity ("the server SHOULD ... handle UCUM
units": ``gt1|http://unitsofmeasure.org|kg`` finds 1500 g) and UCUM itself,
https://ucum.org/ucum (syntax §1-§12, the table of units in ``ucum-essence.xml``).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhirhub.fhir.definitions import iter_r4
from fhirhub.search import _ucum
from fhirhub.search._ucum import SIGNIFICANT_DIGITS, UCUM, Canonical, canonical
from fhirhub.search._ucum_table import ESSENCE, table

ROOT = Path(__file__).parents[2]
SYNTHEA_SAMPLES = [ROOT / "bench" / "data" / "synthea" / "bundles.ndjson.gz",
                   ROOT.parent / "shared" / "data" / "synthea-r4" / "bundles.ndjson.gz"]


def found(code: str) -> Canonical:
    result = canonical(code)
    assert result is not None, f"{code!r} has no canonical form"
    return result


def value(amount: str, code: str) -> tuple[str, Decimal]:
    """``amount`` of ``code`` in canonical units: (unit, value)."""
    c = found(code)
    return c.unit, c.convert(Decimal(amount))


def same(a: tuple[str, str], b: tuple[str, str]) -> bool:
    return value(*a) == value(*b)


# -- equivalent units (the units of Synthea and UK vital signs) ------------------------------


def test_1500_g_is_more_than_1_kg_in_the_same_canonical_unit() -> None:
    unit_g, grams = value("1500", "g")
    unit_kg, kilos = value("1", "kg")
    assert unit_g == unit_kg == "g"
    assert grams > kilos
    assert same(("1", "kg"), ("1000", "g"))


@pytest.mark.parametrize(("a", "b"), [
    (("5.4", "mmol/L"), ("5400", "umol/L")),
    (("1", "mm[Hg]"), ("0.133322", "kPa")),
    (("60", "/min"), ("1", "/s")),
    (("1", "/s"), ("1", "Hz")),
    (("72", "/min"), ("1.2", "Hz")),
    (("4.5", "10*3/uL"), ("4.5", "10*9/L")),
    (("5", "10*6/uL"), ("5", "10*12/L")),
    (("154", "[lb_av]"), ("69.85322498", "kg")),
    (("70", "[in_i]"), ("177.8", "cm")),
    (("1", "L"), ("1000", "mL")),
    (("1", "dL"), ("100", "mL")),
    (("1", "l"), ("1", "L")),
    (("1", "L"), ("1", "dm3")),
    (("2", "h"), ("120", "min")),
    (("1", "d"), ("24", "h")),
    (("1", "wk"), ("7", "d")),
    (("1", "a"), ("365.25", "d")),
    (("1", "a"), ("12", "mo")),
    (("100", "mg/dL"), ("1", "g/L")),
    (("14", "g/dL"), ("140", "g/L")),
    (("1", "ng/mL"), ("1", "ug/L")),
    (("1", "kU/L"), ("1", "U/mL")),
    (("90", "mL/min"), ("1.5", "mL/s")),
    (("25", "kg/m2"), ("2.5", "g/cm2")),
    (("1", "mg/g"), ("0.1", "%")),
    (("1", "pg"), ("0.001", "ng")),
    (("1", "fL"), ("1", "um3")),
], ids=lambda pair: f"{pair[0]} {pair[1]}")
def test_equivalent_amounts_have_equal_canonical_values(a: tuple[str, str],
                                                         b: tuple[str, str]) -> None:
    assert same(a, b)


def test_a_different_amount_is_not_equal() -> None:
    assert not same(("5.4", "mmol/L"), ("5.4", "umol/L"))
    assert value("101", "mg/dL") > value("1", "g/L")


def test_units_of_different_kinds_have_different_canonical_units() -> None:
    assert found("kg").unit != found("m").unit != found("s").unit
    assert found("mg/dL").unit != found("mmol/L").unit
    # The mole is a dimension here: an amount per volume is not a count per volume.
    assert found("mmol/L").unit != found("10*9/L").unit
    assert found("mm[Hg]").unit != found("cm[H2O].m").unit


# -- offset units ------------------------------------------------------------------------------


def test_37_celsius_equals_98_6_fahrenheit_and_310_15_kelvin() -> None:
    assert value("37", "Cel") == value("98.6", "[degF]") == ("K", Decimal("310.15"))
    assert value("310.15", "K") == ("K", Decimal("310.15"))


def test_temperature_offsets_are_kept_separately_from_the_scale() -> None:
    fahrenheit = found("[degF]")
    assert fahrenheit.unit == "K"
    assert fahrenheit.scale * 9 == pytest.approx(5)
    assert fahrenheit.offset == pytest.approx(Decimal("255.372222222"))
    assert found("Cel") == Canonical("K", Decimal(1), Decimal("273.15"))
    assert value("0", "[degRe]") == value("0", "Cel")
    assert value("80", "[degRe]") == value("100", "Cel")


def test_32_fahrenheit_is_0_celsius_and_minus_40_is_the_same_in_both() -> None:
    assert value("32", "[degF]") == value("0", "Cel")
    assert value("-40", "[degF]") == value("-40", "Cel")


def test_a_prefixed_offset_unit_scales_before_the_offset() -> None:
    assert value("37000", "mCel") == value("37", "Cel")


def test_a_special_unit_within_a_term_has_no_canonical_form() -> None:
    assert canonical("Cel/h") is None
    assert canonical("Cel2") is None
    assert canonical("[pH].L") is None


# -- prefixes, exponents, division ---------------------------------------------------------------


@pytest.mark.parametrize(("code", "unit", "scale"), [
    ("ug", "g", "1e-6"), ("ng", "g", "1e-9"), ("mg", "g", "1e-3"), ("kg", "g", "1e3"),
    ("dL", "m3", "1e-4"), ("uL", "m3", "1e-9"), ("fL", "m3", "1e-18"),
    ("daL", "m3", "1e-2"), ("Mm", "m", "1e6"), ("Kibit", "1", "1024"),
])
def test_prefixes_multiply_the_atom(code: str, unit: str, scale: str) -> None:
    assert (found(code).unit, found(code).scale) == (unit, Decimal(scale))


def test_a_prefix_is_raised_to_the_exponent_with_its_unit() -> None:
    assert (found("cm2").unit, found("cm2").scale) == ("m2", Decimal("1e-4"))
    assert (found("mm3").unit, found("mm3").scale) == ("m3", Decimal("1e-9"))


def test_a_prefix_needs_a_metric_unit() -> None:
    assert canonical("k[lb_av]") is None
    assert canonical("mh") is None  # hour is not metric


def test_exponents_and_division_compose() -> None:
    assert same(("1", "mg/dL"), ("0.01", "g/L"))
    assert same(("1", "kg.m/s2"), ("1", "N"))
    assert same(("1", "kg.m-3"), ("1", "g/L"))
    assert same(("1", "m+2"), ("1", "m2"))
    assert found("/s").unit == found("Hz").unit == found("s-1").unit == "s-1"


def test_dot_and_solidus_apply_left_to_right() -> None:
    assert same(("6.3", "s/m.mg"), ("0.0063", "s.g/m"))
    assert same(("6.3", "s/4/m"), ("1.575", "s/m"))
    assert same(("1", "mmol/(kg.h)"), ("1", "mmol/kg/h"))


def test_a_leading_solidus_inverts_the_whole_term() -> None:
    assert found("/s.m").unit == "m-1.s-1"
    assert found("/[arb'U]").unit == "[arb'U]-1"


def test_factors_and_powers_of_ten_are_numbers() -> None:
    assert same(("1", "10.L/min"), ("10", "L/min"))
    assert same(("1", "mL/(8.h)"), ("0.125", "mL/h"))
    assert (found("10*3").unit, found("10*3").scale) == ("1", Decimal(1000))
    assert found("10^-3").scale == Decimal("0.001")
    assert found("4.[pi].10*-7.N/A2").scale == pytest.approx(Decimal("0.00125663706143591729538506"))


# -- dimensionless, annotations, arbitrary and special units -----------------------------------


def test_percent_is_unity_with_scale_a_hundredth() -> None:
    assert found("%") == Canonical("1", Decimal("0.01"))
    assert value("50", "%") == ("1", Decimal("0.5"))
    assert found("1") == Canonical("1", Decimal(1))


@pytest.mark.parametrize("code", ["{score}", "{count}", "{T-score}", "{nominal}", "{}",
                                  "{# of fetuses}"])
def test_an_annotation_alone_is_unity(code: str) -> None:
    assert found(code) == Canonical("1", Decimal(1))


def test_annotations_are_ignored_wherever_they_are() -> None:
    assert found("mL/min/{1.73_m2}") == found("mL/min")
    assert found("kg{body_wt}") == found("kg")
    assert found("10*3{rbc}/uL") == found("10*3/uL")
    assert found("U/(10.g){feces}") == found("U/(10.g)")
    assert found("Cel{oral}") == found("Cel")


def test_arbitrary_units_convert_only_to_themselves() -> None:
    assert found("[arb'U]").unit == "[arb'U]"
    assert found("[IU]").unit == found("[iU]").unit == "[iU]"  # UCUM: [IU] is defined as [iU]
    assert found("[IU]").unit != found("1").unit
    assert found("[IU]").unit != found("[arb'U]").unit
    assert same(("1", "m[IU]/mL"), ("1", "[IU]/L"))
    assert found("[IU]/L").unit == "[iU].m-3"


def test_special_units_without_a_linear_scale_are_units_of_their_own() -> None:
    assert found("[pH]") == Canonical("[pH]", Decimal(1))
    assert found("dB") == Canonical("B", Decimal("0.1"))
    assert same(("20", "dB"), ("2", "B"))
    assert found("B[SPL]").unit != found("B").unit


def test_strict_ucum_reads_pH_as_picohenry_not_the_pH_scale() -> None:
    assert found("pH").unit == found("H").unit != found("[pH]").unit
    assert same(("1", "pH"), ("1e-12", "H"))


# -- the canonical unit --------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "unit"), [
    ("mg/dL", "g.m-3"), ("mm[Hg]", "g.m-1.s-2"), ("kPa", "g.m-1.s-2"), ("/min", "s-1"),
    ("10*3/uL", "m-3"), ("mmol/L", "m-3.mol"), ("kg/m2", "g.m-2"), ("mL/min", "m3.s-1"),
    ("U/L", "m-3.mol.s-1"), ("cm", "m"), ("Cel", "K"), ("{score}", "1"), ("%", "1"),
    ("H", "C-2.g.m2"), ("cd", "cd"), ("deg", "rad"),
])
def test_the_canonical_unit_is_base_units_sorted_with_their_exponents(code: str,
                                                                       unit: str) -> None:
    assert found(code).unit == unit


@pytest.mark.parametrize("code", ["mg/dL", "mm[Hg]", "/min", "10*3/uL", "kg/m2", "U/L",
                                  "[IU]/L", "H", "%", "[lb_av]"])
def test_the_canonical_unit_is_valid_ucum_and_its_own_canonical_form(code: str) -> None:
    unit = found(code).unit
    assert found(unit) == Canonical(unit, Decimal(1))


def test_convert_rounds_to_15_significant_digits_and_normalises() -> None:
    assert SIGNIFICANT_DIGITS == 15
    assert found("g").convert(Decimal("1.23456789012345678")) == Decimal("1.23456789012346")
    assert found("/min").convert(Decimal(60)) == Decimal(1)  # 60 x 0.01666... is exactly 1
    kilos, grams = found("kg").convert(Decimal(1)), found("g").convert(Decimal("1000.000"))
    assert kilos.as_tuple() == grams.as_tuple()  # one representation of one amount
    assert found("kg").convert(Decimal(0)) == 0


def test_convert_never_raises_for_an_absurd_magnitude() -> None:
    assert found("kg").convert(Decimal("9e999999")).is_infinite()


# -- what is not UCUM -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [
    "", "units", "(score)", "kg ", " kg", "KG", "abc", "m/", "m//s", "m.", "(m", "m)", "m{",
    "m[", "{m", "10+3/ul", "rad2{\u9320}", "{a}rad2{b}", "{|}1", "iU", "[iIU]", "molv",
    "[BETH'U]", "g/12h", "mmol/kg[H20]", "ug(8.h)", "m-", "\u00b5g", "0", "0.m", "/0",
    "km999999", "10*999999999999999999999", "m" * 201,
])
def test_invalid_codes_give_none(code: str) -> None:
    assert canonical(code) is None


@given(st.text(alphabet="mgLsk[]{}()./*^+-0123456789_'%CelIU ", max_size=24) | st.text(max_size=12))
def test_no_text_makes_canonical_raise(code: str) -> None:
    result = canonical(code)
    assert result is None or (result.scale > 0 and result.unit)


# -- cost: each code analysed once ------------------------------------------------------------------


def _count_analyses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    analyse: Callable[[str], Canonical | None] = _ucum._analyse

    def counting(code: str) -> Canonical | None:
        calls.append(code)
        return analyse(code)

    monkeypatch.setattr(_ucum, "_analyse", counting)
    return calls


def test_each_code_is_analysed_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_analyses(monkeypatch)
    code, garbage = "mg/dL{memoised once}", "not a unit {memoised once}"
    first = [canonical(code), canonical(garbage)]
    second = [canonical(code), canonical(garbage)]
    assert first == second and first[0] is second[0]
    assert calls == [code, garbage]


def test_past_the_cache_limit_codes_are_answered_but_not_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    expected = found("g/L")  # analysed (and cached) before the cache is full
    calls = _count_analyses(monkeypatch)
    monkeypatch.setattr(_ucum, "_CACHE_LIMIT", len(_ucum._cache))
    code = "g/L{past the limit}"
    assert canonical(code) == canonical(code) == expected
    assert calls == [code, code]
    assert code not in _ucum._cache


# -- coverage: the whole table, FHIR's common units, the Synthea sample ----------------------------


def test_the_packaged_ucum_table_is_the_published_release_unmodified() -> None:
    # The UCUM licence forbids changing it; see src/fhirhub/search/data/README.md.
    digest = hashlib.sha256(ESSENCE.read_bytes()).hexdigest()
    assert digest == "6022a1f4a77d93efa23b941ae50055cb9d3fdcb8bb5db6b85deda004467bb380"
    assert table().version == "2.2"


def test_every_unit_of_the_ucum_table_has_a_canonical_form() -> None:
    assert len(table().atoms) > 300
    assert [code for code in table().atoms if canonical(code) is None] == []


def test_no_symbol_is_both_an_atom_and_a_prefixed_metric_atom() -> None:
    # So that _split may take an atom of the whole symbol first without ambiguity.
    atoms, prefixes = table().atoms, table().prefixes
    clashes = [(p, a.code) for p in prefixes for a in atoms.values()
               if a.metric and p + a.code in atoms]
    assert clashes == []


def test_every_code_of_the_fhir_ucum_common_value_set_has_a_canonical_form() -> None:
    common = next(vs for vs in iter_r4("ValueSet")
                  if vs["url"] == "http://hl7.org/fhir/ValueSet/ucum-common")
    codes = [c["code"] for inc in common["compose"]["include"] for c in inc["concept"]]
    assert len(codes) > 1300
    assert [code for code in codes if canonical(code) is None] == []


# Every UCUM code in Observation.valueQuantity / component.valueQuantity of the Synthea
# sample, with its canonical unit. "(score)" and "units" are not UCUM: compared as written.
SYNTHEA_CODES: dict[str, str | None] = {
    "mg/dL": "g.m-3", "mm[Hg]": "g.m-1.s-2", "/min": "s-1", "mmol/L": "m-3.mol", "cm": "m",
    "{score}": "1", "kg": "g", "kg/m2": "g.m-2", "%": "1", "fL": "m3", "g/dL": "g.m-3",
    "10*3/uL": "m-3", "U/L": "m-3.mol.s-1", "10*6/uL": "m-3", "pg": "g", "kU/L": "m-3.mol.s-1",
    "mL/min": "m3.s-1", "g/L": "g.m-3", "Cel": "K", "mg/g": "1",
    "mL/min/{1.73_m2}": "m3.s-1", "{count}": "1", "ng/mL": "g.m-3", "mm": "m",
    "{T-score}": "1", "{nominal}": "1", "pH": "C-2.g.m2", "(score)": None, "units": None,
}


@pytest.mark.parametrize(("code", "unit"), SYNTHEA_CODES.items())
def test_each_synthea_unit_has_its_canonical_unit(code: str, unit: str | None) -> None:
    result = canonical(code)
    assert (result.unit if result else None) == unit


def _ucum_codes(bundle: Any) -> Iterator[str]:
    """The UCUM codes of Observation.valueQuantity and Observation.component.valueQuantity."""
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        if resource.get("resourceType") == "Observation":
            for holder in [resource, *resource.get("component", [])]:
                quantity = holder.get("valueQuantity", {})
                if quantity.get("system") == UCUM and "code" in quantity:
                    yield quantity["code"]


def test_every_ucum_code_in_the_synthea_sample_is_handled() -> None:
    sample = next((p for p in SYNTHEA_SAMPLES if p.exists()), None)
    if sample is None:
        pytest.skip("the Synthea sample is not present")
    with gzip.open(sample, "rb") as fh:
        codes = {code for line in fh if line.strip() for code in _ucum_codes(orjson.loads(line))}
    assert len(codes) >= 25
    assert codes <= SYNTHEA_CODES.keys(), f"not yet listed here: {codes - SYNTHEA_CODES.keys()}"
