"""UCUM units in canonical form, so that quantity search finds equal amounts written in
different units (https://hl7.org/fhir/R4/search.html#quantity): ``gt1|UCUM|kg`` finds
``1500 g``, ``37|UCUM|Cel`` finds ``98.6 [degF]``.

``canonical(code)`` answers how a value in ``code`` becomes a value in the canonical unit:
``canonical = value * scale + offset``. Equivalent codes share the canonical ``unit``:

* a product of the UCUM base units (``C``, ``K``, ``cd``, ``g``, ``m``, ``rad``, ``s``;
  and ``mol``, see below), sorted by symbol, joined by ``.``, each with its exponent unless it is 1: ``g.m-3``
  (mg/dL, g/L), ``g.m-1.s-2`` (mm[Hg], kPa), ``s-1`` (/min, Hz), ``m-3`` (10*3/uL,
  10*9/L). The unity is ``1``: ``%`` is ``1`` with scale 0.01; ``mol`` is kept as a
  dimension of its own (UCUM makes it the number 6.02214076e23, which would let
  ``mmol/L`` match a cell count in ``10*9/L``): ``mmol/L`` is ``m-3.mol``.
* an arbitrary unit (``[IU]``, ``[arb'U]``) is a unit of its own, a factor like a base unit
  (``m[IU]/mL`` and ``[IU]/L`` are both ``[iU].m-3``: UCUM defines ``[IU]`` as ``[iU]``);
  it converts to nothing else.
* Celsius, Fahrenheit and Réaumur are kelvin with an offset (``K``, the only units with
  one). The other special units (``[pH]``, ``B``, ``Np``, ``[hp'_X]``, ...) are on scales
  that are not linear: each is a unit of its own (``[pH]``), with only its prefix as scale
  (``dB`` is ``B`` with scale 0.1). Special units stand alone: ``Cel/h`` is not converted.

Annotations (``{score}``) mean nothing, as UCUM says: ``{score}`` is ``1``, and
``mL/min/{1.73_m2}`` is ``mL/min``. Codes are case-sensitive UCUM; anything else (``units``,
``(score)``) gives None, never an exception. Note that ``pH`` is valid UCUM for the
picohenry; the pH scale is ``[pH]``.

Cost: the table is read on first use (~20 ms); each distinct code is then analysed once per
process (tens of µs) and remembered, so a repeated call is a dictionary look-up.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from functools import cache

from fhirhub.search._ucum_syntax import Factor, Group, Symbol, Term, parse
from fhirhub.search._ucum_table import Atom, table

UCUM = "http://unitsofmeasure.org"

SIGNIFICANT_DIGITS = 15
"""A converted value is rounded to this many significant digits (half to even), then
normalised, so that float noise cannot tell 1000 g from 1 kg and equal amounts have one
representation (``Decimal('1.5E+3')``). Fifteen is what a float (the store's column) holds
exactly; no clinical measurement carries more."""

# Scales are worked out exactly enough that rounding to 15 digits never sees the error.
_EXACT = Context(prec=34, rounding=ROUND_HALF_EVEN)
# Converting never raises: an absurd magnitude becomes Infinity, not an exception.
_ROUND = Context(prec=SIGNIFICANT_DIGITS, rounding=ROUND_HALF_EVEN, traps=[])
_ONE, _ZERO = Decimal(1), Decimal(0)
_MAX_LENGTH = 200  # longer codes are not units anyone writes; refused before parsing
_CACHE_LIMIT = 10_000  # distinct codes remembered; past it (garbage in queries) not kept

# The zero of each scale with an offset, in kelvin (UCUM's functions Cel, degF, degRe).
_ZERO_POINT_IN_KELVIN = {
    "Cel": Decimal("273.15"),
    "degF": _EXACT.divide(_EXACT.multiply(Decimal("459.67"), Decimal(5)), Decimal(9)),
    "degRe": Decimal("273.15"),
}


@dataclass(frozen=True, slots=True)
class Canonical:
    """How values in one UCUM code become values in its canonical ``unit``."""

    unit: str
    scale: Decimal
    offset: Decimal = _ZERO

    def convert(self, value: Decimal) -> Decimal:
        """``value * scale + offset``, rounded once to ``SIGNIFICANT_DIGITS`` and normalised."""
        return _ROUND.fma(value, self.scale, self.offset).normalize(_ROUND)


class _NotConvertible(ValueError):
    """Valid UCUM that has no canonical form here (a special unit within a term)."""


@dataclass(frozen=True, slots=True)
class _Linear:
    """``scale`` times a product of base units: ``dims`` maps each to its exponent."""

    scale: Decimal
    dims: tuple[tuple[str, int], ...] = ()

    def times(self, other: _Linear, power: int = 1) -> _Linear:
        dims = Counter(dict(self.dims))
        for base, exponent in other.dims:
            dims[base] += exponent * power
        scale = _EXACT.multiply(self.scale, _EXACT.power(other.scale, power))
        return _Linear(scale, tuple(sorted((b, e) for b, e in dims.items() if e)))


_UNITY = _Linear(_ONE)

_cache: dict[str, Canonical | None] = {}
_MISSING = Canonical("", _ZERO)


def canonical(code: str) -> Canonical | None:
    """The canonical form of a UCUM code (case-sensitive), or None if it is not UCUM or
    has none. Each code is analysed once per process; then this is a dictionary look-up."""
    found = _cache.get(code, _MISSING)
    if found is _MISSING:
        found = _analyse(code)
        if len(_cache) < _CACHE_LIMIT:
            _cache[code] = found
    return found


def _analyse(code: str) -> Canonical | None:
    if not code or len(code) > _MAX_LENGTH:
        return None
    try:
        term = parse(code)
        special = _special(term)
        if special is not None:
            return special
        linear = _term(term)
    except (ValueError, ArithmeticError, RecursionError):
        return None  # not UCUM, a unit not in the table, a special unit within a term, ...
    if not linear.scale.is_finite() or linear.scale <= 0:
        return None  # a factor 0, or a division by it
    return Canonical(_unit_text(linear.dims), linear.scale.normalize(_EXACT))


def _special(term: Term) -> Canonical | None:
    """A code that is one special unit (prefixed, annotated: ``mCel``, ``Cel{oral}``)."""
    divide, component = term[0]
    if len(term) != 1 or divide or not isinstance(component, Symbol):
        return None
    prefix, atom = _split(component.text)
    if atom.kind != "special":
        return None
    if component.exponent != 1:
        raise _NotConvertible(atom.code)
    zero_point = _ZERO_POINT_IN_KELVIN.get(atom.function)
    if zero_point is None:  # not a linear scale: a unit of its own
        return Canonical(atom.code, prefix)
    reference = _Linear(atom.value).times(_term(parse(atom.unit)))
    scale = _EXACT.multiply(prefix, reference.scale).normalize(_EXACT)
    return Canonical(_unit_text(reference.dims), scale, zero_point)


def _term(term: Term) -> _Linear:
    result = _UNITY
    for divide, component in term:
        result = result.times(_component(component), -1 if divide else 1)
    return result


def _component(component: Symbol | Factor | Group) -> _Linear:
    if isinstance(component, Factor):
        return _Linear(Decimal(component.value))
    if isinstance(component, Group):
        return _term(component.term)
    prefix, atom = _split(component.text)
    return _UNITY.times(_Linear(prefix).times(_atom(atom.code)), component.exponent)  # (cm)2


def _split(symbol: str) -> tuple[Decimal, Atom]:
    """A simple unit as (prefix value, atom): the atom itself if there is one of that
    symbol (UCUM's symbols are chosen so that this is never ambiguous), else a prefix and a
    metric atom."""
    atoms, prefixes = table().atoms, table().prefixes
    atom = atoms.get(symbol)
    if atom is not None:
        return _ONE, atom
    for size in (2, 1):
        atom = atoms.get(symbol[size:])
        if atom is not None and atom.metric and symbol[:size] in prefixes:
            return prefixes[symbol[:size]], atom
    raise _NotConvertible(f"no unit {symbol!r}")


@cache
def _atom(code: str) -> _Linear:
    """An atom in base units (and arbitrary units), from its definition, once."""
    atom = table().atoms[code]
    if atom.kind == "base":
        return _Linear(_ONE, ((code, 1),))
    if atom.kind == "special":
        raise _NotConvertible(f"{code} is on a special scale")
    if atom.kind == "arbitrary":
        alias = table().atoms.get(atom.unit)  # [IU] is defined as [iU]
        if alias is None or alias.kind != "arbitrary":
            return _Linear(_ONE, ((code, 1),))
        return _Linear(atom.value).times(_atom(alias.code))
    return _Linear(atom.value).times(_term(parse(atom.unit)))


def _unit_text(dims: tuple[tuple[str, int], ...]) -> str:
    return ".".join(base if e == 1 else f"{base}{e}" for base, e in dims) or "1"


__all__ = ["SIGNIFICANT_DIGITS", "UCUM", "Canonical", "canonical"]
