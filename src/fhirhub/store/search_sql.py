"""Compile the neutral :class:`SearchQuery` tree to SQL (``?`` placeholders).

The SQL is the same for SQLite and PostgreSQL: row-value ``IN`` subqueries against the
``idx_*`` tables, keyset paging on the sort keys plus ``(res_type, res_id)``. Chains and
``_has`` compile to nested subqueries, so any depth works and every filter, including the
caller's access restrictions added later, is applied in the database before paging.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhirhub.errors import InvalidError
from fhirhub.fhir.definitions import compartment_params
from fhirhub.search.text import normalize
from fhirhub.search.types import (
    Include,
    Predicate,
    RangeValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    TokenValue,
)

_ROW = "r.res_type, r.res_id, r.version_id, r.last_updated, r.deleted, r.body"
_HIGH = "\U0010ffff"


@dataclass
class Compiled:
    sql: str
    params: list[Any]
    cursor_values: Callable[[Sequence[Any]], list[Any]]


@dataclass(frozen=True)
class _Sort:
    expr: str  # SQL expression over alias r
    descending: bool
    column: int  # index in the selected row


class SearchCompiler:
    """Builds SQL for searches; one per store (it holds no per-query state)."""

    def compile(self, query: SearchQuery) -> Compiled:
        where, params = self._where(query, "r")
        sorts = self._sorts(query.sort)
        # Fixed columns are selected already; only parameter sorts need extra columns.
        extra = "".join(f", {s.expr}" for s in sorts if s.column >= 6)
        if query.cursor:
            cond, cparams = self._keyset(sorts, query.cursor)
            where.append(cond)
            params.extend(cparams)
        order = ", ".join(f"{s.expr} {'DESC' if s.descending else 'ASC'}" for s in sorts)
        sql = (
            f"SELECT {_ROW}{extra} FROM resources r WHERE {' AND '.join(where)}"
            f" ORDER BY {order} LIMIT ?"
        )
        params.append(query.count + 1)

        def cursor_values(row: Sequence[Any]) -> list[Any]:
            return [row[s.column] for s in sorts]

        return Compiled(sql, params, cursor_values)

    def count(self, query: SearchQuery) -> tuple[str, list[Any]]:
        where, params = self._where(query, "r")
        return f"SELECT COUNT(*) FROM resources r WHERE {' AND '.join(where)}", params

    def include(
        self, include: Include, frontier: Sequence[tuple[str, str]]
    ) -> tuple[str, list[Any]]:
        keys = ", ".join("(?, ?)" for _ in frontier)
        flat = [v for pair in frontier for v in pair]
        params: list[Any] = []
        if include.reverse:
            cond = ["x.ref_type IS NOT NULL", f"(x.ref_type, x.ref_id) IN (VALUES {keys})"]
            params.extend(flat)
            if include.source_type != "*":
                cond.append("x.res_type = ?")
                params.append(include.source_type)
            if include.param != "*":
                cond.append("x.param = ?")
                params.append(include.param)
            inner = f"SELECT x.res_type, x.res_id FROM idx_reference x WHERE {' AND '.join(cond)}"
        else:
            cond = [f"(x.res_type, x.res_id) IN (VALUES {keys})", "x.ref_type IS NOT NULL"]
            params.extend(flat)
            if include.source_type != "*":
                cond.append("x.res_type = ?")
                params.append(include.source_type)
            if include.param != "*":
                cond.append("x.param = ?")
                params.append(include.param)
            if include.target_type:
                cond.append("x.ref_type = ?")
                params.append(include.target_type)
            inner = f"SELECT x.ref_type, x.ref_id FROM idx_reference x WHERE {' AND '.join(cond)}"
        sql = (
            f"SELECT {_ROW} FROM resources r WHERE r.deleted = 0"
            f" AND (r.res_type, r.res_id) IN ({inner}) ORDER BY r.res_type, r.res_id"
        )
        return sql, params

    # -- WHERE ------------------------------------------------------------------------------

    def _where(self, query: SearchQuery, alias: str) -> tuple[list[str], list[Any]]:
        where = [f"{alias}.deleted = 0"]
        params: list[Any] = []
        if query.resource_types:
            marks = ", ".join("?" for _ in query.resource_types)
            where.append(f"{alias}.res_type IN ({marks})")
            params.extend(query.resource_types)
        if query.compartment is not None:
            sql, p = _compartment(query, alias)
            where.append(sql)
            params.extend(p)
        for predicate in query.predicates:
            sql, p = self._predicate(predicate, alias, query.resource_types)
            where.append(sql)
            params.extend(p)
        return where, params

    def _predicate(self, pred: Predicate, alias: str,
                   types: tuple[str, ...]) -> tuple[str, list[Any]]:
        key = f"({alias}.res_type, {alias}.res_id)"
        if pred.param == "_id":
            return self._ids(pred, alias)
        if pred.param == "_lastUpdated":
            return self._last_updated(pred, alias)
        if pred.has is not None:
            return self._has(pred, key)
        table = _TABLE_BY_TYPE.get(pred.type)
        if table is None:
            raise InvalidError(
                f"Searching by {pred.param!r} (a {pred.type} parameter) is not supported",
                issue_code="not-supported", spine_code="INVALID_PARAMETER",
            )
        scope, scope_params = _type_scope(types)
        if pred.missing is not None:
            sub = f"SELECT x.res_type, x.res_id FROM {table} x WHERE x.param = ?{scope}"
            op = "NOT IN" if pred.missing else "IN"
            return f"{key} {op} ({sub})", [pred.param, *scope_params]
        if pred.chain is not None:
            return self._chain(pred, key)
        if pred.modifier in ("of-type", "identifier"):
            # Side rows the indexer writes as tokens under "param:of-type" /
            # "param:identifier" (see fhirhub.search.index).
            table = "idx_token"
            pred = Predicate(f"{pred.param}:{pred.modifier}", "token", None, pred.values)
        elif pred.type == "token" and pred.modifier in _UNSUPPORTED_TOKEN_MODIFIERS:
            raise InvalidError(
                f"The modifier :{pred.modifier} on {pred.param!r} is not supported yet",
                issue_code="not-supported", spine_code="INVALID_PARAMETER",
            )
        ors: list[str] = []
        params: list[Any] = []
        for value in pred.values:
            sql, p = self._value(pred, value)
            ors.append(sql)
            params.extend(p)
        if not ors:
            raise InvalidError(
                f"The search parameter {pred.param!r} has no value",
                spine_code="INVALID_SEARCH_DATA",
            )
        sub = (
            f"SELECT x.res_type, x.res_id FROM {table} x WHERE x.param = ?{scope}"
            f" AND ({' OR '.join(ors)})"
        )
        negate = pred.modifier == "not"
        return (f"{key} {'NOT IN' if negate else 'IN'} ({sub})",
                [pred.param, *scope_params, *params])

    def _ids(self, pred: Predicate, alias: str) -> tuple[str, list[Any]]:
        ids = [str(v) for v in pred.values]
        if pred.missing is not None:
            return ("1 = 0" if pred.missing else "1 = 1"), []
        marks = ", ".join("?" for _ in ids)
        op = "NOT IN" if pred.modifier == "not" else "IN"
        return f"{alias}.res_id {op} ({marks})", ids

    def _last_updated(self, pred: Predicate, alias: str) -> tuple[str, list[Any]]:
        ors: list[str] = []
        params: list[Any] = []
        col = f"{alias}.last_updated"
        for value in pred.values:
            if not isinstance(value, RangeValue):
                raise InvalidError("_lastUpdated takes a date", spine_code="INVALID_SEARCH_DATA")
            # Stored instants end in "Z"; bounds get it too so that text order is exact.
            sql, p = _range(value.prefix, col, col, f"{value.lo}Z", f"{value.hi}Z")
            ors.append(sql)
            params.extend(p)
        return f"({' OR '.join(ors)})", params

    def _chain(self, pred: Predicate, key: str) -> tuple[str, list[Any]]:
        assert pred.chain is not None
        inner_where, inner_params = self._where(pred.chain, "t")
        sub = (
            "SELECT x.res_type, x.res_id FROM idx_reference x WHERE x.param = ?"
            " AND (x.ref_type, x.ref_id) IN (SELECT t.res_type, t.res_id FROM resources t"
            f" WHERE {' AND '.join(inner_where)})"
        )
        return f"{key} IN ({sub})", [pred.param, *inner_params]

    def _has(self, pred: Predicate, key: str) -> tuple[str, list[Any]]:
        assert pred.has is not None
        inner_where, inner_params = self._where(pred.has, "h")
        sub = (
            "SELECT x.ref_type, x.ref_id FROM idx_reference x WHERE x.param = ?"
            " AND x.ref_type IS NOT NULL AND (x.res_type, x.res_id) IN"
            f" (SELECT h.res_type, h.res_id FROM resources h WHERE {' AND '.join(inner_where)})"
        )
        return f"{key} IN ({sub})", [pred.param, *inner_params]

    def _value(self, pred: Predicate, value: object) -> tuple[str, list[Any]]:
        kind = pred.type
        if kind == "token" and isinstance(value, TokenValue):
            return _token(pred.modifier, value)
        if kind == "string" and isinstance(value, str):
            return _string(pred.modifier, value)
        if kind == "reference" and isinstance(value, ReferenceValue):
            return _reference(value)
        if kind == "uri" and isinstance(value, str):
            return _uri(pred.modifier, value)
        if kind in ("date", "number", "quantity") and isinstance(value, RangeValue):
            lo: Any = value.lo
            hi: Any = value.hi
            if kind != "date":
                lo, hi = float(Decimal(lo)), float(Decimal(hi))
            sql, params = _range(value.prefix, "x.lo", "x.hi", lo, hi)
            if kind == "quantity" and value.code is not None:
                if value.system:
                    sql += " AND x.system = ? AND x.code = ?"
                    params.extend([value.system, value.code])
                else:
                    sql += " AND (x.code = ? OR x.unit = ?)"
                    params.extend([value.code, value.code])
            return f"({sql})", params
        raise InvalidError(
            f"The value given for {pred.param!r} does not fit a {kind} parameter",
            spine_code="INVALID_SEARCH_DATA",
        )

    # -- ORDER BY and keyset -----------------------------------------------------------------

    def _sorts(self, keys: tuple[SortKey, ...]) -> list[_Sort]:
        sorts: list[_Sort] = []
        column = 6  # first column after the fixed row
        for key in keys:
            if key.param == "_id":
                sorts.append(_Sort("r.res_id", key.descending, 1))
                continue
            if key.param == "_lastUpdated":
                sorts.append(_Sort("r.last_updated", key.descending, 3))
                continue
            expr = _param_sort_expr(key.param, key.descending)
            sorts.append(_Sort(expr, key.descending, column))
            column += 1
        # Tie-breakers make the order total, so keyset paging is stable.
        sorts.append(_Sort("r.res_type", False, 0))
        sorts.append(_Sort("r.res_id", False, 1))
        return sorts

    def _keyset(self, sorts: list[_Sort], cursor: str) -> tuple[str, list[Any]]:
        # Imported here: the session module imports this one (it owns the cursor format).
        from fhirhub.store.session import decode_cursor

        try:
            values = decode_cursor(cursor)
        except ValueError:
            raise InvalidError(
                "The paging cursor is not one this server issued", spine_code="INVALID_VALUE"
            ) from None
        if len(values) != len(sorts):
            raise InvalidError(
                "The paging cursor does not belong to this search", spine_code="INVALID_VALUE"
            )
        ors: list[str] = []
        params: list[Any] = []
        for i, sort in enumerate(sorts):
            ands = [f"{s.expr} = ?" for s in sorts[:i]]
            params.extend(values[:i])
            ands.append(f"{sort.expr} {'<' if sort.descending else '>'} ?")
            params.append(values[i])
            ors.append("(" + " AND ".join(ands) + ")")
        return "(" + " OR ".join(ors) + ")", params


_UNSUPPORTED_TOKEN_MODIFIERS = frozenset({"above", "below", "in", "not-in"})
_TABLE_BY_TYPE = {
    "token": "idx_token",
    "string": "idx_string",
    "reference": "idx_reference",
    "date": "idx_date",
    "number": "idx_number",
    "quantity": "idx_quantity",
    "uri": "idx_uri",
}

def _param_sort_expr(param: str, descending: bool) -> str:
    raise InvalidError(
        f"Sorting by {param!r} is not supported; sort by _id or _lastUpdated",
        issue_code="not-supported", spine_code="INVALID_PARAMETER",
    )


def _type_scope(types: tuple[str, ...]) -> tuple[str, list[Any]]:
    """Restrict an index subquery to the searched types (lets it use the value index)."""
    if not types:
        return "", []
    return f" AND x.res_type IN ({', '.join('?' for _ in types)})", list(types)


def _compartment(query: SearchQuery, alias: str) -> tuple[str, list[Any]]:
    """Membership of a compartment, by the parameters its CompartmentDefinition names for
    each resource type (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
    assert query.compartment is not None
    comp_type, comp_id = query.compartment
    members = compartment_params(comp_type)
    types = query.resource_types or tuple(members)
    pairs = [(t, p) for t in types for p in members.get(t, ())]
    if not pairs:
        return "1 = 0", []
    values = ", ".join("(?, ?)" for _ in pairs)
    sql = (f"({alias}.res_type, {alias}.res_id) IN (SELECT c.res_type, c.res_id"
           " FROM idx_reference c WHERE c.ref_type = ? AND c.ref_id = ?"
           f" AND (c.res_type, c.param) IN (VALUES {values}))")
    return sql, [comp_type, comp_id, *(v for pair in pairs for v in pair)]


def _range(prefix: str, lo_col: str, hi_col: str, lo: Any, hi: Any) -> tuple[str, list[Any]]:
    """Range comparison per search.html: the target [lo_col, hi_col] against [lo, hi]."""
    if prefix == "eq":
        return f"{lo_col} >= ? AND {hi_col} <= ?", [lo, hi]
    if prefix == "ne":
        return f"NOT ({lo_col} >= ? AND {hi_col} <= ?)", [lo, hi]
    if prefix == "gt":
        return f"{hi_col} > ?", [hi]
    if prefix == "lt":
        return f"{lo_col} < ?", [lo]
    if prefix == "ge":
        return f"({hi_col} > ? OR ({lo_col} >= ? AND {hi_col} <= ?))", [hi, lo, hi]
    if prefix == "le":
        return f"({lo_col} < ? OR ({lo_col} >= ? AND {hi_col} <= ?))", [lo, lo, hi]
    if prefix == "sa":
        return f"{lo_col} > ?", [hi]
    if prefix == "eb":
        return f"{hi_col} < ?", [lo]
    if prefix == "ap":
        return f"{lo_col} <= ? AND {hi_col} >= ?", [hi, lo]
    raise InvalidError(f"Unknown search prefix {prefix!r}", spine_code="INVALID_SEARCH_DATA")


def _token(modifier: str | None, value: TokenValue) -> tuple[str, list[Any]]:
    if modifier == "text":
        text = normalize(value.code or "")
        return "x.text >= ? AND x.text < ?", [text, text + _HIGH]
    conds: list[str] = []
    params: list[Any] = []
    if value.code is not None:
        conds.append("x.code = ?")
        params.append(value.code)
    if value.system == "":
        conds.append("x.system IS NULL")
    elif value.system is not None:
        conds.append("x.system = ?")
        params.append(value.system)
    if not conds:
        raise InvalidError("A token search needs a code or a system", spine_code="INVALID_SEARCH_DATA")
    return "(" + " AND ".join(conds) + ")", params


def _string(modifier: str | None, value: str) -> tuple[str, list[Any]]:
    if modifier == "exact":
        return "x.exact = ?", [value]
    norm = normalize(value)
    if modifier == "contains":
        escaped = norm.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return "x.norm LIKE ? ESCAPE '\\'", [f"%{escaped}%"]
    return "(x.norm >= ? AND x.norm < ?)", [norm, norm + _HIGH]


def _reference(value: ReferenceValue) -> tuple[str, list[Any]]:
    if value.url is not None and value.ref_id is None:
        return "x.url = ?", [value.url]
    conds = ["x.ref_id = ?"]
    params: list[Any] = [value.ref_id]
    if value.ref_type is not None:
        conds.append("x.ref_type = ?")
        params.append(value.ref_type)
    typed = "(" + " AND ".join(conds) + ")"
    if value.url is not None:
        # An absolute URL matches as written (canonicals) or by the type/id it names.
        return f"(x.url = ? OR {typed})", [value.url, *params]
    return typed, params


def _uri(modifier: str | None, value: str) -> tuple[str, list[Any]]:
    if modifier == "below":
        return "(x.value >= ? AND x.value < ?)", [value, value + _HIGH]
    if modifier == "above":
        prefixes = [value[:i] for i in range(1, len(value) + 1)]
        marks = ", ".join("?" for _ in prefixes)
        return f"x.value IN ({marks})", prefixes
    return "x.value = ?", [value]


__all__ = ["Compiled", "SearchCompiler"]
