"""The steps of the typed FHIRPath subset (see ``_paths.py``): functions over typed nodes.

A node is ``(value, FHIR type code, element-model key of its children)``; a step maps the
nodes it is given (and the root resource, for ``#id`` references) to the nodes it yields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhirhub.fhir.model import element_model
from fhirhub.search._values import split_reference

Json = dict[str, Any]
Node = tuple[Any, str, str]
Step = Callable[[list[Node], Json], list[Node]]

# Quantity's specialisations: ``as Quantity`` keeps them too.
QUANTITY_TYPES = frozenset({"Quantity", "Age", "Count", "Distance", "Duration"})
# The R4 resources that are not DomainResources: ``DomainResource.x`` skips them.
NOT_DOMAIN = frozenset({"Binary", "Bundle", "Parameters"})


def chain(given: list[Step]) -> Step:
    steps: list[Step] = []
    for step in given:
        last = steps[-1] if steps else None
        if isinstance(last, _Members) and isinstance(step, _Members):
            steps[-1] = last.then(step)
        else:
            steps.append(step)
    if len(steps) == 1:
        return steps[0]

    def run(nodes: list[Node], root: Json) -> list[Node]:
        for step in steps:
            if not nodes:
                return nodes
            nodes = step(nodes, root)
        return nodes

    return run


def then(first: Step, second: Step) -> Step:
    return chain([first, second])


def union(parts: list[Step]) -> Step:
    def run(nodes: list[Node], root: Json) -> list[Node]:
        out: list[Node] = []
        for part in parts:
            out.extend(part(nodes, root))
        return out

    return run


def type_root(name: str) -> Step:
    def run(nodes: list[Node], root: Json) -> list[Node]:
        if len(nodes) == 1 and nodes[0][1] == name:  # the usual case: Patient.x on a Patient
            return nodes
        return [n for n in nodes if _is_a(n[1], name)]

    return run


def _is_a(type_code: str, name: str) -> bool:
    if type_code == name:
        return True
    if name == "Quantity":
        return type_code in QUANTITY_TYPES
    if name == "Resource":
        return type_code[:1].isupper() and element_model().is_resource_type(type_code)
    if name == "DomainResource":
        return type_code not in NOT_DOMAIN and element_model().is_resource_type(type_code)
    return False


def as_type(name: str) -> Step:
    def run(nodes: list[Node], root: Json) -> list[Node]:
        return [n for n in nodes if _is_a(n[1], name)]

    return run


def index(position: int) -> Step:
    def run(nodes: list[Node], root: Json) -> list[Node]:
        return nodes[position : position + 1]

    return run


Candidates = tuple[tuple[str, str, str], ...]  # (JSON name, type code, children key)


def candidates(key: str, name: str) -> Candidates:
    """Where child ``name`` of a ``key`` lives in JSON: one name, or every ``name[x]`` choice."""
    model = element_model()
    found = model.child(key, name)
    if found is not None and not found.is_choice:
        return ((name, found.type, found.children_key),)
    choice = f"{name}[x]"
    options = tuple(
        (el.name, el.type, el.children_key)
        for el in model.children(key).values()
        if el.is_choice and el.path.rpartition(".")[2] == choice
    )
    return options or ((name, "", ""),)  # not in the model: read it untyped


class _Members:
    """Member steps in a row (``a.b.c``), walked in one call: most paths are only this."""

    __slots__ = ("_options", "names")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._options: list[dict[str, Candidates]] = [{} for _ in names]

    def then(self, other: _Members) -> _Members:
        return _Members(self.names + other.names)

    def __call__(self, nodes: list[Node], root: Json) -> list[Node]:
        for name, by_key in zip(self.names, self._options, strict=True):
            out: list[Node] = []
            for value, _type, key in nodes:
                if value.__class__ is not dict:
                    continue
                options = by_key.get(key)
                if options is None:
                    options = by_key[key] = candidates(key, name)
                for json_name, type_code, child_key in options:
                    found = value.get(json_name)
                    if found is None:
                        continue
                    if found.__class__ is list:
                        out.extend(_node(item, type_code, child_key)
                                   for item in found if item is not None)
                    else:
                        out.append(_node(found, type_code, child_key))
            if not out:
                return out
            nodes = out
        return nodes


def child(name: str) -> Step:
    return _Members((name,))


def _node(value: Any, type_code: str, key: str) -> Node:
    if type_code == "Resource" and isinstance(value, dict):
        actual = str(value.get("resourceType", "Resource"))
        return value, actual, actual
    return value, type_code, key


def extension(url: str) -> Step:
    def run(nodes: list[Node], root: Json) -> list[Node]:
        return [
            (ext, "Extension", "Extension")
            for value, _type, _key in nodes
            if isinstance(value, dict)
            for ext in value.get("extension", ())
            if isinstance(ext, dict) and ext.get("url") == url
        ]

    return run


def has_extension(url: str) -> Step:
    def run(nodes: list[Node], root: Json) -> list[Node]:
        return [n for n in nodes if extension(url)([n], root)]

    return run


def where(criterion: Step) -> Step:
    """``where(criterion)``: the items for which the criterion is ``true``."""

    def run(nodes: list[Node], root: Json) -> list[Node]:
        return [n for n in nodes if _is_true(criterion([n], root))]

    return run


def _is_true(nodes: list[Node]) -> bool:
    return len(nodes) == 1 and nodes[0][0] is True


def _equal(left: Any, right: Any) -> bool:
    # Python counts True as 1; FHIRPath does not compare booleans with numbers.
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, str) != isinstance(right, str):
        return False
    return bool(left == right)


def compare(left: Step, literal: Any, negate: bool) -> Step:
    """``X = literal`` / ``X != literal``: empty when ``X`` is empty, as FHIRPath says."""

    def run(nodes: list[Node], root: Json) -> list[Node]:
        found = left(nodes, root)
        if not found:
            return []
        same = len(found) == 1 and _equal(found[0][0], literal)
        return [(same != negate, "boolean", "boolean")]

    return run


def and_(parts: list[Step]) -> Step:
    """Three-valued ``and``: false if any side is false, true if all are, else empty."""

    def run(nodes: list[Node], root: Json) -> list[Node]:
        results = [part(nodes, root) for part in parts]
        if any(len(r) == 1 and r[0][0] is False for r in results):
            return [(False, "boolean", "boolean")]
        if all(_is_true(r) for r in results):
            return [(True, "boolean", "boolean")]
        return []

    return run


def exists(collection: Step) -> Step:
    def run(nodes: list[Node], root: Json) -> list[Node]:
        return [(bool(collection(nodes, root)), "boolean", "boolean")]

    return run


def reference_type(reference: Any, root: Json) -> str | None:
    """The resource type a Reference points to, as far as the Reference itself says."""
    if not isinstance(reference, dict):
        return None
    literal = reference.get("reference")
    if isinstance(literal, str):
        if literal.startswith("#"):
            for contained in root.get("contained", ()):
                if isinstance(contained, dict) and contained.get("id") == literal[1:]:
                    return str(contained.get("resourceType"))
            return None
        ref_type = split_reference(literal)[0]
        if ref_type is not None:
            return ref_type
    declared = reference.get("type")
    return declared if isinstance(declared, str) else None


def resolves_to(name: str) -> Step:
    def run(nodes: list[Node], root: Json) -> list[Node]:
        return [n for n in nodes if reference_type(n[0], root) == name]

    return run


__all__ = [
    "NOT_DOMAIN",
    "QUANTITY_TYPES",
    "Candidates",
    "Node",
    "Step",
    "and_",
    "as_type",
    "candidates",
    "chain",
    "child",
    "compare",
    "exists",
    "extension",
    "has_extension",
    "index",
    "reference_type",
    "resolves_to",
    "then",
    "type_root",
    "union",
    "where",
]
