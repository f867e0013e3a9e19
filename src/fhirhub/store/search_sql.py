"""Compile the neutral :class:`SearchQuery` tree to SQL (``?`` placeholders).

The SQL is the same for SQLite and PostgreSQL: row-value ``IN`` subqueries against the
``idx_*`` tables, keyset paging on the sort keys plus the resource id. Chains and ``_has``
compile to nested subqueries, so any depth works and every filter, including the caller's
access restrictions added later, is applied in the database before paging.

Sorting (https://hl7.org/fhir/R4/search.html#sort): a resource's value for a parameter is
the least of its index values ascending and the greatest descending (a date's start, or
its end); resources without one come last either way. Ties are broken by type and id, in
the direction of the first key, so that the order is total and an index on
``(res_type, last_updated, res_id)`` serves ``_sort=-_lastUpdated`` in both directions.
Paging is by keyset: a cursor holds the sort values of the row it continues from, and the
next page is the rows strictly after it (``previous``: strictly before it, read backwards),
so pages stay stable while data changes and a deep page costs what the first one does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhirhub.errors import InvalidError
from fhirhub.fhir.definitions import compartment_params
from fhirhub.search._ucum import UCUM, Canonical, canonical
from fhirhub.search.index import CANONICAL
from fhirhub.search.text import normalize, text_terms
from fhirhub.search.types import (
    Access,
    CompositeValue,
    Include,
    Predicate,
    RangeValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    TokenValue,
)

_ROW = "r.res_type, r.res_id, r.version_id, r.last_updated, r.deleted, r.body"
_FIXED_COLUMNS = 6
_HIGH = "\U0010ffff"
_LOW = ""
_NUM_HIGH = 1e308
_NUM_LOW = -1e308
Params = list[Any]


@dataclass
class Compiled:
    sql: str
    params: Params
    cursor_values: Callable[[Sequence[Any]], list[Any]]
    backward: bool = False  # rows come in reverse order (a ``previous`` page)


@dataclass(frozen=True)
class _Sort:
    expr: str  # SQL expression over alias r
    params: tuple[Any, ...]  # the placeholders' values in ``expr``
    descending: bool
    column: int  # index in the selected row


class SearchCompiler:
    """Builds SQL for searches; one per store (it holds no per-query state)."""

    def __init__(self, dialect: str = "sqlite") -> None:
        self.dialect = dialect

    def compile(self, query: SearchQuery) -> Compiled:
        from fhirhub.store.session import decode_cursor  # the session owns the cursor format

        where, params = self._where(query, "r")
        sorts = self._sorts(query)
        backward = False
        if query.cursor:
            try:
                values, backward = decode_cursor(query.cursor)
            except ValueError:
                raise InvalidError("The paging cursor is not one this server issued",
                                   spine_code="INVALID_VALUE") from None
            if len(values) != len(sorts):
                raise InvalidError("The paging cursor does not belong to this search",
                                   spine_code="INVALID_VALUE")
            cond, cparams = _keyset(sorts, values, backward)
            where.append(cond)
            params.extend(cparams)
        extra = [s for s in sorts if s.column >= _FIXED_COLUMNS]
        select = "".join(f", {s.expr}" for s in extra)
        select_params = [p for s in extra for p in s.params]
        order = ", ".join(
            f"{s.column + 1} {'DESC' if s.descending != backward else 'ASC'}" for s in sorts)
        sql = (f"SELECT {_ROW}{select} FROM resources r WHERE {' AND '.join(where)}"
               f" ORDER BY {order} LIMIT ?")

        def cursor_values(row: Sequence[Any]) -> list[Any]:
            return [row[s.column] for s in sorts]

        return Compiled(sql, [*select_params, *params, query.count + 1], cursor_values,
                        backward)

    def count(self, query: SearchQuery, *, limit: int | None = None) -> tuple[str, Params]:
        """``SELECT COUNT(*)`` of the matches; with ``limit``, counting stops there."""
        sql, params = self.matching(query)
        if limit is None:
            return f"SELECT COUNT(*) FROM ({sql}) m", params
        return f"SELECT COUNT(*) FROM ({sql} LIMIT ?) m", [*params, limit]

    def matching(self, query: SearchQuery) -> tuple[str, Params]:
        """A query giving one row per match, in no order (what counts and estimates read)."""
        where, params = self._where(query, "r")
        return f"SELECT 1 FROM resources r WHERE {' AND '.join(where)}", params

    def include(self, include: Include, frontier: Sequence[tuple[str, str]],
                access: Access | None = None) -> tuple[str, Params]:
        """The resources ``include`` adds for the resources ``frontier``: those their
        references point to (``_include``) or those pointing at them (``_revinclude``).
        Literal references match by type and id; canonical ones by the target's ``url``.
        Joins from the frontier's own index rows, so the cost follows the page, not the
        table (CROSS JOIN keeps SQLite to that order; PostgreSQL plans it as an ordinary
        join). The result may repeat a resource; the caller keeps the first."""
        by_type: dict[str, list[str]] = {}
        for rtype, rid in frontier:
            # _revinclude=Observation:subject:Group: only references to Groups count.
            if not (include.reverse and include.target_type and rtype != include.target_type):
                by_type.setdefault(rtype, []).append(rid)
        cond: list[str] = []
        cparams: Params = []
        if include.source_type != "*":
            cond.append("x.res_type = ?")
            cparams.append(include.source_type)
        if include.param != "*":
            cond.append("x.param = ?")
            cparams.append(include.param)
        extra = "".join(f" AND {c}" for c in cond)
        row = _ROW
        if include.reverse:
            # Literal: x points at a frontier resource; canonical: x's url is a frontier
            # resource's url.
            at, at_params = _frontier("x.ref_type", "x.ref_id", by_type)
            of, of_params = _frontier("u.res_type", "u.res_id", by_type)
            literal = (f"SELECT {row} FROM idx_reference x CROSS JOIN resources r"
                       " WHERE r.res_type = x.res_type AND r.res_id = x.res_id"
                       f" AND {at}{extra} AND r.deleted = 0")
            canonical = (f"SELECT {row} FROM idx_uri u CROSS JOIN idx_reference x"
                         " CROSS JOIN resources r WHERE x.url = u.value"
                         " AND r.res_type = x.res_type AND r.res_id = x.res_id"
                         f" AND u.param = 'url' AND {of}{extra} AND r.deleted = 0")
            params = [*at_params, *cparams, *of_params, *cparams]
        else:
            at, at_params = _frontier("x.res_type", "x.res_id", by_type)
            target = ""
            tparams: Params = []
            if include.target_type:
                target = " AND r.res_type = ?"
                tparams = [include.target_type]
            literal = (f"SELECT {row} FROM idx_reference x CROSS JOIN resources r"
                       " WHERE r.res_type = x.ref_type AND r.res_id = x.ref_id"
                       f" AND {at}{extra}{target} AND r.deleted = 0")
            canonical = (f"SELECT {row} FROM idx_reference x CROSS JOIN idx_uri u"
                         " CROSS JOIN resources r WHERE u.param = 'url' AND u.value = x.url"
                         " AND r.res_type = u.res_type AND r.res_id = u.res_id"
                         f" AND {at}{extra} AND x.ref_type IS NULL AND x.url IS NOT NULL"
                         f"{target} AND r.deleted = 0")
            params = [*at_params, *cparams, *tparams, *at_params, *cparams, *tparams]
        if access is not None:
            # What the caller may not see is never included.
            cond_sql, cond_params = visible(access, "r")
            literal += f" AND {cond_sql}"
            canonical += f" AND {cond_sql}"
            half = len(params) // 2  # the two halves are built of the same parts
            params = [*params[:half], *cond_params, *params[half:], *cond_params]
        return f"{literal} UNION ALL {canonical}", params

    # -- WHERE ------------------------------------------------------------------------------

    def _where(self, query: SearchQuery, alias: str,
               access: Access | None = None) -> tuple[list[str], Params]:
        """The conditions of ``query`` on ``alias``; ``access`` (the outer query's, for a
        chained or ``_has`` query) restricts it like the query's own."""
        access = access or query.access
        where = [f"{alias}.deleted = 0"]
        params: Params = []
        if access is not None:
            sql, p = visible(access, alias)
            where.append(sql)
            params.extend(p)
        if len(query.resource_types) == 1:
            where.append(f"{alias}.res_type = ?")
            params.append(query.resource_types[0])
        elif query.resource_types:
            where.append(f"{alias}.res_type IN ({_marks(query.resource_types)})")
            params.extend(query.resource_types)
        if query.compartment is not None:
            sql, p = _compartment(query, alias)
            where.append(sql)
            params.extend(p)
        # The most selective predicate is a list the database builds once (IN); the others
        # are checked row by row against the resources it gives (EXISTS, through each
        # table's (res_type, res_id) index), so a broad one (date=ge2015, code=<common
        # LOINC code>) is never built in full. PostgreSQL plans both forms as semi-joins
        # and chooses its own order; SQLite follows this one.
        ordered = sorted(query.predicates, key=_rank)
        for n, predicate in enumerate(ordered):
            sql, p = self._predicate(predicate, alias, query.resource_types,
                                     correlated=n > 0, access=access)
            where.append(sql)
            params.extend(p)
        return where, params

    def _predicate(self, pred: Predicate, alias: str, types: tuple[str, ...],
                   correlated: bool = False,
                   access: Access | None = None) -> tuple[str, Params]:
        key = f"({alias}.res_type, {alias}.res_id)"
        tie = f"x.res_type = {alias}.res_type AND x.res_id = {alias}.res_id"
        if pred.param == "_id":
            return _ids(pred, alias)
        if pred.param == "_lastUpdated":
            return _last_updated(pred, alias)
        if pred.param == "_list":
            return _list(pred, key)
        if pred.has is not None:
            return self._has(pred, key, access)
        table = _TABLE_BY_TYPE.get(pred.type)
        if pred.param in ("_text", "_content"):
            table = "idx_text"
        if table is None:
            raise InvalidError(
                f"Searching by {pred.param!r} (a {pred.type} parameter) is not supported",
                issue_code="not-supported", spine_code="INVALID_PARAMETER",
            )
        scope, scope_params = _type_scope(types)
        if pred.missing is not None:
            neg = "NOT " if pred.missing else ""
            return (f"{neg}EXISTS (SELECT 1 FROM {self._by_resource(table)} WHERE {tie}"
                    " AND x.param = ?)", [pred.param])
        if pred.chain is not None:
            return self._chain(pred, key, access)
        if pred.type == "composite":
            return _composite(pred, key, scope, scope_params)
        values: Sequence[object] = pred.values
        if pred.modifier in ("of-type", "identifier"):
            # Side rows the indexer writes as tokens under "param:of-type" /
            # "param:identifier" (see fhirhub.search.index).
            table = "idx_token"
            pred = Predicate(f"{pred.param}:{pred.modifier}", "token", None, pred.values)
        elif pred.type == "token" and pred.modifier in _SET_MODIFIERS:
            if pred.expansion is None:
                raise InvalidError(
                    f"The modifier :{pred.modifier} on {pred.param!r} needs the codes it stands"
                    " for, and none were found", issue_code="not-supported",
                    spine_code="INVALID_PARAMETER")
            values = pred.expansion
            if not values:
                return ("1 = 1" if pred.modifier == "not-in" else "1 = 0"), []
        ors, params = _alternatives(pred, values)
        if not ors:
            raise InvalidError(f"The search parameter {pred.param!r} has no value",
                               spine_code="INVALID_SEARCH_DATA")
        negate = pred.modifier in ("not", "not-in")
        if pred.type == "quantity":
            cond, cond_params = f"({' OR '.join(ors)})", params
        else:
            cond, cond_params = f"x.param = ? AND ({' OR '.join(ors)})", [pred.param, *params]
        if correlated or negate:
            neg = "NOT " if negate else ""
            source = self._by_resource(table)
            exact = [v for v in values if isinstance(v, TokenValue) and v.system and v.code]
            if (self.dialect == "sqlite" and table == "idx_token" and len(values) == 1
                    and exact and pred.modifier is None):
                source = "idx_token x INDEXED BY idx_token_value"  # one seek: all five equal
            return (f"{neg}EXISTS (SELECT 1 FROM {source} WHERE {tie} AND {cond})",
                    cond_params)
        sub = f"SELECT x.res_type, x.res_id FROM {table} x WHERE {cond}{scope}"
        return f"{key} IN ({sub})", [*cond_params, *scope_params]

    def _by_resource(self, table: str) -> str:
        """``table`` as ``x``, read through its (res_type, res_id) index. SQLite is told to
        (without statistics it prefers a value index, which for a correlated check means
        reading every row with that value); PostgreSQL chooses by its statistics."""
        if self.dialect == "sqlite":
            return f"{table} x INDEXED BY {table}_res"
        return f"{table} x"

    def _chain(self, pred: Predicate, key: str,
               access: Access | None) -> tuple[str, Params]:
        assert pred.chain is not None
        inner_where, inner_params = self._where(pred.chain, "t", access)
        sub = ("SELECT x.res_type, x.res_id FROM idx_reference x WHERE x.param = ?"
               " AND (x.ref_type, x.ref_id) IN (SELECT t.res_type, t.res_id FROM resources t"
               f" WHERE {' AND '.join(inner_where)})")
        return f"{key} IN ({sub})", [pred.param, *inner_params]

    def _has(self, pred: Predicate, key: str,
             access: Access | None) -> tuple[str, Params]:
        assert pred.has is not None
        inner_where, inner_params = self._where(pred.has, "h", access)
        sub = ("SELECT x.ref_type, x.ref_id FROM idx_reference x WHERE x.param = ?"
               " AND x.ref_type IS NOT NULL AND (x.res_type, x.res_id) IN"
               f" (SELECT h.res_type, h.res_id FROM resources h WHERE {' AND '.join(inner_where)})")
        return f"{key} IN ({sub})", [pred.param, *inner_params]

    # -- ORDER BY ---------------------------------------------------------------------------

    def _sorts(self, query: SearchQuery) -> list[_Sort]:
        sorts: list[_Sort] = []
        column = _FIXED_COLUMNS
        for key in query.sort:
            if key.param == "_id":
                sorts.append(_Sort("r.res_id", (), key.descending, 1))
            elif key.param == "_lastUpdated":
                sorts.append(_Sort("r.last_updated", (), key.descending, 3))
            else:
                expr, params = _sort_expr(key)
                sorts.append(_Sort(expr, params, key.descending, column))
                column += 1
        # Tie-breakers make the order total (so keyset paging is stable); they follow the
        # first key's direction so that one index can serve the whole order.
        down = bool(query.sort) and query.sort[0].descending
        if len(query.resource_types) != 1:
            sorts.append(_Sort("r.res_type", (), down, 0))
        if not any(s.expr == "r.res_id" for s in sorts):
            sorts.append(_Sort("r.res_id", (), down, 1))
        return sorts


