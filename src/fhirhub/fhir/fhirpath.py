"""FHIRPath: compile once, evaluate many times.

The evaluator is ``fhirpathpy`` driven by its R4 model, behind this small surface so that
callers never import it directly and a faster engine can replace it without touching them.

What this module adds to the engine, and why. All of it goes through the engine's own
extension points (environment variables, the ``userInvocationTable`` and ``traceFn``
options); the engine's code is never patched, and none of its functions is replaced.

* **Environment variables** of FHIRPath and FHIR R4
  (https://hl7.org/fhir/R4/fhirpath.html#vars): ``%ucum``, ``%sct``, ``%loinc``,
  ``%resource``, ``%rootResource``, ``%context``, ``%`vs-[name]``` and ``%`ext-[name]```.
  The engine knows only ``%ucum`` and ``%context``. Caller-supplied variables win.
* **FHIR R4 functions** the engine lacks (https://hl7.org/fhir/R4/fhirpath.html#functions):
  ``resolve()``, ``hasValue()``, ``getValue()``.
* **FHIRPath 2.1 functions** the engine lacks (https://hl7.org/fhirpath/2.1.0/), which the
  official R4 test suite exercises: ``lowBoundary()``, ``highBoundary()``, ``precision()``,
  ``matchesFull()``, ``escape()``, ``unescape()`` and ``sort()``.
* **Results are FHIR JSON values** (``str``, ``bool``, ``int``, ``Decimal``, ``dict``, ...):
  computed dates, times and quantities come back as their FHIR JSON form, never as engine
  objects, the same shapes that navigating a resource returns.
* ``trace()`` goes to the ``fhirhub.fhirpath`` logger instead of standard output.
* **Strict syntax**: expressions are parsed with the engine's own grammar and refused at the
  first syntax error; the engine alone recovers silently (``Patient..name`` "works"). A
  keyword used as a member name after a ``.`` (``Patient.text.div``) is read as a name,
  as the FHIR reference engine does.
* **Locating elements** (:func:`nodes`, :func:`locate`): the resource's own objects and
  where they live, for FHIRPath Patch.

The official suite's failures (tests/fhir/test_fhirpath.py) list the engine's known gaps.
"""

from __future__ import annotations

import copy
import html
import json
import logging
import re
from calendar import monthrange
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation, localcontext
from functools import lru_cache
from typing import Any, cast

from antlr4 import CommonTokenStream, InputStream
from fhirpathpy import apply_parsed_path as _fp_apply_parsed_path
from fhirpathpy.engine.nodes import FP_DateTime, FP_Quantity, FP_Time, ResourceNode
from fhirpathpy.models import models as _fp_models
from fhirpathpy.parser import parse as _fp_parse
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhirhub.errors import InvalidError
from fhirhub.fhir.model import element_model

Evaluator = Callable[..., list[Any]]

_R4 = _fp_models["r4"]

# The engine is untyped; these are the signatures this module relies on.
_apply = cast(Callable[..., list[Any]], _fp_apply_parsed_path)
_parse_tree = cast(Callable[[str], dict[str, Any]], _fp_parse)
_node = cast(Callable[[dict[str, Any]], Any], ResourceNode.create_node)
_new_node = cast(Callable[[Any, "str | None"], Any], ResourceNode.create_node)
_quantity = cast(Callable[[Decimal, str], FP_Quantity], FP_Quantity)
# The date/time constructors answer None for text they do not accept.
_date_time = cast(Callable[[str], "FP_DateTime | None"], FP_DateTime)
_time = cast(Callable[[str], "FP_Time | None"], FP_Time)
_LOG = logging.getLogger("fhirhub.fhirpath")

UCUM = "http://unitsofmeasure.org"
_CONSTANTS = {"ucum": UCUM, "sct": "http://snomed.info/sct", "loinc": "http://loinc.org"}
_CONSTANT_PREFIXES = {
    "vs-": "http://hl7.org/fhir/ValueSet/",
    "ext-": "http://hl7.org/fhir/StructureDefinition/",
}


class FhirPathError(InvalidError):
    """An expression that does not parse, or fails while it is evaluated."""

    issue_code = "invalid"
    spine_code = "INVALID_VALUE"


