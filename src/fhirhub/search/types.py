"""The neutral search vocabulary shared by the indexer, the parser and every store.

Index rows: what a resource contributes to search, one row per value, per parameter.
Query tree: what a search asks, independent of SQL. A store compiles a
:class:`SearchQuery` to its own dialect; nothing here knows a database.

Dates are kept as a closed range of instants ``[lo, hi]`` in UTC, written as fixed-width
ISO text (``YYYY-MM-DDTHH:MM:SS.ffffff``) so that text order is time order on every
backend. ``2020`` indexes as ``[2020-01-01T00:00:00.000000, 2020-12-31T23:59:59.999999]``.
Numbers and quantities are kept as the implied range of their precision (``1.5`` is
``[1.45, 1.55)``), stored as ``lo``/``hi`` decimals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

ParamType = Literal[
    "number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"
]

# -- index rows -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenRow:
    param: str
    system: str | None
    code: str | None
    text: str | None = None  # display / text, normalised like StringRow.norm, for :text


@dataclass(frozen=True, slots=True)
class StringRow:
    param: str
    norm: str  # case-folded, accents removed: what default and :contains match
    exact: str  # as written: what :exact matches


@dataclass(frozen=True, slots=True)
class ReferenceRow:
    param: str
    ref_type: str | None  # "Patient" for Patient/123 (and for absolute URLs on this server)
    ref_id: str | None  # "123"
    url: str | None  # the reference as written when it is absolute or canonical


@dataclass(frozen=True, slots=True)
class DateRow:
    param: str
    lo: str
    hi: str


@dataclass(frozen=True, slots=True)
class NumberRow:
    param: str
    lo: Decimal
    hi: Decimal


@dataclass(frozen=True, slots=True)
class QuantityRow:
    param: str
    lo: Decimal
    hi: Decimal
    system: str | None
    code: str | None
    unit: str | None


@dataclass(frozen=True, slots=True)
class UriRow:
    param: str
    value: str


@dataclass(frozen=True, slots=True)
class CompositeRow:
    """One value of one component of a composite parameter.

    ``combo`` numbers the element the composite's expression selects (an Observation, or one
    of its components); ``pos`` is the component's position (0-based). A composite value
    matches when, for one ``combo``, every position has a row matching its part. By the
    component's type: token ``system``/``code``; reference ``system`` = type, ``code`` = id;
    string ``code`` = normalised text; uri ``code``; number and quantity ``lo``/``hi`` (and
    quantity unit ``system``/``code``, in canonical UCUM units where convertible); date
    ``dlo``/``dhi``.
    """

    param: str
    combo: int
    pos: int
    system: str | None = None
    code: str | None = None
    lo: Decimal | None = None
    hi: Decimal | None = None
    dlo: str | None = None
    dhi: str | None = None


@dataclass(frozen=True, slots=True)
class TextRow:
    """The words of a resource for ``_text`` (its narrative) or ``_content`` (all its text):
    normalised, distinct, each followed by a space and the whole led by one (`` a b ``), so a
    word prefix is found with ``LIKE '% prefix%'``."""

    param: str
    words: str


IndexRow = (TokenRow | StringRow | ReferenceRow | DateRow | NumberRow | QuantityRow | UriRow
            | CompositeRow | TextRow)


@dataclass
class IndexRows:
    """Everything one resource contributes to search."""

    token: list[TokenRow] = field(default_factory=list)
    string: list[StringRow] = field(default_factory=list)
    reference: list[ReferenceRow] = field(default_factory=list)
    date: list[DateRow] = field(default_factory=list)
    number: list[NumberRow] = field(default_factory=list)
    quantity: list[QuantityRow] = field(default_factory=list)
    uri: list[UriRow] = field(default_factory=list)
    composite: list[CompositeRow] = field(default_factory=list)
    text: list[TextRow] = field(default_factory=list)


# -- query tree ------------------------------------------------------------------------------

Prefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]


@dataclass(frozen=True, slots=True)
class TokenValue:
    system: str | None  # None: any system; "" : no system (|code)
    code: str | None  # None: any code (system|)


@dataclass(frozen=True, slots=True)
class RangeValue:
    """A date, number or quantity comparison: ``prefix`` applied to the range [lo, hi]."""

    prefix: Prefix
    lo: str | Decimal
    hi: str | Decimal
    system: str | None = None  # quantities only
    code: str | None = None  # quantities only
    written: str | None = None  # the number or date as given, when [lo, hi] is not its own
    # precision range (``ap`` widens it)


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    ref_type: str | None
    ref_id: str | None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class CompositeValue:
    """A composite value: ``text`` as written, ``parts`` parsed by each component's type."""

    text: str
    parts: tuple[TokenValue | RangeValue | ReferenceValue | str, ...]
    types: tuple[ParamType, ...]


