#!/usr/bin/env python3
"""Closed-loop HTTP load generator for a fhirhub (FHIR R4) server.

Each simulated client owns one keep-alive connection and sends its next request as soon as
the previous answer has been read. Scenarios:

  create             POST /Patient with a new, unique UK-flavoured Patient (~1.3 KB)
  read               GET /Patient/{id} for random ids of a pool of Patients made in set-up
  update             PUT /Patient/{id}; each client updates its own slice of the pool and
                     every update changes the telecom and address of the Patient
  search-id          GET /Patient?_id={id}
  search-identifier  GET /Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{number}

With --urls FILE the scenario is a list of GET requests instead (any --scenario name, e.g.
s-identifier): each client sends URLs picked at random from FILE, one per line, relative
to the base, each with the checks its answer must pass (see UrlSpec and bench/README.md).

Every response is checked (status, and for reads and searches that the body holds the
expected id); errors are counted by status. Requests that start during --warmup are not
measured. Throughput and latency percentiles come from per-request perf_counter timings.

With --token-file FILE (or the environment variable FHIRHUB_BENCH_TOKEN) every request,
the set-up's too, carries "Authorization: Bearer <token>", for a server with FHIRHUB_AUTH=on.
Without either, no Authorization header is sent.

Example:
  python bench/loadgen.py --url http://127.0.0.1:8080/fhir --scenario read \\
      --clients 16 --duration 20 --warmup 3 --label sqlite --json out.jsonl

Exit status: 0 clean run; 1 usage or set-up failure; 2 some requests failed (the JSON
record is still written).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import random
import re
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

import benchutil

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_JSON = "application/fhir+json"
SCENARIOS = ("create", "read", "update", "search-id", "search-identifier")
USER_AGENT = "fhirhub-loadgen/1"
MAX_ERROR_SAMPLES = 5
TOKEN_ENV = "FHIRHUB_BENCH_TOKEN"  # the environment variable's name

try:  # orjson is a fhirhub dependency and makes the generator lighter; json works too.
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    def loads(data: bytes) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - depends on the environment

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    def loads(data: bytes) -> Any:
        return json.loads(data)


# --- NHS numbers ------------------------------------------------------------------------


def nhs_check_digit(first9: str) -> int | None:
    """Modulus 11 check digit for the first nine digits of an NHS number.

    Weights 10..2; check = 11 - (sum mod 11), where 11 becomes 0 and 10 means the nine
    digits cannot start a valid NHS number (None).
    """
    if len(first9) != 9 or not first9.isdigit():
        raise ValueError(f"need nine digits, got {first9!r}")
    total = sum(int(d) * w for d, w in zip(first9, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def is_valid_nhs_number(value: str) -> bool:
    digits = value.replace(" ", "")
    if len(digits) != 10 or not digits.isdigit():
        return False
    return nhs_check_digit(digits[:9]) == int(digits[9])


class NhsNumberSequence:
    """Unique, valid NHS numbers in the 999 range reserved for test data.

    Walks 999000000..999999999 from a random start, skipping bases whose check digit
    would be 10, so no number repeats within one process (about 909,000 are available).
    """

    SPACE = 1_000_000

    def __init__(self, rng: random.Random) -> None:
        self._next = rng.randrange(self.SPACE)
        self._used = 0

    def __next__(self) -> str:
        while True:
            if self._used >= self.SPACE:
                raise RuntimeError("NHS test number range exhausted")
            base = f"999{self._next:06d}"
            self._next = (self._next + 1) % self.SPACE
            self._used += 1
            check = nhs_check_digit(base)
            if check is not None:
                return base + str(check)

    def __iter__(self) -> NhsNumberSequence:
        return self


# --- Patients -----------------------------------------------------------------------------

GIVEN = {
    "female": ["Olivia", "Amelia", "Isla", "Ava", "Mia", "Grace", "Freya", "Sophie", "Aisha",
               "Priya", "Niamh", "Eleanor", "Harriet", "Zara", "Megan", "Siobhan"],
    "male": ["Oliver", "George", "Arthur", "Noah", "Harry", "Leo", "Mohammed", "Jack", "Oscar",
             "Rhys", "Callum", "Dylan", "Ibrahim", "Rajesh", "Thomas", "Alfie"],
}
FAMILY = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
          "Patel", "Robinson", "Wright", "Thompson", "Evans", "Walker", "Khan", "Hughes",
          "Edwards", "Green", "Hall", "Wood", "O'Brien", "Ahmed", "Clarke", "Begum"]
STREETS = ["High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane",
           "Park Avenue", "Queens Road", "The Green", "Manor Close", "Kings Crescent"]
PLACES = [  # (locality, town, county, postcode area)
    ("Headingley", "Leeds", "West Yorkshire", "LS"),
    ("Moseley", "Birmingham", "West Midlands", "B"),
    ("Didsbury", "Manchester", "Greater Manchester", "M"),
    ("Clifton", "Bristol", "City of Bristol", "BS"),
    ("Jesmond", "Newcastle upon Tyne", "Tyne and Wear", "NE"),
    ("Ecclesall", "Sheffield", "South Yorkshire", "S"),
    ("Hove", "Brighton", "East Sussex", "BN"),
    ("Heavitree", "Exeter", "Devon", "EX"),
    ("Lenton", "Nottingham", "Nottinghamshire", "NG"),
    ("Hackney", "London", "Greater London", "E"),
]
POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # inward-code letters (no C, I, K, M, O, V)
ETHNIC_CATEGORIES = [("A", "British, Mixed British"), ("H", "Indian or British Indian"),
                     ("J", "Pakistani or British Pakistani"), ("C", "Any other White background"),
                     ("N", "African"), ("R", "Chinese")]
MARITAL = [("M", "Married"), ("S", "Never Married"), ("D", "Divorced"), ("W", "Widowed")]
EXT_NHS_VERIFICATION = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
)
EXT_ETHNIC = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"


def drama_mobile(rng: random.Random) -> str:
    """A mobile number from Ofcom's drama range (07700 900000-900999): never a real line."""
    return f"07700 900{rng.randrange(1000):03d}"