def _alternatives(pred: Predicate, values: Sequence[object]) -> tuple[list[str], Params]:
    """The SQL of each value of ``pred`` (OR-ed by the caller), over index rows ``x``."""
    ors: list[str] = []
    params: Params = []
    for value in values:
        if values is pred.expansion and isinstance(value, TokenValue):
            # Elements of type code carry no system: their code is matched alone.
            ors.append("(x.code = ? AND (x.system = ? OR x.system IS NULL))")
            params.extend([value.code, value.system])
            continue
        sql, p = _value(pred, value)
        if pred.type == "quantity":
            # Unit-aware values are compared with the rows in canonical units, which have
            # a parameter name of their own; each value says which rows it reads.
            ucum = isinstance(value, RangeValue) and _canonical_unit(value) is not None
            sql = f"(x.param = ? AND {sql})"
            p = [pred.param + CANONICAL if ucum else pred.param, *p]
        ors.append(sql)
        params.extend(p)
    return ors, params


def _rank(pred: Predicate) -> int:
    """How few resources a predicate is likely to leave (lower: fewer); see ``_where``."""
    if pred.param == "_id":
        return 0
    if pred.missing is not None or pred.modifier in ("not", "not-in"):
        return 9
    if pred.chain is not None or pred.has is not None:
        return 6
    if pred.type == "reference" or pred.param == "_list":
        return 1
    if pred.type == "token":
        exact = all(isinstance(v, TokenValue) and v.system and v.code for v in pred.values)
        return 2 if exact and pred.modifier is None else 4
    if pred.type in ("uri", "composite") or pred.modifier == "exact":
        return 3
    if pred.type == "string":
        return 5
    if pred.param in ("_text", "_content"):
        return 8
    return 7  # dates, numbers, quantities, _lastUpdated: ranges