Value = TokenValue | RangeValue | ReferenceValue | CompositeValue | str


@dataclass(frozen=True, slots=True)
class Predicate:
    """One parameter with its OR-ed values: ``code=a,b`` is one predicate with two values."""

    param: str  # the search parameter code ("identifier", "_id", "_lastUpdated")
    type: ParamType
    modifier: str | None
    values: tuple[Value, ...]
    # Chaining: ``subject:Patient.name=x`` is a predicate on ``subject`` whose target must
    # match ``chain`` (a query on the target type).
    chain: SearchQuery | None = None
    # Reverse chaining ``_has:Observation:subject:code=x``: ``has`` is the query on the
    # referring type and ``param`` is the reference parameter on it.
    has: SearchQuery | None = None
    missing: bool | None = None  # :missing=true / false
    # :in / :not-in / :above / :below on a token: the (system, code) pairs the value set or
    # the code system's hierarchy stands for, filled in by the engine before the store runs
    # the query (None: not yet expanded).
    expansion: tuple[TokenValue, ...] | None = None


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str
    descending: bool = False
    type: ParamType | Literal[""] = ""  # the parameter's type ("" for _id / _lastUpdated)


@dataclass(frozen=True, slots=True)
class Include:
    source_type: str  # resource type holding the reference, or "*"
    param: str  # reference search parameter, or "*"
    target_type: str | None = None
    iterate: bool = False
    reverse: bool = False  # _revinclude


@dataclass(frozen=True, slots=True)
class Access:
    """What the caller may see, whatever it asks: the store applies it to every resource a
    search returns or looks through (matches, ``_include``/``_revinclude``, chained and
    ``_has`` targets) and to history, in the query itself, so that pages and totals never
    reveal anything else (docs/security.md)."""

    types: frozenset[str] | None = None  # the resource types it may see; None: every type
    # Only resources in one of these compartments: ("Patient", ("123", ...)). An empty id
    # tuple means nothing at all.
    compartment: tuple[str, tuple[str, ...]] | None = None


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A whole search. ``predicates`` are AND-ed; each predicate ORs its values."""

    resource_types: tuple[str, ...]  # one type for a type search; several or none (all) at system level
    predicates: tuple[Predicate, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 20
    includes: tuple[Include, ...] = ()
    total: Literal["none", "estimate", "accurate"] = "none"
    cursor: str | None = None  # opaque keyset position from a previous page
    compartment: tuple[str, str] | None = None  # ("Patient", "123")
    access: Access | None = None  # what the caller may see (None: everything)


__all__ = [
    "Access",
    "CompositeRow",
    "CompositeValue",
    "DateRow",
    "Include",
    "IndexRow",
    "IndexRows",
    "NumberRow",
    "ParamType",
    "Predicate",
    "Prefix",
    "QuantityRow",
    "RangeValue",
    "ReferenceRow",
    "ReferenceValue",
    "SearchQuery",
    "SortKey",
    "StringRow",
    "TextRow",
    "TokenRow",
    "TokenValue",
    "UriRow",
    "Value",
]
