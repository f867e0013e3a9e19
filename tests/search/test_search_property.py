"""The same search gives the same results on SQLite, on PostgreSQL and in plain Python.

Spec: https://hl7.org/fhir/R4/search.html — parameter types and prefixes (#ptypes,
#prefix), modifiers (#modifiers), chaining and reverse chaining (#chaining, #has), sorting
(#sort), paging (#count) and totals (#total).

Hypothesis draws a small dataset (Patients, Practitioners, Observations, RiskAssessments,
some rewritten, some deleted) and search query strings over it; :func:`parse_search` turns
them into the query tree, and the matches, their order, the pages and the total of each
store are compared with :class:`tests.search.evaluator.Evaluator`, an independent reading
of the spec. Both stores hold the same data within one example, so a difference between
them shows directly.

Examples: by default a fixed (derandomised) set, the same on every run and in CI, small
enough to finish in well under 30 s. ``FHIRHUB_HYPOTHESIS_EXAMPLES=2000`` runs that many
random examples instead, to hunt for bugs (a failure prints the blob that reproduces it).
"""

from __future__ import annotations

import calendar
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fhirhub.config import Settings
from fhirhub.fhir import json as fjson
from fhirhub.search._values import date_range
from fhirhub.search.parse import parse_search
from fhirhub.search.types import IndexRows, SearchQuery
from fhirhub.store import Store, StoredVersion, open_store
from fhirhub.store.schema import INDEX_TABLES
from tests.search.evaluator import Evaluator, Key, Resource

_EXPLORE = os.environ.get("FHIRHUB_HYPOTHESIS_EXAMPLES")