def _keyset(sorts: list[_Sort], values: list[Any], backward: bool) -> tuple[str, Params]:
    """Rows strictly after (``backward``: before) the row whose sort values are ``values``."""
    directions = {s.descending for s in sorts}
    if len(directions) == 1:
        # One direction: a row-value comparison, which both backends serve from an index.
        after = ">" if directions == {False} else "<"
        op = after if not backward else ("<" if after == ">" else ">")
        exprs = ", ".join(s.expr for s in sorts)
        params = [p for s in sorts for p in s.params]
        return f"({exprs}) {op} ({_marks(sorts)})", [*params, *values]
    ors: list[str] = []
    out: Params = []
    for i, sort in enumerate(sorts):
        ands = []
        for s, v in zip(sorts[:i], values[:i], strict=True):
            ands.append(f"{s.expr} = ?")
            out.extend([*s.params, v])
        after = "<" if sort.descending else ">"
        if backward:
            after = ">" if after == "<" else "<"
        ands.append(f"{sort.expr} {after} ?")
        out.extend([*sort.params, values[i]])
        ors.append("(" + " AND ".join(ands) + ")")
    return "(" + " OR ".join(ors) + ")", out


_SORT_COLUMNS: dict[str, tuple[str, str, str, bool]] = {
    # type: (table, ascending column, descending column, numeric)
    "string": ("idx_string", "x.norm", "x.norm", False),
    "token": ("idx_token", "x.code", "x.code", False),
    "date": ("idx_date", "x.lo", "x.hi", False),
    "number": ("idx_number", "x.lo", "x.hi", True),
    "quantity": ("idx_quantity", "x.lo", "x.hi", True),
    "uri": ("idx_uri", "x.value", "x.value", False),
    "reference": ("idx_reference", "COALESCE(x.url, x.ref_type || '/' || x.ref_id)",
                  "COALESCE(x.url, x.ref_type || '/' || x.ref_id)", False),
}


