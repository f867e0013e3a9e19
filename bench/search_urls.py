#!/usr/bin/env python3
"""Build the URL files of the search benchmark from the data a running server holds.

  python bench/search_urls.py --url http://127.0.0.1:8080/fhir --out DIR [--sample 200]

Reads every Patient, samples ``--sample`` of them (seeded), reads their Observations and
Encounters and all Practitioners, and writes one URL file per scenario (``DIR/NAME.urls``,
the format of ``loadgen.py --urls``), each request with the checks that its answer must
pass, derived from the data and not from the answer:

  s-identifier             Patient?identifier=SYSTEM|VALUE (SSN and MRN)     the id, 1 match
  s-family-birthdate       Patient?family=F&birthdate=D                      the id
  s-obs-patient-code       Observation?patient=P&code=LOINC                  >= 1 match
  s-obs-patient-code-date  ... &date=geYYYY-MM-DD (the median date of the code) >= 1 match
  s-chain2                 Observation?encounter:Encounter.participant:Practitioner
                             .identifier=us-npi|N                            >= 1 match
  s-has                    Patient?_has:Observation:patient:code=LOINC       >= 1 match
  s-include                Encounter?patient=P&_include=Encounter:practitioner  >= 1 and >= 1
  s-revinclude             Patient?_id=P&_revinclude=Encounter:patient       the id, >= 1 include
  s-sort-deep              page 50 of Observation?_sort=-_lastUpdated&_count=20, found by
                             following 49 ``next`` links                     20 matches
  s-total                  Observation?_total=accurate&_count=10             the total

Then it sends every request once and reports the ones that fail their checks (they stay
in the files: the load run counts them as errors) and, per scenario, the median and the
slowest request (``DIR/info.json``, which ``explain.py`` reads). Exit status 1 when the
data gives a scenario no request at all.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import benchutil
import loadgen
from loadgen import UrlSpec

SSN = "http://hl7.org/fhir/sid/us-ssn"
MRN = "http://hospital.smarthealthit.org"
NPI = "http://hl7.org/fhir/sid/us-npi"
LOINC = "http://loinc.org"
DEEP_PAGE = 50
SCENARIOS = ("s-identifier", "s-family-birthdate", "s-obs-patient-code",
             "s-obs-patient-code-date", "s-chain2", "s-has", "s-include", "s-revinclude",
             "s-sort-deep", "s-total")

Json = dict[str, Any]


class Client:
    """Plain GETs against the FHIR base (set-up only: no timing that matters here)."""

    def __init__(self, base: str, timeout: float = 120.0) -> None:
        benchutil.require_loopback_url(base)
        self.base = base.rstrip("/")
        self.timeout = timeout

    def get(self, path: str) -> tuple[int, bytes, float]:
        req = urllib.request.Request(f"{self.base}/{path}",
                                     headers={"Accept": "application/fhir+json"})
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
                status = resp.status
        except urllib.error.HTTPError as e:
            body, status = e.read(), e.code
        return status, body, time.perf_counter() - t0

    def bundle(self, path: str) -> Json:
        status, body, _ = self.get(path)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
        doc: Json = json.loads(body)
        return doc

    def relative(self, url: str) -> str:
        """A link the server gave, relative to the base (as URL files hold them)."""
        base_path = urlsplit(self.base).path.rstrip("/") + "/"
        parts = urlsplit(url)
        if not parts.path.startswith(base_path):
            raise RuntimeError(f"link {url!r} is not under the base {self.base!r}")
        return parts.path[len(base_path):] + (f"?{parts.query}" if parts.query else "")

    def all_pages(self, path: str) -> Iterator[Json]:
        """The resources of a search, following its next links."""
        url: str | None = path
        while url is not None:
            doc = self.bundle(url)
            for entry in doc.get("entry") or []:
                if (entry.get("search") or {}).get("mode", "match") == "match":
                    yield entry["resource"]
            url = next((self.relative(link["url"]) for link in doc.get("link") or []
                        if link.get("relation") == "next"), None)


def q(path: str, params: Sequence[tuple[str, str]]) -> str:
    return f"{path}?{urlencode(params)}"


def ref_id(reference: str | None, rtype: str) -> str | None:
    """The id in a literal reference ``Type/id`` (or None)."""
    if not reference or not reference.startswith(f"{rtype}/"):
        return None
    return reference.split("/", 2)[1]


@dataclass
class PatientData:
    resource: Json
    observations: list[Json] = field(default_factory=list)
    encounters: list[Json] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.resource["id"])


def loinc_codes(obs: Json) -> list[str]:
    return [str(c["code"]) for c in (obs.get("code") or {}).get("coding") or []
            if c.get("system") == LOINC and c.get("code")]


def effective_day(obs: Json) -> str | None:
    value = obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("start")
    return str(value)[:10] if value else None


def practitioners_of(encounter: Json) -> list[str]:
    found = []
    for p in encounter.get("participant") or []:
        pid = ref_id((p.get("individual") or {}).get("reference"), "Practitioner")
        if pid:
            found.append(pid)
    return found


# --- the scenarios ------------------------------------------------------------------------


def identifier_specs(patients: Sequence[PatientData]) -> list[UrlSpec]:
    specs = []
    for p in patients:
        for ident in p.resource.get("identifier") or []:
            if ident.get("system") in (SSN, MRN) and ident.get("value"):
                token = f"{ident['system']}|{ident['value']}"
                specs.append(UrlSpec(q("Patient", [("identifier", token)]), expect_id=p.id,
                                     min_matches=1, max_matches=1))
    return specs


def family_birthdate_specs(patients: Sequence[PatientData]) -> list[UrlSpec]:
    specs = []
    for p in patients:
        names = p.resource.get("name") or []
        family = next((n["family"] for n in names if n.get("family")), None)
        birth = p.resource.get("birthDate")
        if family and birth:
            specs.append(UrlSpec(q("Patient", [("family", family), ("birthdate", birth)]),
                                 expect_id=p.id, min_matches=1))
    return specs


def observation_specs(patients: Sequence[PatientData],
                      rng: random.Random) -> tuple[list[UrlSpec], list[UrlSpec]]:
    """(patient + code, patient + code + date=ge) requests, one of each per patient."""
    plain, dated = [], []
    for p in patients:
        by_code: dict[str, list[str]] = defaultdict(list)
        for obs in p.observations:
            day = effective_day(obs)
            for code in loinc_codes(obs):
                by_code[code].append(day or "")
        if not by_code:
            continue
        code = rng.choice(sorted(by_code))
        base = [("patient", p.id), ("code", f"{LOINC}|{code}")]
        plain.append(UrlSpec(q("Observation", base), min_matches=1))
        days = sorted(d for d in by_code[code] if d)
        if days:
            median = days[len(days) // 2]
            dated.append(UrlSpec(q("Observation", [*base, ("date", f"ge{median}")]),
                                 min_matches=1))
    return plain, dated


def chain_specs(patients: Sequence[PatientData], npi_of: dict[str, str]) -> list[UrlSpec]:
    """Practitioners who ran an encounter of a sampled patient that has Observations."""
    with_obs = {ref_id((o.get("encounter") or {}).get("reference"), "Encounter")
                for p in patients for o in p.observations}
    npis: set[str] = set()
    for p in patients:
        for enc in p.encounters:
            if enc.get("id") in with_obs:
                npis.update(npi_of[x] for x in practitioners_of(enc) if x in npi_of)
    param = "encounter:Encounter.participant:Practitioner.identifier"
    return [UrlSpec(q("Observation", [(param, f"{NPI}|{n}")]), min_matches=1)
            for n in sorted(npis)]


def has_specs(patients: Sequence[PatientData]) -> list[UrlSpec]:
    """Codes that between 2% and 60% of the sampled patients have (never one of them)."""
    holders: dict[str, set[str]] = defaultdict(set)
    for p in patients:
        for obs in p.observations:
            for code in loinc_codes(obs):
                holders[code].add(p.id)
    n = max(1, len(patients))
    codes = sorted(c for c, who in holders.items() if 0.02 <= len(who) / n <= 0.6)
    if not codes:
        codes = sorted(holders)
    return [UrlSpec(q("Patient", [("_has:Observation:patient:code", f"{LOINC}|{c}")]),
                    min_matches=1) for c in codes]


def include_specs(patients: Sequence[PatientData]) -> list[UrlSpec]:
    specs = []
    for p in patients:
        # The first page (20, in the server's default order) must hold a practitioner, so
        # only patients whose every encounter names one are used.
        if p.encounters and all(practitioners_of(e) for e in p.encounters):
            specs.append(UrlSpec(q("Encounter", [("patient", p.id),
                                                 ("_include", "Encounter:practitioner")]),
                                 min_matches=1, min_includes=1))
    return specs


def revinclude_specs(patients: Sequence[PatientData]) -> list[UrlSpec]:
    return [UrlSpec(q("Patient", [("_id", p.id), ("_revinclude", "Encounter:patient")]),
                    expect_id=p.id, min_matches=1, max_matches=1, min_includes=1)
            for p in patients if p.encounters]


def deep_page_specs(client: Client, page: int = DEEP_PAGE) -> list[UrlSpec]:
    """The real URL of page ``page``, reached by following ``next`` links from page 1."""
    url = q("Observation", [("_sort", "-_lastUpdated"), ("_count", "20")])
    for n in range(1, page):
        doc = client.bundle(url)
        nxt = next((link["url"] for link in doc.get("link") or []
                    if link.get("relation") == "next"), None)
        if nxt is None:
            print(f"warning: Observation?_sort=-_lastUpdated has only {n} pages of 20",
                  file=sys.stderr)
            return []
        url = client.relative(nxt)
    return [UrlSpec(url, min_matches=20, max_matches=20)]


def total_specs(observations: int | None) -> list[UrlSpec]:
    url = q("Observation", [("_total", "accurate"), ("_count", "10")])
    return [UrlSpec(url, min_matches=10, total=observations)]


# --- reading the server ---------------------------------------------------------------------


def count(client: Client, path: str) -> int | None:
    try:
        doc = client.bundle(path)
    except (RuntimeError, OSError, ValueError):
        return None
    total = doc.get("total")
    return total if isinstance(total, int) else None


def gather(client: Client, sample: int, rng: random.Random,
           jobs: int) -> tuple[list[PatientData], dict[str, str]]:
    everyone = sorted(client.all_pages(q("Patient", [("_count", "1000")])),
                      key=lambda r: str(r["id"]))
    if not everyone:
        raise RuntimeError("the server holds no Patient")
    chosen = rng.sample(everyone, min(sample, len(everyone)))
    patients = [PatientData(r) for r in chosen]

    def load(p: PatientData) -> None:
        p.observations = list(client.all_pages(
            q("Observation", [("patient", p.id), ("_count", "1000")])))
        p.encounters = list(client.all_pages(
            q("Encounter", [("patient", p.id), ("_count", "1000")])))

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(load, patients))
    npi_of = {}
    for pr in client.all_pages(q("Practitioner", [("_count", "1000")])):
        for ident in pr.get("identifier") or []:
            if ident.get("system") == NPI and ident.get("value"):
                npi_of[str(pr["id"])] = str(ident["value"])
    return patients, npi_of


def verify(client: Client, specs: Sequence[UrlSpec],
           jobs: int) -> tuple[list[tuple[UrlSpec, float]], list[str]]:
    """Each request sent once: (spec, seconds) and the failures, described."""

    def one(spec: UrlSpec) -> tuple[UrlSpec, float, str | None]:
        status, body, seconds = client.get(spec.path)
        problem = (f"status {status}" if status != spec.status
                   else spec.check(body) if status == 200 else None)
        return spec, seconds, (None if problem is None
                               else f"{spec.path} -> {problem}: {body[:200]!r}")

    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(one, specs))
    return [(s, t) for s, t, _ in results], [p for _, _, p in results if p]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="FHIR base URL on this machine")
    ap.add_argument("--out", required=True, type=Path, help="folder for NAME.urls and info.json")
    ap.add_argument("--sample", type=int, default=200, help="patients sampled (default 200)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--jobs", type=int, default=4, help="concurrent set-up requests (default 4)")
    args = ap.parse_args(argv)
    client = Client(args.url)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()

    resources = count(client, q("", [("_summary", "count")]))
    observations = count(client, q("Observation", [("_summary", "count")]))
    patients_total = count(client, q("Patient", [("_summary", "count")]))
    try:
        patients, npi_of = gather(client, args.sample, rng, args.jobs)
        deep = deep_page_specs(client)
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"error: set-up failed: {exc}", file=sys.stderr)
        return 1
    plain, dated = observation_specs(patients, rng)
    files: dict[str, list[UrlSpec]] = {
        "s-identifier": identifier_specs(patients),
        "s-family-birthdate": family_birthdate_specs(patients),
        "s-obs-patient-code": plain,
        "s-obs-patient-code-date": dated,
        "s-chain2": chain_specs(patients, npi_of),
        "s-has": has_specs(patients),
        "s-include": include_specs(patients),
        "s-revinclude": revinclude_specs(patients),
        "s-sort-deep": deep,
        "s-total": total_specs(observations),
    }
    print(f"set-up: read {len(patients)} of {patients_total} patients in "
          f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)

    info: Json = {"url": client.base, "resources": resources, "patients": patients_total,
                  "observations": observations, "sample": len(patients), "scenarios": {}}
    empty = []
    for name, specs in files.items():
        if not specs:
            empty.append(name)
            continue
        loadgen.write_url_file(args.out / f"{name}.urls", specs,
                               f"{name}: {len(specs)} requests, made by bench/search_urls.py")
        timed, failures = verify(client, specs, args.jobs)
        ordered = sorted(timed, key=lambda st: st[1])
        median = ordered[len(ordered) // 2]
        info["scenarios"][name] = {
            "requests": len(specs), "failures": len(failures),
            "median_ms": round(1000 * statistics.median(t for _, t in timed), 2),
            "max_ms": round(1000 * ordered[-1][1], 2),
            "median_url": median[0].path, "slowest_url": ordered[-1][0].path,
        }
        print(f"  {name}: {len(specs)} requests, once each: median "
              f"{info['scenarios'][name]['median_ms']} ms, slowest "
              f"{info['scenarios'][name]['max_ms']} ms", file=sys.stderr)
        for failure in failures[:5]:
            print(f"  !!! {name}: {failure}", file=sys.stderr)
        if len(failures) > 5:
            print(f"  !!! {name}: ... {len(failures) - 5} more failures", file=sys.stderr)
    (args.out / "info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if empty:
        print(f"error: the data gave no request for {', '.join(empty)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