def _settings(default_examples: int) -> settings:
    return settings(
        max_examples=int(_EXPLORE) if _EXPLORE else default_examples,
        deadline=None,
        derandomize=not _EXPLORE,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


UCUM = "http://unitsofmeasure.org"
Json = dict[str, Any]

# -- stores -----------------------------------------------------------------------------------

_DATA_TABLES = ("resources", "history", *INDEX_TABLES)


class Stores:
    """An SQLite and a PostgreSQL store, emptied before each example.

    Emptying deletes the rows of every data table through a side connection of each
    database: a few milliseconds, where a new database would cost a hundred.
    """

    def __init__(self, sqlite_path: str, pg_url: str) -> None:
        self.sqlite = open_store(Settings(database_url=f"sqlite:///{sqlite_path}"))
        self.postgresql = open_store(Settings(database_url=pg_url, pg_pool_size=2))
        self._lite = sqlite3.connect(sqlite_path, isolation_level=None)
        self._lite.execute("PRAGMA synchronous=OFF")  # test data: no need to reach the disk
        self._pg = psycopg.connect(pg_url, autocommit=True)

    def both(self) -> list[tuple[str, Store]]:
        return [("sqlite", self.sqlite), ("postgresql", self.postgresql)]

    def clear(self) -> None:
        deletes = "; ".join(f"DELETE FROM {t}" for t in _DATA_TABLES)
        self._pg.execute(deletes.encode())  # fixed table names: no parameters to bind
        self._lite.executescript(f"BEGIN; {deletes}; COMMIT")

    def write(self, versions: list[tuple[StoredVersion, IndexRows | None]]) -> None:
        for _name, store in self.both():
            with store.transaction() as tx:
                for v, rows in versions:
                    tx.write(v, rows)

    def close(self) -> None:
        self._lite.close()
        self._pg.close()
        self.sqlite.close()
        self.postgresql.close()


@pytest.fixture(scope="module")
def stores(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    path = str(tmp_path_factory.mktemp("property") / "search.sqlite3")
    both = Stores(path, pg_database)
    try:
        yield both
    finally:
        both.close()


# -- datasets ---------------------------------------------------------------------------------

# Mixed case, accents, a letter that folds to two (ß), and the characters that need escaping
# in a search value (, | \) or in SQL LIKE (_ %).
NAME_CHARS = "aAbBeéÉëzZß _%,|\\"
SYSTEMS = ("urn:oid:1.2.3", "https://fhir.nhs.uk/Id/nhs-number")
IDENTIFIER_VALUES = ("1", "12", "A-1", "a,b", "x|y")
CODES = (("http://loinc.org", "1234-5"), ("http://loinc.org", "8480-6"),
         ("http://snomed.info/sct", "8480-6"), (None, "8480-6"), (None, "x|y"))
DISPLAYS = ("Blood pressure", "Body Wéight", "heart rate")
UNITS = (("kg", "kg"), ("g", "gram"), ("mm[Hg]", "mmHg"), ("/min", "per minute"))
INSTANTS = ("2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.000001Z",
            "2026-01-02T10:30:00.000000Z", "2026-02-01T00:00:00.000000Z")
ZONES = ("Z", "+00:00", "+01:00", "-05:00", "+14:00", "-12:00")

# Names that are prefixes of each other, or equal but for case and accents.
NAMES = ("Zoë", "zoe", "ZOE", "Zoey", "Åsa", "asa", "Straße", "STRASSE", "O'Brien", "de la Cruz",
         "Ann", "Anna", "anne", "a,b", "x|y", "50%_off", "back\\slash", "ǅemal")
words = st.one_of(st.sampled_from(NAMES), st.sampled_from(NAMES),
                  st.text(NAME_CHARS, min_size=1, max_size=4))


@st.composite
def decimals(draw: st.DrawFn, low: int = -2000, high: int = 2000) -> Decimal:
    """Decimals of various precision: 12, 1.2, -0.012, 1.20, 1.2E+2."""
    mantissa = draw(st.integers(low, high))
    return Decimal(mantissa).scaleb(draw(st.integers(-3, 1)))


@st.composite
def dates(draw: st.DrawFn) -> str:
    """A FHIR date: year, year-month or full date."""
    year = draw(st.integers(1999, 2001))
    precision = draw(st.integers(0, 2))
    if precision == 0:
        return f"{year}"
    month = draw(st.sampled_from([1, 2, 6, 12]))
    if precision == 1:
        return f"{year}-{month:02d}"
    day = draw(st.sampled_from([1, 15, calendar.monthrange(year, month)[1]]))
    return f"{year}-{month:02d}-{day:02d}"


@st.composite
def date_times(draw: st.DrawFn) -> str:
    """A FHIR dateTime at any precision, with a time zone when it has a time."""
    day = draw(dates())
    if len(day) < 10 or draw(st.booleans()):
        return day
    hour, minute, second = (draw(st.sampled_from(v)) for v in ((0, 12, 23), (0, 59), (0, 59)))
    fraction = draw(st.sampled_from(["", ".5", ".123456", ".1234567"]))
    return f"{day}T{hour:02d}:{minute:02d}:{second:02d}{fraction}{draw(st.sampled_from(ZONES))}"


@st.composite
def human_names(draw: st.DrawFn) -> Json:
    name: Json = {}
    if draw(st.booleans()):
        name["family"] = draw(words)
    given = draw(st.lists(words, max_size=2))
    if given or not name:
        name["given"] = given or [draw(words)]
    return name


def _start(date_time: str) -> str:
    span = date_range(date_time)
    assert span is not None
    return span[0]


def _some(body: Json, key: str, value: Any) -> None:
    if value is not None and value != []:
        body[key] = value


@st.composite
def patients(draw: st.DrawFn, rid: str, practitioners: list[str]) -> Json:
    body: Json = {"resourceType": "Patient", "id": rid}
    _some(body, "name", draw(st.lists(human_names(), max_size=2)))
    _some(body, "birthDate", draw(st.none() | dates()))
    _some(body, "gender", draw(st.none() | st.sampled_from(["male", "female", "unknown"])))
    _some(body, "identifier", [
        {"system": draw(st.sampled_from(SYSTEMS)), "value": draw(st.sampled_from(IDENTIFIER_VALUES))}
        for _ in range(draw(st.integers(0, 2)))])
    _some(body, "active", draw(st.none() | st.booleans()))
    if draw(st.booleans()) and practitioners:
        body["generalPractitioner"] = [{"reference": f"Practitioner/{draw(st.sampled_from(practitioners))}"}]
    return body


@st.composite
def practitioners(draw: st.DrawFn, rid: str) -> Json:
    body: Json = {"resourceType": "Practitioner", "id": rid}
    _some(body, "name", draw(st.lists(human_names(), max_size=2)))
    return body


@st.composite
def quantities(draw: st.DrawFn) -> Json:
    code, display = draw(st.sampled_from(UNITS))
    value: Json = {"value": draw(decimals())}
    shape = draw(st.integers(0, 3))
    if shape in (0, 1):
        value.update(system=UCUM, code=code)
    if shape in (1, 2):
        value["unit"] = display
    if shape == 3:
        value["unit"] = code  # only a unit as written: found by number||code
    return value


@st.composite
def observations(draw: st.DrawFn, rid: str, patients_: list[str]) -> Json:
    body: Json = {"resourceType": "Observation", "id": rid,
                  "status": draw(st.sampled_from(["final", "amended", "preliminary"]))}
    codings = []
    for system, code in draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=2, unique=True)):
        coding = {"code": code} if system is None else {"system": system, "code": code}
        if draw(st.booleans()):
            coding["display"] = draw(st.sampled_from(DISPLAYS))
        codings.append(coding)
    body["code"] = {"coding": codings}
    if draw(st.integers(0, 4)) and patients_:
        body["subject"] = {"reference": f"Patient/{draw(st.sampled_from(patients_))}"}
    if draw(st.integers(0, 3)):
        body["valueQuantity"] = draw(quantities())
    effective = draw(st.integers(0, 2))
    if effective == 1:
        body["effectiveDateTime"] = draw(date_times())
    elif effective == 2:
        ends = sorted(draw(st.lists(date_times(), min_size=1, max_size=2)), key=_start)
        period = {"start": ends[0], "end": ends[-1]}
        if len(ends) == 1:
            del period[draw(st.sampled_from(["start", "end"]))]
        body["effectivePeriod"] = period
    return body


@st.composite
def risk_assessments(draw: st.DrawFn, rid: str, patients_: list[str]) -> Json:
    body: Json = {"resourceType": "RiskAssessment", "id": rid, "status": "final",
                  "subject": {"reference": f"Patient/{draw(st.sampled_from(patients_ or ['none']))}"}}
    predictions: list[Json] = []
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.integers(0, 3)):
            predictions.append({"probabilityDecimal": draw(decimals(0, 100))})
        else:
            low, high = sorted([draw(decimals(0, 100)), draw(decimals(0, 100))])
            predictions.append({"probabilityRange": {"low": {"value": low}, "high": {"value": high}}})
    _some(body, "prediction", predictions)
    return body


