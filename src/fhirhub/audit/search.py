"""Searching the audit log as FHIR: ``GET AuditEvent?…`` to an :class:`AuditQuery`.

The parameters are R4's own for AuditEvent where they fit (``_id``, ``date``,
``_lastUpdated``, ``patient``, ``entity``, ``outcome``, ``subtype``, ``action``,
``altid``) and four of fhirhub's, for what a support desk starts from:
``request-id`` (X-Request-ID), ``correlation-id`` (X-Correlation-ID), ``client`` (the
application) and ``user``. Values are parsed exactly as for any other search (the same
token, reference and date parsers: prefixes, precision ranges, comma OR, repeated AND).

``patient`` takes a reference (``Patient/123``, ``123``) or an NHS number
(``patient:identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919``, or a bare ten-digit
number that passes the NHS number check): a record is found by the number it holds, or by
a reference to any Patient that has that number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fhirhub.audit.record import ACTIONS
from fhirhub.errors import InvalidError
from fhirhub.search._parse_values import BadValue, date, reference, split, token
from fhirhub.search.types import Predicate, SearchQuery, TokenValue
from fhirhub.store.audit import AuditQuery
from fhirhub.store.base import Reader

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
PARAMS: dict[str, str] = {
    "_id": "The AuditEvent's id",
    "date": "When the event was recorded (AuditEvent.recorded)",
    "_lastUpdated": "Same as date: an AuditEvent is never updated",
    "patient": "A patient concerned: Patient reference, or NHS number (:identifier, or bare)",
    "entity": "A resource the event concerns (Type/id)",
    "outcome": "0 success, 4 minor failure (4xx), 8 serious failure (5xx)",
    "subtype": "The interaction: read, vread, search-type, create, update, patch, delete, "
               "history-instance, operation, transaction, batch, capabilities, send, ...",
    "action": "C, R, U, D or E",
    "request-id": "The X-Request-ID of the request (and of every record it caused)",
    "correlation-id": "The X-Correlation-ID the client sent",
    "client": "The client application's id",
    "user": "The user's id (NHS login or CIS2)",
    "altid": "Same as user",
}
RESULT_PARAMS = frozenset({"_count", "_cursor", "_sort", "_total", "_summary", "_elements",
                           "_format", "_pretty"})
_SUBTYPES = {"search-type": "search", "search-system": "search", "history-instance": "history",
             "history-type": "history", "history-system": "history"}
_DATE_OPS = {"eq": ((">=", "lo"), ("<=", "hi")), "ge": ((">=", "lo"),), "gt": ((">", "hi"),),
             "sa": ((">", "hi"),), "le": (("<=", "hi"),), "lt": (("<", "lo"),),
             "eb": (("<", "lo"),)}


@dataclass
class Parsed:
    query: AuditQuery
    ignored: list[str] = field(default_factory=list)  # unknown parameters (lenient mode)
    total: bool = False


def parse(params: list[tuple[str, str]], *, count: int, strict: bool,
          patients_with_nhs: Callable[[str], list[str]]) -> Parsed:
    """The audit query ``params`` ask for. ``patients_with_nhs(number)`` gives the
    references of the Patients holding an NHS number."""
    fields: dict[str, list[tuple[str, ...]]] = {}
    refs: list[tuple[str, ...]] = []
    recorded: list[tuple[str, str]] = []
    ignored: list[str] = []
    oldest_first, cursor, total = False, None, False
    for key, raw in params:
        name, _, modifier = key.partition(":")
        try:
            if name in RESULT_PARAMS:
                if name == "_sort":
                    oldest_first = _sort(raw)
                elif name == "_cursor":
                    cursor = raw
                elif name == "_total":
                    total = raw in ("accurate", "estimate")
                elif name == "_summary":
                    total = total or raw == "count"
                continue
            if name not in PARAMS:
                if strict:
                    raise InvalidError(
                        f"AuditEvent cannot be searched by '{name}'; it can be searched by "
                        f"{', '.join(sorted(PARAMS))}", spine_code="INVALID_PARAMETER")
                ignored.append(key)
                continue
            if modifier and not (name == "patient" and modifier in ("identifier", "Patient")):
                raise BadValue(f"the modifier ':{modifier}' is not supported here")
            values = split(raw, ",")
            if name in ("date", "_lastUpdated"):
                recorded += _dates(values)
            elif name == "patient":
                refs.append(_patients(values, modifier, patients_with_nhs))
            elif name == "entity":
                refs.append(tuple(_entity(v) for v in values))
            else:
                column, codes = _token_field(name, values)
                fields.setdefault(column, []).append(codes)
        except BadValue as exc:
            raise InvalidError(f"{key}={raw!r}: {exc}", spine_code="INVALID_SEARCH_DATA") from None
    query = AuditQuery(
        ids=_and(fields.get("ids")), request_ids=_and(fields.get("request_ids")),
        correlation_ids=_and(fields.get("correlation_ids")), clients=_and(fields.get("clients")),
        users=_and(fields.get("users")), interactions=_and(fields.get("interactions")),
        outcomes=_and(fields.get("outcomes")), refs=tuple(refs), recorded=tuple(recorded),
        oldest_first=oldest_first, count=count, cursor=cursor,
    )
    return Parsed(query, ignored, total)


def _and(groups: list[tuple[str, ...]] | None) -> tuple[str, ...]:
    """Repeated parameters (AND) on one single-valued column: the values in every group;
    an impossible combination matches nothing."""
    if not groups:
        return ()
    common = set(groups[0])
    for group in groups[1:]:
        common &= set(group)
    return tuple(sorted(common)) if common else ("\x00none",)


def _sort(raw: str) -> bool:
    if raw in ("date", "_lastUpdated"):
        return True
    if raw in ("-date", "-_lastUpdated"):
        return False
    raise BadValue("AuditEvent sorts by date (oldest first) or -date (newest first, the default)")


def _dates(values: list[str]) -> list[tuple[str, str]]:
    if len(values) != 1:
        raise BadValue("give one date per parameter; repeat the parameter for a range")
    value = date(values[0])
    ops = _DATE_OPS.get(value.prefix)
    if ops is None:
        raise BadValue(f"the prefix '{value.prefix}' is not supported for AuditEvent dates")
    bounds = {"lo": f"{value.lo}Z", "hi": f"{value.hi}Z"}
    return [(op, bounds[side]) for op, side in ops]


def _patients(values: list[str], modifier: str,
              patients_with_nhs: Callable[[str], list[str]]) -> tuple[str, ...]:
    keys: list[str] = []
    for v in values:
        if modifier == "identifier":
            ident = token(v)
            if ident.system not in (None, NHS_NUMBER) or not ident.code:
                raise BadValue(f"patients are identified by NHS number ({NHS_NUMBER}|number)")
            keys += _nhs_keys(ident.code, patients_with_nhs)
            continue
        ref = reference(v, "Patient", ("Patient",))
        if ref.ref_id is None:
            raise BadValue("a patient is Patient/[id], [id] or an NHS number")
        keys.append(f"patient:Patient/{ref.ref_id}")
        if is_nhs_number(ref.ref_id):
            keys += _nhs_keys(ref.ref_id, patients_with_nhs)
    return tuple(dict.fromkeys(keys))


def _nhs_keys(number: str, patients_with_nhs: Callable[[str], list[str]]) -> list[str]:
    return [f"nhs:{number}", *(f"patient:{ref}" for ref in patients_with_nhs(number))]


def _entity(value: str) -> str:
    ref = reference(value, None, ())
    if ref.ref_type is None or ref.ref_id is None:
        raise BadValue("an entity is [type]/[id]")
    return f"entity:{ref.ref_type}/{ref.ref_id}"


def _token_field(name: str, values: list[str]) -> tuple[str, tuple[str, ...]]:
    codes = []
    for v in values:
        t = token(v)
        if t.code is None:
            raise BadValue("give a code")
        if name == "subtype" and t.system not in (None, RESTFUL):
            raise BadValue(f"interactions are codes of {RESTFUL}")
        codes.append(t.code)
    if name == "_id":
        return "ids", tuple(codes)
    if name == "subtype":
        return "interactions", tuple(_SUBTYPES.get(c, c) for c in codes)
    if name == "action":
        wanted = {c.upper() for c in codes}
        return "interactions", tuple(i for i, a in ACTIONS.items() if a in wanted) or ("-",)
    column = {"request-id": "request_ids", "correlation-id": "correlation_ids",
              "client": "clients", "user": "users", "altid": "users", "outcome": "outcomes"}
    return column[name], tuple(codes)


def patients_with_nhs(reader: Reader, number: str) -> list[str]:
    """References of the Patients holding NHS number ``number`` (at most 100)."""
    query = SearchQuery(("Patient",), predicates=(Predicate(
        "identifier", "token", None, (TokenValue(NHS_NUMBER, number),)),), count=100)
    return [f"Patient/{v.id}" for v in reader.search(query).matches]


def is_nhs_number(text: str) -> bool:
    """Ten digits whose last is the Modulus 11 check digit of the other nine."""
    if len(text) != 10 or not text.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(text[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(text[9])


__all__ = ["PARAMS", "Parsed", "is_nhs_number", "parse", "patients_with_nhs"]