def postcode(rng: random.Random, area: str) -> str:
    letters = "".join(rng.choice(POSTCODE_LETTERS) for _ in range(2))
    return f"{area}{rng.randrange(1, 20)} {rng.randrange(10)}{letters}"


def make_patient(rng: random.Random, nhs_number: str) -> dict[str, Any]:
    """A realistic UK Patient of about 1 KB (no id: the server assigns it)."""
    gender = rng.choice(("female", "male"))
    given = rng.sample(GIVEN[gender], 2)
    family = rng.choice(FAMILY)
    locality, town, county, area = rng.choice(PLACES)
    birth = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(365 * 93))
    adult = birth.year < 2005
    ethnic = rng.choice(ETHNIC_CATEGORIES)
    marital = rng.choice(MARITAL) if adult else MARITAL[1]
    prefixes = ("Ms", "Mrs", "Miss", "Dr") if gender == "female" else ("Mr", "Dr")
    email_local = f"{given[0]}.{family}".lower().replace("'", "")
    return {
        "resourceType": "Patient",
        "extension": [{
            "url": EXT_ETHNIC,
            "valueCodeableConcept": {"coding": [{
                "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland",
                "code": ethnic[0], "display": ethnic[1]}]},
        }],
        "identifier": [{
            "extension": [{
                "url": EXT_NHS_VERIFICATION,
                "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/"
                              "UKCore-NHSNumberVerificationStatusEngland",
                    "code": "01", "display": "Number present and verified"}]},
            }],
            "system": NHS_NUMBER_SYSTEM,
            "value": nhs_number,
        }],
        "active": True,
        "name": [{"use": "official", "family": family, "given": given,
                  **({"prefix": [rng.choice(prefixes)]} if adult else {})}],
        "telecom": [
            {"system": "phone", "value": drama_mobile(rng), "use": "mobile"},
            {"system": "email", "value": f"{email_local}@example.com", "use": "home"},
        ],
        "gender": gender,
        "birthDate": birth.isoformat(),
        "address": [{
            "use": "home", "type": "both",
            "line": [f"{rng.randrange(1, 300)} {rng.choice(STREETS)}", locality],
            "city": town, "district": county, "postalCode": postcode(rng, area),
            "country": "GB",
        }],
        "maritalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
            "code": marital[0], "display": marital[1]}]},
        "communication": [{"language": {"coding": [{
            "system": "urn:ietf:bcp:47", "code": "en-GB",
            "display": "English (United Kingdom)"}]}, "preferred": True}],
    }


