"""The functions the fast path compiles (see ``_fast``), and the type tests.

Each entry builds, at compile time, a step ``(input, focus, variables)``: ``input`` is what
the function is called on, ``focus`` what its plain arguments are evaluated on (the
``$this`` of the enclosing expression, as the engine does). Criteria (``where()``,
``all()``...) are evaluated on each input item. ``PREDICATES`` answer a three-valued
Boolean without building a collection, which is most of what an invariant does.
A function that is not here, or has another number of arguments, is :class:`Unsupported`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fhirhub.fhir.fhirpath import _fast_values as fv
from fhirhub.fhir.fhirpath._fast_parse import Call, Literal, Member, Node, TypeName, Unsupported
from fhirhub.fhir.fhirpath._fast_types import (
    ancestors,
    choice_suffixes,
    is_resource_type,
    is_type,
    type_of_suffix,
)
from fhirhub.fhir.fhirpath._fast_values import Deferred, Items

Vars = Mapping[str, Any]
Fn = Callable[[Items, Vars], Items]  # (focus, variables) -> collection
Pred = Callable[[Items, Vars], "bool | None"]  # (focus, variables) -> three-valued Boolean
Step = Callable[[Items, Items, Vars], Items]  # (input, focus, variables) -> collection
Test = Callable[[Items, Items, Vars], "bool | None"]  # (input, focus, variables) -> Boolean
Typed = Callable[[Items, Vars], list[tuple[Any, bool]]]  # (focus, variables) -> (item, is it)


@dataclass(frozen=True)
class Compilers:
    """The compiler's entry points, handed to the builders (``_fast`` owns them)."""

    values: Callable[[Node], Fn]
    test: Callable[[Node], Pred]


def _arguments(node: Call, *counts: int) -> tuple[Node, ...]:
    if len(node.args) not in counts:
        raise Unsupported(f"{node.name}() with {len(node.args)} arguments")
    return node.args


# -- existence and Booleans ------------------------------------------------------------------


def _empty(node: Call, c: Compilers) -> Test:
    _arguments(node, 0)
    return lambda items, focus, env: not items


def _exists(node: Call, c: Compilers) -> Test:
    if not _arguments(node, 0, 1):
        return lambda items, focus, env: bool(items)
    criteria = c.test(node.args[0])
    return lambda items, focus, env: any(criteria([item], env) for item in items)


def _not(node: Call, c: Compilers) -> Test:
    _arguments(node, 0)

    def negate(items: Items, focus: Items, env: Vars) -> bool | None:
        value = fv.truth(items)
        return None if value is None else not value

    return negate


def _all(node: Call, c: Compilers) -> Test:
    criteria = c.test(_arguments(node, 1)[0])
    return lambda items, focus, env: all(criteria([item], env) is True for item in items)


def _has_value(node: Call, c: Compilers) -> Test:
    _arguments(node, 0)
    return lambda items, focus, env: fv.has_value(items)


def _is_distinct(node: Call, c: Compilers) -> Test:
    _arguments(node, 0)
    return lambda items, focus, env: len(fv.distinct(items)) == len(items)


def _string_test(check: Callable[[str, str], bool]) -> Callable[[Call, Compilers], Test]:
    """``startsWith(x)`` and the like: empty when the input or the argument is."""

    def build(node: Call, c: Compilers) -> Test:
        argument = c.values(_arguments(node, 1)[0])

        def test(items: Items, focus: Items, env: Vars) -> bool | None:
            value = fv.text(items)
            if value is None:
                return None
            other = fv.text(argument(focus, env))
            return None if other is None else check(value, other)

        return test

    return build


def _matches(node: Call, c: Compilers) -> Test:
    pattern = _pattern(_arguments(node, 1)[0], c)

    def matches(items: Items, focus: Items, env: Vars) -> bool | None:
        value = fv.text(items)
        regex = pattern(focus, env) if value is not None else None
        return None if regex is None or value is None else regex.search(value) is not None

    return matches


def _pattern(node: Node, c: Compilers) -> Callable[[Items, Vars], re.Pattern[str] | None]:
    """A regex argument, compiled once when it is a literal (as the invariants' are)."""
    if isinstance(node, Literal) and isinstance(node.value, str):
        try:  # as the engine: Python's regexes, '.' matching newlines
            constant = re.compile(node.value, re.DOTALL) if node.value else None
        except re.error as exc:
            raise Unsupported("invalid regex: the engine reports it") from exc
        return lambda focus, env: constant
    argument = c.values(node)

    def pattern(focus: Items, env: Vars) -> re.Pattern[str] | None:
        text = fv.text(argument(focus, env))
        try:
            return re.compile(text, re.DOTALL) if text else None
        except re.error as exc:
            raise Deferred from exc

    return pattern