# -- compiling and evaluating -----------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    expression: str
    tree: dict[str, Any]  # the engine's syntax tree: {"children": [expression node]}
    constants: dict[str, str]  # the %`vs-*` / %`ext-*` names it uses, with their values

    def run(self, data: Any, environment: dict[str, Any], *, raw: bool = False,
            tree: dict[str, Any] | None = None) -> list[Any]:
        """Evaluate (a tree derived from) this expression; ``raw`` keeps engine nodes."""
        token = _ROOT.set(environment.get("rootResource"))
        try:
            return list(_apply(data, tree or self.tree, environment, _R4,
                               _RAW_OPTIONS if raw else _OPTIONS))
        except FhirPathError:
            raise
        except Exception as exc:  # evaluation errors surface as plain Exceptions
            raise FhirPathError(
                f"The FHIRPath expression {self.expression!r} could not be evaluated: "
                + _ENGINE_OBJECT.sub("<element>", str(exc))
            ) from exc
        finally:
            _ROOT.reset(token)

    def environment(self, resource: Any, variables: Mapping[str, Any] | None) -> dict[str, Any]:
        return {
            **_CONSTANTS,
            **self.constants,
            "resource": resource,
            "rootResource": resource,
            "context": resource,
            **(variables or {}),
        }


# How the engine's messages show its own objects; a client is told "<element>" instead.
_ENGINE_OBJECT = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


@lru_cache(maxsize=4096)
def _parse(expression: str) -> _Parsed:
    text = _keywords_as_member_names(expression)
    _check_syntax(text, expression)
    try:
        tree = _parse_tree(text)
    except Exception as exc:  # fhirpathpy raises bare Exceptions from its ANTLR parser
        raise FhirPathError(f"The FHIRPath expression {expression!r} is not valid: {exc}") from exc
    constants = {
        name: _CONSTANT_PREFIXES[prefix] + name[len(prefix):]
        for name in _external_constants(tree)
        for prefix in _CONSTANT_PREFIXES
        if name.startswith(prefix)
    }
    return _Parsed(expression, tree, constants)


@lru_cache(maxsize=4096)
def compile_expression(expression: str) -> Evaluator:
    """A callable ``(resource, variables=None) -> list`` for ``expression``."""
    parsed = _parse(expression)

    def evaluate(resource: Any, variables: Mapping[str, Any] | None = None) -> list[Any]:
        result = parsed.run(resource, parsed.environment(resource, variables))
        return [_json_value(item) for item in result]

    return evaluate


def evaluate(
    resource: Any, expression: str, variables: Mapping[str, Any] | None = None
) -> list[Any]:
    return compile_expression(expression)(resource, variables)


# -- locating elements (for FHIRPath Patch) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """An item an expression selected: the resource's own object, and its model key."""

    value: Any  # the very object inside the resource (a dict is not a copy)
    type: str | None  # element model key ("HumanName", "Patient.contact", "Patient"...)


@dataclass(frozen=True, slots=True)
class Location:
    """Where an element lives: ``parent[key]``, or ``parent[key][index]`` when it repeats."""

    parent: dict[str, Any]
    parent_type: str | None  # model key of the parent
    key: str  # JSON property name; for a choice the concrete one (valueQuantity)
    index: int | None
    type: str | None  # model key of the element itself

    @property
    def value(self) -> Any:
        """The element's value (``None`` for a primitive that has only extensions)."""
        found = self.parent.get(self.key)
        if self.index is None:
            return found
        return found[self.index] if isinstance(found, list) and self.index < len(found) else None


@dataclass(frozen=True)
class Place:
    """What a path ending in an element name points at (see :func:`locate`)."""

    parents: list[Node]  # the elements whose child it names
    name: str  # that child's name as written (a choice's base name: ``value``)
    locations: list[Location]  # the elements the whole path selects, in order
    whole: bool  # True when the path ends at the name: the locations are all its items


def nodes(resource: Any, expression: str,
          variables: Mapping[str, Any] | None = None) -> list[Node]:
    """Like :func:`evaluate`, but each item is the resource's own object, with its type."""
    parsed = _parse(expression)
    return _as_nodes(parsed.run(resource, parsed.environment(resource, variables), raw=True))