class Dataset:
    """Resources as stored (the evaluator's view) and the writes that store them."""

    def __init__(self) -> None:
        self.resources: list[Resource] = []
        self.writes: list[tuple[StoredVersion, IndexRows | None]] = []
        self.versions: dict[Key, int] = {}

    def put(self, body: Json, at: str) -> None:
        key = (body["resourceType"], body["id"])
        self.versions[key] = self.versions.get(key, 0) + 1
        # Through FHIR JSON, as the engine stores it: decimals keep their digits.
        body = fjson.loads(fjson.dumps(body))
        resource = Resource.of(body, at)
        self.writes.append((StoredVersion(key[0], key[1], self.versions[key], at, False,
                                          fjson.dumps(body), "PUT"), resource.rows))
        self._current(resource)

    def delete(self, key: Key, at: str) -> None:
        self.versions[key] = self.versions.get(key, 0) + 1
        self.writes.append((StoredVersion(key[0], key[1], self.versions[key], at, True, None,
                                          "DELETE"), None))
        self._current(Resource.deleted(key[0], key[1], at))

    def _current(self, resource: Resource) -> None:
        self.resources = [r for r in self.resources if r.key != resource.key] + [resource]

    def ids(self, *resource_types: str) -> list[str]:
        """The ids of ``resource_types`` (of every type when none is given)."""
        return [r.id for r in self.resources if not resource_types or r.type in resource_types]

    def bodies(self) -> list[Json]:
        return [r.body for r in self.resources if r.body is not None]

    def dates(self) -> list[str]:
        """Every date and dateTime in the data, as written."""
        found = [b.get("birthDate") or b.get("effectiveDateTime") for b in self.bodies()]
        for b in self.bodies():
            found.extend(b.get("effectivePeriod", {}).values())
        return sorted({d for d in found if d})

    def numbers(self) -> list[Decimal]:
        """Every quantity value and probability in the data."""
        found = [b["valueQuantity"]["value"] for b in self.bodies() if "valueQuantity" in b]
        for b in self.bodies():
            for p in b.get("prediction", []):
                found.extend([p.get("probabilityDecimal"),
                              *(e["value"] for e in p.get("probabilityRange", {}).values())])
        return sorted({Decimal(str(n)) for n in found if n is not None})

    def words(self) -> list[str]:
        """Every name part in the data, as written."""
        found = []
        for r in self.resources:
            for name in (r.body or {}).get("name", []):
                found.extend([name.get("family", ""), *name.get("given", [])])
        return [w for w in found if w]

    def __repr__(self) -> str:
        lines = [f"  {v.version_id} {v.last_updated} {v.resource_type}/{v.id}: "
                 f"{v.body.decode() if v.body else 'deleted'}" for v, _rows in self.writes]
        return "Dataset(\n" + "\n".join(lines) + "\n)"


_PREFIXES = {"Practitioner": "d", "Patient": "p", "Observation": "o", "RiskAssessment": "r"}


@st.composite
def resource_of(draw: st.DrawFn, rtype: str, rid: str, dataset: Dataset) -> Json:
    if rtype == "Practitioner":
        return draw(practitioners(rid))
    if rtype == "Patient":
        return draw(patients(rid, dataset.ids("Practitioner")))
    maker = observations if rtype == "Observation" else risk_assessments
    return draw(maker(rid, dataset.ids("Patient")))


@st.composite
def datasets(draw: st.DrawFn) -> Dataset:
    """A few resources of each type (some rewritten first, some deleted at the end)."""
    data = Dataset()
    sizes = {"Practitioner": draw(st.integers(0, 3)), "Patient": draw(st.integers(1, 5)),
             "Observation": draw(st.integers(0, 6)), "RiskAssessment": draw(st.integers(0, 3))}
    for rtype, size in sizes.items():
        for i in range(size):
            rid = f"{_PREFIXES[rtype]}{i}"
            if draw(st.integers(0, 5)) == 0:  # an earlier version, whose index must go
                data.put(draw(resource_of(rtype, rid, data)), INSTANTS[0])
            data.put(draw(resource_of(rtype, rid, data)), draw(st.sampled_from(INSTANTS)))
    for r in list(data.resources):
        if draw(st.integers(0, 7)) == 0:
            data.delete(r.key, INSTANTS[-1])
    return data


# -- queries ------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """A value as written in a search parameter (search.html#escaping)."""
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")


def _cases(text: str) -> st.SearchStrategy[str]:
    return st.sampled_from([text, text.upper(), text.lower(), text.swapcase()])


def _case(draw: st.DrawFn, text: str) -> str:
    return draw(_cases(text))


@st.composite
def string_values(draw: st.DrawFn, dataset: Dataset, modifier: str | None) -> str:
    known = dataset.words() if draw(st.integers(0, 3)) else list(NAMES)
    if draw(st.integers(0, 5)) and known:
        word = draw(st.sampled_from(known))
        if modifier == "exact":
            text = word if draw(st.integers(0, 2)) else _case(draw, word)
        else:
            start = 0 if modifier != "contains" else draw(st.integers(0, len(word) - 1))
            text = _case(draw, word[start:draw(st.integers(start + 1, len(word)))])
    else:
        text = draw(words)
    return escape(text)


