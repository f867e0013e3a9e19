#!/usr/bin/env python3
"""Turn benchmark records (JSON lines from loadgen.py and import_bench.py) into the
markdown tables used in docs/performance.md.

  python bench/report.py bench/results/2026-11-24-0515.jsonl [--wide]

HTTP runs: backend, scenario, clients, req/s, p50 ms, p99 ms, errors (--wide adds p90,
max, and the CPU used by the load generator and the server). Search runs (records of
search_bench.sh, meta suite=search): a table by scenario, with Medplum's figure and the
issue 4 targets where they apply. Imports: a last table.
Exit status 1 when a record shows errors or a failed import, so scripts notice.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def load_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in paths:
        with Path(path).open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError as e:
                    raise SystemExit(f"error: {path}:{n}: not JSON ({e})") from e
    return records


def _num(v: Any, small: int = 2, big: int = 1, limit: float = 10) -> str:
    """Fixed decimals: more for small numbers, fewer for big ones; '-' for missing."""
    if v is None:
        return "-"
    x = float(v)
    return f"{x:,.{small if abs(x) < limit else big}f}"


def _rps(v: Any) -> str:
    return _num(v, small=1, big=0, limit=100)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{float(v):.0f}%"


def _errors(r: dict[str, Any]) -> str:
    n = int(r.get("errors", 0)) + int(r.get("warmup_errors", 0))
    if r.get("requests", 0) == 0:
        return "**no requests**"
    if not n:
        return "0"
    detail = ", ".join(f"{k}: {v}" for k, v in r.get("errors_by_status", {}).items())
    warm = f", {r['warmup_errors']} in warm-up" if r.get("warmup_errors") else ""
    return f"**{r.get('errors', 0)}** ({detail}{warm})" if detail or warm else f"**{n}**"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def http_table(records: Sequence[dict[str, Any]], wide: bool = False) -> str:
    header = ["backend", "scenario", "clients", "req/s", "p50 ms", "p99 ms", "errors"]
    if wide:
        header[5:5] = ["p90 ms"]
        header[7:7] = ["max ms"]
        header += ["loadgen CPU", "server CPU"]
    rows = []
    for r in records:
        row = [str(r.get("label") or "-"), str(r["scenario"]), str(r["clients"]),
               _rps(r.get("rps")), _num(r.get("p50_ms")), _num(r.get("p99_ms")), _errors(r)]
        if wide:
            row[5:5] = [_num(r.get("p90_ms"))]
            row[7:7] = [_num(r.get("max_ms"))]
            row += [_pct(r.get("loadgen_cpu_pct")), _pct(r.get("server_cpu_pct"))]
        rows.append(row)
    right = {i for i, h in enumerate(header) if h not in ("backend", "scenario", "errors")}
    return table(header, rows, right)


# Issue 4: Medplum 4.5.2 on a machine like ours, 100 patients, 16 clients (requests/s).
MEDPLUM_RPS = {
    "s-identifier": 1495.0,
    "s-family-birthdate": 1030.0,
    "s-obs-patient-code": 1067.0,
    "s-include": 398.0,
}
TARGET_FACTOR = 2.0  # at 100 patients, on both backends
LARGE_SCALE = "10"  # at 1,000 patients on PostgreSQL, every query under these:
TARGET_P50_MS = 20.0
TARGET_P99_MS = 100.0
SEARCH_ORDER = ("s-identifier", "s-family-birthdate", "s-obs-patient-code",
                "s-obs-patient-code-date", "s-chain2", "s-has", "s-include", "s-revinclude",
                "s-sort-deep", "s-total")


def is_search(r: dict[str, Any]) -> bool:
    return r.get("kind", "http") == "http" and r.get("meta", {}).get("suite") == "search"


def search_target(r: dict[str, Any]) -> tuple[str, str]:
    """(the target that applies to this record, whether it is met): '-' when none does."""
    meta = r.get("meta", {})
    scale, backend = str(meta.get("scale", "")), str(r.get("label") or "")
    failed = r.get("errors") or r.get("warmup_errors") or not r.get("requests")
    verdict = "**no (errors)**" if failed else ""
    if scale == "1" and r["scenario"] in MEDPLUM_RPS:
        want = TARGET_FACTOR * MEDPLUM_RPS[r["scenario"]]
        ok = float(r.get("rps") or 0) >= want
        return f"≥ {want:,.0f}/s", verdict or ("yes" if ok else "**no**")
    if scale == LARGE_SCALE and backend == "postgresql":
        p50, p99 = r.get("p50_ms"), r.get("p99_ms")
        ok = p50 is not None and p99 is not None and p50 < TARGET_P50_MS and p99 < TARGET_P99_MS
        return (f"p50 < {TARGET_P50_MS:g}, p99 < {TARGET_P99_MS:g} ms",
                verdict or ("yes" if ok else "**no**"))
    return "-", "-"


def _search_key(r: dict[str, Any]) -> tuple[int, str, int, str]:
    name = str(r["scenario"])
    order = SEARCH_ORDER.index(name) if name in SEARCH_ORDER else len(SEARCH_ORDER)
    scale = str(r.get("meta", {}).get("scale", ""))
    return order, name, int(scale) if scale.isdigit() else 0, str(r.get("label") or "")


def search_table(records: Sequence[dict[str, Any]], wide: bool = False) -> str:
    header = ["scenario", "backend", "patients", "req/s", "p50 ms", "p99 ms", "errors",
              "Medplum req/s", "target", "met"]
    if wide:
        header[6:6] = ["max ms"]
        header += ["loadgen CPU", "server CPU"]
    rows = []
    for r in sorted(records, key=_search_key):
        meta = r.get("meta", {})
        patients = meta.get("patients") or "-"
        if str(patients).isdigit():
            patients = f"{int(patients):,}"
        medplum = MEDPLUM_RPS.get(r["scenario"])
        target, met = search_target(r)
        row = [str(r["scenario"]), str(r.get("label") or "-"), str(patients), _rps(r.get("rps")),
               _num(r.get("p50_ms")), _num(r.get("p99_ms")), _errors(r),
               "-" if medplum is None else f"{medplum:,.0f}", target, met]
        if wide:
            row[6:6] = [_num(r.get("max_ms"))]
            row += [_pct(r.get("loadgen_cpu_pct")), _pct(r.get("server_cpu_pct"))]
        rows.append(row)
    right = {i for i, h in enumerate(header)
             if h in ("patients", "req/s", "p50 ms", "p99 ms", "max ms", "Medplum req/s",
                      "loadgen CPU", "server CPU")}
    return table(header, rows, right)


def search_settings_line(records: Sequence[dict[str, Any]]) -> str:
    data = sorted({(int(str(r["meta"].get("scale", 0))), str(r["meta"].get("resources", "?")))
                   for r in records if str(r.get("meta", {}).get("scale", "")).isdigit()})
    clients = sorted({int(r["clients"]) for r in records})
    sizes = "; ".join(f"scale {s}: {int(n):,} resources" if n.isdigit() else f"scale {s}"
                      for s, n in data)
    return (f"Search runs: {'/'.join(map(str, clients))} clients, each picking requests at "
            f"random from its scenario's URL file ({sizes}). Medplum: 4.5.2, 100 patients, "
            f"16 clients. Targets: {TARGET_FACTOR:g}x Medplum at 100 patients on both "
            f"backends; p50 < {TARGET_P50_MS:g} ms and p99 < {TARGET_P99_MS:g} ms at 1,000 "
            "patients on PostgreSQL.")


def import_table(records: Sequence[dict[str, Any]]) -> str:
    header = ["backend", "resources", "wall s", "resources/s", "CPU s", "peak RSS MB",
              "database MB", "result"]
    rows = []
    for r in records:
        size = r.get("db_bytes")
        rss = r.get("peak_rss_kb")
        rows.append([
            str(r.get("label") or "-"), f"{r['resources']:,}", _num(r.get("wall_s")),
            _rps(r.get("resources_per_s")), _num(r.get("cpu_s")),
            "-" if rss is None else f"{rss / 1024:.0f}",
            "-" if size is None else f"{size / 1e6:.1f}",
            "ok" if r.get("ok") else f"**FAILED (exit {r.get('exit_code')})**",
        ])
    return table(header, rows, {1, 2, 3, 4, 5, 6})


def host_line(records: Sequence[dict[str, Any]]) -> str:
    hosts = {json.dumps(r.get("host", {}), sort_keys=True) for r in records}
    parts = []
    for h in sorted(hosts):
        info = json.loads(h)
        parts.append(f"{info.get('cpu_model', '?')}, {info.get('cores', '?')} cores, "
                     f"Python {info.get('python', '?')}")
    dates = sorted(str(r["date"]) for r in records if r.get("date"))
    when = f"{dates[0]} to {dates[-1]}" if dates else "unknown date"
    return f"Measured on {'; '.join(parts) or 'unknown host'} ({when})."


def settings_line(http: Sequence[dict[str, Any]]) -> str:
    if not http:
        return ""
    def values(key: str) -> str:
        found = sorted({float(r[key]) for r in http if r.get(key) is not None})
        return "/".join(f"{v:g}" for v in found) or "?"

    pools = sorted({int(r["pool_size"]) for r in http if r.get("pool_size")})
    workers = sorted({str(r.get("meta", {}).get("workers")) for r in http
                      if r.get("meta", {}).get("workers")})
    bits = [f"{values('duration_s')} s measured after {values('warmup_s')} s warm-up per run"]
    if pools:
        bits.append(f"pool of {'/'.join(map(str, pools))} Patients for read/update/search")
    if workers:
        bits.append(f"server --workers {'/'.join(workers)}")
    bits.append("load generator on the same machine")
    return "; ".join(bits) + "."


def render(records: Sequence[dict[str, Any]], wide: bool = False) -> str:
    search = [r for r in records if is_search(r)]
    http = [r for r in records if r.get("kind", "http") == "http" and not is_search(r)]
    imports = [r for r in records if r.get("kind") == "import"]
    out = [host_line(records)]
    if http:
        out += ["", settings_line(http), "", http_table(http, wide)]
    if search:
        out += ["", settings_line(search), search_settings_line(search), "",
                search_table(search, wide)]
    if imports:
        out += ["", import_table(imports)]
    bad = [r for r in [*http, *search]
           if r.get("errors") or r.get("warmup_errors") or not r.get("requests")]
    bad += [r for r in imports if not r.get("ok")]
    if bad:
        out += ["", f"**WARNING: {len(bad)} run(s) had errors or failed; their numbers are "
                    "not valid measurements.**"]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="JSON-lines result files")
    ap.add_argument("--wide", action="store_true", help="more columns (p90, max, CPU)")
    args = ap.parse_args(argv)
    records = load_records(args.files)
    if not records:
        print("error: no records", file=sys.stderr)
        return 1
    text = render(records, args.wide)
    print(text)
    return 1 if "**WARNING" in text else 0


if __name__ == "__main__":
    sys.exit(main())