def locate(resource: dict[str, Any], expression: str) -> Place:
    """Where in ``resource`` the elements that ``expression`` selects live.

    The expression must end in an element name, which may be followed by indexers and
    functions that pick among its items (``[1]``, ``where()``, ``first()``, ``ofType()``...):
    ``Patient.name[0].given``, ``Patient.identifier.where(system = 'x')``. What comes before
    that name may be any FHIRPath expression that selects elements of the resource.

    The engine evaluates all of it. To learn where each result lives, the items of the named
    element are handed to the engine as nodes of our own making, and recognised by identity
    among the results; results it computed instead (``substring()``...) are refused.
    """
    parsed = _parse(expression)
    environment = parsed.environment(resource, None)
    tree = copy.deepcopy(parsed.tree)
    holder, step = _last_member_step(tree, expression)
    parent_tree, name = _member_parts(step)
    if parent_tree is None:
        if name == resource.get("resourceType"):
            raise FhirPathError(f"The path {expression!r} names the resource, not an element")
        parents = [Node(resource, resource.get("resourceType"))]
    else:
        parents = _as_nodes(parsed.run(resource, environment, raw=True,
                                       tree={"children": [parent_tree]}))
    locations = [loc for parent in parents for loc in _children(parent, name, expression)]
    if holder is None:
        return Place(parents, name, locations, whole=True)
    # Swap the element step for a variable holding our nodes, and let the engine select.
    offered = [_new_node(loc.value, loc.type) for loc in locations]
    holder["children"][0] = _parse_tree(f"%`{_OFFERED}`")["children"][0]
    picked = parsed.run(resource, {**environment, _OFFERED: offered}, raw=True, tree=tree)
    where = {id(node): loc for node, loc in zip(offered, locations, strict=True)}
    selected = []
    for item in picked:
        if id(item) not in where:
            raise FhirPathError(
                f"The path {expression!r} computes values; it must select elements"
            )
        selected.append(where[id(item)])
    return Place(parents, name, selected, whole=False)


_OFFERED = "fhirhub-located"
_MEMBER = "MemberInvocation"


def _as_nodes(raw: list[Any]) -> list[Node]:
    return [Node(item.data, item.path) if isinstance(item, ResourceNode) else Node(item, None)
            for item in raw]