def _sort_expr(key: SortKey) -> tuple[str, tuple[Any, ...]]:
    found = _SORT_COLUMNS.get(key.type)
    if found is None:
        raise InvalidError(f"Sorting by {key.param!r} (a {key.type or 'special'} parameter) "
                           "is not supported", issue_code="not-supported",
                           spine_code="INVALID_PARAMETER")
    table, asc, desc, numeric = found
    agg = f"MAX({desc})" if key.descending else f"MIN({asc})"
    # Resources without a value sort last both ways: the sentinel is past every value.
    if numeric:
        sentinel: Any = _NUM_LOW if key.descending else _NUM_HIGH
    else:
        sentinel = _LOW if key.descending else _HIGH
    expr = (f"COALESCE((SELECT {agg} FROM {table} x WHERE x.res_type = r.res_type"
            " AND x.res_id = r.res_id AND x.param = ?), ?)")
    return expr, (key.param, sentinel)


# -- predicates -------------------------------------------------------------------------------


def _ids(pred: Predicate, alias: str) -> tuple[str, Params]:
    ids = [str(v) for v in pred.values]
    if pred.missing is not None:
        return ("1 = 0" if pred.missing else "1 = 1"), []
    op = "NOT IN" if pred.modifier == "not" else "IN"
    return f"{alias}.res_id {op} ({_marks(ids)})", ids