@st.composite
def token_values(draw: st.DrawFn, pairs: tuple[tuple[str | None, str], ...]) -> str:
    system, code = draw(st.sampled_from(pairs))
    form = draw(st.integers(0, 3))
    if form == 0 or (system is None and form != 2):
        return escape(code)
    if form == 1:
        return f"{escape(system or '')}|{escape(code)}"
    if form == 2:
        return f"|{escape(code)}"
    return f"{escape(system or 'urn:none')}|"


PREFIXES = ("", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@st.composite
def date_values(draw: st.DrawFn, dataset: Dataset) -> str:
    """A prefixed date: often one in the data, perhaps cut to a coarser precision."""
    known = dataset.dates()
    if draw(st.booleans()) and known:
        value = draw(st.sampled_from(known))
        value = value[: draw(st.sampled_from([4, 7, 10, 16, len(value)]))]
    else:
        value = draw(date_times())
    if len(value) == 16:  # to the minute, with a zone
        value += draw(st.sampled_from(ZONES))
    return draw(st.sampled_from(PREFIXES)) + value


@st.composite
def last_updated_values(draw: st.DrawFn) -> str:
    """A prefixed instant near the lastUpdated of the data, at any precision."""
    instant = draw(st.sampled_from(INSTANTS))[:-1]
    value = instant[: draw(st.sampled_from([4, 7, 10, 16, 19, 26]))]
    if len(value) > 10:
        value += draw(st.sampled_from(["Z", "+01:00", "-05:00"]))
    return draw(st.sampled_from(PREFIXES)) + value


@st.composite
def number_texts(draw: st.DrawFn, dataset: Dataset, low: int = -2000, high: int = 2000) -> str:
    """A prefixed number: often one in the data, as written, at another precision or next
    to it."""
    known = dataset.numbers()
    if draw(st.booleans()) and known:
        number = draw(st.sampled_from(known))
        change = draw(st.sampled_from(["as is", "precision", "neighbour"]))
        if change == "precision":
            number = number.quantize(Decimal(1).scaleb(draw(st.integers(-4, 1))))
        elif change == "neighbour":  # one unit of the last place away: the ranges touch
            number += draw(st.sampled_from([-1, 1])) * Decimal(1).scaleb(
                int(number.as_tuple().exponent))
    else:
        number = draw(decimals(low, high))
    text = str(number) if draw(st.integers(0, 3)) else f"{number:e}"
    return draw(st.sampled_from(PREFIXES)) + text


@st.composite
def quantity_values(draw: st.DrawFn, dataset: Dataset) -> str:
    unit = draw(st.sampled_from([
        "", f"|{UCUM}|kg", f"|{UCUM}|g", f"|{UCUM}|mm[Hg]", f"|{UCUM}|/min", "||kg", "||gram",
        "||/min", "|http://example.org/units|kg"]))
    return draw(number_texts(dataset)) + unit


def _or(draw: st.DrawFn, values: st.SearchStrategy[str]) -> str:
    return ",".join(draw(st.lists(values, min_size=1, max_size=2)))


@st.composite
def criteria(draw: st.DrawFn, rtype: str, dataset: Dataset, depth: int = 0) -> tuple[str, str]:
    """One search parameter for ``rtype`` as (name, value), chains and _has included."""
    kinds = list(_CRITERIA[rtype])
    links = _LINKS.get(rtype, {})
    if depth < 2:
        kinds += list(links)
    code = draw(st.sampled_from(kinds))
    if code in links:
        name_prefix, target = links[code]
        inner_name, inner_value = draw(criteria(target, dataset, depth + 1))
        return name_prefix + inner_name, inner_value
    kind = _CRITERIA[rtype][code]
    if kind == "id":
        ids = [*dataset.ids(*types_of(rtype)), "nope"]
        modifier = draw(st.sampled_from(["", "", ":not", ":missing"]))
        if modifier == ":missing":
            return "_id:missing", draw(st.sampled_from(["true", "false"]))
        return f"_id{modifier}", _or(draw, st.sampled_from(ids))
    modifier = draw(st.sampled_from(_MODIFIERS[kind]))
    if modifier == ":missing":
        return f"{code}:missing", draw(st.sampled_from(["true", "false"]))
    if kind == "string":
        return code + modifier, _or(draw, string_values(dataset, modifier[1:] or None))
    if kind == "token" or kind.startswith("token-"):
        if modifier == ":text":
            texts = st.sampled_from([d[:n] for d in DISPLAYS for n in (1, 4, len(d))])
            return f"{code}:text", _or(draw, texts.flatmap(_cases).map(escape))
        return code + modifier, _or(draw, token_values(_TOKENS[kind]))
    if kind == "date" and code == "_lastUpdated":
        return code, _or(draw, last_updated_values())
    if kind == "date":
        return code, _or(draw, date_values(dataset))
    if kind == "quantity":
        return code, _or(draw, quantity_values(dataset))
    if kind == "number":
        return code, _or(draw, number_texts(dataset, 0, 100))
    # references
    target = _TARGETS[kind]
    ids = [*dataset.ids(target), "nope"]
    form = draw(st.integers(0, 2))
    if form == 0:
        return code, _or(draw, st.sampled_from(ids).map(lambda i: f"{target}/{i}"))
    if form == 1:
        return code, _or(draw, st.sampled_from(ids))
    return f"{code}:{target}", _or(draw, st.sampled_from(ids))


_MODIFIERS = {
    "string": ["", "", ":exact", ":contains", ":missing"],
    "token": ["", "", ":not", ":text", ":missing"],
    "token-code": ["", "", ":not", ":missing"],
    "token-bool": ["", ":not", ":missing"],
    "token-identifier": ["", "", ":not", ":missing"],
    "date": ["", "", "", ":missing"],
    "quantity": ["", "", "", ":missing"],
    "number": ["", "", "", ":missing"],
    "ref-patient": ["", "", ":missing"],
    "ref-practitioner": ["", "", ":missing"],
}
_TARGETS = {"ref-patient": "Patient", "ref-practitioner": "Practitioner"}
_TOKENS: dict[str, tuple[tuple[str | None, str], ...]] = {
    "token": CODES,
    "token-code": ((None, "male"), (None, "female"), (None, "unknown"), (None, "final"),
                   (None, "amended"), (None, "preliminary")),
    "token-bool": ((None, "true"), (None, "false")),
    "token-identifier": tuple((s, v) for s in SYSTEMS for v in IDENTIFIER_VALUES),
}
_CRITERIA: dict[str, dict[str, str]] = {
    "Patient": {"family": "string", "given": "string", "name": "string", "birthdate": "date",
                "gender": "token-code", "identifier": "token-identifier",
                "active": "token-bool", "general-practitioner": "ref-practitioner",
                "_id": "id", "_lastUpdated": "date"},
    "Practitioner": {"name": "string", "family": "string", "_id": "id"},
    "Observation": {"code": "token", "status": "token-code", "subject": "ref-patient",
                    "patient": "ref-patient", "value-quantity": "quantity", "date": "date",
                    "_id": "id", "_lastUpdated": "date"},
    "RiskAssessment": {"probability": "number", "subject": "ref-patient", "_id": "id"},
    # Searches of two types, and of every type (system level).
    "Patient,Practitioner": {"family": "string", "given": "string", "name": "string",
                             "_id": "id", "_lastUpdated": "date"},
    "": {"_id": "id", "_lastUpdated": "date"},
}
# Chains (name prefix, the type the rest applies to) and reverse chains.
_LINKS: dict[str, dict[str, tuple[str, str]]] = {
    "Patient": {
        "gp.": ("general-practitioner.", "Practitioner"),
        "gp:": ("general-practitioner:Practitioner.", "Practitioner"),
        "has-obs-subject": ("_has:Observation:subject:", "Observation"),
        "has-obs-patient": ("_has:Observation:patient:", "Observation"),
        "has-risk": ("_has:RiskAssessment:subject:", "RiskAssessment"),
    },
    "Practitioner": {"has-patient": ("_has:Patient:general-practitioner:", "Patient")},
    "Observation": {
        "subject:": ("subject:Patient.", "Patient"),
        "subject.": ("subject.", "Patient"),
        "patient.": ("patient.", "Patient"),
    },
    "RiskAssessment": {"subject.": ("subject.", "Patient")},
}
_SORTS = {
    "Patient": ["family", "given", "name", "birthdate", "gender", "identifier", "active",
                "general-practitioner", "_id", "_lastUpdated"],
    "Practitioner": ["name", "family", "_id", "_lastUpdated"],
    "Observation": ["code", "status", "subject", "value-quantity", "date", "_id", "_lastUpdated"],
    "RiskAssessment": ["probability", "subject", "_lastUpdated"],
    "Patient,Practitioner": ["family", "given", "name", "_id", "_lastUpdated"],
    "": ["_id", "_lastUpdated"],
}


_ANY_INCLUDES = [("_include", "*"), ("_revinclude", "*"), ("_include:iterate", "*"),
                 ("_revinclude:iterate", "*")]
_INCLUDES: dict[str, list[tuple[str, str]]] = {
    "Patient": [("_include", "Patient:general-practitioner"),
                ("_include", "Patient:general-practitioner:Practitioner"),
                ("_include", "Patient:general-practitioner:Organization"),
                ("_revinclude", "Observation:subject"), ("_revinclude", "Observation:patient"),
                ("_revinclude", "Observation:subject:Patient"),
                ("_revinclude", "Observation:subject:Group"),
                ("_revinclude", "RiskAssessment:subject"), ("_revinclude", "Observation:*"),
                ("_include:iterate", "Observation:subject"), *_ANY_INCLUDES],
    "Observation": [("_include", "Observation:subject"), ("_include", "Observation:patient"),
                    ("_include", "Observation:subject:Patient"),
                    ("_include", "Observation:subject:Group"),
                    ("_include:iterate", "Patient:general-practitioner"),
                    ("_revinclude:iterate", "RiskAssessment:subject"), *_ANY_INCLUDES],
    "Practitioner": [("_revinclude", "Patient:general-practitioner"),
                     ("_revinclude:iterate", "Observation:subject"),
                     ("_revinclude:iterate", "RiskAssessment:subject"), *_ANY_INCLUDES],
    "RiskAssessment": [("_include", "RiskAssessment:subject"),
                       ("_include:iterate", "Patient:general-practitioner"),
                       ("_revinclude:iterate", "Observation:subject"), *_ANY_INCLUDES],
}


@dataclass(frozen=True)
class Search:
    """A search as a client writes it: ``[compartment/]type?params``."""

    rtype: str  # one type, "A,B" for several, "" for every type
    params: list[tuple[str, str]]
    compartment: tuple[str, str] | None = None  # ("Patient", "p1"): Patient/p1/[rtype]

    def query(self) -> SearchQuery:
        query = parse(self.rtype, self.params)
        return replace(query, compartment=self.compartment) if self.compartment else query

    def __str__(self) -> str:
        where = f"{'/'.join(self.compartment)}/" if self.compartment else ""
        return f"{where}{self.rtype or '*'}?{'&'.join(f'{n}={v}' for n, v in self.params)}"


# Compartments (compartmentdefinition.html) searched within, by the types searched.
_COMPARTMENTS = {"Patient": ["Patient", "Practitioner"], "Observation": ["Patient", "Practitioner"],
                 "RiskAssessment": ["Patient", "Practitioner"],
                 "Practitioner": ["Patient", "Practitioner"], "": ["Patient", "Practitioner"]}


@st.composite
def searches(draw: st.DrawFn, dataset: Dataset, *, sorted_: bool = False) -> Search:
    """A search over the dataset: its type, its query string and perhaps a compartment."""
    rtype = draw(st.sampled_from(list(_CRITERIA)))
    how_many = draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3]))
    params = [draw(criteria(rtype, dataset)) for _ in range(how_many)]
    if sorted_ or draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from(_SORTS[rtype]), min_size=1, max_size=3, unique=True))
        params.append(("_sort", ",".join(draw(st.sampled_from(["", "-"])) + k for k in keys)))
    if draw(st.integers(0, 3)):
        params.append(("_count", str(draw(st.integers(1, 4)))))
    if draw(st.booleans()):
        params.append(("_total", "accurate"))
    if draw(st.integers(0, 2)) == 0:
        params.extend(draw(st.lists(st.sampled_from(_INCLUDES.get(rtype, _ANY_INCLUDES)),
                                    min_size=1, max_size=2, unique=True)))
    compartment = None
    if rtype in _COMPARTMENTS and draw(st.integers(0, 4)) == 0:
        owner = draw(st.sampled_from(_COMPARTMENTS[rtype]))
        compartment = (owner, draw(st.sampled_from([*dataset.ids(owner), "nope"])))
    return Search(rtype, params, compartment)


