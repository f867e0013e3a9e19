"""Which search parameters exist, for which resource types: https://hl7.org/fhir/R4/searchparameter.html

:func:`registry` is built once per process from the 1,384 official R4 SearchParameters;
:meth:`Registry.with_custom` gives a new registry with a server's own SearchParameters added
(a custom parameter with the same code as an official one on the same type replaces it).

Each :class:`SearchParamDef` is specialised to one resource type: an official expression
such as ``Patient.name | Person.name | Practitioner.name`` is kept, for ``Patient``, as
``Patient.name`` only, and compiled once into :attr:`SearchParamDef.extract`. Extraction uses
the typed evaluator of ``_paths.py`` when the expression is inside its subset (every official
expression is), and fhirpathpy otherwise (custom parameters); fhirpathpy returns bare values,
whose FHIR type is then taken from a trailing ``as T`` / ``ofType(T)`` or guessed from their
shape (see :func:`_guess_type`).

Built from the packaged definitions, the registry takes about 0.2 s (most of it reading
the gzipped SearchParameters); each type's parameters are specialised and compiled on
first use, about 1 ms a type.

The common parameters (``_id``, ``_lastUpdated``, ``_tag``, ``_profile``, ``_security``,
``_source``) apply to every type; ``_text`` and ``_content`` are declared with the type
``special``: they have no expression and are answered (or refused) by the store. ``_query``
and ``_filter`` are not registered: named queries and the filter language are not supported,
so they are refused as unknown parameters rather than silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any, cast

from fhirhub.errors import InvalidError
from fhirhub.fhir.definitions import search_parameters
from fhirhub.fhir.fhirpath import compile_expression
from fhirhub.search._paths import Typed, compile_path, split_union
from fhirhub.search._steps import NOT_DOMAIN
from fhirhub.search.types import ParamType

Json = dict[str, Any]

_PARAM_TYPES = frozenset(
    {"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}
)
_SPECIAL_CODES = frozenset({"_text", "_content"})
_UNSUPPORTED_CODES = frozenset({"_query", "_filter"})
_COMMON_BASES = frozenset({"Resource", "DomainResource"})


class Extractor:
    """``extractor(resource) -> [(fhir_type, value), …]``: the values a parameter indexes."""

    __slots__ = ("_run", "expression", "fast")

    def __init__(self, expression: str | None) -> None:
        self.expression = expression
        fast = compile_path(expression) if expression else None
        self.fast = fast is not None
        self._run: Callable[[Json], list[Typed]] | None = fast

    def __call__(self, resource: Json) -> list[Typed]:
        if self._run is None:
            if not self.expression:
                return []
            self._run = _fallback(self.expression)
        return self._run(resource)

    def check(self) -> None:
        """Compile now, so that a bad expression fails when it is registered, not on a write."""
        if self.expression and self._run is None:
            if "resolve()" in self.expression:
                raise InvalidError(
                    f"The expression {self.expression!r} uses resolve() other than as "
                    "'X.where(resolve() is Type)', which is the only form supported"
                )
            self._run = _fallback(self.expression)


def _fallback(expression: str) -> Callable[[Json], list[Typed]]:
    evaluate = compile_expression(expression)
    hint = _declared_type(expression)

    def run(resource: Json) -> list[Typed]:
        return [(hint or _guess_type(v), v) for v in evaluate(resource) if v is not None]

    return run


_TRAILING_TYPE = re.compile(r"(?:\bas\s+|\.(?:as|ofType)\()(?:FHIR\.)?([A-Za-z]+)\)?\s*$")


def _declared_type(expression: str) -> str | None:
    """``T`` when the whole expression ends in ``as T`` / ``ofType(T)``: every value is a T."""
    m = _TRAILING_TYPE.search(expression)
    return m.group(1) if m and len(split_union(expression)) == 1 else None


_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})


def _guess_type(value: Any) -> str:
    """The FHIR type a bare fhirpathpy result most likely has ("" when it cannot be told)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, Decimal | float):
        return "decimal"
    if isinstance(value, str):
        return "string"
    if not isinstance(value, dict):
        return ""
    keys = value.keys()
    if "resourceType" in keys:
        return str(value["resourceType"])
    if "reference" in keys or ("identifier" in keys and "display" in keys):
        return "Reference"
    if "coding" in keys:
        return "CodeableConcept"
    if "url" in keys and any(k.startswith("value") for k in keys):
        return "Extension"
    if "value" in keys and not isinstance(value["value"], str):
        return "Money" if "currency" in keys else "Quantity"
    if value.get("system") in _CONTACT_SYSTEMS and "value" in keys:
        return "ContactPoint"
    if "value" in keys:
        return "Identifier"
    if "code" in keys:
        return "Coding"
    if keys & {"family", "given", "prefix", "suffix"}:
        return "HumanName"
    if keys & {"line", "city", "district", "state", "postalCode", "country"}:
        return "Address"
    if keys & {"start", "end"}:
        return "Period"
    if keys & {"low", "high"}:
        return "Range"
    return "CodeableConcept" if keys == {"text"} else ""