def _last_member_step(tree: dict[str, Any], expression: str
                      ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The step that names the last element, and the node holding it as first child."""
    holder: dict[str, Any] | None = None
    node = tree["children"][0]
    while True:
        kind = node.get("type")
        children = node.get("children") or []
        if kind == "InvocationExpression" and children[1].get("type") == _MEMBER:
            return holder, node
        if kind == "TermExpression" and _term_member(node) is not None:
            return holder, node
        function_step = kind == "InvocationExpression" and (
            children[1].get("type") == "FunctionInvocation"
        )
        if kind == "IndexerExpression" or function_step:
            holder, node = node, children[0]
            continue
        raise FhirPathError(
            f"The path {expression!r} must end in an element name, optionally followed by "
            "an index or filters such as where(), first() or ofType()"
        )


def _term_member(term: dict[str, Any]) -> str | None:
    invocation = (term.get("children") or [{}])[0]
    if invocation.get("type") != "InvocationTerm":
        return None
    member = (invocation.get("children") or [{}])[0]
    return _identifier(member) if member.get("type") == _MEMBER else None


def _identifier(member: dict[str, Any]) -> str:
    return str(member["children"][0]["text"]).strip("`")


def _member_parts(step: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    if step["type"] == "TermExpression":
        name = _term_member(step)
        assert name is not None  # checked by _last_member_step
        return None, name
    parent, member = step["children"]
    return parent, _identifier(member)


def _children(parent: Node, name: str, expression: str) -> list[Location]:
    container = parent.value
    if not isinstance(container, dict):
        return []
    key = _json_key(container, parent.type, name, expression)
    if key is None:
        return []
    found, extension = container.get(key), container.get("_" + key)
    element = element_model().child(parent.type, key) if parent.type else None

    def type_of(value: Any) -> str | None:
        if isinstance(value, dict) and "resourceType" in value:
            return str(value["resourceType"])
        return element.children_key if element else None
    if isinstance(found, list) or isinstance(extension, list):
        count = max(len(found or []), len(extension or []))
        items = found if isinstance(found, list) else []
        return [Location(container, parent.type, key, i,
                         type_of(items[i] if i < len(items) else None)) for i in range(count)]
    if found is None and extension is None:
        return []
    return [Location(container, parent.type, key, None, type_of(found))]


def _json_key(container: dict[str, Any], type_key: str | None, name: str,
              expression: str) -> str | None:
    """The property holding element ``name``: itself, or a choice's concrete name."""
    model = element_model()
    if type_key is None or not model.children(type_key):
        return name if name in container or "_" + name in container else _choice_key(
            container, name, lambda key: True)
    element = model.child(type_key, name)
    if element is not None and not element.is_choice:
        return name
    choices = [e for e in model.children(type_key).values()
               if e.is_choice and e.path.endswith(f".{name}[x]")]
    if element is None and not choices:
        raise FhirPathError(f"The path {expression!r}: {type_key} has no element {name!r}")
    names = {e.name for e in choices} | ({name} if element is not None else set())
    return _choice_key(container, name, names.__contains__)


def _choice_key(container: dict[str, Any], name: str,
                allowed: Callable[[str], bool]) -> str | None:
    for key in container:
        bare = key.removeprefix("_")
        typed = bare.startswith(name) and bare[len(name):][:1].isupper()
        if (bare == name or typed) and allowed(bare):
            return bare
    return None


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keywords the grammar already accepts as names (and that are function names too).
_NAME_KEYWORDS = frozenset({"as", "contains", "in", "is"})


def _keywords_as_member_names(expression: str) -> str:
    """Delimit a keyword used as a member name: ``text.div`` -> ``text.`div```.

    The grammar reserves ``div``, ``mod``, ``and``... even after a ``.``, where only a name
    can follow; the FHIR reference engine reads them as names there (``Patient.text.div``
    is everyday FHIR), so we do too, without touching anything else in the expression.
    """
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    stream = CommonTokenStream(lexer)
    try:
        stream.fill()
    except Exception:  # a lexical error: leave it for the syntax check to report
        return expression
    tokens = [t for t in stream.tokens if t.channel == 0 and t.type != -1]
    out, done = [], 0
    for before, token, after in zip([None, *tokens], tokens, [*tokens[1:], None], strict=False):
        if (before is not None and before.text == "." and token.type not in _NAMES
                and _WORD.fullmatch(token.text) and token.text not in _NAME_KEYWORDS
                and (after is None or after.text != "(")):
            out += [expression[done:token.start], f"`{token.text}`"]
            done = token.stop + 1
    return "".join(out) + expression[done:] if out else expression


_NAMES = (FHIRPathLexer.IDENTIFIER, FHIRPathLexer.DELIMITEDIDENTIFIER)


class _RaiseOnSyntaxError:
    """An ANTLR error listener that stops at the first syntax error."""

    def __init__(self, expression: str) -> None:
        self.expression = expression

    # The method names and positions are ANTLR's ErrorListener protocol.
    def syntaxError(
        self, recognizer: Any, symbol: Any, line: int, column: int, msg: str, e: Any
    ) -> None:
        raise FhirPathError(
            f"The FHIRPath expression {self.expression!r} is not valid: {msg} "
            f"(line {line}, column {column + 1})"
        )

    def reportAmbiguity(self, *args: Any) -> None:
        pass

    def reportAttemptingFullContext(self, *args: Any) -> None:
        pass

    def reportContextSensitivity(self, *args: Any) -> None:
        pass


def _check_syntax(expression: str, original: str) -> None:
    """Parse the whole expression with the engine's grammar, refusing any syntax error.

    The engine's own parser recovers from syntax errors silently (``Patient..name`` or
    ``2 + 2 /* unfinished`` evaluate to something), which would let broken invariants and
    search parameters through unnoticed.
    """
    listener = _RaiseOnSyntaxError(original)
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(listener)
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    parser.entireExpression()  # type: ignore[no-untyped-call]  # generated, untyped


def _external_constants(node: Any) -> Iterator[str]:
    """Names of the ``%constants`` an expression uses, as the engine will look them up."""
    if isinstance(node, dict):
        if node.get("type") == "ExternalConstant":
            for child in node.get("children", []):
                yield str(child.get("text", "")).strip('`"')
        for child in node.get("children") or []:
            yield from _external_constants(child)


def _json_value(item: Any) -> Any:
    """An engine result as the FHIR JSON value it stands for."""
    if isinstance(item, FP_DateTime | FP_Time):
        return _lexical(item)
    if isinstance(item, FP_Quantity):
        return _quantity_json(item)
    return item


def _lexical(item: FP_DateTime | FP_Time) -> str:
    # The engine keeps the literal as written; its str() re-renders (UTC, no millis).
    text = getattr(item, "asStr", None)
    return text if isinstance(text, str) else str(item)


def _quantity_json(quantity: FP_Quantity) -> dict[str, Any]:
    value = quantity.value
    unit = str(quantity.unit or "")
    if unit.startswith("'") and unit.endswith("'"):
        code = unit[1:-1]
        return {"value": value, "unit": code, "system": UCUM, "code": code}
    # A calendar duration keyword (days, months...): not a UCUM unit, so no system/code.
    return {"value": value, "unit": unit} if unit else {"value": value}


def _trace(label: str, items: Any) -> None:
    _LOG.debug("trace %s: %r", label, items)


# -- FHIR R4 functions -------------------------------------------------------------------

# The resource an evaluation started from, for resolve(); a ContextVar so that concurrent
# evaluations (threads, tasks) never see each other's.
_ROOT: ContextVar[Any] = ContextVar("fhirpath_root", default=None)

_LITERAL_REFERENCE = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$"
)