def types_of(rtype: str) -> tuple[str, ...]:
    """``"Patient,Practitioner"`` → both; ``""`` → none (a search of every type)."""
    return tuple(rtype.split(",")) if rtype else ()


def parse(rtype: str, params: list[tuple[str, str]]) -> SearchQuery:
    query, issues = parse_search(types_of(rtype), params, strict=True, default_count=5,
                                 max_count=50)
    assert issues == [], (params, issues)
    return query


# -- running ------------------------------------------------------------------------------------


@dataclass
class Pages:
    keys: list[Key]
    totals: list[int | None]
    sizes: list[int]
    included: list[list[Key]]  # what each page included
    previous: str | None = None  # the last page's cursor to the page before it


def read_all(store: Store, query: SearchQuery, limit: int = 100) -> Pages:
    """Every page of ``query``, following the cursors."""
    out = Pages([], [], [], [])
    cursor = None
    for _ in range(limit):
        page = store.search(replace(query, cursor=cursor))
        out.keys.extend((m.resource_type, m.id) for m in page.matches)
        out.totals.append(page.total)
        out.sizes.append(len(page.matches))
        out.included.append([(v.resource_type, v.id) for v in page.included])
        if page.next_cursor is None:
            out.previous = page.previous_cursor
            return out
        cursor = page.next_cursor
    raise AssertionError("paging did not end")