def _last_updated(pred: Predicate, alias: str) -> tuple[str, Params]:
    if pred.missing is not None:
        return ("1 = 0" if pred.missing else "1 = 1"), []
    ors: list[str] = []
    params: Params = []
    col = f"{alias}.last_updated"
    for value in pred.values:
        if not isinstance(value, RangeValue):
            raise InvalidError("_lastUpdated takes a date", spine_code="INVALID_SEARCH_DATA")
        # Stored instants end in "Z"; bounds get it too so that text order is exact.
        sql, p = _range(value.prefix, col, col, f"{value.lo}Z", f"{value.hi}Z")
        ors.append(sql)
        params.extend(p)
    sql = f"({' OR '.join(ors)})"
    return (f"NOT {sql}", params) if pred.modifier == "not" else (sql, params)


def _list(pred: Predicate, key: str) -> tuple[str, Params]:
    """``_list=id``: the resources the List ``id`` has as items."""
    ids = [str(v) for v in pred.values]
    sub = ("SELECT x.ref_type, x.ref_id FROM idx_reference x WHERE x.res_type = 'List'"
           f" AND x.param = 'item' AND x.ref_type IS NOT NULL AND x.res_id IN ({_marks(ids)})"
           " AND x.res_id IN (SELECT l.res_id FROM resources l WHERE l.res_type = 'List'"
           " AND l.deleted = 0)")
    return f"{key} IN ({sub})", ids