def _resolve(inputs: list[Any]) -> list[Any]:
    """``resolve()``: references inside the resource being evaluated, else a typed stub.

    Looked up in order: ``#id`` among the root resource's contained resources (``#`` is the
    root itself); a Bundle root's entries by ``fullUrl`` or by type and id. A literal
    reference that is not found there (``Patient/1``, or an absolute URL ending so)
    resolves to a stub ``{"resourceType": "Patient", "id": "1"}``: it carries only what the
    reference says, so that type tests such as ``resolve() is Patient`` (common in search
    parameter expressions) work without a database. Anything else resolves to nothing.
    """
    root = _ROOT.get()
    out = []
    for item in inputs:
        reference = item.get("reference") if isinstance(item, dict) else item
        if isinstance(reference, str) and reference:
            target = _find_target(root, reference)
            if target is not None:
                out.append(_node(target))
    return out


def _find_target(root: Any, reference: str) -> dict[str, Any] | None:
    if not isinstance(root, dict):
        root = {}
    if reference.startswith("#"):
        if reference == "#":
            return root or None
        return next((c for c in root.get("contained", []) if isinstance(c, dict)
                     and c.get("id") == reference[1:]), None)
    match = _LITERAL_REFERENCE.search(reference)
    if root.get("resourceType") == "Bundle":
        for entry in root.get("entry", []):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                continue
            same_resource = match is not None and (
                resource.get("resourceType"), resource.get("id")
            ) == (match["type"], match["id"])
            if entry.get("fullUrl") == reference or same_resource:
                return resource
    if match and element_model().is_resource_type(match["type"]):
        return {"resourceType": match["type"], "id": match["id"]}
    return None


def _is_primitive_value(value: Any) -> bool:
    return isinstance(value, str | bool | int | Decimal)


def _has_value(inputs: list[Any]) -> bool:
    """``hasValue()``: one item that is a primitive with a value (not only extensions)."""
    return len(inputs) == 1 and _is_primitive_value(inputs[0])


def _get_value(inputs: list[Any]) -> list[Any]:
    return [inputs[0]] if _has_value(inputs) else []


# -- FHIRPath 2.1 functions --------------------------------------------------------------

# The most decimal places we answer for: the default precision of Python's decimal context.
_MAX_DECIMAL_PLACES = 28
_DATE_TIME = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2}))?)?"
    r"(?:T(?:(?P<hour>\d{2})(?::(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?$"
)
_TIME = re.compile(
    r"^T?(?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?)?$"
)
# Precision (in digits) reached by each component of a date/time, as FHIRPath counts them.
_DATE_TIME_PRECISIONS = {"year": 4, "month": 6, "day": 8, "hour": 10, "minute": 12,
                         "second": 14, "fraction": 17}
_TIME_PRECISIONS = {"hour": 2, "minute": 4, "second": 6, "fraction": 9}