def mutate_patient(patient: dict[str, Any], n: int, rng: random.Random) -> None:
    """Change telecom and address in place; ``n`` (the update count) makes every one differ."""
    given = patient["name"][0]["given"][0]
    family = patient["name"][0]["family"]
    patient["telecom"] = [
        {"system": "phone", "value": drama_mobile(rng), "use": "mobile"},
        {"system": "email", "value": f"{given}.{family}.{n}@example.com".lower().replace("'", ""),
         "use": "home"},
    ]
    patient["address"][0]["line"][0] = f"{rng.randrange(1, 300)} {rng.choice(STREETS)}"


# --- the pool of existing Patients --------------------------------------------------------


@dataclass
class PoolEntry:
    id: str
    nhs_number: str
    resource: dict[str, Any]


class SetupError(Exception):
    pass


def _id_from_response(body: bytes, location: str | None) -> str:
    try:
        rid = json.loads(body).get("id")
        if isinstance(rid, str) and rid:
            return rid
    except (ValueError, AttributeError):
        pass
    if location:  # .../Patient/{id}/_history/{vid}
        parts = urlsplit(location).path.rstrip("/").split("/")
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if parts and parts[-1]:
            return parts[-1]
    raise SetupError("201 answer has neither a body with an id nor a Location header")


async def create_pool(base: str, size: int, concurrency: int, timeout: float,
                      rng: random.Random, nhs: NhsNumberSequence,
                      token: str | None = None) -> list[PoolEntry]:
    numbers = [next(nhs) for _ in range(size)]
    it = iter([(n, make_patient(rng, n)) for n in numbers])
    out: list[PoolEntry] = []

    async def worker() -> None:
        async with _session(1, timeout, token) as session:
            for nhs_number, patient in it:
                async with session.post(f"{base}/Patient", data=dumps(patient),
                                        headers={"Content-Type": FHIR_JSON}) as resp:
                    body = await resp.read()
                    if resp.status != 201:
                        raise SetupError(f"set-up POST /Patient answered {resp.status}: "
                                         f"{_snippet(body)}")
                    rid = _id_from_response(body, resp.headers.get("Location"))
                patient["id"] = rid
                out.append(PoolEntry(rid, nhs_number, patient))

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, size)))))
    return out


async def pool_is_live(base: str, pool: Sequence[PoolEntry], timeout: float,
                       token: str | None = None) -> bool:
    """True when the first and last pool Patients still exist on the server."""
    async with _session(1, timeout, token) as session:
        for entry in (pool[0], pool[-1]):
            async with session.get(f"{base}/Patient/{quote(entry.id)}") as resp:
                await resp.read()
                if resp.status != 200:
                    return False
    return True


def load_pool_file(path: Path, base: str) -> list[PoolEntry] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("url") != base:
        return None
    return [PoolEntry(e["id"], e["nhs_number"], e["resource"]) for e in data["entries"]]