def read_back(store: Store, query: SearchQuery, cursor: str | None) -> list[list[Key]]:
    """The pages before the last, following the ``previous`` cursors back to the first."""
    out: list[list[Key]] = []
    while cursor is not None and len(out) < 100:
        page = store.search(replace(query, cursor=cursor))
        out.insert(0, [(m.resource_type, m.id) for m in page.matches])
        cursor = page.previous_cursor
    return out


def check_search(stores: Stores, evaluator: Evaluator, search: Search) -> None:
    query = search.query()
    expected = evaluator.search(query)
    got = {name: read_all(store, query) for name, store in stores.both()}
    where = str(search)
    types = types_of(search.rtype)
    of_type = sum(1 for key in evaluator.live if key[0] in (types or (key[0],)))
    event("matches", "none" if not expected.keys else "some" if len(
        expected.keys) < of_type else "all")
    event("pages", min(len(got["sqlite"].sizes), 3))
    assert got["sqlite"].keys == got["postgresql"].keys, f"SQLite and PostgreSQL differ: {where}"
    for name, pages in got.items():
        assert pages.keys == expected.keys, f"{name} differs from the evaluator: {where}"
        # Full pages but the last, which is the only one without a next cursor.
        assert all(size == query.count for size in pages.sizes[:-1]), (name, where, pages.sizes)
        assert pages.sizes[-1] <= query.count, (name, where, pages.sizes)
        if query.total == "accurate":
            assert set(pages.totals) == {expected.total}, (name, where, pages.totals)
        store = stores.sqlite if name == "sqlite" else stores.postgresql
        forward = [pages.keys[i:i + query.count] for i in range(0, len(pages.keys), query.count)]
        assert read_back(store, query, pages.previous) == forward[:-1], (
            f"{name}: the previous pages are not the pages read forward: {where}")
        start = 0
        for size, included in zip(pages.sizes, pages.included, strict=True):
            page = pages.keys[start:start + size]
            start += size
            assert len(set(included)) == len(included), (name, where, included)
            assert sorted(included) == sorted(evaluator.included(query, page)), (
                f"{name} includes other resources than the evaluator: {where}, page {page}")