def _single(inputs: list[Any], function: str) -> Any:
    if len(inputs) > 1:
        raise FhirPathError(f"{function}() needs a single input item, got {len(inputs)}")
    return inputs[0] if inputs else None


def _optional_int(value: Any) -> int | None:
    return None if value is None or value == [] else int(value)


def _boundary(high: bool) -> Callable[..., list[Any]]:
    name = "highBoundary" if high else "lowBoundary"

    def boundary(inputs: list[Any], precision: Any = None) -> list[Any]:
        value = _single(inputs, name)
        places = _optional_int(precision)
        if value is None or isinstance(value, bool):
            return []
        if isinstance(value, int | Decimal):
            return _listed(_decimal_boundary(Decimal(value), places, high))
        if isinstance(value, FP_Quantity):
            bound = _decimal_boundary(Decimal(value.value), places, high)
            return [] if bound is None else [_quantity(bound, value.unit)]
        if isinstance(value, FP_Time):
            return _listed(_time_boundary(_lexical(value), places, high))
        if isinstance(value, FP_DateTime):
            return _listed(_date_time_boundary(_lexical(value), places, high))
        if isinstance(value, str):  # a date, dateTime or time read from a resource
            found = _date_time_boundary(value, places, high)
            return _listed(found if found is not None else _time_boundary(value, places, high))
        return []

    return boundary


def _listed(value: Any) -> list[Any]:
    return [] if value is None else [value]


def _decimal_places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return max(-exponent, 0) if isinstance(exponent, int) else 0


def _decimal_boundary(value: Decimal, places: int | None, high: bool) -> Decimal | None:
    """The least/greatest value ``value`` may stand for, given its own precision, to
    ``places`` decimal places (8 by default): ``1.587`` is ``[1.5865, 1.5875)``."""
    places = 8 if places is None else places
    if not 0 <= places <= _MAX_DECIMAL_PLACES:
        return None
    with localcontext() as ctx:
        ctx.prec = 2 * _MAX_DECIMAL_PLACES + 10
        half_unit = Decimal(5).scaleb(-(_decimal_places(value) + 1))
        edge = value + half_unit if high else value - half_unit
        try:
            return edge.quantize(Decimal(1).scaleb(-places),
                                 rounding=ROUND_CEILING if high else ROUND_FLOOR)
        except InvalidOperation:
            return None


def _date_time_boundary(text: str, places: int | None, high: bool) -> FP_DateTime | None:
    match = _DATE_TIME.match(text.removeprefix("@"))
    if match is None:
        return None
    is_date = match["hour"] is None and "T" not in text
    places = (8 if is_date else 17) if places is None else places
    if places not in ((4, 6, 8) if is_date else _DATE_TIME_PRECISIONS.values()):
        return None
    year = int(match["year"])
    month = int(match["month"] or (12 if high else 1))
    day = int(match["day"] or (monthrange(year, month)[1] if high else 1))
    text = f"{year:04d}-{month:02d}-{day:02d}"[: {4: 4, 6: 7}.get(places, 10)]
    if places > 8:
        latest = {"hour": "23", "minute": "59", "second": "59", "fraction": "999"}
        hour, minute, second, fraction = (
            match[k] or (latest[k] if high else "0" * len(latest[k])) for k in latest
        )
        clock = f"T{hour}:{minute}:{second}.{fraction[:3].ljust(3, '0')}"
        # Without a zone, the instant may be anywhere from UTC+14:00 to UTC-12:00.
        zone = match["tz"] or ("-12:00" if high else "+14:00")
        text += clock[: {10: 3, 12: 6, 14: 9}.get(places, 13)] + zone
    return _date_time(text)


def _time_boundary(text: str, places: int | None, high: bool) -> FP_Time | None:
    match = _TIME.match(text.removeprefix("@"))
    if match is None:
        return None
    places = 9 if places is None else places
    if places not in _TIME_PRECISIONS.values():
        return None
    latest = {"minute": "59", "second": "59", "fraction": "999"}
    minute, second, fraction = (
        match[k] or (latest[k] if high else "0" * len(latest[k])) for k in latest
    )
    clock = f"{match['hour']}:{minute}:{second}.{fraction[:3].ljust(3, '0')}"
    return _time(clock[: {2: 2, 4: 5, 6: 8}.get(places, 12)])


