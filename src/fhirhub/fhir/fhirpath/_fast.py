"""The fast path for invariants: FHIRPath compiled to plain Python closures.

Every element of every resource written is checked against its invariants
(``ElementDefinition.constraint.expression``), so an evaluation must cost microseconds. The
engine (fhirpathpy) walks its syntax tree and wraps every value in its own node objects for
each evaluation: 50-65 µs. Here an expression is compiled once into nested closures that
work on the resource's JSON directly, with no per-evaluation set-up: 1-3 µs.

The subset is what the R4 and UK Core invariants use (all but 2 of their 211 distinct
expressions): navigation (choice elements by their JSON names), ``$this``, ``%resource``,
``%rootResource``, ``%context``, ``%ucum``, Boolean logic with FHIRPath's empty-as-unknown,
equality, equivalence, ordering (numbers, strings, dates and dateTimes by precision,
quantities in one unit), ``in``/``contains``/``|``/``+``/``-``/``&``, type tests where the
JSON tells the type, and 36 functions (``_fast_functions``). Modules: ``_fast_parse`` reads
the text, ``_fast_values`` holds the JSON semantics, ``_fast_types`` the R4 type knowledge.

Two ways back to the engine keep the results the same (``invariant``):

* :class:`Unsupported`, at compile time, for what is not compiled: ``htmlChecks()``, date
  and quantity literals, ``System`` types, ``$index``... The engine runs instead, always.
* :class:`Deferred`, at run time, when a value needs what only the engine has: the model's
  type of a value the JSON does not type (``descendants().as(canonical)``), ``resolve()``,
  a collection where one item is needed (the engine reports an error), quantities in
  different units. The engine then evaluates the whole expression. Parts that are not
  reached cost nothing: ``dom-3`` only defers for a resource that has contained resources.

Where the engine is wrong the fast path follows the specification; the differences are
listed, with their reasons, in tests/fhir/test_fhirpath_fast.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any

from fhirhub.fhir.fhirpath import _fast_values as fv
from fhirhub.fhir.fhirpath._environment import UCUM
from fhirhub.fhir.fhirpath._fast_functions import (
    FUNCTIONS,
    PREDICATES,
    SELF_SOURCED,
    Compilers,
    Fn,
    Pred,
    Step,
    Vars,
)
from fhirhub.fhir.fhirpath._fast_parse import (
    Binary,
    Call,
    Index,
    Literal,
    Member,
    Negate,
    Node,
    This,
    Unsupported,
    Var,
    parse,
)
from fhirhub.fhir.fhirpath._fast_types import choice_suffixes, is_resource_type
from fhirhub.fhir.fhirpath._fast_values import Deferred, Items

Invariant = Callable[[Any, Vars], "bool | None"]

_CONSTANTS = {"ucum": UCUM, "sct": "http://snomed.info/sct", "loinc": "http://loinc.org"}
_PREFIXES = {"vs-": "http://hl7.org/fhir/ValueSet/", "ext-": "http://hl7.org/fhir/StructureDefinition/"}
_VARIABLES = ("resource", "rootResource", "context")


def invariant(expression: str, engine: Callable[..., list[Any]]) -> Invariant:
    """``expression`` as ``(element, variables) -> True/False/None``: compiled when it can
    be, else (or when an evaluation defers) by ``engine``."""

    def by_engine(element: Any, variables: Vars) -> bool | None:
        return verdict(engine(element, variables))

    try:
        fast, variables_used = compile_predicate(expression)
    except Unsupported:
        return by_engine

    def check(element: Any, variables: Vars) -> bool | None:
        if variables_used and not all(name in variables for name in _VARIABLES):
            # As the engine does: an expression evaluated on its own is its own resource.
            variables = dict.fromkeys(_VARIABLES, element) | dict(variables)
        try:
            return fast([element], variables)
        except Deferred:
            return by_engine(element, variables)

    return check


def verdict(result: list[Any]) -> bool | None:
    """An invariant's result as one Boolean: empty is None, one Boolean is itself, and
    anything else is true because something exists."""
    if not result:
        return None
    return result[0] if len(result) == 1 and type(result[0]) is bool else True


def compile_predicate(expression: str) -> tuple[Pred, bool]:
    """The compiled form of ``expression``, and whether it reads ``%resource`` & co.;
    :class:`Unsupported` when it is outside the subset."""
    node = parse(expression)
    uses_variables = _reads_variables(node)
    if _is_boolean(node):
        return compile_test(node), uses_variables
    values = compile_values(node)
    return (lambda focus, env: verdict(values(focus, env))), uses_variables


def _reads_variables(node: object) -> bool:
    """Whether a syntax tree reads ``%resource``, ``%rootResource`` or ``%context``."""
    if isinstance(node, Var):
        return node.name in _VARIABLES
    if isinstance(node, tuple):
        return any(_reads_variables(item) for item in node)
    return is_dataclass(node) and any(_reads_variables(getattr(node, f.name)) for f in fields(node))


# -- collections -----------------------------------------------------------------------------


def compile_values(node: Node) -> Fn:
    """``node`` as a function of the focus that answers a collection."""
    if _is_boolean(node):
        test = compile_test(node)
        return lambda focus, env: _listed(test(focus, env))
    if isinstance(node, Literal):
        constant = [] if node.value is None else [node.value]
        return lambda focus, env: constant
    if isinstance(node, Negate):
        return _negated(node)
    if isinstance(node, This):
        return lambda focus, env: focus
    if isinstance(node, Var):
        return _variable(node.name)
    if isinstance(node, Member | Call):
        return _chained(node)
    if isinstance(node, Index):
        return _indexed(node)
    if isinstance(node, Binary) and node.op in _OPERATORS:
        return _OPERATORS[node.op](compile_values(node.left), compile_values(node.right))
    if isinstance(node, Binary) and node.op == "as":
        return _chained(Call(node.left, "as", (node.right,)))
    raise Unsupported(f"{node}")


def _listed(value: bool | None) -> Items:
    return [] if value is None else [value]


def _negated(node: Negate) -> Fn:
    if not isinstance(node.operand, Literal) or not fv.is_number(node.operand.value):
        raise Unsupported("unary minus of an expression")
    constant = [-node.operand.value]  # type: ignore[operator]  # a number, checked above
    return lambda focus, env: constant


def _variable(name: str) -> Fn:
    if name in _VARIABLES:
        def variable(focus: Items, env: Vars) -> Items:
            value = env[name]
            return [] if value is None else value if type(value) is list else [value]
        return variable
    prefix = next((p for p in _PREFIXES if name.startswith(p)), None)
    if name not in _CONSTANTS and prefix is None:
        raise Unsupported(f"%{name}")
    constant = [_CONSTANTS[name] if prefix is None else _PREFIXES[prefix] + name[len(prefix):]]
    return lambda focus, env: constant


def _chained(node: Member | Call) -> Fn:
    """A step applied to what its source selects, or to the focus when it has none."""
    step = _member(node) if isinstance(node, Member) else _function(node)
    if node.source is None or _self_sourced(node):
        return lambda focus, env: step(focus, focus, env)
    source = compile_values(node.source)
    return lambda focus, env: step(source(focus, env), focus, env)


def _self_sourced(node: Member | Call) -> bool:
    """Type tests evaluate their own source, typed (``typed_items``)."""
    return isinstance(node, Call) and node.name in SELF_SOURCED


def _member(node: Member) -> Step:
    name = node.name
    if name[:1].isupper():
        # A type name: the resource, when the focus is one (``Patient.name``).
        if node.source is not None or not is_resource_type(name):
            raise Unsupported(f"type name {name} in a path")
        return _resource_filter(name)
    navigate = fv.member(name, choice_suffixes().get(name))
    return lambda items, focus, env: navigate(items)


def _resource_filter(name: str) -> Step:
    def only(items: Items, focus: Items, env: Vars) -> Items:
        if any(fv.resource_type(item) is None for item in items):
            raise Deferred  # the engine fails on an element that is not a resource
        return [item for item in items if item["resourceType"] == name]

    return only


def _function(node: Call) -> Step:
    if node.name in PREDICATES:
        test = PREDICATES[node.name](node, _COMPILERS)
        return lambda items, focus, env: _listed(test(items, focus, env))
    if node.name not in FUNCTIONS:
        raise Unsupported(f"{node.name}()")
    return FUNCTIONS[node.name](node, _COMPILERS)


def _indexed(node: Index) -> Fn:
    source, index = compile_values(node.source), compile_values(node.index)

    def indexed(focus: Items, env: Vars) -> Items:
        items, at = source(focus, env), index(focus, env)
        if not at:
            return []
        position = fv.single(at)
        if type(position) is not int:
            raise Deferred
        return items[position:position + 1] if position >= 0 else []

    return indexed


# -- Booleans --------------------------------------------------------------------------------


def compile_test(node: Node) -> Pred:
    """``node`` as a function of the focus that answers True, False or None (empty)."""
    if isinstance(node, Literal) and type(node.value) is bool:
        constant = node.value
        return lambda focus, env: constant
    if isinstance(node, Binary) and node.op in _LOGIC:
        return _LOGIC[node.op](compile_test(node.left), compile_test(node.right))
    if isinstance(node, Binary) and node.op in _COMPARISONS:
        return _COMPARISONS[node.op](compile_values(node.left), compile_values(node.right))
    if isinstance(node, Binary) and node.op == "is":
        return compile_test(Call(node.left, "is", (node.right,)))
    if isinstance(node, Call) and node.name == "not" and not node.args and node.source is not None \
            and _is_boolean(node.source):
        return _negation(compile_test(node.source))
    presence = _presence(node)
    if presence is not None:
        return presence
    if isinstance(node, Call) and node.name in PREDICATES:
        test = PREDICATES[node.name](node, _COMPILERS)
        if node.source is None or _self_sourced(node):
            return lambda focus, env: test(focus, focus, env)
        source = compile_values(node.source)
        return lambda focus, env: test(source(focus, env), focus, env)
    values = compile_values(node)
    return lambda focus, env: fv.truth(values(focus, env))


def _negation(test: Pred) -> Pred:
    def negation(focus: Items, env: Vars) -> bool | None:
        value = test(focus, env)
        return None if value is None else not value

    return negation


def _presence(node: Node) -> Pred | None:
    """``x.exists()`` / ``x.empty()``, the commonest tests, without building ``x``; None
    for any other node."""
    if not isinstance(node, Call) or node.name not in ("exists", "empty") or node.args:
        return None
    member = node.source
    if not isinstance(member, Member) or member.name[:1].isupper():
        return None
    present = fv.presence(member.name, choice_suffixes().get(member.name))
    wanted = node.name == "exists"
    if member.source is None:
        return lambda focus, env: present(focus) is wanted
    parent = compile_values(member.source)
    return lambda focus, env: present(parent(focus, env)) is wanted


def _is_boolean(node: Node) -> bool:
    if isinstance(node, Binary):
        return node.op in _LOGIC or node.op in _COMPARISONS or node.op == "is"
    return (isinstance(node, Call) and node.name in PREDICATES) or (
        isinstance(node, Literal) and type(node.value) is bool)


def _and(left: Pred, right: Pred) -> Pred:
    def both(focus: Items, env: Vars) -> bool | None:
        a = left(focus, env)
        if a is False:
            return False
        b = right(focus, env)
        if b is False:
            return False
        return None if a is None or b is None else True

    return both


def _or(left: Pred, right: Pred) -> Pred:
    def either(focus: Items, env: Vars) -> bool | None:
        a = left(focus, env)
        if a is True:
            return True
        b = right(focus, env)
        if b is True:
            return True
        return None if a is None or b is None else False

    return either


def _xor(left: Pred, right: Pred) -> Pred:
    def one(focus: Items, env: Vars) -> bool | None:
        a, b = left(focus, env), right(focus, env)
        return None if a is None or b is None else a is not b

    return one


def _implies(left: Pred, right: Pred) -> Pred:
    def implies(focus: Items, env: Vars) -> bool | None:
        a = left(focus, env)
        if a is False:
            return True
        b = right(focus, env)
        if a is None:
            return True if b is True else None
        return b

    return implies


_LOGIC: dict[str, Callable[[Pred, Pred], Pred]] = {
    "and": _and, "or": _or, "xor": _xor, "implies": _implies,
}


def _comparison(decide: Callable[[Items, Items], bool | None]) -> Callable[[Fn, Fn], Pred]:
    def build(left: Fn, right: Fn) -> Pred:
        return lambda focus, env: decide(left(focus, env), right(focus, env))

    return build


def _ordered(accept: Callable[[int], bool]) -> Callable[[Items, Items], bool | None]:
    def decide(a: Items, b: Items) -> bool | None:
        order = fv.compare(a, b)
        return None if order is None else accept(order)

    return decide


def _not_equal(a: Items, b: Items) -> bool | None:
    same = fv.equal(a, b)
    return None if same is None else not same


def _member_of(items: Items, collection: Items) -> bool | None:
    if not items:
        return None
    item = fv.single(items)
    return any(fv.same(item, other) for other in collection)


_COMPARISONS: dict[str, Callable[[Fn, Fn], Pred]] = {
    "=": _comparison(fv.equal),
    "!=": _comparison(_not_equal),
    "~": _comparison(fv.equivalent),
    "!~": _comparison(lambda a, b: not fv.equivalent(a, b)),
    "<": _comparison(_ordered(lambda order: order < 0)),
    ">": _comparison(_ordered(lambda order: order > 0)),
    "<=": _comparison(_ordered(lambda order: order <= 0)),
    ">=": _comparison(_ordered(lambda order: order >= 0)),
    "in": _comparison(_member_of),
    "contains": _comparison(lambda a, b: _member_of(b, a)),
}


# -- other operators -------------------------------------------------------------------------


def _union(left: Fn, right: Fn) -> Fn:
    return lambda focus, env: fv.distinct(left(focus, env) + right(focus, env))


def _plus(left: Fn, right: Fn) -> Fn:
    def plus(focus: Items, env: Vars) -> Items:
        a, b = left(focus, env), right(focus, env)
        if not a or not b:
            return []
        x, y = fv.single(a), fv.single(b)
        if (fv.is_number(x) and fv.is_number(y)) or (type(x) is str and type(y) is str):
            return [x + y]
        raise Deferred

    return plus


def _minus(left: Fn, right: Fn) -> Fn:
    def minus(focus: Items, env: Vars) -> Items:
        a, b = left(focus, env), right(focus, env)
        if not a or not b:
            return []
        x, y = fv.single(a), fv.single(b)
        if fv.is_number(x) and fv.is_number(y):
            return [x - y]
        raise Deferred

    return minus


def _concatenate(left: Fn, right: Fn) -> Fn:
    """``&``: strings, an empty side counting as ''."""
    return lambda focus, env: [(fv.text(left(focus, env)) or "") + (fv.text(right(focus, env)) or "")]


_OPERATORS: dict[str, Callable[[Fn, Fn], Fn]] = {
    "|": _union, "+": _plus, "-": _minus, "&": _concatenate,
}

_COMPILERS = Compilers(compile_values, compile_test)

__all__ = ["Deferred", "Unsupported", "compile_predicate", "invariant", "verdict"]
