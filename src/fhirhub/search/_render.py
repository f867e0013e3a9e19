"""A query tree written back as query parameters: what a search's self link shows.

https://hl7.org/fhir/R4/search.html#conformance: the self link says which parameters were
used, so parameters the server left out (lenient handling) do not appear. The text is
canonical rather than as sent: dates are in UTC at the precision given, numbers keep their
precision, and ``parse_search(canonical_params(q))`` gives ``q`` again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from fhirhub.search._parse_values import escape
from fhirhub.search._values import decimal_from_range
from fhirhub.search.types import (
    CompositeValue,
    Include,
    Predicate,
    ReferenceValue,
    SearchQuery,
    TokenValue,
    Value,
)

_START = "00:00:00.000000"
_END = "23:59:59.999999"


def canonical_params(query: SearchQuery) -> list[tuple[str, str]]:
    """The parameters of ``query``: criteria, then ``_sort``, ``_count``, includes, ``_total``."""
    out = [_predicate(p) for p in query.predicates]
    if query.sort:
        out.append(("_sort", ",".join(("-" if k.descending else "") + k.param
                                      for k in query.sort)))
    out.append(("_count", str(query.count)))
    out.extend(_include(i) for i in query.includes)
    if query.total != "none":
        out.append(("_total", query.total))
    return out


def _predicate(pred: Predicate) -> tuple[str, str]:
    if pred.has is not None:
        inner_name, inner_value = _predicate(pred.has.predicates[0])
        return f"_has:{pred.has.resource_types[0]}:{pred.param}:{inner_name}", inner_value
    name = pred.param + (f":{pred.modifier}" if pred.modifier else "")
    if pred.chain is not None:
        inner_name, inner_value = _predicate(pred.chain.predicates[0])
        return f"{name}.{inner_name}", inner_value
    if pred.missing is not None:
        return name, "true" if pred.missing else "false"
    return name, ",".join(_value(pred, v) for v in pred.values)


def _value(pred: Predicate, value: Value) -> str:
    if isinstance(value, CompositeValue):
        return value.text
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, TokenValue):
        return _token(pred.modifier, value)
    if isinstance(value, ReferenceValue):
        if value.ref_id is None:
            return escape(value.url or "")
        if value.url is not None:
            return escape(value.url)
        if pred.modifier is not None or value.ref_type is None:
            return escape(value.ref_id)
        return escape(f"{value.ref_type}/{value.ref_id}")
    prefix = "" if value.prefix == "eq" else value.prefix
    if value.written is not None:
        text = prefix + escape(value.written)
        if value.system is not None or value.code is not None:
            text += f"|{escape(value.system or '')}|{escape(value.code or '')}"
        return text
    if pred.type == "date":
        return prefix + _date(str(value.lo), str(value.hi))
    text = prefix + _number(Decimal(value.lo), Decimal(value.hi))
    if value.system is not None or value.code is not None:
        text += f"|{escape(value.system or '')}|{escape(value.code or '')}"
    return text


def _token(modifier: str | None, value: TokenValue) -> str:
    code = value.code or ""
    if modifier == "text":
        return escape(code)
    if modifier == "of-type":
        type_code, _, identifier = code.partition("|")
        return f"{escape(value.system or '')}|{escape(type_code)}|{escape(identifier)}"
    if value.system is None:
        return escape(code)
    return f"{escape(value.system)}|{escape(code)}"


def _date(lo: str, hi: str) -> str:
    """The shortest date text whose range is ``[lo, hi]`` (what :func:`date_range` made)."""
    if lo[11:] == _START and hi[11:] == _END:
        if lo[5:10] == "01-01" and hi[5:10] == "12-31" and lo[:4] == hi[:4]:
            return lo[:4]
        if lo[8:10] == "01" and lo[:7] == hi[:7] and _last_day(hi):
            return lo[:7]
        if lo[:10] == hi[:10]:
            return lo[:10]
    if lo[16:] == ":00.000000" and hi[16:] == ":59.999999" and lo[:16] == hi[:16]:
        return lo[:16] + "Z"
    if lo[19:] == ".000000" and hi[19:] == ".999999" and lo[:19] == hi[:19]:
        return lo[:19] + "Z"
    width = _instant(hi) - _instant(lo) + timedelta(microseconds=1)
    digits = 6 - len(str(width.microseconds)) + 1 if width.microseconds else 6
    return lo[: 20 + digits] + "Z"


def _last_day(hi: str) -> bool:
    return (_instant(hi) + timedelta(microseconds=1)).day == 1


def _instant(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f")


def _number(lo: Decimal, hi: Decimal) -> str:
    """The number whose implied precision range is ``[lo, hi]``: 99.5..100.5 → ``100``."""
    return str(decimal_from_range(lo, hi))


def _include(include: Include) -> tuple[str, str]:
    name = ("_revinclude" if include.reverse else "_include") + (
        ":iterate" if include.iterate else "")
    if include.source_type == "*":
        return name, "*"
    value = f"{include.source_type}:{include.param}"
    return name, value + (f":{include.target_type}" if include.target_type else "")


__all__ = ["canonical_params"]