def _precision(inputs: list[Any]) -> list[Any]:
    """``precision()``: decimal places of a decimal, digits of a date, dateTime or time."""
    value = _single(inputs, "precision")
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, int | Decimal):
        return [_decimal_places(Decimal(value))]
    text = _lexical(value) if isinstance(value, FP_DateTime | FP_Time) else value
    if not isinstance(text, str):
        return []
    is_time = isinstance(value, FP_Time)
    match = (_TIME if is_time else _DATE_TIME).match(text)
    if match is None:
        return []
    table = _TIME_PRECISIONS if is_time else _DATE_TIME_PRECISIONS
    return [max(digits for part, digits in table.items() if match[part] is not None)]


def _matches_full(inputs: list[Any], pattern: Any) -> list[Any]:
    text = _single(inputs, "matchesFull")
    if not isinstance(text, str) or not isinstance(pattern, str):
        return []
    try:
        return [re.fullmatch(pattern, text, flags=re.DOTALL) is not None]
    except re.error as exc:
        raise FhirPathError(f"matchesFull(): {pattern!r} is not a valid regex: {exc}") from exc


def _escape(inputs: list[Any], target: Any) -> list[Any]:
    text = _single(inputs, "escape")
    if not isinstance(text, str):
        return []
    if target == "html":
        return [html.escape(text, quote=True)]
    if target == "json":
        return [json.dumps(text, ensure_ascii=False)[1:-1]]
    return []


def _unescape(inputs: list[Any], target: Any) -> list[Any]:
    text = _single(inputs, "unescape")
    if not isinstance(text, str):
        return []
    if target == "html":
        return [html.unescape(text)]
    if target == "json":
        return [_JSON_ESCAPE.sub(_json_unescaped, text)]
    return []


_JSON_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|(.))", re.DOTALL)
_JSON_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _json_unescaped(match: re.Match[str]) -> str:
    if match[1]:
        return chr(int(match[1], 16))
    return _JSON_SIMPLE_ESCAPES.get(match[2], match[2])


def _sort(inputs: list[Any], *criteria: Callable[[Any], list[Any]]) -> list[Any]:
    """``sort([criterion, ...])``: ascending by each criterion in turn, empty first.

    Descending order by ``-criterion`` works where the engine can negate (numbers).
    """

    def key(item: Any) -> tuple[tuple[int, Any], ...]:
        values = [criterion(item) for criterion in criteria] if criteria else [[item]]
        return tuple(_sort_key(v) for v in values)

    try:
        return sorted(inputs, key=key)
    except TypeError as exc:
        raise FhirPathError(f"sort() cannot order these values: {exc}") from exc


def _sort_key(result: Any) -> tuple[int, Any]:
    items = result if isinstance(result, list) else [result]
    if not items:
        return (0, 0)
    value = items[0].data if isinstance(items[0], ResourceNode) else items[0]
    if isinstance(value, FP_DateTime | FP_Time):
        value = _lexical(value)
    return (1, value)


# Signatures in the engine's table format; arguments arrive evaluated, inputs as plain data.
_FUNCTIONS: dict[str, dict[str, Any]] = {
    "resolve": {"fn": _resolve},
    "hasValue": {"fn": _has_value},
    "getValue": {"fn": _get_value},
    "lowBoundary": {"fn": _boundary(high=False), "arity": {0: [], 1: ["Integer"]}},
    "highBoundary": {"fn": _boundary(high=True), "arity": {0: [], 1: ["Integer"]}},
    "precision": {"fn": _precision},
    "matchesFull": {"fn": _matches_full, "arity": {1: ["String"]}},
    "escape": {"fn": _escape, "arity": {1: ["String"]}},
    "unescape": {"fn": _unescape, "arity": {1: ["String"]}},
    "sort": {"fn": _sort, "variadic": "Expr"},
}
_OPTIONS = {"userInvocationTable": _FUNCTIONS, "traceFn": _trace}
_RAW_OPTIONS = {**_OPTIONS, "returnRawData": True}


__all__ = [
    "UCUM",
    "Evaluator",
    "FhirPathError",
    "Location",
    "Node",
    "Place",
    "compile_expression",
    "evaluate",
    "locate",
    "nodes",
]