@dataclass(frozen=True, slots=True)
class Component:
    """One part of a composite parameter."""

    definition: str  # canonical URL of the component's SearchParameter
    expression: str  # relative to each value of the composite's own expression


@dataclass(frozen=True, slots=True)
class SearchParamDef:
    """One search parameter as it applies to one resource type."""

    code: str
    type: ParamType
    expression: str | None  # the part of the definition's expression for this resource type
    base: tuple[str, ...]
    targets: tuple[str, ...] = ()  # reference targets; empty means any type
    url: str = ""
    components: tuple[Component, ...] = ()
    extract: Extractor = field(default_factory=lambda: Extractor(None), compare=False,
                               repr=False)


@dataclass(frozen=True, slots=True)
class _Raw:
    """A SearchParameter resource reduced to what the registry needs."""

    code: str
    type: ParamType
    expression: str | None
    base: tuple[str, ...]
    targets: tuple[str, ...]
    url: str
    components: tuple[Component, ...]


def _raw(sp: Json) -> _Raw:
    code, kind, base = sp.get("code"), sp.get("type"), sp.get("base")
    if not isinstance(code, str) or not code:
        raise InvalidError("A SearchParameter needs a code", expression=("SearchParameter.code",))
    if kind not in _PARAM_TYPES:
        raise InvalidError(f"The SearchParameter {code!r} has no valid type: {kind!r}",
                           expression=("SearchParameter.type",))
    if not isinstance(base, list) or not base or not all(isinstance(b, str) for b in base):
        raise InvalidError(f"The SearchParameter {code!r} needs at least one base type",
                           expression=("SearchParameter.base",))
    expression = sp.get("expression")
    return _Raw(
        code=code,
        type=cast(ParamType, "special" if code in _SPECIAL_CODES else kind),
        expression=expression if isinstance(expression, str) and expression.strip() else None,
        base=tuple(base),
        targets=tuple(str(t) for t in sp.get("target", ())),
        url=str(sp.get("url", "")),
        components=tuple(
            Component(str(c.get("definition", "")), str(c.get("expression", "")))
            for c in sp.get("component", ())
        ),
    )


_ROOT = re.compile(r"^\(*\s*([A-Z][A-Za-z]*)\b")


def _for_type(expression: str | None, resource_type: str) -> str | None:
    """The parts of ``expression`` that can match ``resource_type`` (all, if none say)."""
    if expression is None:
        return None
    parts = split_union(expression)
    kept = []
    for part in parts:
        m = _ROOT.match(part)
        root = m.group(1) if m else None
        if root is None or root == resource_type or root in _COMMON_BASES:
            kept.append(part)
    return " | ".join(kept) if kept else expression