def _value(pred: Predicate, value: object) -> tuple[str, Params]:
    kind = pred.type
    if pred.param in ("_text", "_content") and isinstance(value, str):
        return _text(value)
    if kind == "token" and isinstance(value, TokenValue):
        return _token(pred.modifier, value)
    if kind == "string" and isinstance(value, str):
        return _string(pred.modifier, value)
    if kind == "reference" and isinstance(value, ReferenceValue):
        return _reference(value)
    if kind == "uri" and isinstance(value, str):
        return _uri(pred.modifier, value)
    if kind in ("date", "number", "quantity") and isinstance(value, RangeValue):
        return _ranged(kind, value)
    raise InvalidError(f"The value given for {pred.param!r} does not fit a {kind} parameter",
                       spine_code="INVALID_SEARCH_DATA")


def _ranged(kind: str, value: RangeValue, a: str = "x") -> tuple[str, Params]:
    lo: Any = value.lo
    hi: Any = value.hi
    if kind == "date":
        sql, params = _range(value.prefix, f"{a}.lo", f"{a}.hi", lo, hi)
        return f"({sql})", params
    lo, hi = Decimal(lo), Decimal(hi)
    unit: list[str] = []
    unit_params: Params = []
    if kind == "quantity" and value.code is not None:
        found = _canonical_unit(value)
        if found is not None:
            # Compared in canonical units: the indexer keeps a canonical row beside each
            # UCUM quantity (fhirhub.search.index), so kg finds g and Cel finds [degF].
            lo, hi = found.convert(lo), found.convert(hi)
            unit.append(f"{a}.system = ? AND {a}.code = ?")
            unit_params.extend([UCUM, found.unit])
        elif value.system:
            unit.append(f"{a}.system = ? AND {a}.code = ?")
            unit_params.extend([value.system, value.code])
        else:
            unit.append(f"({a}.code = ? OR {a}.unit = ?)")
            unit_params.extend([value.code, value.code])
    sql, params = _range(value.prefix, f"{a}.lo", f"{a}.hi", float(lo), float(hi),
                         half_open=True)
    return f"({' AND '.join([sql, *unit])})", [*params, *unit_params]


def _canonical_unit(value: RangeValue) -> Canonical | None:
    """How a UCUM quantity value converts to canonical units (None: compared as written)."""
    if value.system != UCUM or not value.code:
        return None
    return canonical(value.code)


def _range(prefix: str, lo_col: str, hi_col: str, lo: Any, hi: Any, *,
           half_open: bool = False) -> tuple[str, Params]:
    """Range comparison per search.html: the target [lo_col, hi_col] against [lo, hi].

    Dates are closed ranges (their ends are the first and last microsecond); numbers and
    quantities are ``half_open`` ([1.45, 1.55) for 1.5), so a range that starts where the
    value's ends starts after it (``sa``), and one that ends where it starts ends before
    it (``eb``)."""
    if half_open and prefix == "sa":
        return f"{lo_col} >= ?", [hi]
    if half_open and prefix == "eb":
        return f"{hi_col} <= ?", [lo]
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


def _token(modifier: str | None, value: TokenValue, a: str = "x") -> tuple[str, Params]:
    if modifier == "text":
        text = normalize(value.code or "")
        return f"{a}.text >= ? AND {a}.text < ?", [text, text + _HIGH]
    conds: list[str] = []
    params: Params = []
    if value.code is not None:
        conds.append(f"{a}.code = ?")
        params.append(value.code)
    if value.system == "":
        conds.append(f"{a}.system IS NULL")
    elif value.system is not None:
        conds.append(f"{a}.system = ?")
        params.append(value.system)
    if not conds:
        raise InvalidError("A token search needs a code or a system",
                           spine_code="INVALID_SEARCH_DATA")
    return "(" + " AND ".join(conds) + ")", params


