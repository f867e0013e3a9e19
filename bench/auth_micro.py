#!/usr/bin/env python3
"""What fhirhub's token checking costs per call, in process (issue 6): prints µs per call.

  .venv/bin/python bench/auth_micro.py                         # SQLite, in a temporary folder
  .venv/bin/python bench/auth_micro.py --backend postgresql    # a scratch PostgreSQL database
  .venv/bin/python bench/auth_micro.py --calls 50000 --repeats 7

One engine (``FHIRHUB_AUTH=on``) over a fresh database holding ``--patients`` Patients, a
registered client (``system/*.cruds``, no rate limit) and a trusted NHS login style issuer
(RS512). What is timed, each in a loop of ``--calls`` (``--cold`` for the cold ones),
``--repeats`` times; the table gives the median and the best repeat:

* ``authenticate, cold``: ``Authenticator.authenticate`` of a token it has not seen (a new
  token each call): the JWT header and claims parsed, the ES256 signature verified, the
  client looked up, the scopes parsed. Once per token per server process.
* ``authenticate, warm``: the same token again, as on every later request: bearer
  parsing, the cached-token dictionary look-up with its expiry check, the client-status
  look-up in the client directory (re-read from the database every 5 s).
* ``authenticate patient token, cold/warm``: the same for an NHS login style token.
* ``limit``: ``Authenticator.limit``: the client directory again and the rate-limit bucket
  (no limit registered: no bucket arithmetic).
* ``grant_for``: ``guard.grant_for``: the caller's ``Access`` (for a patient, their
  Patients by NHS number, remembered 5 s).
* ``authorize read``: ``guard.authorize`` of ``GET Patient/{id}``: the scope check, and
  for a patient the compartment check (one indexed query).
* ``Engine.handle read``: a whole read in the engine (routing, the checks above, the store
  read, the response object; no HTTP, no rendering, no audit record), with the
  authenticator switched off (the ``FHIRHUB_AUTH=off`` path: ``UNCHECKED``, no header
  looked at), with a system token, and with the patient's token.

Nothing is asserted.

Helpers of ``bench/auth_bench.sh`` (they share the issuer code above):

  auth_micro.py --write-issuer DIR
      a new NHS login style issuer: DIR/issuers.json (for FHIRHUB_AUTH_ISSUERS) and its
      private key DIR/issuer-key.pem (owner-only)
  auth_micro.py --patient-setup DIR --pool-file POOL.json [--seconds 7200]
      the patient of the first pool Patient: DIR/patient-token (a token from DIR's issuer
      for that Patient's NHS number) and the URL files DIR/patient-read.urls
      (``Patient/{id}``) and DIR/patient-search-id.urls (``Patient?_id={id}``)
  auth_micro.py --report FILE.jsonl...
      the off/on/patient tables of auth_bench.sh's records (markdown)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

import benchutil

BASE = "http://127.0.0.1:8080/fhir"  # FhirRequest's default base_url
ISSUER = "https://auth.login.bench.example.nhs.uk"
AUDIENCE = "fhirhub-bench"
KID = "bench-nhslogin"
SCOPE = "system/*.cruds"


# --- a trusted issuer and its patient tokens ---------------------------------------------------


class PatientIssuer:
    """An NHS login style issuer (RS512) with a key made here (or read from a PEM file)."""

    def __init__(self, key: rsa.RSAPrivateKey | None = None) -> None:
        self.key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @classmethod
    def load(cls, path: Path) -> PatientIssuer:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path} does not hold an RSA private key")
        return cls(key)

    def save(self, path: Path) -> None:
        """The private key to ``path``, readable by its owner only."""
        _write_private(path, self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))

    def write(self, folder: Path) -> Path:
        """Write ``folder/issuers.json`` (FHIRHUB_AUTH_ISSUERS) trusting this issuer for
        ``patient/*.cruds``."""
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": KID, "use": "sig", "alg": "RS512"})
        entry = {"issuer": ISSUER, "kind": "patient", "audience": AUDIENCE,
                 "jwks": {"keys": [jwk]}, "algorithms": ["RS512"],
                 "scopes": ["patient/*.cruds"]}
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "issuers.json"
        path.write_text(json.dumps({"issuers": [entry]}), encoding="utf-8")
        return path

    def token(self, nhs_number: str, seconds: int) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"nhs-login-{nhs_number}",
                  "iat": now, "exp": now + seconds, "nhs_number": nhs_number,
                  "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self.key, algorithm="RS512", headers={"kid": KID})


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_issuer(folder: Path) -> Path:
    """A new issuer in ``folder``: issuers.json and issuer-key.pem; the JSON file's path."""
    issuer = PatientIssuer()
    issuer.save(folder / "issuer-key.pem")
    return issuer.write(folder)


def patient_setup(folder: Path, pool_file: Path, seconds: int) -> tuple[str, str]:
    """The token and URL files of the first pool Patient's patient (see the module
    docstring); (its id, its NHS number)."""
    entries = json.loads(pool_file.read_text(encoding="utf-8"))["entries"]
    if not entries:
        raise ValueError(f"{pool_file} holds no Patients")
    rid, nhs_number = str(entries[0]["id"]), str(entries[0]["nhs_number"])
    issuer = PatientIssuer.load(folder / "issuer-key.pem")
    _write_private(folder / "patient-token", (issuer.token(nhs_number, seconds) + "\n").encode())
    quoted = quote(rid, safe="")
    (folder / "patient-read.urls").write_text(
        f"# the patient's own Patient (NHS number {nhs_number})\nPatient/{quoted}\tid={rid}\n",
        encoding="utf-8")
    (folder / "patient-search-id.urls").write_text(
        f"# the patient's own Patient (NHS number {nhs_number})\n"
        f"Patient?_id={quoted}\tid={rid}\tmin=1\tmax=1\n", encoding="utf-8")
    return rid, nhs_number


# --- timing -------------------------------------------------------------------------------------


def per_call_us(fn: Callable[[int], object], calls: int, repeats: int) -> tuple[float, float]:
    """(median, best) over ``repeats`` of the mean µs per call of ``fn(i)``, i = 0..calls-1."""
    means = []
    for r in range(repeats):
        offset = r * calls
        t = time.perf_counter_ns()
        for i in range(offset, offset + calls):
            fn(i)
        means.append((time.perf_counter_ns() - t) / calls / 1000)
    return statistics.median(means), min(means)


def run(backend: str, folder: Path, db_url: str, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    import loadgen
    from fhirhub.auth.registration import register
    from fhirhub.config import Settings
    from fhirhub.engine import guard
    from fhirhub.engine.engine import Engine
    from fhirhub.engine.request import FhirRequest
    from fhirhub.engine.router import route

    issuer = PatientIssuer()
    settings = Settings(database_url=db_url, auth="on", workers=1,
                        auth_signing_key=str(folder / "auth-key.pem"),
                        audit_signing_key=str(folder / "audit-key.pem"),
                        auth_issuers=str(issuer.write(folder)), auth_token_seconds=7200)
    engine = Engine(settings)
    try:
        auth = engine.authenticator
        client = register(engine.store, settings, name="auth-micro", scopes=SCOPE,
                          jwks=json.dumps({"keys": [_dummy_jwk()]}))
        now = int(time.time())
        token = auth.tokens.issue(client.id, SCOPE, BASE, now)
        bearer = f"Bearer {token}"

        rng = random.Random(1)
        nhs = loadgen.NhsNumberSequence(rng)
        ids: list[str] = []
        numbers: list[str] = []
        for _ in range(args.patients):
            number = next(nhs)
            resp = engine.handle(FhirRequest(
                "POST", "Patient", headers={"authorization": bearer,
                                            "content-type": "application/fhir+json"},
                body=loadgen.dumps(loadgen.make_patient(rng, number))))
            if resp.status != 201:
                raise SystemExit(f"set-up create answered {resp.status}")
            ids.append(loadgen._id_from_response(resp.json_body or b"",
                                                 resp.headers.get("Location")))
            numbers.append(number)
        own_id, own_nhs = ids[0], numbers[0]
        patient_token = issuer.token(own_nhs, 7200)
        patient_bearer = f"Bearer {patient_token}"

        results: list[tuple[str, float, float]] = []

        def timed(name: str, fn: Callable[[int], object], calls: int) -> None:
            fn(0)  # once before timing (imports, first look-ups)
            med, best = per_call_us(fn, calls, args.repeats)
            results.append((name, med, best))
            print(f"  {name}: {med:,.2f} µs (best {best:,.2f})", file=sys.stderr)

        # Cold: a token never seen before, each call (issued up front, not timed).
        cold_n = args.cold * args.repeats + 1
        fresh = [f"Bearer {auth.tokens.issue(client.id, SCOPE, BASE, now)}" for _ in range(cold_n)]
        timed("authenticate, cold (ES256 verify)",
              lambda i: auth.authenticate(fresh[i], BASE), args.cold)
        auth._checked.clear()
        timed("authenticate, warm (cached)", lambda i: auth.authenticate(bearer, BASE), args.calls)
        fresh_patient = [f"Bearer {issuer.token(own_nhs, 7200)}" for _ in range(cold_n)]
        timed("authenticate patient token, cold (RS512 verify)",
              lambda i: auth.authenticate(fresh_patient[i], BASE), args.cold)
        auth._checked.clear()
        timed("authenticate patient token, warm",
              lambda i: auth.authenticate(patient_bearer, BASE), args.calls)

        system = auth.authenticate(bearer, BASE)
        patient = auth.authenticate(patient_bearer, BASE)
        timed("limit (no rate limit registered)", lambda i: auth.limit(system), args.calls)
        timed("grant_for, system", lambda i: guard.grant_for(engine, system), args.calls)
        timed("grant_for, patient (Patients by NHS number, cached 5 s)",
              lambda i: guard.grant_for(engine, patient), args.calls)

        read_route = route("GET", f"Patient/{own_id}")
        read_req = FhirRequest("GET", f"Patient/{own_id}")
        system_grant = guard.grant_for(engine, system)
        patient_grant = guard.grant_for(engine, patient)
        if patient_grant.patient_ids != (own_id,):
            raise SystemExit(f"the patient's compartment is {patient_grant.patient_ids}, "
                             f"not ({own_id},)")

        def authorize_with(grant: guard.Grant) -> Callable[[int], object]:
            def go(_: int) -> None:
                with guard.granted(grant):
                    guard.authorize(engine, read_req, read_route)
            return go

        timed("authorize read, system (scope check)", authorize_with(system_grant), args.calls)
        timed("authorize read, patient (scope + compartment query)",
              authorize_with(patient_grant), max(1, args.calls // 10))

        def handle(header: str | None, which: Callable[[int], str]) -> Callable[[int], object]:
            headers = {"authorization": header} if header else {}

            def go(i: int) -> None:
                resp = engine.handle(FhirRequest("GET", f"Patient/{which(i)}", headers=headers))
                if resp.status != 200:
                    raise SystemExit(f"read answered {resp.status}")
            return go

        def any_id(i: int) -> str:
            return ids[i % len(ids)]

        reads = max(1, args.calls // 10)
        for label, enabled, header, which in (
                ("Engine.handle read, auth off", False, None, any_id),
                ("Engine.handle read, system token", True, bearer, any_id),
                ("Engine.handle read of one's own Patient, auth off", False, None,
                 lambda i: own_id),
                ("Engine.handle read of one's own Patient, patient token", True,
                 patient_bearer, lambda i: own_id)):
            auth.enabled = enabled
            timed(label, handle(header, which), reads)
        auth.enabled = True
        return results
    finally:
        engine.store.close()


def _dummy_jwk() -> dict[str, Any]:
    """A public key to register the client with (its tokens are issued here directly, so
    the key is never used to sign anything)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(
        ec.SECP384R1()).public_key()))
    return {**jwk, "kid": "bench", "alg": "ES384", "use": "sig"}


def render(backend: str, results: list[tuple[str, float, float]], args: argparse.Namespace) -> str:
    host = benchutil.host_info()
    lines = [f"auth micro-benchmark, {backend}, {benchutil.utc_now_iso()}: {host['cpu_model']}, "
             f"{host['cores']} cores, Python {host['python']}; {args.patients} Patients, "
             f"median (best) of {args.repeats} repeats",
             "",
             "| what | µs per call | best |",
             "|---|---:|---:|"]
    lines += [f"| {name} | {med:,.1f} | {best:,.1f} |" for name, med, best in results]
    return "\n".join(lines)


# --- the report of auth_bench.sh's records -----------------------------------------------------

TARGET_PCT = 10.0  # token checking may cost less than this share of read throughput


def load_records(paths: list[Path]) -> list[dict[str, Any]]:
    """The HTTP records with a ``meta.mode`` in the JSON-lines files ``paths``, in order."""
    out = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                if r.get("kind") == "http" and (r.get("meta") or {}).get("mode"):
                    out.append(r)
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _pct(new: float, old: float) -> float:
    return 100 * (new - old) / old if old else float("nan")


def _num(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def _ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def _signed(v: float) -> str:
    return f"{v:+.1f} %"


def _label(r: dict[str, Any]) -> str:
    """The backend, and the series when the record names one."""
    series = (r.get("meta") or {}).get("series")
    return str(r.get("label") or "-") + (f" ({series})" if series else "")


def _pct_or_dash(v: object) -> str:
    return "-" if v is None else f"{v} %"


def spread_pct(rps: list[float]) -> float:
    """(max - min) / mean of the repeats, in %: 0 with one repeat."""
    return 100 * (max(rps) - min(rps)) / _mean(rps) if len(rps) > 1 else 0.0


def within_noise(change: float, by_pair: list[float], off_rps: list[float],
                 on_rps: list[float]) -> bool:
    """Is an off/on change no bigger than this machine's noise? Yes when the alternating
    pairs disagree in sign, or the change is smaller than the spread between repeats of
    one mode (the larger of the two). One repeat each: the pair alone cannot tell."""
    if len(by_pair) > 1 and len({v > 0 for v in by_pair}) > 1:
        return True
    spreads = [spread_pct(v) for v in (off_rps, on_rps) if len(v) > 1]
    return bool(spreads) and abs(change) < max(spreads)


def report(records: list[dict[str, Any]]) -> tuple[str, bool]:
    """Markdown: off vs on per backend x scenario x clients, the patient mode, every run;
    and whether every run was clean (no errors, requests measured)."""
    groups: dict[tuple[str, str, int], dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        key = (_label(r), str(r["scenario"]), int(r["clients"]))
        groups.setdefault(key, {}).setdefault(str(r["meta"]["mode"]), []).append(r)
    clean = all(not r["errors"] and not r.get("warmup_errors") and r["requests"] for r in records)
    lines: list[str] = []
    if records:
        host = records[0].get("host") or {}
        dates = sorted(str(r.get("date", "")) for r in records)
        lines += [f"{host.get('cpu_model', '?')}, {host.get('cores', '?')} cores, Python "
                  f"{host.get('python', '?')}; {dates[0]} to {dates[-1]}; "
                  f"{len(records)} runs", ""]
    lines += ["Change = (on - off) / off of the mean req/s; by pair: each `on` run against "
              "the `off` run next to it (same repeat number); spread = (max - min) / mean "
              "of one mode's repeats; within noise: the pairs disagree in sign, or the "
              "change is smaller than the larger spread.", "",
              "| backend | scenario | clients | req/s off | req/s on | change | by pair "
              "| spread off / on | p50 ms off / on | p99 ms off / on | errors | cost < 10 % |",
              "|---|---|---:|---:|---:|---:|---|---|---|---|---:|---|"]
    patient_rows: list[str] = []
    for (backend, scenario, clients), modes in groups.items():
        off, on = modes.get("off", []), modes.get("on", [])
        errors = sum(int(r["errors"]) + int(r.get("warmup_errors") or 0)
                     for rs in modes.values() for r in rs)
        if off and on:
            off_rps = [float(r["rps"]) for r in off]
            on_rps = [float(r["rps"]) for r in on]
            change = _pct(_mean(on_rps), _mean(off_rps))
            by_rep = {str(r["meta"].get("rep")): float(r["rps"]) for r in off}
            by_pair = [_pct(float(r["rps"]), by_rep[str(r["meta"].get("rep"))])
                       for r in on if str(r["meta"].get("rep")) in by_rep]
            pairs = [_signed(v) for v in by_pair]
            noise = within_noise(change, by_pair, off_rps, on_rps)
            if errors:
                verdict = "**no: errors**"
            elif -change >= TARGET_PCT:
                verdict = "inconclusive (within noise)" if noise else "**no**"
            else:
                verdict = "yes (within noise)" if noise else "yes"
            lines.append(
                f"| {backend} | {scenario} | {clients} | {_num(_mean(off_rps))} | "
                f"{_num(_mean(on_rps))} | {_signed(change)} | {', '.join(pairs) or '-'} | "
                f"{spread_pct(off_rps):.1f} % / {spread_pct(on_rps):.1f} % | "
                f"{_ms(_mean([r['p50_ms'] for r in off]))} / {_ms(_mean([r['p50_ms'] for r in on]))} | "
                f"{_ms(_mean([r['p99_ms'] for r in off]))} / {_ms(_mean([r['p99_ms'] for r in on]))} | "
                f"{errors} | {verdict} |")
        patient = modes.get("patient", [])
        if patient:
            p_rps = _mean([float(r["rps"]) for r in patient])
            vs_on = _signed(_pct(p_rps, _mean([float(r["rps"]) for r in on]))) if on else "-"
            vs_off = _signed(_pct(p_rps, _mean([float(r["rps"]) for r in off]))) if off else "-"
            patient_rows.append(
                f"| {backend} | {scenario} | {clients} | {_num(p_rps)} | {vs_off} | {vs_on} | "
                f"{', '.join(_num(float(r['rps'])) for r in patient)} | "
                f"{_ms(_mean([r['p50_ms'] for r in patient]))} | "
                f"{_ms(_mean([r['p99_ms'] for r in patient]))} | "
                f"{sum(int(r['errors']) + int(r.get('warmup_errors') or 0) for r in patient)} |")
    if patient_rows:
        lines += ["", "Patient token (reads of the patient's own Patient, with the compartment "
                  "check; not the < 10 % target):", "",
                  "| backend | scenario | clients | req/s patient | vs off | vs on | repeats "
                  "| p50 ms | p99 ms | errors |",
                  "|---|---|---:|---:|---:|---:|---|---:|---:|---:|", *patient_rows]
    lines += ["", "Every run, in order:", "",
              "| # | backend | mode | rep | scenario | clients | req/s | p50 ms | p99 ms | errors "
              "| server CPU | loadgen CPU | busy before |",
              "|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, r in enumerate(records, 1):
        meta = r["meta"]
        err = int(r["errors"]) + int(r.get("warmup_errors") or 0)
        lines.append(
            f"| {n} | {_label(r)} | {meta['mode']} | {meta.get('rep', '-')} | "
            f"{r['scenario']} | {r['clients']} | {_num(float(r['rps']))} | {_ms(r['p50_ms'])} | "
            f"{_ms(r['p99_ms'])} | {f'**{err}**' if err else 0} | "
            f"{r.get('server_cpu_pct') if r.get('server_cpu_pct') is not None else '-'} % | "
            f"{r.get('loadgen_cpu_pct')} % | {_pct_or_dash(meta.get('busy'))} |")
    if not clean:
        lines += ["", "WARNING: some runs saw errors or measured nothing: they do not count."]
    return "\n".join(lines), clean


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--pg-admin-url", default=benchutil.DEFAULT_PG_ADMIN_URL)
    ap.add_argument("--calls", type=int, default=20_000,
                    help="calls per repeat of the warm timings (default 20,000; the "
                         "compartment query and Engine.handle take a tenth)")
    ap.add_argument("--cold", type=int, default=300,
                    help="new tokens per repeat of the cold timings (default 300)")
    ap.add_argument("--repeats", type=int, default=5, help="repeats (default 5)")
    ap.add_argument("--patients", type=int, default=200, help="Patients in the database")
    helper = ap.add_mutually_exclusive_group()
    helper.add_argument("--write-issuer", metavar="DIR", type=Path,
                        help="auth_bench.sh: write a new issuer into DIR")
    helper.add_argument("--patient-setup", metavar="DIR", type=Path,
                        help="auth_bench.sh: the patient token and URL files in DIR")
    helper.add_argument("--report", metavar="FILE", type=Path, nargs="+",
                        help="auth_bench.sh: the tables of its records")
    ap.add_argument("--pool-file", type=Path, help="with --patient-setup: loadgen's pool")
    ap.add_argument("--seconds", type=int, default=7200,
                    help="with --patient-setup: the token's lifetime (default 7200)")
    args = ap.parse_args(argv)
    if args.write_issuer is not None:
        print(write_issuer(args.write_issuer))
        return 0
    if args.patient_setup is not None:
        if args.pool_file is None:
            ap.error("--patient-setup needs --pool-file")
        rid, nhs_number = patient_setup(args.patient_setup, args.pool_file, args.seconds)
        print(f"patient: NHS number {nhs_number}, Patient/{rid}")
        return 0
    if args.report is not None:
        text, clean = report(load_records(args.report))
        print(text)
        return 0 if clean else 1
    if min(args.calls, args.cold, args.repeats, args.patients) < 1:
        ap.error("--calls, --cold, --repeats and --patients must be at least 1")

    with tempfile.TemporaryDirectory(prefix="fhirhub-auth-micro.") as tmp:
        folder = Path(tmp)
        if args.backend == "sqlite":
            results = run("sqlite", folder, f"sqlite:///{folder}/micro.sqlite3", args)
        else:
            name = f"fhirhub_auth_micro_{uuid.uuid4().hex[:8]}"
            url = benchutil.pg_recreate_database(args.pg_admin_url, name)
            try:
                results = run("postgresql", folder, url, args)
            finally:
                benchutil.pg_drop_database(args.pg_admin_url, name)
    print(render(args.backend, results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
