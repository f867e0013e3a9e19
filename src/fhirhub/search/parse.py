"""Query parameters → the neutral :class:`SearchQuery` tree: https://hl7.org/fhir/R4/search.html

* Each parameter is one :class:`Predicate`; a comma ORs values within it (#combining), a
  repeated parameter is a second predicate, AND-ed (``date=ge2020&date=lt2021``).
* Modifiers (#modifiers) are checked against the parameter's type. ``:missing`` sets
  :attr:`Predicate.missing`; ``:[type]`` on a reference is kept as the modifier and given to
  each value; ``:of-type`` values are ``TokenValue(system, "code|value")`` and
  ``:identifier`` values ``TokenValue(system, value)``, matching the ``param:of-type`` and
  ``param:identifier`` rows the indexer writes (``index.py``); ``:text`` values are
  ``TokenValue(None, text)``; ``:in`` / ``:not-in`` values are the ValueSet URLs.
* String and uri values are given as written (unescaped): the store normalises.
  ``_id`` values are plain strings. Composite values stay as written (#composite); see
  :func:`fhirhub.search._parse_values.composite`.
* Chains ``subject:Patient.name=x`` / ``subject.name=x`` (#chaining) and reverse chains
  ``_has:Observation:patient:code=x`` (#has) nest to any depth.
* Result parameters (#return): ``_sort``, ``_count`` (clamped to ``max_count``), ``_total``,
  ``_include`` / ``_revinclude`` (``:iterate``), ``_cursor`` / ``_page``. ``_format``,
  ``_pretty``, ``_summary``, ``_elements`` and ``_type`` are the caller's: known, not parsed.

Unknown parameters and modifiers (issue ``not-supported``, spine ``INVALID_PARAMETER``) and
bad values (``invalid``, ``INVALID_VALUE``) are errors when ``strict`` (Prefer:
handling=strict) and otherwise warnings, the parameter being left out (#errors).
:func:`canonical_params` writes the tree back as the parameters the search really used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, cast

from fhirhub.errors import Issue
from fhirhub.fhir.model import element_model
from fhirhub.search import _parse_values as pv
from fhirhub.search._render import canonical_params
from fhirhub.search.registry import Registry, SearchParamDef, registry
from fhirhub.search.types import (
    CompositeValue,
    Include,
    ParamType,
    Predicate,
    RangeValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    TokenValue,
)

Total = Literal["none", "estimate", "accurate"]

IGNORED = frozenset({"_format", "_pretty", "_summary", "_elements", "_type"})
_TOTALS = ("none", "estimate", "accurate")
_MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"exact", "contains", "missing"}),
    "token": frozenset({"text", "not", "above", "below", "in", "not-in", "of-type", "missing"}),
    "reference": frozenset({"identifier", "missing"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "uri": frozenset({"above", "below", "missing"}),
    "composite": frozenset({"missing"}),
    "special": frozenset(),
}
_ID_MODIFIERS = frozenset({"not", "missing"})


class _UnknownName(Exception):
    """Not a parameter (or modifier) of the types searched."""


@dataclass
class _State:
    query_types: tuple[str, ...]
    strict: bool
    reg: Registry
    predicates: list[Predicate] = field(default_factory=list)
    sort: tuple[SortKey, ...] | None = None
    count: int | None = None
    includes: list[Include] = field(default_factory=list)
    total: Total | None = None
    cursor: str | None = None
    issues: list[Issue] = field(default_factory=list)

    def unknown(self, message: str) -> None:
        self.issues.append(Issue(
            severity="error" if self.strict else "warning", code="not-supported",
            diagnostics=message if self.strict else f"{message}; it was ignored",
            spine_code="INVALID_PARAMETER",
        ))

    def invalid(self, message: str) -> None:
        self.issues.append(Issue(
            severity="error" if self.strict else "warning", code="invalid",
            diagnostics=message if self.strict else f"{message}; it was ignored",
            spine_code="INVALID_VALUE",
        ))


def parse_search(
    resource_types: tuple[str, ...],
    params: list[tuple[str, str]],
    *,
    strict: bool,
    default_count: int,
    max_count: int,
    using: Registry | None = None,
) -> tuple[SearchQuery, list[Issue]]:
    """The query tree for ``params`` over ``resource_types`` (none: every type), and issues.

    With ``strict``, every unknown parameter and bad value is an error issue (the caller
    refuses the search); otherwise it is left out with a warning issue.
    """
    state = _State(resource_types, strict, using or registry())
    for name, value in params:
        if value == "":
            continue  # search.html: "a parameter with no value is ignored"
        try:
            _one(state, name, value)
        except _UnknownName as exc:
            state.unknown(str(exc))
        except pv.BadValue as exc:
            state.invalid(f"The value '{value}' of the search parameter '{name}' is not valid: {exc}")
    count = default_count if state.count is None else state.count
    query = SearchQuery(
        resource_types=resource_types,
        predicates=tuple(state.predicates),
        sort=state.sort or (),
        count=min(count, max_count),
        includes=tuple(state.includes),
        total=state.total or "none",
        cursor=state.cursor,
    )
    return query, state.issues


def _one(state: _State, name: str, value: str) -> None:
    base = name.partition(":")[0]
    if base in IGNORED:
        return
    if base in ("_cursor", "_page"):
        state.cursor = value
    elif base == "_count":
        state.count = _count(value)
    elif base == "_total":
        if value not in _TOTALS:
            raise pv.BadValue("_total is none, estimate or accurate")
        state.total = cast(Total, value)
    elif base == "_sort":
        state.sort = _sort(state, value)
    elif base in ("_include", "_revinclude"):
        state.includes.append(_include(state, name, value))
    elif base == "_list":
        if name != base:
            raise _UnknownName(f"The modifier '{name[len(base):]}' is not supported on _list")
        ids = tuple(pv.unescape(v) for v in pv.split(value, ","))
        if not all(pv.is_id(i) for i in ids):
            raise pv.BadValue("_list takes the ids of List resources")
        state.predicates.append(Predicate("_list", "special", None, ids))
    else:
        state.predicates.append(_criterion(state.reg, state.query_types, name, value))


def _count(value: str) -> int:
    if not value.isdigit():
        raise pv.BadValue("_count is a whole number, 0 or more")
    return int(value)


# -- predicates -----------------------------------------------------------------------------


def _criterion(reg: Registry, types: tuple[str, ...], name: str, value: str) -> Predicate:
    if name.startswith("_has:"):
        return _has(reg, types, name, value)
    head, dot, rest = name.partition(".")
    code, _, modifier = head.partition(":")
    param = _lookup(reg, types, code)
    if dot:
        return _chain(reg, types, param, modifier or None, rest, value)
    return _simple(reg, param, modifier or None, value, _targets(reg, types, code))


def _lookup(reg: Registry, types: tuple[str, ...], code: str) -> SearchParamDef:
    """The parameter ``code`` on every type searched (on ``Resource`` for all types)."""
    searched = types or ("Resource",)
    found = [p for p in (reg.get(t, code) for t in searched) if p is not None]
    if len(found) < len(searched):
        missing = [t for t in searched if reg.get(t, code) is None]
        where = "all resource types" if not types else ", ".join(missing)
        raise _UnknownName(f"Unknown search parameter '{code}' for {where}")
    if any(p.type != found[0].type for p in found):
        raise _UnknownName(f"The search parameter '{code}' has different types on "
                           f"{', '.join(types)}; search one type at a time")
    return found[0]


def _targets(reg: Registry, types: tuple[str, ...], code: str) -> tuple[str, ...]:
    """Every type the reference parameter ``code`` may point to (empty: any)."""
    out: list[str] = []
    for t in types or ("Resource",):
        param = reg.get(t, code)
        if param is None or not param.targets:
            return ()
        out.extend(x for x in param.targets if x not in out)
    return tuple(out)


def _simple(
    reg: Registry, param: SearchParamDef, modifier: str | None, value: str,
    targets: tuple[str, ...],
) -> Predicate:
    kind = param.type
    allowed = _ID_MODIFIERS if param.code == "_id" else _MODIFIERS[kind]
    target = None
    if modifier is not None and modifier not in allowed:
        if kind != "reference" or not element_model().is_resource_type(modifier):
            raise _UnknownName(f"The modifier ':{modifier}' is not supported on the "
                               f"{kind} search parameter '{param.code}'")
        if targets and modifier not in targets:
            raise _UnknownName(f"The search parameter '{param.code}' cannot point to "
                               f"a {modifier} (only {', '.join(targets)})")
        target = modifier
    if modifier == "missing":
        if value not in ("true", "false"):
            raise pv.BadValue(":missing is true or false")
        return Predicate(param.code, kind, modifier, (), missing=value == "true")
    if kind == "composite":
        return Predicate(param.code, kind, modifier,
                         tuple(_composite(reg, param, v) for v in pv.split(value, ",")))
    parsed = tuple(_value(param, kind, modifier, target, targets, v) for v in pv.split(value, ","))
    return Predicate(param.code, kind, modifier, parsed)


def _composite(reg: Registry, param: SearchParamDef, text: str) -> CompositeValue:
    """``code$value``: each part parsed by the type of its component (#composite)."""
    if text == "":
        raise pv.BadValue("one of the comma-separated values is empty")
    parts = pv.split(pv.composite(text, len(param.components)), "$")
    types: list[ParamType] = []
    parsed: list[TokenValue | RangeValue | ReferenceValue | str] = []
    for component, part in zip(param.components, parts, strict=True):
        kind = reg.type_of(component.definition)
        if kind is None or kind in ("composite", "special"):
            raise _UnknownName(f"The composite parameter '{param.code}' has a component "
                               f"({component.definition}) this server cannot search by")
        if part == "":
            raise pv.BadValue("a part of a composite value is empty")
        types.append(kind)
        if kind == "token":
            parsed.append(pv.token(part))
        elif kind == "reference":
            parsed.append(pv.reference(part, None, ()))
        elif kind == "date":
            parsed.append(pv.date(part))
        elif kind == "number":
            parsed.append(pv.number(part))
        elif kind == "quantity":
            parsed.append(pv.quantity(part))
        else:
            parsed.append(pv.unescape(part))
    return CompositeValue(text, tuple(parsed), tuple(types))


def _value(
    param: SearchParamDef,
    kind: ParamType,
    modifier: str | None,
    target: str | None,
    targets: tuple[str, ...],
    text: str,
) -> TokenValue | RangeValue | ReferenceValue | str:
    if text == "":
        raise pv.BadValue("one of the comma-separated values is empty")
    if param.code == "_id" or kind in ("string", "uri", "special"):
        return pv.unescape(text)
    if kind == "token":
        if modifier == "text":
            return TokenValue(None, pv.unescape(text))
        if modifier in ("in", "not-in"):
            return pv.unescape(text)
        return pv.of_type(text) if modifier == "of-type" else pv.token(text)
    if kind == "reference":
        if modifier == "identifier":
            return pv.token(text)
        return pv.reference(text, target, targets)
    if kind == "date":
        return pv.date(text)
    if kind == "number":
        return pv.number(text)
    return pv.quantity(text)


def _chain(
    reg: Registry,
    types: tuple[str, ...],
    param: SearchParamDef,
    modifier: str | None,
    rest: str,
    value: str,
) -> Predicate:
    """``subject:Patient.name=x``: a predicate on ``subject`` whose target matches a query."""
    if param.type != "reference":
        raise _UnknownName(f"The search parameter '{param.code}' is a {param.type}, "
                           "not a reference: it cannot be chained")
    targets = _targets(reg, types, param.code)
    if modifier is not None:
        if not element_model().is_resource_type(modifier) or (targets and modifier not in targets):
            raise _UnknownName(f"The search parameter '{param.code}' cannot point to a {modifier}")
        candidates: tuple[str, ...] = (modifier,)
    else:
        candidates = targets or tuple(sorted(element_model().resource_types))
    next_code = rest.partition(".")[0].partition(":")[0]
    if next_code != "_has":
        candidates = tuple(t for t in candidates if reg.get(t, next_code) is not None)
    if not candidates:
        raise _UnknownName(f"No resource that '{param.code}' points to has a search "
                           f"parameter '{next_code}'")
    inner = _criterion(reg, candidates, rest, value)
    return Predicate(param.code, "reference", modifier, (),
                     chain=SearchQuery(resource_types=candidates, predicates=(inner,)))


def _has(reg: Registry, types: tuple[str, ...], name: str, value: str) -> Predicate:
    """``_has:Observation:patient:code=x``: some Observation whose ``patient`` is this one."""
    parts = name.split(":", 3)
    if len(parts) != 4 or not all(parts):
        raise _UnknownName(f"'{name}' is not _has:[type]:[reference parameter]:[parameter]")
    _, source, ref_code, rest = parts
    if not element_model().is_resource_type(source):
        raise _UnknownName(f"_has names '{source}', which is not a resource type")
    ref = reg.get(source, ref_code)
    if ref is None or ref.type != "reference":
        raise _UnknownName(f"'{ref_code}' is not a reference search parameter of {source}")
    if ref.targets and types and not set(types) & set(ref.targets):
        raise _UnknownName(f"{source}.{ref_code} cannot point to a {' or '.join(types)}")
    inner = _criterion(reg, (source,), rest, value)
    return Predicate(ref_code, "reference", None, (),
                     has=SearchQuery(resource_types=(source,), predicates=(inner,)))


# -- result parameters ----------------------------------------------------------------------


def _sort(state: _State, value: str) -> tuple[SortKey, ...]:
    if state.sort is not None:
        raise pv.BadValue("_sort is given more than once; give the keys in one, comma-separated")
    keys = []
    for item in value.split(","):
        code = item.strip().removeprefix("-")
        if not code:
            raise pv.BadValue("an empty sort key")
        param = _lookup(state.reg, state.query_types, code)
        if param.type in ("composite", "special") and code not in ("_id", "_lastUpdated"):
            raise pv.BadValue(f"'{code}' is a {param.type} parameter; it cannot sort")
        keys.append(SortKey(code, descending=item.strip().startswith("-"),
                            type="" if code in ("_id", "_lastUpdated") else param.type))
    return tuple(keys)


def _include(state: _State, name: str, value: str) -> Include:
    base, _, modifier = name.partition(":")
    if modifier not in ("", "iterate", "recurse"):  # recurse: the R3 spelling of iterate
        raise _UnknownName(f"The modifier ':{modifier}' is not supported on {base}")
    reverse = base == "_revinclude"
    iterate = modifier != ""
    if value == "*":
        return Include("*", "*", None, iterate, reverse)
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise pv.BadValue(f"{base} is [type]:[search parameter][:target type], or *")
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if not element_model().is_resource_type(source):
        raise pv.BadValue(f"'{source}' is not a resource type")
    if code != "*":
        param = state.reg.get(source, code)
        if param is None or param.type != "reference":
            raise pv.BadValue(f"'{code}' is not a reference search parameter of {source}")
        if target is not None and param.targets and target not in param.targets:
            raise pv.BadValue(f"{source}:{code} cannot point to a {target}")
    if target is not None and not element_model().is_resource_type(target):
        raise pv.BadValue(f"'{target}' is not a resource type")
    return Include(source, code, target, iterate, reverse)


__all__ = ["IGNORED", "canonical_params", "parse_search"]
