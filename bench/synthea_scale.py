#!/usr/bin/env python3
"""Write an N-times copy of the Synthea sample (NDJSON, one Bundle or resource a line).

  python bench/synthea_scale.py --copies 10 --output /tmp/synthea-x10.ndjson.gz
  python bench/synthea_scale.py --copies 10 --if-stale   # the cached copy under bench/data/scaled/

Copy 0 is the input, line for line. Every further copy k repeats each line that holds
per-patient data (the patient transaction Bundles and the Group), with:

- every resource id, and every ``urn:uuid:`` fullUrl and reference to it, replaced by
  ``uuid5(NAMESPACE, f"{k}:{old}")``; the same goes for any other value that is one of those
  ids (Synthea's own and the MRN identifiers of a Patient carry the Patient's id);
- the other Patient identifiers (SSN, driver's licence, passport) given new values of the
  same shape, unique across all copies; their systems stay as they are;
- each Patient's birthDate moved k days earlier (never after its first encounter), so a
  family + birthdate search still finds one patient, not N;
- the shared resources (Organization, Practitioner, PractitionerRole, Location) kept once:
  copy k drops the patient Bundles' own entries for them, and its references to them
  become literal ``Organization/{id}``, which copy 0 has created by then.

Lines that hold only shared resources (Synthea's hospital and practitioner Bundles) are
written once, in copy 0. The output is deterministic: the same input and N give the same
bytes (the gzip header carries no time or name). Progress goes to stderr; the output path
is printed on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import io
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
DEFAULT_INPUT = HERE / "data" / "synthea" / "bundles.ndjson.gz"
CACHE_DIR = HERE / "data" / "scaled"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://fhirhub.invalid/bench/synthea-scale")
SHARED_TYPES = frozenset({"Organization", "Practitioner", "PractitionerRole", "Location"})
BUNDLE_TYPES = frozenset({"transaction", "batch", "collection"})
_HEX36 = r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
# Two passes with a literal lead each: much faster than one pattern with an optional prefix.
_URN = re.compile("urn:uuid:" + _HEX36)
_BARE = re.compile('(["/])' + _HEX36)  # an id, an id-valued identifier, a Type/id reference

Json = dict[str, Any]


def new_id(copy: int, old: str) -> str:
    """The id of ``old``'s copy number ``copy`` (copy 0 keeps its id)."""
    return old if copy == 0 else str(uuid.uuid5(NAMESPACE, f"{copy}:{old}"))


def default_output(copies: int) -> Path:
    return CACHE_DIR / f"synthea-x{copies}.ndjson.gz"


# --- reading the input ---------------------------------------------------------------------


