#!/usr/bin/env python3
"""``fhirhub`` with the audit log stubbed out: the baseline of ``bench/audit_bench.sh``.

Auditing has no off switch in the product (docs/adr/0012-audit.md). This stand-in for the
``fhirhub`` executable, for benchmarks only, patches the audit machinery away and then
runs ``fhirhub.cli.main()`` as the real executable does::

    bench/fhirhub_noaudit.py serve --db sqlite:///tmp/x.sqlite3 --workers 2
    NOAUDIT=0 bench/fhirhub_noaudit.py serve ...   # the real audit, same start-up path

What the stub removes (``install()``):

* ``AuditTrail.read`` and ``AuditTrail.wrote`` do nothing (no entities noted, no bodies
  parsed to find patients);
* ``fhirhub.engine.auditing.recording`` hands back the transaction unwrapped;
* ``fhirhub.engine.auditing.exchange`` and ``entry_exchange`` return one prebuilt
  ``Exchange`` (no record built, no digests);
* ``Auditor.append`` does nothing and ``Auditor.submit`` returns a completed future (no
  audit rows, no group commit for reads);
* ``fhirhub.audit.checkpoints.make_checkpoint`` does nothing (the signed checkpoint each
  worker writes every 60 s).

What stays: the ``AuditTrail`` object per request (a uuid4) and the engine's rendering of a
write's response inside its transaction (``Engine._audited_write``), which the design
chose for the audit's sake; so the stub measures the audit *sink*, not every trace of it.

``fhirhub serve --workers N`` starts its workers with multiprocessing's ``spawn``: fresh
interpreters that re-run this file as ``__mp_main__`` (multiprocessing does that to
rebuild the parent's main module), so the patches at the bottom of this file, at import,
apply in every worker too. Each process says so on stderr (``noaudit: audit stubbed in
pid N``), and after ``serve`` returns (SIGTERM) the parent prints the number of rows in
``audit_event`` (``noaudit: audit_event rows: N``), so a stubbed run can be checked to have
written none.

Extra first arguments (not fhirhub commands):

* ``--selfcheck``: print whether the patches are in force here and in a child process
  started with ``spawn``, as the server's workers are (JSON; exit 1 if not both);
* ``--merge OUT RUN_DIR...``: merge the results of ``run.sh`` runs of ``audit_bench.sh``
  (each ``RUN_DIR`` named ``<backend>-<build>-<rep>``) into one JSON-lines file, adding
  ``meta.build``, ``meta.rep``, ``meta.audit_rows``, ``meta.run_requests`` and
  ``meta.suite=audit``;
* ``--profile sqlite|postgresql [READS]``: cProfile and per-thread CPU of ``READS``
  (3,000) in-process ``Engine.respond`` reads and READS/3 creates, audited then stubbed;
* ``--report FILE...``: the audit-vs-stub table of such records (markdown); records with a
  ``meta.series`` (e.g. a later re-check) get rows of their own.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
# Run as a script, this folder (loadgen.py, report.py, ...) comes first on sys.path: keep
# it from shadowing anything the server imports. (Not when imported, as by the tests.)
if __name__ in ("__main__", "__mp_main__") and sys.path and sys.path[0] \
        and Path(sys.path[0]).resolve() == _HERE:
    del sys.path[0]

if __name__ == "__main__":
    # Started by its shebang with a Python that lacks fhirhub: run again under $PYTHON
    # or the project's venv.
    try:
        import fhirhub  # noqa: F401
    except ImportError:
        if os.environ.get("_NOAUDIT_REEXEC"):
            raise
        os.environ["_NOAUDIT_REEXEC"] = "1"
        _python = os.environ.get("PYTHON") or str(_HERE.parent / ".venv" / "bin" / "python")
        os.execv(_python, [_python, __file__, *sys.argv[1:]])

ENV = "NOAUDIT"  # "0" keeps the real audit (the same wrapper, unpatched)
_PATCHED: dict[str, Any] = {}  # "module:attr" -> the original, while installed


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


def _done() -> Future[None]:
    f: Future[None] = Future()
    f.set_result(None)
    return f


def install() -> None:
    """Stub the audit sink out (idempotent; ``uninstall()`` undoes it)."""
    if _PATCHED:
        return
    import fhirhub.audit.checkpoints as checkpoints
    from fhirhub.audit.auditor import Auditor, Exchange
    from fhirhub.audit.record import SUCCESS, AuditRecord
    from fhirhub.engine import auditing
    from fhirhub.engine.auditing import AuditTrail

    stub = Exchange(AuditRecord(id="", recorded="", kind="rest", interaction="stub",
                                outcome=SUCCESS))
    done = _done()

    def trail_read(self: Any, versions: Any, *, role: str = "domain") -> None:
        return None

    def trail_wrote(self: Any, version: Any, index: Any, before: Any) -> None:
        return None

    def append(self: Any, tx: Any, exchanges: Sequence[Any]) -> None:
        return None

    def submit(self: Any, exchanges: Sequence[Any]) -> Future[None]:
        return done

    patches: list[tuple[Any, str, Any]] = [
        (AuditTrail, "read", trail_read),
        (AuditTrail, "wrote", trail_wrote),
        (auditing, "recording", lambda tx, trail: tx),
        (auditing, "exchange", lambda *a, **k: stub),
        (auditing, "entry_exchange", lambda *a, **k: stub),
        (Auditor, "append", append),
        (Auditor, "submit", submit),
        (checkpoints, "make_checkpoint", lambda *a, **k: None),
    ]
    for owner, name, replacement in patches:
        label = owner.__qualname__ if isinstance(owner, type) else owner.__name__
        _PATCHED[f"{label}.{name}"] = (owner, name, getattr(owner, name))
        replacement._noaudit = True
        setattr(owner, name, replacement)


def uninstall() -> None:
    for owner, name, original in _PATCHED.values():
        setattr(owner, name, original)
    _PATCHED.clear()


def installed() -> bool:
    """True when the patches are in force in this process (checked on the objects)."""
    from fhirhub.audit.auditor import Auditor
    from fhirhub.engine.auditing import AuditTrail

    return all(getattr(f, "_noaudit", False) for f in
               (AuditTrail.read, AuditTrail.wrote, Auditor.append, Auditor.submit))


# --- the row count after `serve` --------------------------------------------------------------


def db_url(argv: Sequence[str]) -> str | None:
    """The ``--db`` of a fhirhub command line (else FHIRHUB_DATABASE_URL)."""
    for i, arg in enumerate(argv):
        if arg == "--db" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--db="):
            return arg.split("=", 1)[1]
    return os.environ.get("FHIRHUB_DATABASE_URL")


def audit_rows(url: str) -> int:
    """Rows in the audit_event table of the database at ``url``."""
    if url.startswith("sqlite:"):
        import sqlite3

        path = url.removeprefix("sqlite://")
        path = path[1:] if path.startswith("/") else path
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM audit_event").fetchone()[0])
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM audit_event").fetchone()
        return int(row[0]) if row else 0


def run_fhirhub(argv: Sequence[str]) -> int:
    from fhirhub.cli import main

    code: Any = 0
    try:
        main(args=list(argv), prog_name="fhirhub")
    except SystemExit as exit_:
        code = exit_.code
    finally:
        url = db_url(argv)
        if argv and argv[0] == "serve" and url:
            try:
                print(f"noaudit: audit_event rows: {audit_rows(url)}", file=sys.stderr,
                      flush=True)
            except Exception as exc:
                print(f"noaudit: could not count audit_event rows: {exc}", file=sys.stderr,
                      flush=True)
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


# --- --selfcheck ----------------------------------------------------------------------------


def _child_state() -> bool:
    return installed()


def selfcheck() -> int:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # as fhirhub.api.server starts workers
    with ctx.Pool(1) as pool:
        child = pool.apply(_child_state)
    state = {"stub_enabled": enabled(), "parent": installed(), "spawned_child": child}
    print(json.dumps(state))
    return 0 if state["parent"] == state["spawned_child"] == state["stub_enabled"] else 1


# --- merging and reporting audit_bench.sh's runs ----------------------------------------------

RUN_DIR = re.compile(r"(?P<backend>[a-z]+)-(?P<build>audit|stub)-(?P<rep>\d+)$")
ROWS_LINE = re.compile(r"noaudit: audit_event rows: (\d+)")


def merge(out: Path, run_dirs: Sequence[Path]) -> int:
    """Merge run.sh's records of each run folder into ``out``; returns the record count."""
    n = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as f:
        for d in run_dirs:
            m = RUN_DIR.search(d.name)
            if not m:
                raise SystemExit(f"error: {d} is not named <backend>-<audit|stub>-<rep>")
            rows = None
            for log in sorted(d.glob("*-server.log")):
                found = ROWS_LINE.findall(log.read_text(encoding="utf-8", errors="replace"))
                if found:
                    rows = int(found[-1])
            records = [json.loads(line) for p in sorted(d.glob("*.jsonl"))
                       for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
            # Requests the server answered in this run: each scenario's measured and
            # warm-up requests, the pool's creates (once) and its liveness checks.
            handled = sum(int(r.get("requests", 0)) + int(r.get("warmup_requests", 0))
                          for r in records)
            if records:
                handled += max(int(r.get("pool_size") or 0) for r in records)
            for r in records:
                meta = r.setdefault("meta", {})
                meta.update(suite="audit", build=m["build"], rep=int(m["rep"]),
                            audit_rows=rows, run_requests=handled)
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
                n += 1
    return n


def _fmt(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def report(records: Sequence[dict[str, Any]]) -> tuple[list[str], bool]:
    """The markdown tables, and whether every record was clean (no errors)."""
    http = [r for r in records if r.get("kind") == "http"
            and (r.get("meta") or {}).get("suite") == "audit"]
    groups: dict[tuple[str, str, int], dict[str, list[dict[str, Any]]]] = {}
    for r in http:
        series = r["meta"].get("series")  # runs of another occasion, kept apart
        label = f"{r.get('label')} ({series})" if series else str(r.get("label"))
        key = (label, str(r["scenario"]), int(r["clients"]))
        groups.setdefault(key, {}).setdefault(r["meta"]["build"], []).append(r)
    order = {"sqlite": 0, "postgresql": 1}
    clean = all(not r.get("errors") and not r.get("warmup_errors") for r in http)
    lines = [
        "| backend | scenario | clients | req/s audit | req/s stub | cost | cost by pair "
        "| p50 ms audit / stub | p99 ms audit / stub | ≤ 15 % |",
        "|---|---|---:|---:|---:|---:|---|---|---|---|",
    ]
    for key in sorted(groups, key=lambda k: (" (" in k[0], order.get(k[0].split(" (")[0], 9),
                                             k[0], k[1], -k[2])):
        backend, scenario, clients = key
        runs = groups[key]
        audit, stub = runs.get("audit", []), runs.get("stub", [])
        a = statistics.fmean(r["rps"] for r in audit) if audit else None
        s = statistics.fmean(r["rps"] for r in stub) if stub else None
        cost = (s - a) / s if a is not None and s else None
        pairs = []
        for rep in sorted({r["meta"]["rep"] for r in audit} & {r["meta"]["rep"] for r in stub}):
            ra = statistics.fmean(r["rps"] for r in audit if r["meta"]["rep"] == rep)
            rs = statistics.fmean(r["rps"] for r in stub if r["meta"]["rep"] == rep)
            pairs.append(f"{100 * (rs - ra) / rs:.0f} %")
        p50 = " / ".join(_ms(statistics.fmean(r["p50_ms"] for r in x)) if x else "-"
                         for x in (audit, stub))
        p99 = " / ".join(_ms(statistics.fmean(r["p99_ms"] for r in x)) if x else "-"
                         for x in (audit, stub))
        met = "-" if cost is None else ("yes" if cost <= 0.15 else "**no**")
        lines.append(f"| {backend} | {scenario} | {clients} | {_fmt(a)} | {_fmt(s)} | "
                     f"{'-' if cost is None else f'{100 * cost:.0f} %'} | {', '.join(pairs)} "
                     f"| {p50} | {p99} | {met} |")
    lines += ["", "All runs, in the order they ran:", "",
              "| # | backend | build | rep | scenario | clients | req/s | p50 ms | p99 ms "
              "| errors | server CPU | loadgen CPU | audit rows / requests |",
              "|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for i, r in enumerate(sorted(http, key=lambda r: r.get("date", "")), 1):
        meta = r["meta"]
        rows, handled = meta.get("audit_rows"), meta.get("run_requests")
        ratio = ("-" if rows is None else
                 f"{rows:,} / {handled:,}" if handled else f"{rows:,}")
        errors = int(r.get("errors", 0)) + int(r.get("warmup_errors", 0))
        label = f"{r.get('label')} ({meta['series']})" if meta.get("series") else r.get("label")
        lines.append(
            f"| {i} | {label} | {meta['build']} | {meta['rep']} | {r['scenario']} | "
            f"{r['clients']} | {_fmt(r['rps'])} | {_ms(r.get('p50_ms'))} | "
            f"{_ms(r.get('p99_ms'))} | {'**' + str(errors) + '**' if errors else 0} | "
            f"{_pct(r.get('server_cpu_pct'))} | {_pct(r.get('loadgen_cpu_pct'))} | {ratio} |")
    return lines, clean


# --- --profile: where the time of one request goes, audited vs. stubbed ------------------------


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of each thread of this process, by thread name."""
    import threading

    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for t in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{t.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[t.name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def profile(backend: str, reads: int) -> int:
    """In-process, one thread: ``reads`` ``Engine.respond`` reads (of 300 Patients) and
    reads/3 creates, audited and then stubbed; prints per call the wall time, the
    process's CPU, each thread's CPU (the committers commit the audit records), and
    cProfile's cumulative times of the audit's own functions (profiler overhead
    included)."""
    import cProfile
    import io
    import pstats
    import random
    import shutil
    import tempfile
    import time

    sys.path.insert(0, str(_HERE))
    import benchutil
    import loadgen
    from fhirhub.config import Settings
    from fhirhub.engine.engine import Engine
    from fhirhub.engine.request import FhirRequest

    tmp = tempfile.mkdtemp(prefix="fhirhub-audit-profile.")
    admin = os.environ.get("PG_ADMIN_URL", benchutil.DEFAULT_PG_ADMIN_URL)
    pg_db = "fhirhub_audit_profile"
    url = (f"sqlite:///{tmp}/db.sqlite3" if backend == "sqlite"
           else benchutil.pg_recreate_database(admin, pg_db))
    engine = Engine(Settings(database_url=url, audit_signing_key=f"{tmp}/key.pem", auth="off"))
    rng = random.Random(1)
    nhs = loadgen.NhsNumberSequence(rng)

    def create() -> FhirRequest:
        return FhirRequest(method="POST", path="Patient",
                           body=loadgen.dumps(loadgen.make_patient(rng, next(nhs))),
                           headers={"content-type": "application/fhir+json"})

    def run(label: str, requests: list[FhirRequest]) -> None:
        for req in requests[:200]:  # warm-up
            engine.respond(req)
        requests = requests[200:]
        prof = cProfile.Profile()
        threads, wall, cpu = _thread_cpu(), time.perf_counter(), time.process_time()
        prof.enable()
        for req in requests:
            engine.respond(req)
        prof.disable()
        n = len(requests)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        per_thread = {k: round(1e6 * (v - threads.get(k, 0)) / n)
                      for k, v in _thread_cpu().items() if v - threads.get(k, 0) > 0}
        print(f"## {backend} {label}: {n} calls; per call wall {1e6 * wall / n:.0f} µs, "
              f"process CPU {1e6 * cpu / n:.0f} µs; CPU µs by thread {per_thread}")
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(
            r"fhirhub/(audit/|engine/auditing|store/audit)", 12)
        print("\n".join(line for line in out.getvalue().splitlines()
                        if "fhirhub/" in line or "ncalls" in line), flush=True)

    try:
        ids = [json.loads(engine.respond(create()).body)["id"] for _ in range(300)]
        for build in ("audit", "stub"):
            if build == "stub":
                install()
            run(f"read {build}", [FhirRequest(method="GET", path=f"Patient/{ids[i % 300]}")
                                  for i in range(reads + 200)])
            run(f"create {build}", [create() for _ in range(reads // 3 + 200)])
            uninstall()
    finally:
        engine.store.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if backend != "sqlite":
            benchutil.pg_drop_database(admin, pg_db)
    return 0


def _pct(v: Any) -> str:
    return "-" if v is None else f"{float(v):.0f} %"


def _load(paths: Sequence[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for p in paths
            for line in Path(p).read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["--selfcheck"]:
        return selfcheck()
    if argv[:1] == ["--profile"]:
        if len(argv) not in (2, 3) or argv[1] not in ("sqlite", "postgresql"):
            print("usage: fhirhub_noaudit.py --profile sqlite|postgresql [READS]",
                  file=sys.stderr)
            return 2
        return profile(argv[1], int(argv[2]) if len(argv) == 3 else 3000)
    if argv[:1] == ["--merge"]:
        if len(argv) < 3:
            print("usage: fhirhub_noaudit.py --merge OUT.jsonl RUN_DIR...", file=sys.stderr)
            return 2
        n = merge(Path(argv[1]), [Path(d) for d in argv[2:]])
        print(f"merged {n} record(s) into {argv[1]}", file=sys.stderr)
        return 0
    if argv[:1] == ["--report"]:
        if len(argv) < 2:
            print("usage: fhirhub_noaudit.py --report FILE.jsonl...", file=sys.stderr)
            return 2
        lines, clean = report(_load(argv[1:]))
        print("\n".join(lines))
        return 0 if clean else 1
    return run_fhirhub(argv)


# Run as the program (or re-run as a spawned worker's __mp_main__), not when imported.
if __name__ in ("__main__", "__mp_main__") and enabled() \
        and sys.argv[1:2] not in (["--report"], ["--merge"], ["--profile"]):
    install()
    print(f"noaudit: audit stubbed in pid {os.getpid()}", file=sys.stderr, flush=True)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
