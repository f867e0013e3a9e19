"""Token modifiers that stand for a set of codes, resolved before the store runs a search:
https://hl7.org/fhir/R4/search.html#token

* ``:in`` / ``:not-in`` a ValueSet: its expansion, from the packaged terminology or a
  ValueSet stored on this server (found by ``url``).
* ``:below`` / ``:above`` a code: the code and its descendants (ancestors) in its code
  system's hierarchy, where the code system is packaged with one; otherwise the code alone
  (SNOMED CT and LOINC are not packaged: their hierarchies are not known here).

The store then matches the codes like any token values. Each predicate keeps the values
as written, so the self link shows the query as the client wrote it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fhirhub.errors import InvalidError, NotFoundError
from fhirhub.fhir import json as fjson
from fhirhub.fhir.terminology import terminology
from fhirhub.search.types import Predicate, SearchQuery, TokenValue
from fhirhub.store import Store

Json = dict[str, Any]
MAX_CODES = 10_000  # a larger value set is refused rather than sent to the database


def resolve_code_sets(query: SearchQuery, store: Store) -> SearchQuery:
    """``query`` with every ``:in``/``:not-in``/``:above``/``:below`` predicate expanded."""
    changed = False
    predicates: list[Predicate] = []
    for pred in query.predicates:
        new = _resolve(pred, store)
        changed |= new is not pred
        predicates.append(new)
    return replace(query, predicates=tuple(predicates)) if changed else query


def _resolve(pred: Predicate, store: Store) -> Predicate:
    if pred.chain is not None:
        chain = resolve_code_sets(pred.chain, store)
        return pred if chain is pred.chain else replace(pred, chain=chain)
    if pred.has is not None:
        has = resolve_code_sets(pred.has, store)
        return pred if has is pred.has else replace(pred, has=has)
    if pred.type != "token" or pred.missing is not None:
        return pred
    if pred.modifier in ("in", "not-in"):
        codes: list[TokenValue] = []
        for url in pred.values:
            codes.extend(_value_set_codes(str(url), store))
        return replace(pred, expansion=tuple(dict.fromkeys(codes)))
    if pred.modifier in ("below", "above"):
        found: list[TokenValue] = []
        for value in pred.values:
            if isinstance(value, TokenValue):
                found.extend(_hierarchy(value, below=pred.modifier == "below"))
        return replace(pred, expansion=tuple(dict.fromkeys(found)))
    return pred


def _value_set_codes(url: str, store: Store) -> list[TokenValue]:
    service = terminology()
    base = url.partition("|")[0]
    try:
        expanded = service.expand(base, count=MAX_CODES + 1)
    except NotFoundError:
        stored = _stored_value_set(base, store)
        if stored is None:
            raise InvalidError(f"The value set {base} is not known to this server, so ':in' "
                               "and ':not-in' cannot use it", issue_code="not-found",
                               spine_code="INVALID_SEARCH_DATA") from None
        expanded = service.expand(stored, count=MAX_CODES + 1)
    codes = [TokenValue(c.get("system"), str(c["code"]))
             for c in _contains(expanded.get("expansion", {}).get("contains", ()))]
    if len(codes) > MAX_CODES:
        raise InvalidError(f"The value set {base} has more than {MAX_CODES:,} codes; search "
                           "with a smaller one", issue_code="too-costly",
                           spine_code="INVALID_SEARCH_DATA")
    return codes


def _contains(items: Any) -> list[Json]:
    out: list[Json] = []
    for item in items or ():
        if isinstance(item, dict):
            if item.get("code") and not item.get("abstract"):
                out.append(item)
            out.extend(_contains(item.get("contains")))
    return out


def _stored_value_set(url: str, store: Store) -> Json | None:
    query = SearchQuery(("ValueSet",), (Predicate("url", "uri", None, (url,)),), count=1)
    page = store.search(query)
    if not page.matches or page.matches[0].body is None:
        return None
    found = fjson.loads(page.matches[0].body)
    return found if isinstance(found, dict) else None


def _hierarchy(value: TokenValue, *, below: bool) -> list[TokenValue]:
    if value.code is None:
        return [value]
    index = terminology().code_system_index(value.system) if value.system else None
    if index is None or index.find(value.code) is None:
        return [value]  # no hierarchy known here: the code itself
    related = index.descendants(value.code) if below else index.ancestors(value.code)
    return [value, *(TokenValue(value.system, code) for code in sorted(related))]


__all__ = ["MAX_CODES", "resolve_code_sets"]