def _string(modifier: str | None, value: str, a: str = "x") -> tuple[str, Params]:
    if modifier == "exact":
        return f"{a}.exact = ?", [value]
    norm = normalize(value)
    if modifier == "contains":
        return f"{a}.norm LIKE ? ESCAPE '\\'", [f"%{_like(norm)}%"]
    return f"({a}.norm >= ? AND {a}.norm < ?)", [norm, norm + _HIGH]


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _text(value: str) -> tuple[str, Params]:
    """``_text`` / ``_content``: every word of one alternative begins a word of the text."""
    alternatives = text_terms(value)
    if not alternatives:
        raise InvalidError(f"'{value}' has no words to search for",
                           spine_code="INVALID_SEARCH_DATA")
    ors: list[str] = []
    params: Params = []
    for words in alternatives:
        ors.append("(" + " AND ".join("x.words LIKE ? ESCAPE '\\'" for _ in words) + ")")
        params.extend(f"% {_like(w)}%" for w in words)
    return "(" + " OR ".join(ors) + ")", params


def _reference(value: ReferenceValue, a: str = "x", type_col: str = "ref_type",
               id_col: str = "ref_id") -> tuple[str, Params]:
    if value.url is not None and value.ref_id is None:
        return f"{a}.url = ?", [value.url]
    conds = [f"{a}.{id_col} = ?"]
    params: Params = [value.ref_id]
    if value.ref_type is not None:
        conds.append(f"{a}.{type_col} = ?")
        params.append(value.ref_type)
    typed = "(" + " AND ".join(conds) + ")"
    if value.url is not None and a == "x":
        # An absolute URL matches as written (canonicals) or by the type/id it names.
        return f"({a}.url = ? OR {typed})", [value.url, *params]
    return typed, params


def _uri(modifier: str | None, value: str, col: str = "x.value") -> tuple[str, Params]:
    if modifier == "below":
        return f"({col} >= ? AND {col} < ?)", [value, value + _HIGH]
    if modifier == "above":
        prefixes = [value[:i] for i in range(1, len(value) + 1)]
        return f"{col} IN ({_marks(prefixes)})", prefixes
    return f"{col} = ?", [value]


# -- composite ------------------------------------------------------------------------------


def _composite(pred: Predicate, key: str, scope: str,
               scope_params: Params) -> tuple[str, Params]:
    """A composite matches when one element has, at every position, a matching row."""
    subs: list[str] = []
    params: Params = []
    for value in pred.values:
        if not isinstance(value, CompositeValue):
            raise InvalidError(f"The value given for {pred.param!r} is not a composite value",
                               spine_code="INVALID_SEARCH_DATA")
        joins: list[str] = []
        conds: list[str] = []
        cond_params: Params = []
        for pos, (part, kind) in enumerate(zip(value.parts, value.types, strict=True)):
            a = f"c{pos}"
            if pos:
                joins.append(f" JOIN idx_composite {a} ON {a}.res_type = c0.res_type"
                             f" AND {a}.res_id = c0.res_id AND {a}.param = c0.param"
                             f" AND {a}.combo = c0.combo AND {a}.pos = {pos}")
            sql, p = _part(kind, part, a)
            conds.append(sql)
            cond_params.extend(p)
        scoped = scope.replace("x.res_type", "c0.res_type")
        subs.append(f"SELECT c0.res_type, c0.res_id FROM idx_composite c0{''.join(joins)}"
                    f" WHERE c0.param = ? AND c0.pos = 0{scoped} AND {' AND '.join(conds)}")
        # A value with a UCUM quantity reads the rows in canonical units (index.py).
        ucum = any(isinstance(p, RangeValue) and k == "quantity" and _canonical_unit(p)
                   for p, k in zip(value.parts, value.types, strict=True))
        params.extend([pred.param + CANONICAL if ucum else pred.param, *scope_params,
                       *cond_params])
    return f"{key} IN ({' UNION ALL '.join(subs)})", params


def _part(kind: str, part: object, a: str) -> tuple[str, Params]:
    if kind == "token" and isinstance(part, TokenValue):
        return _token(None, part, a)
    if kind == "reference" and isinstance(part, ReferenceValue):
        if part.ref_id is None:
            raise InvalidError("A reference in a composite value is [type]/[id] or [id]",
                               spine_code="INVALID_SEARCH_DATA")
        return _reference(ReferenceValue(part.ref_type, part.ref_id), a, "system", "code")
    if kind == "string" and isinstance(part, str):
        norm = normalize(part)
        return f"({a}.code >= ? AND {a}.code < ?)", [norm, norm + _HIGH]
    if kind == "uri" and isinstance(part, str):
        return _uri(None, part, f"{a}.code")
    if kind == "date" and isinstance(part, RangeValue):
        sql, params = _range(part.prefix, f"{a}.dlo", f"{a}.dhi", part.lo, part.hi)
        return f"({sql})", params
    if kind in ("number", "quantity") and isinstance(part, RangeValue):
        return _ranged(kind, part, a)
    raise InvalidError(f"A part of a composite value does not fit its {kind} component",
                       spine_code="INVALID_SEARCH_DATA")