def save_pool_file(path: Path, base: str, pool: Sequence[PoolEntry]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [{"id": e.id, "nhs_number": e.nhs_number, "resource": e.resource} for e in pool]
    path.write_text(json.dumps({"url": base, "entries": entries}), encoding="utf-8")


async def get_pool(args: argparse.Namespace, base: str, rng: random.Random,
                   nhs: NhsNumberSequence) -> list[PoolEntry]:
    size = max(args.pool_size, args.clients)  # update needs at least one Patient per client
    pool_file = Path(args.pool_file) if args.pool_file else None
    if pool_file is not None:
        pool = load_pool_file(pool_file, base)
        if pool and len(pool) >= size and await pool_is_live(base, pool, args.timeout,
                                                             _token(args)):
            print(f"set-up: reusing {len(pool)} pool Patients from {pool_file}", file=sys.stderr)
            return pool
    t = time.perf_counter()
    pool = await create_pool(base, size, args.setup_clients, args.timeout, rng, nhs,
                             _token(args))
    print(f"set-up: created {len(pool)} pool Patients in {time.perf_counter() - t:.1f}s",
          file=sys.stderr)
    if pool_file is not None:
        save_pool_file(pool_file, base, pool)
    return pool


# --- the load loop --------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    url: str | URL
    body: bytes | None
    expect_status: int
    expect_in_body: bytes | None = None  # e.g. the id a read or search must return
    check: Callable[[bytes], str | None] | None = None  # the body -> an error label, or None


@dataclass
class ClientStats:
    latencies: list[float] = field(default_factory=list)  # seconds, measured window only
    errors: Counter[str] = field(default_factory=Counter)
    warmup_requests: int = 0
    warmup_errors: Counter[str] = field(default_factory=Counter)
    first_start: float | None = None
    last_done: float | None = None
    samples: list[str] = field(default_factory=list)


class Budget:
    """Caps the total number of requests of a run (shared by all clients of one loop)."""

    def __init__(self, limit: int) -> None:
        self.left = limit if limit > 0 else math.inf

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


def _snippet(body: bytes, n: int = 200) -> str:
    text = body[:n].decode("utf-8", "replace").replace("\n", " ")
    return text + ("..." if len(body) > n else "")


def session_headers(token: str | None = None) -> dict[str, str]:
    """The headers every request of a session carries: with a token, its bearer header."""
    headers = {"Accept": FHIR_JSON, "User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _session(connections: int, timeout: float, token: str | None = None) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections,
                                     keepalive_timeout=75, use_dns_cache=True)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers=session_headers(token),
    )


_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1 b64token


def read_token(token_file: str | Path | None, environ: Mapping[str, str]) -> str | None:
    """The bearer token to send: the contents of ``token_file`` when given, else the
    environment's FHIRHUB_BENCH_TOKEN when set and not empty, else None (no header).

    Surrounding white space (a trailing newline) is dropped; ValueError when the file is
    empty or the token is not a single RFC 6750 b64token (so that nothing but the token
    can reach the header)."""
    if token_file is not None:
        source = str(token_file)
        token = Path(token_file).read_text(encoding="utf-8").strip()
    else:
        source = TOKEN_ENV
        token = environ.get(TOKEN_ENV, "").strip()
        if not token:
            return None
    if not token:
        raise ValueError(f"{source} holds no token")
    if not _TOKEN.fullmatch(token):
        raise ValueError(f"{source} does not hold a single bearer token (RFC 6750 b64token)")
    return token


def _token(args: argparse.Namespace) -> str | None:
    return getattr(args, "token", None)


RequestFactory = Callable[[], Request]


# --- URL-list scenarios ----------------------------------------------------------------------


@dataclass(frozen=True)
class UrlSpec:
    """One GET of a URL-list scenario, and what a successful answer looks like.

    File syntax, one request a line: ``PATH<TAB>CHECK<TAB>CHECK...``. PATH is relative to
    the base URL and already percent-encoded (``Patient?identifier=http%3A%2F%2F...``). A
    CHECK is ``status=N`` (the status wanted, default 200), ``id=ID`` (the body holds ID),
    ``min=N`` / ``max=N`` (at least / at most N entries with search mode ``match``),
    ``includes=N`` (at least N entries with mode ``include``) or ``total=N`` (Bundle.total
    is N). Blank lines and lines starting with ``#`` are skipped.
    """

    path: str
    status: int = 200
    expect_id: str | None = None
    min_matches: int | None = None
    max_matches: int | None = None
    min_includes: int | None = None
    total: int | None = None

    _KEYS: ClassVar[dict[str, str]] = {
        "status": "status", "id": "expect_id", "min": "min_matches", "max": "max_matches",
        "includes": "min_includes", "total": "total",
    }

    @classmethod
    def parse(cls, line: str) -> UrlSpec:
        path, *checks = line.rstrip("\r\n").split("\t")
        path = path.strip()
        if not path or "://" in path or path.startswith("/") or any(c.isspace() for c in path):
            raise ValueError(f"not a path relative to the base: {path!r}")
        fields: dict[str, Any] = {}
        for check in filter(None, (c.strip() for c in checks)):
            key, sep, value = check.partition("=")
            if not sep or key not in cls._KEYS:
                raise ValueError(f"unknown check {check!r} (want one of "
                                 f"{', '.join(k + '=' for k in cls._KEYS)})")
            if key == "id":
                if not value:
                    raise ValueError("id= needs a value")
                fields["expect_id"] = value
            elif not value.isdigit():
                raise ValueError(f"{key}= needs a whole number, not {value!r}")
            else:
                fields[cls._KEYS[key]] = int(value)
        return cls(path, **fields)

    def line(self) -> str:
        """The spec as a line of a URL file (without the newline)."""
        parts = [self.path]
        if self.status != 200:
            parts.append(f"status={self.status}")
        for key, attr in self._KEYS.items():
            value = getattr(self, attr)
            if key != "status" and value is not None:
                parts.append(f"{key}={value}")
        return "\t".join(parts)

    def check(self, body: bytes) -> str | None:
        """None when ``body`` passes every check, else a short, countable error label."""
        if self.expect_id is not None and self.expect_id.encode() not in body:
            return "without expected id"
        if (self.min_matches, self.max_matches, self.min_includes, self.total) == (None,) * 4:
            return None
        try:
            doc = loads(body)
        except ValueError:
            return "not JSON"
        if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
            return "not a Bundle"
        matches = includes = 0
        for entry in doc.get("entry") or ():
            mode = (entry.get("search") or {}).get("mode")
            if mode == "match":
                matches += 1
            elif mode == "include":
                includes += 1
        if self.min_matches is not None and matches < self.min_matches:
            return "with too few matches"
        if self.max_matches is not None and matches > self.max_matches:
            return "with too many matches"
        if self.min_includes is not None and includes < self.min_includes:
            return "with too few includes"
        if self.total is not None and doc.get("total") != self.total:
            return "with a wrong total"
        return None


