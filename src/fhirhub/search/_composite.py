"""Index rows of composite parameters: https://hl7.org/fhir/R4/search.html#composite

A composite such as ``component-code-value-quantity`` (expression ``Observation.component``,
components ``code`` and ``value.as(Quantity)``) matches when ONE component has both the code
and the value. So the rows keep the element each value came from: every element the
composite's expression selects is a ``combo``, and each of its components' values is a row
with that combo and the component's position.

Component expressions are relative to the element. To keep the typed, compiled evaluator
of ``_paths.py`` (it knows each value's FHIR type from the path), a component of an element
``Type.child`` is evaluated as ``Type.child.<component>`` over a copy of the resource that
holds only that element; a component of the resource itself (``Observation``) as
``Observation.<component>``; ``%resource.x`` as ``Type.x`` over the whole resource. Other
shapes (custom composites with deeper roots) fall back to fhirpathpy with guessed types.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import cache
from typing import Any

from fhirhub.search._paths import Typed, compile_path, split_union
from fhirhub.search._ucum import UCUM, canonical
from fhirhub.search.registry import Registry, SearchParamDef
from fhirhub.search.types import CompositeRow

Json = dict[str, Any]
# (system, code, lo, hi, dlo, dhi) of one component value
Part = tuple[str | None, str | None, Decimal | None, Decimal | None, str | None, str | None]
# emit(param code, typed values) -> parts, by component type; set by index.py
PartMaker = Callable[[str, list[Typed]], list[Part]]

_CHILD = re.compile(r"^([A-Z][A-Za-z]*)\.([a-z][A-Za-z0-9]*)$")


Memo = dict[tuple[int, str, str, int], list[Part]]


def composite_rows(resource: Json, param: SearchParamDef, reg: Registry,
                   makers: dict[str, PartMaker], code: str, memo: Memo) -> list[CompositeRow]:
    """The rows of ``param`` for ``resource``, named ``code``, with values made by
    ``makers`` (one per component type). ``memo`` is shared by the composites of one
    resource: many of them read the same components (``Observation.code``)."""
    rtype = str(resource.get("resourceType", ""))
    kinds = [reg.type_of(c.definition) for c in param.components]
    if not param.expression or not kinds or any(k not in makers for k in kinds):
        return []
    rows: list[CompositeRow] = []
    combo = 0
    for part in _parts(param.expression):
        for n, element in enumerate(_elements(resource, rtype, part)):
            parts = []
            for component, kind in zip(param.components, kinds, strict=True):
                assert kind is not None
                maker = makers[kind]
                key = (id(maker), part, component.expression, n)
                found = memo.get(key)
                if found is None:
                    found = memo[key] = maker(param.code, _component(
                        element, rtype, component.expression))
                if not found:
                    break
                parts.append(found)
            else:
                rows.extend(CompositeRow(code, combo, pos, *p)
                            for pos, found in enumerate(parts) for p in dict.fromkeys(found))
            combo += 1
    return rows


class _Element:
    """An element the composite selects: evaluated through ``prefix`` over ``root``."""

    __slots__ = ("prefix", "resource", "root")

    def __init__(self, root: Json, prefix: str, resource: Json) -> None:
        self.root = root
        self.prefix = prefix
        self.resource = resource


def _elements(resource: Json, rtype: str, part: str) -> Iterator[_Element]:
    if part == rtype:
        yield _Element(resource, rtype, resource)
        return
    m = _CHILD.match(part)
    if m is not None and m.group(1) == rtype:
        child = m.group(2)
        found = resource.get(child)
        items = found if isinstance(found, list) else [found] if found is not None else []
        for item in items:
            yield _Element({"resourceType": rtype, child: [item]}, part, resource)
        return
    evaluate = _fallback(part)
    for _type, value in evaluate(resource):
        if isinstance(value, dict):
            yield _Element(value, "", resource)


def _component(element: _Element, rtype: str, expression: str) -> list[Typed]:
    if expression.startswith("%resource."):
        return _path(f"{rtype}.{expression.removeprefix('%resource.')}")(element.resource)
    if not element.prefix:
        return _fallback(expression)(element.root)
    return _path(f"{element.prefix}.{expression}")(element.root)


@cache
def _parts(expression: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in split_union(expression))


@cache
def _path(expression: str) -> Callable[[Json], list[Typed]]:
    compiled = compile_path(expression)
    return compiled if compiled is not None else _fallback(expression)


@cache
def _fallback(expression: str) -> Callable[[Json], list[Typed]]:
    from fhirhub.search.registry import Extractor

    extractor = Extractor(expression)
    return extractor.__call__


def canonical_part(system: str | None, code: str | None, lo: Decimal,
                   hi: Decimal) -> Part | None:
    """A quantity component value in canonical UCUM units (None: its unit does not convert).
    Such rows are kept under the composite's name plus ``:ucum``, beside the rows as written,
    as for plain quantity parameters (``index.py``)."""
    if system == UCUM and code:
        found = canonical(code)
        if found is not None:
            return (UCUM, found.unit, found.convert(lo), found.convert(hi), None, None)
    return None


__all__ = ["Memo", "Part", "PartMaker", "canonical_part", "composite_rows"]