# -- helpers ----------------------------------------------------------------------------------


_SET_MODIFIERS = frozenset({"above", "below", "in", "not-in"})
_TABLE_BY_TYPE = {
    "token": "idx_token",
    "string": "idx_string",
    "reference": "idx_reference",
    "date": "idx_date",
    "number": "idx_number",
    "quantity": "idx_quantity",
    "uri": "idx_uri",
    "composite": "idx_composite",
}


def _frontier(type_col: str, id_col: str,
              by_type: dict[str, list[str]]) -> tuple[str, Params]:
    """``(type_col, id_col)`` is one of the resources ``by_type`` lists."""
    ors: list[str] = []
    params: Params = []
    for rtype, rids in by_type.items():
        ors.append(f"({type_col} = ? AND {id_col} IN ({_marks(rids)}))")
        params.extend([rtype, *rids])
    return "(" + (" OR ".join(ors) or "1 = 0") + ")", params


def _marks(items: Sequence[object]) -> str:
    return ", ".join("?" for _ in items)


def _type_scope(types: tuple[str, ...]) -> tuple[str, Params]:
    """Restrict an index subquery to the searched types (lets it use the value index)."""
    if not types:
        return "", []
    if len(types) == 1:
        return " AND x.res_type = ?", list(types)
    return f" AND x.res_type IN ({_marks(types)})", list(types)


def visible(access: Access, alias: str) -> tuple[str, Params]:
    """The condition that the resource ``alias`` is one ``access`` lets the caller see:
    of a type it may see and, for a compartment-bound caller (a patient), in one of its
    compartments."""
    conds: list[str] = []
    params: Params = []
    if access.types is not None:
        if not access.types:
            return "1 = 0", []
        names = sorted(access.types)
        conds.append(f"{alias}.res_type IN ({_marks(names)})")
        params.extend(names)
    if access.compartment is not None:
        comp_type, ids = access.compartment
        members = compartment_params(comp_type)
        types = [t for t in sorted(members) if access.types is None or t in access.types]
        sql, p = _membership(comp_type, ids, alias, types, owner=True)
        conds.append(sql)
        params.extend(p)
    return "(" + " AND ".join(conds or ["1 = 1"]) + ")", params


def _membership(comp_type: str, ids: tuple[str, ...], alias: str, types: Sequence[str], *,
                owner: bool) -> tuple[str, Params]:
    """``alias`` is in the compartment of one of ``ids`` by the parameters its
    CompartmentDefinition names for ``types`` (or, with ``owner``, is one of them)."""
    members = compartment_params(comp_type)
    pairs = [(t, p) for t in types for p in members.get(t, ()) if p != "{def}"]
    ors: list[str] = []
    params: Params = []
    if ids and pairs:
        values = ", ".join("(?, ?)" for _ in pairs)
        ors.append(f"({alias}.res_type, {alias}.res_id) IN (SELECT c.res_type, c.res_id"
                   f" FROM idx_reference c WHERE c.ref_type = ? AND c.ref_id IN ({_marks(ids)})"
                   f" AND (c.res_type, c.param) IN (VALUES {values}))")
        params.extend([comp_type, *ids, *(v for pair in pairs for v in pair)])
    if ids and owner:
        ors.append(f"({alias}.res_type = ? AND {alias}.res_id IN ({_marks(ids)}))")
        params.extend([comp_type, *ids])
    if not ors:
        return "1 = 0", []
    return "(" + " OR ".join(ors) + ")", params


def _compartment(query: SearchQuery, alias: str) -> tuple[str, Params]:
    """Membership of a compartment (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
    assert query.compartment is not None
    comp_type, comp_id = query.compartment
    members = compartment_params(comp_type)
    types = query.resource_types or tuple(members)
    # "{def}": the compartment's own resource is in it (Practitioner/d is in Practitioner/d).
    owner = comp_type in types and "{def}" in members.get(comp_type, ())
    return _membership(comp_type, (comp_id,), alias, types, owner=owner)


__all__ = ["Compiled", "SearchCompiler", "visible"]
