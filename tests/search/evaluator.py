"""A plain in-Python search evaluator: the oracle the property test compares the stores with.

It answers a :class:`~fhirhub.search.types.SearchQuery` over a list of resources from their
index rows (:func:`~fhirhub.search.index.index_resource`) and the rules of
https://hl7.org/fhir/R4/search.html, written from the spec and not from the SQL:

* predicates AND, the values of one predicate OR (#combining); ``:not`` is the resources
  with no value matching (#modifiers), ``:missing`` whether the parameter has values at all;
* ranges (#prefix): a date is the closed range of instants its precision covers; a number
  or a quantity the half-open range ``[lo, hi)`` its precision implies ("1.5" is
  ``[1.45, 1.55)``), compared as floats, the numbers the database columns hold;
* strings (#string) match a prefix of the normalised text (``:contains`` anywhere,
  ``:exact`` the text as written); tokens (#token) by system and code;
* chains and ``_has`` (#chaining, #has) resolve references to live resources only, and so
  do ``_include`` and ``_revinclude`` (#include); a compartment holds the resources its
  CompartmentDefinition links to the owner by a reference parameter, or by ``{def}``;
* sorting (#sort): ascending by the least value a resource has for the key, descending by
  the greatest (a range's start, or its end); resources without a value come last in
  both directions; ties go by type and id, in the first key's direction.

Unit conversion is the one thing borrowed: a UCUM quantity is compared in canonical units
with :func:`fhirhub.search._ucum.canonical`, the conversion the indexer itself applies to
the stored values, so that both sides hold the very same floats.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fhirhub.fhir.definitions import compartment_params
from fhirhub.search._ucum import UCUM, canonical
from fhirhub.search.index import CANONICAL, index_resource
from fhirhub.search.text import normalize
from fhirhub.search.types import (
    Include,
    IndexRows,
    Predicate,
    RangeValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    TokenValue,
)

Json = dict[str, Any]
Key = tuple[str, str]  # (resource type, id)


@dataclass
class Resource:
    """One resource as stored: its current version (``body`` None when it is deleted)."""

    type: str
    id: str
    last_updated: str  # as the store keeps it: 2026-01-01T00:00:00.000000Z
    body: Json | None
    rows: IndexRows = field(default_factory=IndexRows)

    @classmethod
    def of(cls, body: Json, last_updated: str) -> Resource:
        return cls(body["resourceType"], body["id"], last_updated, body, index_resource(body))

    @classmethod
    def deleted(cls, resource_type: str, resource_id: str, last_updated: str) -> Resource:
        return cls(resource_type, resource_id, last_updated, None)

    @property
    def key(self) -> Key:
        return self.type, self.id


@dataclass(frozen=True)
class Result:
    keys: list[Key]  # every match, in the order of the query's sort
    total: int


class Evaluator:
    """Searches over a fixed set of resources."""

    def __init__(self, resources: Iterable[Resource]) -> None:
        self.live = {r.key: r for r in resources if r.body is not None}

    def search(self, query: SearchQuery) -> Result:
        found = [r for r in self.live.values() if self.matches(query, r)]
        found.sort(key=functools.cmp_to_key(self._comparator(query)))
        return Result([r.key for r in found], len(found))

    def page_after(self, query: SearchQuery, position: Sequence[Any] | None) -> list[Key]:
        """The page of ``query.count`` matches that follow ``position`` (a value of
        :meth:`position`) in the sort order; from the start when it is None."""
        order = self.search(query).keys
        if position is not None:
            compare = self._compare_positions(query)
            order = [k for k in order if compare(self.position(query, k), position) > 0]
        return order[: query.count]

    def included(self, query: SearchQuery, page: Sequence[Key]) -> list[Key]:
        """What ``_include`` and ``_revinclude`` add to a page (search.html#include): the
        resources the page's references point to, or that point to it; ``:iterate`` goes on
        from what was added, until nothing new is found. The page itself is not repeated."""
        seen = set(page)
        found: list[Key] = []
        frontier = list(page)
        first = True
        while frontier:
            new: list[Key] = []
            for include in query.includes:
                if first or include.iterate:
                    for key in self._include_step(include, frontier):
                        if key not in seen:
                            seen.add(key)
                            new.append(key)
            found.extend(new)
            frontier, first = new, False
        return found

    def _include_step(self, include: Include, frontier: list[Key]) -> Iterable[Key]:
        def wanted(source: Resource, row: Any) -> bool:
            return (include.source_type in ("*", source.type)
                    and include.param in ("*", row.param)
                    and include.target_type in (None, row.ref_type))

        if not include.reverse:
            for key in frontier:
                source = self.live[key]
                for row in source.rows.reference:
                    target = (row.ref_type, row.ref_id)
                    if wanted(source, row) and target in self.live:
                        yield target
            return
        targets = set(frontier)
        for source in self.live.values():
            if any(wanted(source, row) and (row.ref_type, row.ref_id) in targets
                   for row in source.rows.reference):
                yield source.key

    def position(self, query: SearchQuery, key: Key) -> tuple[Any, ...]:
        """Where resource ``key`` sits in the order of ``query``: its sort values."""
        r = self.live[key]
        return (*(sort_value(r, k) for k in query.sort), r.type, r.id)

    # -- matching -------------------------------------------------------------------------

    def matches(self, query: SearchQuery, r: Resource) -> bool:
        if r.body is None or (query.resource_types and r.type not in query.resource_types):
            return False
        if query.compartment is not None and not in_compartment(r, *query.compartment):
            return False
        return all(self._holds(p, r) for p in query.predicates)

    def _holds(self, pred: Predicate, r: Resource) -> bool:
        if pred.param == "_id":
            return _id_holds(pred, r)
        if pred.param == "_lastUpdated":
            return _last_updated_holds(pred, r)
        if pred.has is not None:
            return self._has_holds(pred, pred.has, r)
        if pred.missing is not None:
            return not _rows(r, pred.type, pred.param) if pred.missing else bool(
                _rows(r, pred.type, pred.param))
        if pred.chain is not None:
            return self._chain_holds(pred, pred.chain, r)
        found = any(_value_holds(pred, v, r) for v in pred.values)
        return not found if pred.modifier == "not" else found

    def _chain_holds(self, pred: Predicate, chain: SearchQuery, r: Resource) -> bool:
        for row in _rows(r, "reference", pred.param):
            target = self.live.get((row.ref_type, row.ref_id))
            if target is not None and self.matches(chain, target):
                return True
        return False

    def _has_holds(self, pred: Predicate, has: SearchQuery, r: Resource) -> bool:
        for source in self.live.values():
            pointing = any((row.ref_type, row.ref_id) == r.key
                           for row in _rows(source, "reference", pred.param))
            if pointing and self.matches(has, source):
                return True
        return False

    # -- sorting --------------------------------------------------------------------------

    def _comparator(self, query: SearchQuery) -> Callable[[Resource, Resource], int]:
        compare = self._compare_positions(query)

        def by_position(a: Resource, b: Resource) -> int:
            return compare(self.position(query, a.key), self.position(query, b.key))

        return by_position

    @staticmethod
    def _compare_positions(query: SearchQuery) -> Callable[[Sequence[Any], Sequence[Any]], int]:
        keys = query.sort
        ties_down = bool(keys) and keys[0].descending

        def compare(a: Sequence[Any], b: Sequence[Any]) -> int:
            for i, key in enumerate(keys):
                found = _compare_values(a[i], b[i], key.descending)
                if found:
                    return found
            for x, y in zip(a[len(keys):], b[len(keys):], strict=True):  # type, then id
                found = _cmp(x, y)
                if found:
                    return -found if ties_down else found
            return 0

        return compare


def in_compartment(r: Resource, owner_type: str, owner_id: str) -> bool:
    """Whether ``r`` is in the compartment of ``owner_type/owner_id``: one of the reference
    parameters its CompartmentDefinition names for ``r``'s type points there, or the name
    is ``{def}`` and ``r`` is the owner itself (compartmentdefinition.html)."""
    for param in compartment_params(owner_type).get(r.type, ()):
        if param == "{def}" and r.key == (owner_type, owner_id):
            return True
        if any((row.ref_type, row.ref_id) == (owner_type, owner_id)
               for row in _rows(r, "reference", param)):
            return True
    return False


# -- value matching ------------------------------------------------------------------------


def _rows(r: Resource, kind: str, param: str) -> list[Any]:
    table: list[Any] = getattr(r.rows, kind) if kind in _TABLES else []
    return [row for row in table if row.param == param]


_TABLES = frozenset({"token", "string", "reference", "date", "number", "quantity", "uri"})


def _id_holds(pred: Predicate, r: Resource) -> bool:
    if pred.missing is not None:
        return not pred.missing  # every resource has an id
    found = r.id in pred.values
    return not found if pred.modifier == "not" else found


def _last_updated_holds(pred: Predicate, r: Resource) -> bool:
    if pred.missing is not None:
        return not pred.missing
    instant = r.last_updated.removesuffix("Z")
    found = any(isinstance(v, RangeValue) and closed_range_holds(
        v.prefix, str(v.lo), str(v.hi), instant, instant) for v in pred.values)
    return not found if pred.modifier == "not" else found


def _value_holds(pred: Predicate, value: object, r: Resource) -> bool:
    kind = pred.type
    if kind == "token" and isinstance(value, TokenValue):
        return any(_token_holds(pred.modifier, value, row)
                   for row in _rows(r, "token", pred.param))
    if kind == "string" and isinstance(value, str):
        return any(_string_holds(pred.modifier, value, row.norm, row.exact)
                   for row in _rows(r, "string", pred.param))
    if kind == "reference" and isinstance(value, ReferenceValue):
        return any(_reference_holds(value, row) for row in _rows(r, "reference", pred.param))
    if kind == "date" and isinstance(value, RangeValue):
        return any(closed_range_holds(value.prefix, str(value.lo), str(value.hi), row.lo, row.hi)
                   for row in _rows(r, "date", pred.param))
    if kind == "number" and isinstance(value, RangeValue):
        lo, hi = float(value.lo), float(value.hi)
        return any(half_open_range_holds(value.prefix, lo, hi, float(row.lo), float(row.hi))
                   for row in _rows(r, "number", pred.param))
    if kind == "quantity" and isinstance(value, RangeValue):
        return _quantity_holds(pred.param, value, r)
    raise NotImplementedError(f"{kind} value {value!r}")


def _token_holds(modifier: str | None, value: TokenValue, row: Any) -> bool:
    if modifier == "text":
        # :text is a string search (a prefix, case- and accent-blind) on the text.
        return row.text is not None and row.text.startswith(normalize(value.code or ""))
    if value.code is not None and row.code != value.code:
        return False
    if value.system == "":
        return row.system is None
    return value.system is None or row.system == value.system


def _string_holds(modifier: str | None, value: str, norm: str, exact: str) -> bool:
    if modifier == "exact":
        return exact == value
    if modifier == "contains":
        return normalize(value) in norm
    return norm.startswith(normalize(value))


def _reference_holds(value: ReferenceValue, row: Any) -> bool:
    if value.ref_id is None:
        return value.url is not None and row.url == value.url
    same = row.ref_id == value.ref_id and value.ref_type in (None, row.ref_type)
    return same or (value.url is not None and row.url == value.url)


def _quantity_holds(param: str, value: RangeValue, r: Resource) -> bool:
    lo, hi = Decimal(value.lo), Decimal(value.hi)
    unit: Callable[[Any], bool] = lambda row: True  # noqa: E731 - no unit: any unit
    rows = _rows(r, "quantity", param)
    found = canonical(value.code) if value.system == UCUM and value.code else None
    if found is not None:
        # In canonical units, against the values the indexer converted the same way.
        lo, hi = found.convert(lo), found.convert(hi)
        rows = _rows(r, "quantity", param + CANONICAL)
        unit = lambda row: (row.system, row.code) == (UCUM, found.unit)  # noqa: E731
    elif value.system is not None:
        unit = lambda row: (row.system, row.code) == (value.system, value.code)  # noqa: E731
    elif value.code is not None:
        unit = lambda row: value.code in (row.code, row.unit)  # noqa: E731
    return any(unit(row) and half_open_range_holds(value.prefix, float(lo), float(hi),
                                                   float(row.lo), float(row.hi))
               for row in rows)


def closed_range_holds(prefix: str, lo: str, hi: str, tlo: str, thi: str) -> bool:
    """Prefix ``prefix`` of search range [lo, hi] against target [tlo, thi] (dates, whose
    ranges are closed: the last microsecond is ``hi``), by search.html#prefix."""
    within = lo <= tlo and thi <= hi  # "the range of the search value fully contains"
    if prefix == "eq":
        return within
    if prefix == "ne":
        return not within
    if prefix == "gt":  # "the range above the search value intersects the target"
        return thi > hi
    if prefix == "lt":  # "the range below the search value intersects the target"
        return tlo < lo
    if prefix == "ge":
        return thi > hi or within
    if prefix == "le":
        return tlo < lo or within
    if prefix == "sa":  # no overlap, and the target is wholly above
        return tlo > hi
    if prefix == "eb":
        return thi < lo
    if prefix == "ap":  # the (widened) search range overlaps the target
        return tlo <= hi and thi >= lo
    raise ValueError(prefix)


def half_open_range_holds(prefix: str, lo: float, hi: float, tlo: float, thi: float) -> bool:
    """The same for numbers and quantities, whose ranges are [lo, hi): 1.5 is [1.45, 1.55),
    so 1.6 ([1.55, 1.65)) starts after it and 1.4 ([1.35, 1.45)) ends before it."""
    within = lo <= tlo and thi <= hi
    if prefix == "eq":
        return within
    if prefix == "ne":
        return not within
    if prefix == "gt":  # [hi, +inf) meets [tlo, thi)
        return thi > hi
    if prefix == "lt":  # (-inf, lo) meets [tlo, thi)
        return tlo < lo
    if prefix == "ge":
        return thi > hi or within
    if prefix == "le":
        return tlo < lo or within
    if prefix == "sa":
        return tlo >= hi
    if prefix == "eb":
        return thi <= lo
    if prefix == "ap":
        # "Approximately" is the server's to define (search.html#prefix recommends 10%):
        # fhirhub widens the value by 10% and takes any target touching that, ends included.
        return tlo <= hi and thi >= lo
    raise ValueError(prefix)


# -- sorting -------------------------------------------------------------------------------


def sort_value(r: Resource, key: SortKey) -> Any:
    """A resource's value for one sort key (None: it has none), by search.html#sort: the
    least of its values ascending, the greatest descending."""
    if key.param == "_id":
        return r.id
    if key.param == "_lastUpdated":
        return r.last_updated
    kind = key.type
    rows = _rows(r, kind, key.param)
    if not rows:
        return None
    pick = max if key.descending else min
    if kind in ("date", "number", "quantity"):
        ends = [row.hi if key.descending else row.lo for row in rows]
        return pick(float(e) for e in ends) if kind != "date" else pick(ends)
    if kind == "string":
        return pick(row.norm for row in rows)
    if kind == "token":
        codes = [row.code for row in rows if row.code is not None]
        return pick(codes) if codes else None
    if kind == "uri":
        return pick(row.value for row in rows)
    if kind == "reference":
        names = [row.url if row.url is not None else f"{row.ref_type}/{row.ref_id}"
                 for row in rows if row.url is not None or row.ref_type is not None]
        return pick(names) if names else None
    raise NotImplementedError(f"sorting by a {kind} parameter")


def _cmp(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def _compare_values(a: Any, b: Any, descending: bool) -> int:
    """Missing values (None) after present ones in both directions."""
    if a is None or b is None:
        return (a is None) - (b is None)
    return -_cmp(a, b) if descending else _cmp(a, b)


__all__ = ["Evaluator", "Resource", "Result", "closed_range_holds", "half_open_range_holds",
           "in_compartment", "sort_value"]