@pytest.mark.postgres
@_settings(default_examples=100)
@given(dataset=datasets(), data=st.data())
def test_stores_and_evaluator_return_the_same_matches_order_pages_and_total(
    stores: Stores, dataset: Dataset, data: st.DataObject,
) -> None:
    stores.clear()
    stores.write(dataset.writes)
    evaluator = Evaluator(dataset.resources)
    for _ in range(12):
        check_search(stores, evaluator, data.draw(searches(dataset), label="search"))


@st.composite
def late_writes(draw: st.DrawFn, dataset: Dataset, rtype: str) -> list[tuple[str, Json | Key]]:
    """Writes to make between pages: new resources, rewrites and deletions."""
    out: list[tuple[str, Json | Key]] = []
    for n in range(draw(st.integers(1, 4))):
        one_type = draw(st.sampled_from(types_of(rtype) or tuple(_PREFIXES)))
        action = draw(st.sampled_from(["create", "update", "delete"]))
        existing = dataset.ids(one_type)
        if action == "create" or not existing:
            out.append(("put", draw(resource_of(one_type, f"new{n}", dataset))))
        elif action == "update":
            rid = draw(st.sampled_from(existing))
            out.append(("put", draw(resource_of(one_type, rid, dataset))))
        else:
            out.append(("delete", (one_type, draw(st.sampled_from(existing)))))
    return out


@pytest.mark.postgres
@_settings(default_examples=40)
@given(dataset=datasets(), data=st.data())
def test_keyset_pages_stay_stable_while_resources_are_written_between_them(
    stores: Stores, dataset: Dataset, data: st.DataObject,
) -> None:
    """Each page is the matches, as they are now, strictly after the last row of the page
    before (as it was then): no duplicates, no gaps (search.html#count: stable paging)."""
    stores.clear()
    stores.write(dataset.writes)
    search = data.draw(searches(dataset, sorted_=True), label="search")
    writes = data.draw(late_writes(dataset, search.rtype), label="writes between pages")
    search = replace(search, params=[p for p in search.params if p[0] != "_count"]
                     + [("_count", "2")])
    query, where = search.query(), str(search)
    cursors: dict[str, str | None] = {"sqlite": None, "postgresql": None}
    position = None
    for step in range(50):
        evaluator = Evaluator(dataset.resources)
        expected = evaluator.page_after(query, position)
        for name, store in stores.both():
            page = store.search(replace(query, cursor=cursors[name]))
            assert [(m.resource_type, m.id) for m in page.matches] == expected, (
                f"{name}, page {step + 1}: {where}")
            cursors[name] = page.next_cursor
        if cursors["sqlite"] is None or not expected:
            assert cursors["postgresql"] is None
            return
        position = evaluator.position(query, expected[-1])
        if writes:
            kind, what = writes.pop(0)
            at = INSTANTS[-1]
            if kind == "put":
                assert isinstance(what, dict)
                dataset.writes = []
                dataset.put(what, at)
            else:
                assert isinstance(what, tuple)
                dataset.writes = []
                dataset.delete(what, at)
            stores.write(dataset.writes)
    raise AssertionError("paging did not end")


def test_evaluator_reads_ranges_as_search_html_says() -> None:
    """The oracle's own prefix semantics on the examples of search.html#prefix."""
    from tests.search.evaluator import closed_range_holds, half_open_range_holds

    year = ("2013-01-01T00:00:00.000000", "2013-12-31T23:59:59.999999")
    march = ("2013-03-01T00:00:00.000000", "2013-03-31T23:59:59.999999")
    assert closed_range_holds("eq", *year, *march)
    assert not closed_range_holds("eq", *march, *year)
    assert closed_range_holds("ge", *march, *year)  # the year reaches beyond March
    assert not closed_range_holds("sa", *march, *year)
    # 100 is [99.5, 100.5): 101 starts after it, 99 ends before it, 100.5 does not fit eq.
    assert half_open_range_holds("sa", 99.5, 100.5, 100.5, 101.5)
    assert half_open_range_holds("eb", 99.5, 100.5, 98.5, 99.5)
    assert not half_open_range_holds("eq", 99.5, 100.5, 100.45, 100.55)
    assert half_open_range_holds("gt", 99.5, 100.5, 100.45, 100.55)


