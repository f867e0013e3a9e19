#!/usr/bin/env python3
"""Time ``fhirhub import`` of the Synthea sample into a fresh, empty database.

  python bench/import_bench.py --backend sqlite
  python bench/import_bench.py --backend postgresql \\
      --pg-admin-url postgresql://postgres@127.0.0.1:5432/postgres --json out.jsonl

SQLite imports into a new file in a temporary folder; PostgreSQL into a new database
``fhirhub_bench_<random>`` that this script creates first and drops afterwards (unless
--keep). Reports resources/s, where the resources are counted from the file itself: the
entries of every transaction/batch/collection Bundle, plus each other resource line (the
sample: 100 patient transaction Bundles, a hospital and a practitioner Bundle, and a Group,
38,971 resources in all). Wall time covers the whole ``fhirhub import`` process, start-up
included.

Exit status: 0 ok, 1 the import failed (a record with ok=false is still written).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import benchutil

HERE = Path(__file__).resolve().parent
DEFAULT_FILE = HERE / "data" / "synthea" / "bundles.ndjson.gz"
EXPLODED_BUNDLE_TYPES = {"transaction", "batch", "collection"}

try:
    import orjson

    def _loads(text: str) -> Any:
        return orjson.loads(text)

except ImportError:  # pragma: no cover - depends on the environment

    def _loads(text: str) -> Any:
        return json.loads(text)


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _resources_in(doc: Any) -> Iterator[str]:
    """Resource types that importing one top-level JSON document stores."""
    if not isinstance(doc, dict) or "resourceType" not in doc:
        raise ValueError("not a FHIR resource")
    if doc["resourceType"] == "Bundle" and doc.get("type") in EXPLODED_BUNDLE_TYPES:
        for entry in doc.get("entry", []):
            res = entry.get("resource")
            if isinstance(res, dict):  # a DELETE entry has none
                yield str(res.get("resourceType"))
    else:
        yield str(doc["resourceType"])


def count_resources(path: Path) -> Counter[str]:
    """Resources per type in an NDJSON(.gz) file or a single Bundle/resource JSON file."""
    counts: Counter[str] = Counter()
    with _open_text(path) as f:
        if ".ndjson" in path.name:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        counts.update(_resources_in(_loads(line)))
                    except ValueError as e:
                        raise SystemExit(f"error: {path}:{n}: {e}") from e
        else:
            counts.update(_resources_in(_loads(f.read())))
    return counts


def default_fhirhub() -> str:
    beside = Path(sys.executable).with_name("fhirhub")
    if beside.exists():
        return str(beside)
    found = shutil.which("fhirhub")
    if not found:
        raise SystemExit("error: no fhirhub command found; install the project "
                         "(pip install -e .) or pass --fhirhub")
    return found


def children_rusage() -> tuple[float, int]:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss


def sqlite_size(db_file: Path) -> int:
    return sum(p.stat().st_size for p in db_file.parent.glob(db_file.name + "*") if p.is_file())


def run_import(cmd: list[str], quiet: bool) -> tuple[int, float, float, int, str]:
    """Run the import; (exit code, wall s, CPU s, peak RSS kB, captured tail)."""
    cpu0, _ = children_rusage()
    t0 = time.perf_counter()
    tail = ""
    if quiet:
        captured = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, check=False)
        code = captured.returncode
        tail = "\n".join((captured.stdout + captured.stderr).splitlines()[-30:])
    else:
        code = subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False).returncode
    wall = time.perf_counter() - t0
    cpu1, maxrss = children_rusage()
    return code, wall, cpu1 - cpu0, maxrss, tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE,
                    help=f"file to import (default {DEFAULT_FILE.relative_to(HERE.parent)})")
    ap.add_argument("--pg-admin-url", default=os.environ.get("PG_ADMIN_URL",
                                                             benchutil.DEFAULT_PG_ADMIN_URL),
                    help="PostgreSQL URL allowed to CREATE/DROP DATABASE "
                         "(default $PG_ADMIN_URL or %(default)s)")
    ap.add_argument("--fhirhub", help="fhirhub command (default: the one beside this Python)")
    ap.add_argument("--label", help="backend label for the record (default: --backend)")
    ap.add_argument("--json", metavar="FILE", help="append a JSON record to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--quiet", action="store_true",
                    help="capture the import's output; show its tail only if it fails")
    args = ap.parse_args(argv)

    if not args.file.is_file():
        print(f"error: {args.file} not found", file=sys.stderr)
        return 1
    fhirhub = args.fhirhub or default_fhirhub()
    t = time.perf_counter()
    counts = count_resources(args.file)
    resources = sum(counts.values())
    print(f"{args.file.name}: {resources:,} resources "
          f"({', '.join(f'{k} {v:,}' for k, v in counts.most_common(5))}, ...; "
          f"counted in {time.perf_counter() - t:.1f}s)", file=sys.stderr)

    tmp = Path(tempfile.mkdtemp(prefix="fhirhub-import-bench-"))
    pg_name: str | None = None
    try:
        if args.backend == "sqlite":
            db_file = tmp / "fhirhub.sqlite3"
            db_url = f"sqlite:///{db_file}"  # absolute path: sqlite:////tmp/...
        else:
            pg_name = f"fhirhub_bench_{secrets.token_hex(4)}"
            db_url = benchutil.pg_recreate_database(args.pg_admin_url, pg_name)
        cmd = [fhirhub, "import", str(args.file), "--db", db_url]
        print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
        code, wall, cpu, maxrss, tail = run_import(cmd, args.quiet)
        if args.backend == "sqlite":
            db_bytes: int | None = sqlite_size(db_file) if db_file.exists() else None
        else:
            assert pg_name is not None
            db_bytes = benchutil.pg_database_size(args.pg_admin_url, pg_name)
    finally:
        if args.keep:
            print(f"kept: {tmp}" + (f" and database {pg_name}" if pg_name else ""),
                  file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            if pg_name:
                benchutil.pg_drop_database(args.pg_admin_url, pg_name)

    ok = code == 0
    record: dict[str, Any] = {
        "kind": "import",
        "label": args.label or args.backend,
        "file": str(args.file),
        "resources": resources,
        "resources_by_type": dict(counts.most_common()),
        "ok": ok,
        "exit_code": code,
        "wall_s": round(wall, 3),
        "resources_per_s": round(resources / wall, 1) if ok and wall > 0 else None,
        "cpu_s": round(cpu, 2),
        "peak_rss_kb": maxrss,
        "db_bytes": db_bytes,
        "date": benchutil.utc_now_iso(),
        "host": benchutil.host_info(),
    }
    if ok:
        print(f"{record['label']} import: {resources:,} resources in {wall:.1f}s = "
              f"{record['resources_per_s']:,.0f} resources/s (CPU {cpu:.1f}s, "
              f"peak RSS {maxrss / 1024:.0f} MB"
              + (f", database {db_bytes / 1e6:.1f} MB)" if db_bytes else ")"), flush=True)
    else:
        bar = "!" * 78
        print(f"{bar}\n!!! IMPORT FAILED: {' '.join(cmd)} exited {code} after {wall:.1f}s"
              + (f"\n{tail}" if tail else "") + f"\n{bar}", file=sys.stderr)
    if args.json:
        benchutil.append_jsonl(args.json, record)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