def load_url_file(path: Path) -> list[UrlSpec]:
    """The requests of a URL file; ValueError naming the line when one is not valid."""
    specs: list[UrlSpec] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                specs.append(UrlSpec.parse(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    if not specs:
        raise ValueError(f"{path}: no requests")
    return specs


def write_url_file(path: Path, specs: Sequence[UrlSpec], comment: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    head = "".join(f"# {c}\n" for c in comment.splitlines())
    path.write_text(head + "".join(s.line() + "\n" for s in specs), encoding="utf-8")


def make_url_factory(base: str, specs: Sequence[UrlSpec], rng: random.Random) -> RequestFactory:
    """Random requests (uniformly, from ``rng``) of a URL-list scenario."""
    # encoded=True: the paths are sent exactly as written (cursors, %7C in tokens).
    urls = [URL(f"{base}/{spec.path}", encoded=True) for spec in specs]

    def pick() -> Request:
        i = rng.randrange(len(specs))
        spec = specs[i]
        return Request("GET", urls[i], None, spec.status, check=spec.check)
    return pick


def make_factory(scenario: str, base: str, client: int, clients: int,
                 pool: Sequence[PoolEntry], rng: random.Random,
                 nhs: NhsNumberSequence) -> RequestFactory:
    """The next-request function of one client."""
    if scenario == "create":
        def create() -> Request:
            return Request("POST", f"{base}/Patient", dumps(make_patient(rng, next(nhs))), 201)
        return create

    if scenario == "update":
        mine = list(pool[client::clients])  # disjoint slices: no two clients race on a version
        count = 0

        def update() -> Request:
            nonlocal count
            count += 1
            entry = mine[count % len(mine)]
            mutate_patient(entry.resource, count, rng)
            # Status only: a server may answer a PUT without a body (Prefer: return=minimal).
            return Request("PUT", f"{base}/Patient/{quote(entry.id)}", dumps(entry.resource),
                           200)
        return update

    def pick() -> PoolEntry:
        return pool[rng.randrange(len(pool))]

    if scenario == "read":
        def read() -> Request:
            e = pick()
            return Request("GET", f"{base}/Patient/{quote(e.id)}", None, 200, e.id.encode())
        return read
    if scenario == "search-id":
        def search_id() -> Request:
            e = pick()
            return Request("GET", f"{base}/Patient?_id={quote(e.id, safe='')}", None, 200,
                           e.id.encode())
        return search_id
    if scenario == "search-identifier":
        def search_identifier() -> Request:
            e = pick()
            token = quote(f"{NHS_NUMBER_SYSTEM}|{e.nhs_number}", safe="")
            return Request("GET", f"{base}/Patient?identifier={token}", None, 200,
                           e.id.encode())
        return search_identifier
    raise ValueError(f"unknown scenario {scenario!r}")


async def client_loop(session: aiohttp.ClientSession, next_request: RequestFactory,
                      t0: float, t_end: float, budget: Budget, stats: ClientStats) -> None:
    body_headers = {"Content-Type": FHIR_JSON}
    perf = time.perf_counter
    while perf() < t_end and budget.take():
        req = next_request()  # built before the clock starts: generation is not latency
        start = perf()
        err: str | None = None
        detail = ""
        done: float | None = None
        try:
            async with session.request(req.method, req.url, data=req.body,
                                       headers=body_headers if req.body else None) as resp:
                payload = await resp.read()
                done = perf()  # the whole answer is read; checking it is not latency
                if resp.status != req.expect_status:
                    err = str(resp.status)
                    detail = _snippet(payload)
                elif req.expect_in_body is not None and req.expect_in_body not in payload:
                    err = f"{resp.status} without expected id"
                    detail = _snippet(payload)
                elif req.check is not None and (failed := req.check(payload)) is not None:
                    err = f"{resp.status} {failed}"
                    detail = _snippet(payload)
                elif req.method == "POST" and "Location" not in resp.headers:
                    err = f"{resp.status} without Location"
        except TimeoutError:
            err = "timeout"
        except aiohttp.ClientError as e:
            err = type(e).__name__
            detail = str(e)
        if done is None:
            done = perf()
        if start >= t0:
            if stats.first_start is None:
                stats.first_start = start
            stats.latencies.append(done - start)
            stats.last_done = done
            if err:
                stats.errors[err] += 1
        else:
            stats.warmup_requests += 1
            if err:
                stats.warmup_errors[err] += 1
        if err:
            if len(stats.samples) < MAX_ERROR_SAMPLES:
                stats.samples.append(f"{req.method} {req.url} -> {err} {detail}".rstrip())
            if not err[0].isdigit():
                await asyncio.sleep(0.01)  # connection trouble: don't spin the CPU


# --- statistics and reporting ---------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (0 < p <= 100) of an ascending, non-empty sequence."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarise(latencies_s: Sequence[float], window_s: float) -> dict[str, float | None]:
    lat = sorted(latencies_s)
    if not lat or window_s <= 0:
        return {"rps": 0.0, "mean_ms": None, "p50_ms": None, "p90_ms": None, "p99_ms": None,
                "max_ms": None}

    def ms(v: float) -> float:
        return round(v * 1000, 3)

    return {
        "rps": round(len(lat) / window_s, 2),
        "mean_ms": ms(sum(lat) / len(lat)),
        "p50_ms": ms(percentile(lat, 50)),
        "p90_ms": ms(percentile(lat, 90)),
        "p99_ms": ms(percentile(lat, 99)),
        "max_ms": ms(lat[-1]),
    }


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class WindowMark:
    """Clock and CPU readings taken when the measured window opens."""

    wall: float = 0.0
    cpu: float = 0.0
    server_cpu: float | None = None

    def take(self, server_pid: int | None) -> None:
        self.wall = time.perf_counter()
        self.cpu = _cpu_seconds()
        self.server_cpu = benchutil.proc_tree_cpu_seconds(server_pid) if server_pid else None


@dataclass
class RunResult:
    record: dict[str, Any]
    samples: list[str]
    warmup_errors: Counter[str]


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}ms"


def _fmt_counter(c: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in c.most_common())


async def run(args: argparse.Namespace) -> RunResult:
    base = args.url.rstrip("/")
    rng = random.Random(args.seed)
    nhs = NhsNumberSequence(rng)

    pool: list[PoolEntry] = []
    specs: list[UrlSpec] = getattr(args, "url_specs", [])
    if args.scenario != "create" and not specs:
        try:
            pool = await get_pool(args, base, rng, nhs)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise SetupError(f"set-up failed: {type(e).__name__}: {e}") from e

    budget = Budget(args.max_requests)
    stats = [ClientStats() for _ in range(args.clients)]
    sessions = [_session(1, args.timeout, _token(args)) for _ in range(args.clients)]
    if specs:
        factories = [make_url_factory(base, specs, random.Random(rng.random()))
                     for _ in range(args.clients)]
    else:
        factories = [make_factory(args.scenario, base, i, args.clients, pool,
                                  random.Random(rng.random()), nhs) for i in range(args.clients)]
    mark = WindowMark()

    start = time.perf_counter()
    t0 = start + args.warmup
    t_end = t0 + args.duration

    async def mark_window_start() -> None:
        await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
        mark.take(args.server_pid)

    try:
        await asyncio.gather(
            mark_window_start(),
            *(client_loop(s, f, t0, t_end, budget, st)
              for s, f, st in zip(sessions, factories, stats, strict=True)),
        )
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    wall1 = time.perf_counter()
    cpu1 = _cpu_seconds()
    srv1 = benchutil.proc_tree_cpu_seconds(args.server_pid) if args.server_pid else None

    latencies = [x for st in stats for x in st.latencies]
    errors: Counter[str] = Counter()
    warmup_errors: Counter[str] = Counter()
    for st in stats:
        errors.update(st.errors)
        warmup_errors.update(st.warmup_errors)
    last_done = max((st.last_done for st in stats if st.last_done is not None), default=None)
    # Every request started in [t0, t_end) is awaited to the end; the window runs to the
    # last of their answers, so slow stragglers count in full against throughput. (It ends
    # earlier only when --max-requests stopped the run before t_end.)
    stopped = min(t_end, wall1)
    window = max(0.0, (max(last_done, stopped) if last_done is not None else stopped) - t0)
    cpu_window = wall1 - mark.wall
    loadgen_cpu = cpu1 - mark.cpu
    server_cpu_pct = (round(100 * (srv1 - mark.server_cpu) / cpu_window, 1)
                      if mark.server_cpu is not None and srv1 is not None and cpu_window > 0
                      else None)

    record: dict[str, Any] = {
        "kind": "http",
        "scenario": args.scenario,
        "clients": args.clients,
        "label": args.label,
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "errors_by_status": dict(errors),
        "warmup_requests": sum(st.warmup_requests for st in stats),
        "warmup_errors": sum(warmup_errors.values()),
        **summarise(latencies, window),
        "window_s": round(window, 3),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "pool_size": len(pool),
        **({"url_file": str(args.urls), "url_count": len(specs)} if specs else {}),
        **({"auth": "bearer"} if _token(args) else {}),
        "loadgen_cpu_pct": round(100 * loadgen_cpu / cpu_window, 1) if cpu_window > 0 else None,
        "server_cpu_pct": server_cpu_pct,
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "url": base,
        "meta": dict(args.meta),
        "date": benchutil.utc_now_iso(),
        "host": benchutil.host_info(),
    }
    samples = [s for st in stats for s in st.samples][:MAX_ERROR_SAMPLES]
    return RunResult(record, samples, warmup_errors)


def human_line(r: dict[str, Any]) -> str:
    cores = r["host"]["usable_cores"]
    srv = r.get("server_cpu_pct")
    return (
        f"{r['label'] or '-'} {r['scenario']} clients={r['clients']}: "
        f"{r['requests']} requests in {r['window_s']:.1f}s = {r['rps']:.1f} req/s; "
        f"latency p50 {_fmt_ms(r['p50_ms'])} p90 {_fmt_ms(r['p90_ms'])} "
        f"p99 {_fmt_ms(r['p99_ms'])} max {_fmt_ms(r['max_ms'])}; errors {r['errors']}; "
        f"loadgen CPU {r['loadgen_cpu_pct']}% of one core"
        + (f", server CPU {srv}%" if srv is not None else "")
        + f" ({cores} cores in all)"
    )


def report_errors(r: dict[str, Any], samples: Sequence[str], warmup_detail: Counter[str]) -> None:
    bar = "!" * 78
    lines = [bar]
    if r["requests"] == 0:
        lines.append("!!! NO REQUESTS WERE MEASURED: the server answered nothing in the window")
    if r["errors"]:
        rate = 100 * r["errors"] / max(1, r["requests"])
        lines.append(f"!!! ERRORS: {r['errors']} of {r['requests']} measured requests failed "
                     f"({rate:.3f}%): {_fmt_counter(Counter(r['errors_by_status']))}")
    if r["warmup_errors"]:
        lines.append(f"!!! WARM-UP ERRORS: {r['warmup_errors']} of {r['warmup_requests']}: "
                     f"{_fmt_counter(warmup_detail)}")
    lines += [f"!!!   e.g. {s}" for s in samples]
    lines.append(bar)
    print("\n".join(lines), file=sys.stderr)


# --- command line -----------------------------------------------------------------------------


def _positive_float(s: str) -> float:
    v = float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return v


def _meta(s: str) -> tuple[str, str]:
    key, sep, value = s.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    return key, value


def parse_args(argv: Sequence[str] | None,
               environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True,
                    help="FHIR base URL on this machine, e.g. http://127.0.0.1:8080/fhir")
    ap.add_argument("--scenario", required=True, metavar="NAME",
                    help=f"one of {', '.join(SCENARIOS)}; with --urls, the name to record "
                         "(e.g. s-identifier)")
    ap.add_argument("--urls", metavar="FILE", type=Path,
                    help="a URL-list scenario: GET the requests of FILE (see UrlSpec)")
    ap.add_argument("--clients", type=int, default=16,
                    help="simulated clients, one keep-alive connection each (default 16)")
    ap.add_argument("--duration", type=_positive_float, default=20.0,
                    help="measured seconds (default 20)")
    ap.add_argument("--warmup", type=float, default=3.0,
                    help="seconds of load before measuring starts (default 3)")
    ap.add_argument("--label", default="", help="backend label for the record, e.g. sqlite")
    ap.add_argument("--json", metavar="FILE", help="append a JSON record to FILE (JSON lines)")
    ap.add_argument("--pool-size", type=int, default=1000,
                    help="Patients created in set-up for read/update/search (default 1000)")
    ap.add_argument("--pool-file", metavar="FILE",
                    help="reuse the pool saved in FILE if its Patients still exist; else "
                         "create one and save it there")
    ap.add_argument("--setup-clients", type=int, default=8,
                    help="concurrent connections used to create the pool (default 8)")
    ap.add_argument("--timeout", type=_positive_float, default=30.0,
                    help="per-request timeout in seconds (default 30)")
    ap.add_argument("--max-requests", type=int, default=5_000_000,
                    help="stop after this many requests in all (default 5,000,000; 0 = none)")
    ap.add_argument("--server-pid", type=int,
                    help="also report the CPU used by this process and its children")
    ap.add_argument("--meta", type=_meta, action="append", default=[], metavar="KEY=VALUE",
                    help="extra fields for the record's meta object (repeatable)")
    ap.add_argument("--token-file", metavar="FILE", type=Path,
                    help="send 'Authorization: Bearer <the token in FILE>' with every "
                         f"request, set-up included (default: ${TOKEN_ENV} when set; else "
                         "no Authorization header)")
    ap.add_argument("--seed", type=int, help="random seed (default: random)")
    ap.add_argument("--no-uvloop", action="store_true", help="use asyncio's default loop")
    args = ap.parse_args(argv)
    if args.clients < 1:
        ap.error("--clients must be at least 1")
    if args.warmup < 0:
        ap.error("--warmup must be >= 0")
    try:
        args.token = read_token(args.token_file, os.environ if environ is None else environ)
    except (OSError, ValueError) as exc:
        ap.error(f"--token-file: {exc}" if args.token_file is not None else str(exc))
    args.url_specs = []
    if args.urls is not None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.scenario):
            ap.error("--scenario: a name of letters, digits, '.', '_' and '-'")
        try:
            args.url_specs = load_url_file(args.urls)
        except (OSError, ValueError) as exc:
            ap.error(f"--urls: {exc}")
    elif args.scenario not in SCENARIOS:
        ap.error(f"--scenario: one of {', '.join(SCENARIOS)} (or any name with --urls)")
    elif args.scenario != "create" and args.pool_size < 1:
        ap.error("--pool-size must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    benchutil.require_loopback_url(args.url)
    runner: Callable[[Any], Any] = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
    try:
        result: RunResult = runner(run(args))
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    record = result.record
    print(human_line(record), flush=True)
    if args.json:
        benchutil.append_jsonl(args.json, record)
    if record["errors"] or record["warmup_errors"] or record["requests"] == 0:
        report_errors(record, result.samples, result.warmup_errors)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
