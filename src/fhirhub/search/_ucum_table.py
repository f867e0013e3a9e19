"""The UCUM table: prefixes, base units and the units defined from them, read from the
specification's own machine-readable file (``data/ucum-essence.xml``, packaged unmodified;
its licence is in ``data/README.md``).

Read once, on first use (about 20 ms); each definition stays a UCUM expression, evaluated
by ``fhirhub.search._ucum`` when a unit is first met.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Literal

from defusedxml import ElementTree

ESSENCE = Path(__file__).parent / "data" / "ucum-essence.xml"
_NS = "{http://unitsofmeasure.org/ucum-essence}"

# base: one of the seven base units; derived: value times a unit expression; arbitrary:
# a unit of its own, defined by a procedure ([IU]); special: a unit on a non-ratio scale
# (Cel, [pH], B...), converted by a named function of a reference unit.
Kind = Literal["base", "derived", "arbitrary", "special"]


@dataclass(frozen=True, slots=True)
class Atom:
    """A unit atom: ``1 code = value unit`` (for a special unit, ``function(value unit)``)."""

    code: str
    metric: bool  # takes a prefix
    kind: Kind
    value: Decimal = Decimal(1)
    unit: str = "1"
    function: str = ""


@dataclass(frozen=True, slots=True)
class Table:
    version: str
    prefixes: Mapping[str, Decimal]
    atoms: Mapping[str, Atom]


@cache
def table() -> Table:
    """The UCUM table, read once per process."""
    root = ElementTree.parse(ESSENCE).getroot()
    prefixes = {p.get("Code"): Decimal(p.find(f"{_NS}value").get("value"))
                for p in root.iter(f"{_NS}prefix")}
    atoms = {b.get("Code"): Atom(b.get("Code"), True, "base") for b in root.iter(f"{_NS}base-unit")}
    for unit in root.iter(f"{_NS}unit"):
        atom = _atom(unit)
        atoms[atom.code] = atom
    # UCUM defines the mole as a number (6.02214076e23), which would make an amount per
    # volume (mmol/L) comparable with a count per volume (10*9/L). For search, where that
    # is a false match, it is kept as a dimension of its own, like the base units.
    atoms["mol"] = Atom("mol", True, "base")
    return Table(root.get("version", ""), prefixes, atoms)


def _atom(unit: Any) -> Atom:
    code, metric = unit.get("Code"), unit.get("isMetric") == "yes"
    value = unit.find(f"{_NS}value")
    function = value.find(f"{_NS}function")
    if unit.get("isSpecial") == "yes" and function is not None:
        return Atom(code, metric, "special", Decimal(function.get("value")), function.get("Unit"),
                    function.get("name"))
    kind: Kind = "arbitrary" if unit.get("isArbitrary") == "yes" else "derived"
    return Atom(code, metric, kind, Decimal(value.get("value")), value.get("Unit"))


__all__ = ["ESSENCE", "Atom", "Kind", "Table", "table"]
