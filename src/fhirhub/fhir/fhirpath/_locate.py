"""Locating the elements a path selects, for FHIRPath Patch: :func:`locate`.

The engine evaluates the whole path. To learn where each result lives, the items of the
element the path names last are handed to the engine as nodes of our own making, and
recognised by identity among the results; results it computed instead (``substring()``...)
are refused. The engine's tree is walked for that last element name.
"""

from __future__ import annotations

import copy
from typing import Any

from fhirhub.fhir.fhirpath._children import children
from fhirhub.fhir.fhirpath._engine import create_node, parse_tree
from fhirhub.fhir.fhirpath._errors import FhirPathError
from fhirhub.fhir.fhirpath._nodes import Location, Node, Place, as_nodes
from fhirhub.fhir.fhirpath._parsed import Parsed, parse

# The variable that replaces the last element step, holding our nodes for its items.
_OFFERED = "fhirhub-located"
_MEMBER = "MemberInvocation"


def locate(resource: dict[str, Any], expression: str) -> Place:
    """Where in ``resource`` the elements that ``expression`` selects live.

    The expression must end in an element name, which may be followed by indexers and
    functions that pick among its items (``[1]``, ``where()``, ``first()``, ``ofType()``...):
    ``Patient.name[0].given``, ``Patient.identifier.where(system = 'x')``. What comes before
    that name may be any FHIRPath expression that selects elements of the resource.
    """
    parsed = parse(expression)
    environment = parsed.environment(resource, None)
    tree = copy.deepcopy(parsed.tree)  # its last element step is swapped below
    holder, parent_tree, name = _last_member_step(tree, expression)
    parents = _parents(parsed, parent_tree, name, resource, environment)
    locations = [loc for parent in parents for loc in children(parent, name, expression)]
    if holder is None:
        return Place(parents, name, locations, whole=True)
    # Swap the element step for a variable holding our nodes, and let the engine select.
    holder["children"][0] = parse_tree(f"%`{_OFFERED}`")["children"][0]
    selected = _select(parsed, tree, resource, environment, locations)
    return Place(parents, name, selected, whole=False)


def _parents(parsed: Parsed, parent_tree: dict[str, Any] | None, name: str,
             resource: dict[str, Any], environment: dict[str, Any]) -> list[Node]:
    """The elements whose child ``name`` is: what ``parent_tree`` selects, else the resource."""
    if parent_tree is not None:
        return as_nodes(parsed.run(resource, environment, raw=True,
                                   tree={"children": [parent_tree]}))
    if name == resource.get("resourceType"):
        raise FhirPathError(f"The path {parsed.expression!r} names the resource, not an element")
    return [Node(resource, resource.get("resourceType"))]


def _select(parsed: Parsed, tree: dict[str, Any], resource: dict[str, Any],
            environment: dict[str, Any], locations: list[Location]) -> list[Location]:
    """The ``locations`` that ``tree`` selects when its element step holds their nodes."""
    offered = [create_node(loc.value, loc.type) for loc in locations]
    picked = parsed.run(resource, {**environment, _OFFERED: offered}, raw=True, tree=tree)
    where = {id(node): loc for node, loc in zip(offered, locations, strict=True)}
    if any(id(item) not in where for item in picked):
        raise FhirPathError(f"The path {parsed.expression!r} computes values; it must select elements")
    return [where[id(item)] for item in picked]


def _last_member_step(tree: dict[str, Any], expression: str
                      ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str]:
    """The last element step of ``tree``: the node holding it as first child (``None`` when
    the path ends at it), the tree of what it is a child of (``None`` for a bare name), and
    the element name."""
    holder: dict[str, Any] | None = None
    node = tree["children"][0]
    while True:
        kind = node.get("type")
        steps = node.get("children") or []
        if kind == "InvocationExpression" and steps[1].get("type") == _MEMBER:
            return holder, steps[0], _identifier(steps[1])
        name = _term_member(node) if kind == "TermExpression" else None
        if name is not None:
            return holder, None, name
        function_step = kind == "InvocationExpression" and (
            steps[1].get("type") == "FunctionInvocation"
        )
        if kind == "IndexerExpression" or function_step:
            holder, node = node, steps[0]
            continue
        raise FhirPathError(
            f"The path {expression!r} must end in an element name, optionally followed by "
            "an index or filters such as where(), first() or ofType()"
        )


def _term_member(term: dict[str, Any]) -> str | None:
    """The name of a term that is a bare element name (``name`` in ``name.given``)."""
    invocation = (term.get("children") or [{}])[0]
    if invocation.get("type") != "InvocationTerm":
        return None
    member = (invocation.get("children") or [{}])[0]
    return _identifier(member) if member.get("type") == _MEMBER else None


def _identifier(member: dict[str, Any]) -> str:
    return str(member["children"][0]["text"]).strip("`")