def read_lines(path: Path) -> list[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return [line.rstrip(b"\r\n") for line in f if line.strip()]


def _entries(doc: Json) -> list[Json]:
    if doc.get("resourceType") == "Bundle" and doc.get("type") in BUNDLE_TYPES:
        return [e["resource"] for e in doc.get("entry") or []
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    return [doc]


@dataclass
class Plan:
    """What the input holds, learnt in one pass before writing anything."""

    lines: list[bytes]
    copied: list[int] = field(default_factory=list)  # lines repeated in every copy
    shared_only: list[int] = field(default_factory=list)  # written in copy 0 only
    local_ids: set[str] = field(default_factory=set)  # ids that each copy renames
    shared: dict[str, str] = field(default_factory=dict)  # shared id -> resource type
    identifiers: set[tuple[str, str]] = field(default_factory=set)  # Patients' (system, value)
    resources_per_copy: int = 0  # resources in the copied lines, less the shared ones
    shared_resources: int = 0  # shared resources in copy 0 (every occurrence)
    patients: int = 0

    @classmethod
    def of(cls, lines: list[bytes]) -> Plan:
        plan = cls(lines)
        for n, line in enumerate(lines):
            resources = _entries(orjson.loads(line))
            if all(r.get("resourceType") in SHARED_TYPES for r in resources):
                plan.shared_only.append(n)
            else:
                plan.copied.append(n)
            for r in resources:
                rtype, rid = r.get("resourceType"), r.get("id")
                if rtype in SHARED_TYPES:
                    plan.shared_resources += 1
                    if isinstance(rid, str):
                        plan.shared[rid] = str(rtype)
                    continue
                plan.resources_per_copy += 1
                if isinstance(rid, str):
                    plan.local_ids.add(rid)
                if rtype == "Patient":
                    plan.patients += 1
                    for ident in r.get("identifier") or []:
                        plan.identifiers.add((str(ident.get("system")), str(ident.get("value"))))
        clash = plan.local_ids & plan.shared.keys()
        if clash:
            raise ValueError(f"ids used by both shared and per-patient resources: {sorted(clash)[:3]}")
        return plan

    def total_resources(self, copies: int) -> int:
        return self.shared_resources + self.resources_per_copy * copies


# --- rewriting one copy ----------------------------------------------------------------------


def _reshape(value: str, seed: str) -> str:
    """``value`` with each digit replaced by one drawn from ``seed`` (the shape is kept)."""
    digits = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    out = []
    for ch in value:
        if ch.isdigit():
            digits, d = divmod(digits, 10)
            out.append(str(d))
        else:
            out.append(ch)
    return "".join(out)


class Rewriter:
    """Turns lines of copy 0 into lines of copy ``copy``."""

    def __init__(self, plan: Plan, copy: int, used: set[tuple[str, str]]) -> None:
        if copy < 1:
            raise ValueError("copy 0 is the input itself")
        self.plan = plan
        self.copy = copy
        self.used = used  # every Patient identifier written so far, across copies
        self.unresolved: set[str] = set()  # urn:uuid references to nothing in the input
        self._ids: dict[str, str] = {}

    def line(self, line: bytes) -> bytes:
        doc = orjson.loads(line)
        if doc.get("resourceType") == "Bundle" and doc.get("type") in BUNDLE_TYPES:
            doc["entry"] = [e for e in doc.get("entry") or []
                            if (e.get("resource") or {}).get("resourceType") not in SHARED_TYPES]
        for resource in _entries(doc):
            if resource.get("resourceType") == "Patient":
                self._patient(resource)
            elif resource.get("resourceType") == "Group" and isinstance(resource.get("name"), str):
                resource["name"] = f"{resource['name']} ({self.copy + 1})"
        text = _URN.sub(self._urn, orjson.dumps(doc).decode())
        return _BARE.sub(self._bare, text).encode()

    def _renamed(self, old: str) -> str:
        new = self._ids.get(old)
        if new is None:
            new = self._ids[old] = new_id(self.copy, old)
        return new

    def _urn(self, m: re.Match[str]) -> str:
        old = m.group(1)
        if old in self.plan.local_ids:
            return "urn:uuid:" + self._renamed(old)
        if old in self.plan.shared:
            return f"{self.plan.shared[old]}/{old}"  # created by copy 0 already
        self.unresolved.add(old)
        return m.group(0)

    def _bare(self, m: re.Match[str]) -> str:
        old = m.group(2)
        return m.group(1) + self._renamed(old) if old in self.plan.local_ids else m.group(0)

    def _patient(self, patient: Json) -> None:
        for ident in patient.get("identifier") or []:
            value = ident.get("value")
            if not isinstance(value, str) or value in self.plan.local_ids:
                continue  # an id-valued identifier follows the id
            ident["value"] = self._new_identifier(str(ident.get("system")), value)
        birth = patient.get("birthDate")
        if isinstance(birth, str) and len(birth) == 10:
            day = dt.date.fromisoformat(birth) - dt.timedelta(days=self.copy)
            patient["birthDate"] = day.isoformat()

    def _new_identifier(self, system: str, value: str) -> str:
        few_digits = sum(ch.isdigit() for ch in value) < 4
        for attempt in range(10_000):
            seed = f"{self.copy}:{attempt}:{system}|{value}"
            if few_digits:
                candidate = f"{value}-{self.copy}" + (f"-{attempt}" if attempt else "")
            else:
                candidate = _reshape(value, seed)
            if candidate != value and (system, candidate) not in self.used:
                self.used.add((system, candidate))
                return candidate
        raise RuntimeError(f"no free identifier like {value!r} in {system}")


# --- writing -----------------------------------------------------------------------------------


@dataclass
class Result:
    output: Path
    copies: int
    lines: int
    resources: int
    patients: int
    bytes: int
    seconds: float


def scaled_lines(plan: Plan, copies: int) -> Iterator[bytes]:
    """Every output line, in order: copy 0 whole, then copies 1..N-1 of the copied lines."""
    yield from plan.lines
    used = set(plan.identifiers)
    for k in range(1, copies):
        rewriter = Rewriter(plan, k, used)
        for n in plan.copied:
            yield rewriter.line(plan.lines[n])
        if rewriter.unresolved:
            raise ValueError(f"copy {k}: urn:uuid references to nothing in the input, e.g. "
                             f"{sorted(rewriter.unresolved)[:3]}")


def write_scaled(src: Path, dst: Path, copies: int,
                 progress: Callable[[int, int], None] | None = None) -> Result:
    """Write the ``copies``-times file ``dst`` (gzip when it ends in .gz) atomically."""
    if copies < 1:
        raise ValueError("copies must be at least 1")
    t0 = time.perf_counter()
    plan = Plan.of(read_lines(src))
    total = len(plan.lines) + len(plan.copied) * (copies - 1)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    written = 0
    try:
        with tmp.open("wb") as raw:
            out: io.BufferedIOBase
            if dst.suffix == ".gz":  # mtime=0 and no name: the same input gives the same bytes
                out = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0)
            else:
                out = raw
            with out:
                for n, line in enumerate(scaled_lines(plan, copies), 1):
                    out.write(line + b"\n")
                    written = n
                    if progress:
                        progress(n, total)
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    return Result(dst, copies, written, plan.total_resources(copies), plan.patients * copies,
                  dst.stat().st_size, time.perf_counter() - t0)


def is_stale(src: Path, dst: Path) -> bool:
    """True when ``dst`` is missing or older than the input or this script."""
    if not dst.exists():
        return True
    newest = max(src.stat().st_mtime, Path(__file__).stat().st_mtime)
    return dst.stat().st_mtime < newest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", "-i", type=Path, default=DEFAULT_INPUT,
                    help=f"Synthea NDJSON(.gz) (default {DEFAULT_INPUT.relative_to(HERE.parent)})")
    ap.add_argument("--copies", "-n", type=int, default=10, help="N, copy 0 included (default 10)")
    ap.add_argument("--output", "-o", type=Path,
                    help="output NDJSON(.gz) (default bench/data/scaled/synthea-xN.ndjson.gz, "
                         "git-ignored)")
    ap.add_argument("--if-stale", action="store_true",
                    help="do nothing when the output exists and is newer than the input and "
                         "this script")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.copies < 1:
        ap.error("--copies must be at least 1")
    dst: Path = args.output or default_output(args.copies)
    if args.if_stale and not is_stale(args.input, dst):
        print(f"{dst} is up to date", file=sys.stderr)
        print(dst)
        return 0

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=args.quiet) as bar:
        task = bar.add_task(f"writing {args.copies} copies", total=None)

        def progress(done: int, total: int) -> None:
            if done % 20 == 0 or done == total:
                bar.update(task, completed=done, total=total)

        result = write_scaled(args.input, dst, args.copies, progress)
    console.print(f"{result.output}: {result.copies} copies, {result.lines:,} lines, "
                  f"{result.patients:,} patients, {result.resources:,} resources, "
                  f"{result.bytes / 1e6:.1f} MB, {result.seconds:.1f} s")
    print(result.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