def _is(node: Call, c: Compilers) -> Test:
    typed = typed_items(node, c)

    def test(items: Items, focus: Items, env: Vars) -> bool | None:
        found = typed(focus, env)
        if not found:
            return None
        if len(found) > 1:
            raise Deferred  # the engine wants one item
        return found[0][1]

    return test


PREDICATES: dict[str, Callable[[Call, Compilers], Test]] = {
    "empty": _empty,
    "exists": _exists,
    "not": _not,
    "all": _all,
    "hasValue": _has_value,
    "isDistinct": _is_distinct,
    "startsWith": _string_test(str.startswith),
    "endsWith": _string_test(str.endswith),
    "contains": _string_test(lambda value, part: part in value),
    "matches": _matches,
    "is": _is,
}

# -- types -----------------------------------------------------------------------------------


def typed_items(node: Call, c: Compilers) -> Typed:
    """The items of ``x.is(T)``, ``x.as(T)``, ``x.ofType(T)``, each with whether it is a T.

    A resource says its type; a choice element's JSON name does (``valueQuantity``). For
    anything else, only the engine knows: an evaluation that meets one defers to it.
    """
    (spec,) = _arguments(node, 1)
    if not isinstance(spec, TypeName) or spec.namespace not in (None, "FHIR"):
        raise Unsupported(f"type {spec}")  # System types: the engine's conversions
    wanted = spec.name
    if wanted not in ancestors():
        raise Unsupported(f"unknown type {wanted}")
    if is_resource_type(wanted):
        items = _source(node, c)
        return lambda focus, env: [(item, _is_resource(item, wanted)) for item in items(focus, env)]
    if isinstance(node.source, Member) and not node.source.name[:1].isupper():
        return _typed_member(node.source, wanted, c)
    items = _source(node, c)

    def untyped(focus: Items, env: Vars) -> list[tuple[Any, bool]]:
        if items(focus, env):
            raise Deferred
        return []

    return untyped


def _is_resource(item: Any, wanted: str) -> bool:
    kind = fv.resource_type(item)
    return kind is not None and is_type(kind, wanted)


def _typed_member(member: Member, wanted: str, c: Compilers) -> Typed:
    navigate = fv.typed_member(member.name, choice_suffixes().get(member.name))
    parent: Fn = (lambda focus, env: focus) if member.source is None else c.values(member.source)

    def typed(focus: Items, env: Vars) -> list[tuple[Any, bool]]:
        out = []
        for item, suffix in navigate(parent(focus, env)):
            if suffix is None:
                raise Deferred  # not a choice: its type is the model's
            out.append((item, is_type(type_of_suffix(suffix), wanted)))
        return out

    return typed


def _source(node: Call, c: Compilers) -> Fn:
    return (lambda focus, env: focus) if node.source is None else c.values(node.source)


# -- filtering and collections ---------------------------------------------------------------


def _where(node: Call, c: Compilers) -> Step:
    criteria = c.test(_arguments(node, 1)[0])
    return lambda items, focus, env: [item for item in items if criteria([item], env) is True]


def _select(node: Call, c: Compilers) -> Step:
    projection = c.values(_arguments(node, 1)[0])

    def select(items: Items, focus: Items, env: Vars) -> Items:
        out: Items = []
        for item in items:
            out += projection([item], env)
        return out

    return select


def _simple(function: Callable[[Items], Items]) -> Callable[[Call, Compilers], Step]:
    """A function of its input alone: ``first()``, ``count()``, ``children()``..."""

    def build(node: Call, c: Compilers) -> Step:
        _arguments(node, 0)
        return lambda items, focus, env: function(items)

    return build


def _with_other(function: Callable[[Items, Items], Items]) -> Callable[[Call, Compilers], Step]:
    """A function of its input and another collection: ``combine()``, ``intersect()``..."""

    def build(node: Call, c: Compilers) -> Step:
        other = c.values(_arguments(node, 1)[0])
        return lambda items, focus, env: function(items, other(focus, env))

    return build


def _intersect(items: Items, other: Items) -> Items:
    keys = {fv.key(item) for item in other}
    return [item for item in fv.distinct(items) if fv.key(item) in keys]


def _exclude(items: Items, other: Items) -> Items:
    keys = {fv.key(item) for item in other}
    return [item for item in items if fv.key(item) not in keys]


def _trace(node: Call, c: Compilers) -> Step:
    # Its label and projection are for a reader of logs; the invariant does not need them.
    return lambda items, focus, env: items


def _iif(node: Call, c: Compilers) -> Step:
    """``iif(criterion, then, else)``: all three evaluated on iif's input, as the engine does."""
    arguments = _arguments(node, 2, 3)
    criterion, then = c.test(arguments[0]), c.values(arguments[1])
    otherwise = c.values(arguments[2]) if len(arguments) == 3 else None

    def iif(items: Items, focus: Items, env: Vars) -> Items:
        if criterion(items, env) is True:
            return then(items, env)
        return otherwise(items, env) if otherwise is not None else []

    return iif