def test_evaluator_sorts_missing_values_last_and_breaks_ties_by_id() -> None:
    """The oracle's own sort (search.html#sort) on a hand-made example."""
    data = Dataset()
    for rid, family in [("a", "Zoë"), ("b", None), ("c", "anne"), ("d", "ZOE")]:
        body: Json = {"resourceType": "Patient", "id": rid}
        if family:
            body["name"] = [{"family": family}]
        data.put(body, INSTANTS[0])
    evaluator = Evaluator(data.resources)

    def ids(sort: str) -> list[str]:
        return [k[1] for k in evaluator.search(parse("Patient", [("_sort", sort)])).keys]

    assert ids("family") == ["c", "a", "d", "b"]
    assert ids("-family") == ["d", "a", "c", "b"]  # ties: by id, in the first key's direction
    assert ids("family,-_id") == ["c", "d", "a", "b"]


def test_evaluator_not_includes_resources_without_the_parameter() -> None:
    """search.html#modifiers: :not is every resource with no matching value, so those with
    no value at all are in it."""
    data = Dataset()
    data.put({"resourceType": "Patient", "id": "m", "gender": "male"}, INSTANTS[0])
    data.put({"resourceType": "Patient", "id": "f", "gender": "female"}, INSTANTS[0])
    data.put({"resourceType": "Patient", "id": "none"}, INSTANTS[0])
    found = Evaluator(data.resources).search(parse("Patient", [("gender:not", "male")]))
    assert sorted(k[1] for k in found.keys) == ["f", "none"]


# -- disagreements found, kept as plain examples ------------------------------------------------


def _search_ids(store: Store, rtype: str, params: list[tuple[str, str]], *bodies: Json) -> list[str]:
    data = Dataset()
    for body in bodies:
        data.put(body, INSTANTS[0])
    with store.transaction() as tx:
        for v, rows in data.writes:
            tx.write(v, rows)
    return [m.id for m in store.search(parse(rtype, [*params, ("_sort", "_id")])).matches]


def _risk(rid: str, probability: str) -> Json:
    return {"resourceType": "RiskAssessment", "id": rid, "status": "final",
            "prediction": [{"probabilityDecimal": Decimal(probability)}]}


def test_number_sa_and_eb_treat_precision_ranges_as_half_open(store: Store) -> None:
    """search.html#number: 1.5 stands for [1.45, 1.55), so 1.6 starts after it and 1.4
    ends before it (types.py keeps the same half-open ranges)."""
    bodies = [_risk("low", "1.4"), _risk("same", "1.5"), _risk("high", "1.6")]
    assert _search_ids(store, "RiskAssessment", [("probability", "sa1.5")], *bodies) == ["high"]
    assert _search_ids(store, "RiskAssessment", [("probability", "eb1.5")]) == ["low"]


def _weight(rid: str, kilograms: str) -> Json:
    return {"resourceType": "Observation", "id": rid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "valueQuantity": {"value": Decimal(kilograms), "unit": "kg", "system": UCUM,
                              "code": "kg"}}


@pytest.mark.parametrize("unit", ["", f"|{UCUM}|kg", "||kg"])
def test_quantity_sa_and_eb_treat_precision_ranges_as_half_open(store: Store, unit: str) -> None:
    """search.html#quantity: as for numbers, 1.6 kg starts after 1.5 kg and 1.4 kg ends before
    it, whether compared as written or in canonical units."""
    bodies = [_weight("low", "1.4"), _weight("same", "1.5"), _weight("high", "1.6")]
    assert _search_ids(store, "Observation", [("value-quantity", f"sa1.5{unit}")], *bodies) == [
        "high"]
    assert _search_ids(store, "Observation", [("value-quantity", f"eb1.5{unit}")]) == ["low"]


def test_revinclude_with_a_target_type_includes_only_references_to_that_type(
    store: Store,
) -> None:
    """search.html#include: the third part of an _include or _revinclude value is the type
    of the referenced resource; no Observation of a Group refers to a Patient."""
    data = Dataset()
    data.put({"resourceType": "Patient", "id": "p"}, INSTANTS[0])
    data.put({"resourceType": "Observation", "id": "o", "status": "final",
              "code": {"text": "weight"}, "subject": {"reference": "Patient/p"}}, INSTANTS[0])
    with store.transaction() as tx:
        for v, rows in data.writes:
            tx.write(v, rows)
    group = store.search(parse("Patient", [("_revinclude", "Observation:subject:Group")]))
    assert [m.id for m in group.matches] == ["p"]
    assert group.included == []
    patient = store.search(parse("Patient", [("_revinclude", "Observation:subject:Patient")]))
    assert [v.id for v in patient.included] == ["o"]


def test_a_compartment_holds_its_own_resource_where_its_definition_says_def(
    store: Store,
) -> None:
    """compartmentdefinition-practitioner: the Practitioner resource is in the compartment
    by ``{def}``, the compartment's own resource."""
    data = Dataset()
    data.put({"resourceType": "Practitioner", "id": "d"}, INSTANTS[0])
    data.put({"resourceType": "Practitioner", "id": "other"}, INSTANTS[0])
    with store.transaction() as tx:
        for v, rows in data.writes:
            tx.write(v, rows)
    query = replace(parse("Practitioner", []), compartment=("Practitioner", "d"))
    assert [m.id for m in store.search(query).matches] == ["d"]