class Registry:
    """Search parameters by resource type and code. Immutable: :meth:`with_custom` copies."""

    def __init__(self, resources: Iterable[Json]) -> None:
        self._raw: dict[tuple[str, str], _Raw] = {}
        for sp in resources:
            raw = _raw(sp)
            if raw.code not in _UNSUPPORTED_CODES:
                self._raw.update(((base, raw.code), raw) for base in raw.base)
        self._by_base: dict[str, list[_Raw]] = {}
        for (base, _code), raw in self._raw.items():
            self._by_base.setdefault(base, []).append(raw)
        self._types: dict[str, dict[str, SearchParamDef]] = {}
        self._indexed: dict[str, tuple[SearchParamDef, ...]] = {}
        self._by_url: dict[str, ParamType] | None = None
        self._composites: dict[str, tuple[SearchParamDef, ...]] = {}

    def with_custom(self, resources: Iterable[Json]) -> Registry:
        """A registry with ``resources`` (SearchParameter JSON) added; fails on a bad one.

        Every expression is compiled here, so that a bad one is refused when the
        SearchParameter is registered rather than on the next write of its base type.
        """
        extra = Registry(resources)
        for raw in extra._raw.values():
            try:
                for base in raw.base:
                    extra._def(raw, base).extract.check()
            except InvalidError as exc:
                raise InvalidError(
                    f"The SearchParameter '{raw.code}' cannot be used: {exc.diagnostics}",
                    expression=("SearchParameter.expression",),
                ) from exc
        merged = Registry(())
        merged._raw = {**self._raw, **extra._raw}
        for (base, _code), raw in merged._raw.items():
            merged._by_base.setdefault(base, []).append(raw)
        return merged

    def for_type(self, resource_type: str) -> Mapping[str, SearchParamDef]:
        """Every parameter of ``resource_type`` by code, the common ones included.

        ``for_type("Resource")`` gives only the common ones: those of a system-level search.
        """
        found = self._types.get(resource_type)
        if found is None:
            found = self._types[resource_type] = self._build(resource_type)
        return found

    def get(self, resource_type: str, code: str) -> SearchParamDef | None:
        return self.for_type(resource_type).get(code)

    def type_of(self, url: str) -> ParamType | None:
        """The type of the parameter defined at ``url`` (a composite's component)."""
        if self._by_url is None:
            self._by_url = {raw.url: raw.type for raw in self._raw.values() if raw.url}
        return self._by_url.get(url)

    @property
    def resource_types(self) -> frozenset[str]:
        """The types some parameter is defined on (excluding the abstract bases)."""
        return frozenset(self._by_base) - _COMMON_BASES

    def _build(self, resource_type: str) -> dict[str, SearchParamDef]:
        bases = ["Resource"]
        if resource_type not in NOT_DOMAIN and resource_type != "Resource":
            bases.append("DomainResource")
        if resource_type not in _COMMON_BASES:
            bases.append(resource_type)
        params: dict[str, SearchParamDef] = {}
        for base in bases:
            for raw in self._by_base.get(base, ()):
                params[raw.code] = self._def(raw, resource_type)
        return dict(sorted(params.items()))

    def _def(self, raw: _Raw, resource_type: str) -> SearchParamDef:
        expression = _for_type(raw.expression, resource_type)
        # Composites are matched through their components, specials by the store: neither
        # has values of its own to extract.
        extracted = raw.type not in ("composite", "special")
        return SearchParamDef(
            code=raw.code,
            type=raw.type,
            expression=expression,
            base=raw.base,
            targets=raw.targets,
            url=raw.url,
            components=raw.components,
            extract=Extractor(expression if extracted else None),
        )

    def composites(self, resource_type: str) -> tuple[SearchParamDef, ...]:
        """The composite parameters of ``resource_type`` (indexed by ``_composite.py``)."""
        found = self._composites.get(resource_type)
        if found is None:
            found = self._composites[resource_type] = tuple(
                p for p in self.for_type(resource_type).values()
                if p.type == "composite" and p.expression and p.components)
        return found

    def indexed(self, resource_type: str) -> tuple[SearchParamDef, ...]:
        """The parameters that give index rows: all but composites, specials, and ``_id`` and
        ``_lastUpdated``, which the stores answer from columns of their own."""
        found = self._indexed.get(resource_type)
        if found is None:
            found = self._indexed[resource_type] = tuple(
                p for p in self.for_type(resource_type).values()
                if p.code not in ("_id", "_lastUpdated")
                and p.type not in ("composite", "special") and p.expression
            )
        return found


@cache
def registry() -> Registry:
    """The official R4 registry, built once per process."""
    # Ten extension SearchParameters of the R4 package (codesystem-/valueset-extensions-*)
    # came without a base or an expression: they cannot apply to anything.
    return Registry(sp for sp in search_parameters() if sp.get("base"))


__all__ = ["Component", "Extractor", "Registry", "SearchParamDef", "registry"]