def _extension(node: Call, c: Compilers) -> Step:
    url = c.values(_arguments(node, 1)[0])

    def extension(items: Items, focus: Items, env: Vars) -> Items:
        wanted = fv.text(url(focus, env))
        return [e for item in items if type(item) is dict for e in item.get("extension", ())
                if type(e) is dict and e.get("url") == wanted]

    return extension


def _type_filter(keep: Callable[[list[tuple[Any, bool]]], Items]) -> Callable[[Call, Compilers], Step]:
    """``ofType(T)`` and ``as(T)``: their input is found again, typed (``typed_items``)."""

    def build(node: Call, c: Compilers) -> Step:
        typed = typed_items(node, c)
        return lambda items, focus, env: keep(typed(focus, env))

    return build


def _as(found: list[tuple[Any, bool]]) -> Items:
    if len(found) > 1:
        raise Deferred  # the engine wants one item
    return [item for item, is_it in found if is_it]


def _resolve(node: Call, c: Compilers) -> Step:
    _arguments(node, 0)

    def resolve(items: Items, focus: Items, env: Vars) -> Items:
        if items:
            raise Deferred  # references are the engine's (fhirhub's resolve())
        return []

    return resolve


# -- conversions and strings -----------------------------------------------------------------

_INTEGER = re.compile(r"[+-]?\d+")


def _to_integer(items: Items) -> Items:
    if len(items) != 1:
        return []
    value = items[0]
    if type(value) is bool:
        return [int(value)]
    if fv.is_number(value):
        return [value] if int(value) == value else []
    return [int(value)] if isinstance(value, str) and _INTEGER.fullmatch(value) else []


def _to_string(items: Items) -> Items:
    if len(items) != 1:
        return []
    value = items[0]
    if type(value) is bool:
        return ["true" if value else "false"]
    if isinstance(value, str) or fv.is_number(value):
        return [str(value)]
    raise Deferred  # an element: the engine's rendering


def _length(items: Items) -> Items:
    value = fv.text(items)
    return [] if value is None else [len(value)]


def _number(argument: Fn, focus: Items, env: Vars) -> int | None:
    found = argument(focus, env)
    if not found:
        return None
    value = fv.single(found)
    if not fv.is_number(value) or int(value) != value:
        raise Deferred  # the engine refuses it
    return int(value)


def _substring(node: Call, c: Compilers) -> Step:
    arguments = [c.values(a) for a in _arguments(node, 1, 2)]

    def substring(items: Items, focus: Items, env: Vars) -> Items:
        value = fv.text(items)
        start = _number(arguments[0], focus, env) if value is not None else None
        if value is None or start is None or not 0 <= start < len(value):
            return []
        if len(arguments) == 1:
            return [value[start:]]
        length = _number(arguments[1], focus, env)
        return [value[start:] if length is None else value[start:start + length]]

    return substring


def _replace_matches(node: Call, c: Compilers) -> Step:
    regex_argument, substitution_argument = _arguments(node, 2)
    pattern, substitution = _pattern(regex_argument, c), c.values(substitution_argument)

    def replace(items: Items, focus: Items, env: Vars) -> Items:
        value = fv.text(items)
        regex = pattern(focus, env) if value is not None else None
        replacement = fv.text(substitution(focus, env)) if regex is not None else None
        if value is None or regex is None or replacement is None:
            return []
        # FHIRPath writes groups as $1; Python as \1.
        return [regex.sub(re.sub(r"\$(\d+)", r"\\\1", replacement), value)]

    return replace


# Functions whose step finds its input itself, so the compiler must not evaluate it first.
SELF_SOURCED = frozenset({"is", "as", "ofType"})

FUNCTIONS: dict[str, Callable[[Call, Compilers], Step]] = {
    "where": _where,
    "select": _select,
    "first": _simple(lambda items: items[:1]),
    "last": _simple(lambda items: items[-1:]),
    "tail": _simple(lambda items: items[1:]),
    "single": _simple(lambda items: [fv.single(items)] if items else []),
    "count": _simple(lambda items: [len(items)]),
    "distinct": _simple(fv.distinct),
    "children": _simple(fv.children),
    "descendants": _simple(fv.descendants),
    "combine": _with_other(lambda items, other: items + other),
    "union": _with_other(lambda items, other: fv.distinct(items + other)),
    "intersect": _with_other(_intersect),
    "exclude": _with_other(_exclude),
    "trace": _trace,
    "iif": _iif,
    "extension": _extension,
    "ofType": _type_filter(lambda found: [item for item, is_it in found if is_it]),
    "as": _type_filter(_as),
    "resolve": _resolve,
    "toInteger": _simple(_to_integer),
    "toString": _simple(_to_string),
    "length": _simple(_length),
    "substring": _substring,
    "replaceMatches": _replace_matches,
}
