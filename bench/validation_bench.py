#!/usr/bin/env python3
"""How long ``Validator.validate`` takes on the official R4 examples, and how long the
validator takes to start.

  .venv/bin/python bench/validation_bench.py                      # all 773 examples, ~12 min
  .venv/bin/python bench/validation_bench.py --repeat 5 --types Patient,Observation
  .venv/bin/python bench/validation_bench.py --json results/validation.json

What is measured:

* **validate**: each example (``tests/data/r4-examples.ndjson.gz``, read with
  ``fhirhub.fhir.json.loads``, so decimals are exact) is validated ``--warmup`` times
  untimed, then ``--repeat`` times, each timed alone with ``time.perf_counter_ns``, by one
  ``Validator(packaged(), terminology(), unknown_profile="warning")`` already warmed up
  (``warm_up()``). Per resource type: the median and p99 (nearest rank) of all the timings of
  that type's examples (examples x repeats), in microseconds; the same over every timing.
* **fhir.resources**: the same examples, parsed the same number of times by the
  ``fhir.resources`` package's model of their type (``get_fhir_model_class(type)
  .parse_obj(dict)``, which builds and validates the pydantic model), for a point of
  comparison: the ratio is our median validate time over its median parse time. It needs an
  R4 (4.0.1) release: ``fhir.resources==6.4.0`` (its top-level package is R4; 6.5 and later
  are R4B or R5, and 7.x/8.x have only R5, R4B and STU3), which needs pydantic 1
  (``pydantic>=1.10,<2``). The examples it refuses (19, mostly relative URLs in ``url``
  elements: it raises early) and those our structure check refuses before validating
  (ExampleScenario/example) are left out of the ratios, and listed.
* **start-up**, in a fresh interpreter (``--startup-runs`` times, the median shown): the time
  to import the validator's modules, load ``packaged()``, build ``terminology()``, construct
  the ``Validator``, ``warm_up()``, and validate one Patient (the official
  ``Patient/example``); plus the whole process's wall time, interpreter start included.

The markdown is printed to stdout, progress to stderr; ``--json FILE`` writes every figure.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchutil

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tests" / "data" / "r4-examples.ndjson.gz"
FHIR_RESOURCES_REQUIREMENT = "fhir.resources==6.4.0 (with pydantic>=1.10,<2)"

@dataclass
class Timed:
    """One example's timings (µs per call)."""

    rtype: str
    key: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    failed: bool = False  # the action raised


def load_examples(types: set[str] | None) -> list[dict[str, Any]]:
    from fhirhub.fhir import json as fhir_json

    with gzip.open(EXAMPLES, "rb") as fh:
        examples = [fhir_json.loads(line) for line in fh if line.strip()]
    return [e for e in examples if types is None or e["resourceType"] in types]


def key_of(example: dict[str, Any]) -> str:
    return f"{example['resourceType']}/{example.get('id')}"


def p99(values: Sequence[float]) -> float:
    """The 99th percentile, nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def time_each(examples: list[dict[str, Any]], action: Callable[[dict[str, Any]], object],
              repeat: int, warmup: int, label: str) -> list[Timed]:
    """Wall and CPU (this thread's) time of each call of ``action``, example by example."""
    timings = []
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    started = last = time.monotonic()
    for n, example in enumerate(examples, 1):
        timed = Timed(example["resourceType"], key_of(example))
        for _ in range(warmup):
            try:
                action(example)
            except Exception:
                timed.failed = True
        for _ in range(repeat):
            c0 = cpu_clock()
            t0 = clock()
            try:
                action(example)
            except Exception:
                timed.failed = True
            t1 = clock()
            c1 = cpu_clock()
            timed.wall.append((t1 - t0) / 1000)
            timed.cpu.append((c1 - c0) / 1000)
        timings.append(timed)
        now = time.monotonic()
        if now - last >= 15 or n == len(examples):
            last = now
            print(f"  {label}: {n}/{len(examples)} examples, {now - started:.0f} s",
                  file=sys.stderr)
    return timings


def fhir_resources_parser() -> tuple[Callable[[dict[str, Any]], object] | None, str]:
    """A parse function of an R4 release of fhir.resources, and what it is (or why not)."""
    try:
        import fhir.resources as fr
        from fhir.resources import get_fhir_model_class
    except ImportError as exc:
        return None, f"fhir.resources is not installed ({exc}); pip install '{FHIR_RESOURCES_REQUIREMENT}'"
    version = getattr(fr, "__version__", "?")
    fhir_version = getattr(fr, "__fhir_version__", "?")
    if fhir_version != "4.0.1":
        return None, (f"fhir.resources {version} models FHIR {fhir_version}, not R4 (4.0.1); "
                      f"pip install '{FHIR_RESOURCES_REQUIREMENT}'")
    import pydantic

    def parse(example: dict[str, Any]) -> object:
        return get_fhir_model_class(example["resourceType"]).parse_obj(example)

    return parse, (f"fhir.resources {version} (top-level package `fhir.resources`, FHIR "
                   f"{fhir_version}), pydantic {pydantic.VERSION}")


STARTUP_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from fhirhub.fhir import json as fhir_json
from fhirhub.fhir.definitions import packaged
from fhirhub.fhir.terminology import terminology
from fhirhub.fhir.validation import Validator
t1 = time.perf_counter()
definitions = packaged()
t2 = time.perf_counter()
checker = terminology()
t3 = time.perf_counter()
validator = Validator(definitions, checker, unknown_profile="warning")
t4 = time.perf_counter()
validator.warm_up()
t5 = time.perf_counter()
patient = fhir_json.loads(sys.stdin.buffer.read())
t6 = time.perf_counter()
issues = validator.validate(patient)
t7 = time.perf_counter()
errors = sum(1 for i in issues if i.severity in ("error", "fatal"))
print(json.dumps({"import": t1 - t0, "packaged": t2 - t1, "terminology": t3 - t2,
                  "validator": t4 - t3, "warm_up": t5 - t4, "first_patient": t7 - t6,
                  "errors": errors}))
"""

STARTUP_PHASES = ("import", "packaged", "terminology", "validator", "warm_up", "first_patient")


def measure_startup(patient: dict[str, Any], runs: int) -> dict[str, Any]:
    from fhirhub.fhir import json as fhir_json

    body = fhir_json.dumps(patient)
    records = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", STARTUP_CHILD], input=body,
                              capture_output=True, check=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        record = json.loads(done.stdout.decode().strip().splitlines()[-1])
        record["process_wall"] = wall
        records.append(record)
    phases = (*STARTUP_PHASES, "process_wall")
    median = {k: statistics.median(r[k] for r in records) for k in phases}
    median["total"] = sum(median[k] for k in STARTUP_PHASES)
    return {"runs": records, "median_s": median, "patient_errors": records[0]["errors"]}


def pooled(timings: Sequence[Timed], clock: str = "wall") -> list[float]:
    return [t for timed in timings for t in getattr(timed, clock)]


def figures(ours: Sequence[Timed], theirs: Sequence[Timed] | None,
            compared: set[int], indexes: Sequence[int]) -> dict[str, Any]:
    """Our median, p99 and CPU median over ``indexes``; with ``theirs``, both medians over
    the compared ones among them, and the ratios."""
    mine = [ours[i] for i in indexes]
    wall = pooled(mine)
    row: dict[str, Any] = {"examples": len(mine), "samples": len(wall),
                           "median_us": statistics.median(wall), "p99_us": p99(wall),
                           "cpu_median_us": statistics.median(pooled(mine, "cpu")),
                           "total_s": sum(wall) / 1e6}
    both = [i for i in indexes if i in compared]
    if theirs is not None and both:
        ours_wall, ours_cpu = pooled([ours[i] for i in both]), pooled([ours[i] for i in both], "cpu")
        fr_wall, fr_cpu = pooled([theirs[i] for i in both]), pooled([theirs[i] for i in both], "cpu")
        row.update({
            "compared": len(both),
            "cmp_median_us": statistics.median(ours_wall),
            "cmp_cpu_median_us": statistics.median(ours_cpu),
            "fr_median_us": statistics.median(fr_wall),
            "fr_p99_us": p99(fr_wall),
            "fr_cpu_median_us": statistics.median(fr_cpu),
            "cmp_total_s": sum(ours_wall) / 1e6, "cmp_cpu_total_s": sum(ours_cpu) / 1e6,
            "fr_total_s": sum(fr_wall) / 1e6, "fr_cpu_total_s": sum(fr_cpu) / 1e6,
        })
        row["ratio"] = row["cmp_median_us"] / row["fr_median_us"]
        row["cpu_ratio"] = row["cmp_cpu_median_us"] / row["fr_cpu_median_us"]
    return row


def summarise(ours: list[Timed], theirs: list[Timed] | None,
              compared: set[int]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The overall figures, and the figures of each type (most examples first)."""
    by_type: dict[str, list[int]] = defaultdict(list)
    for index, timed in enumerate(ours):
        by_type[timed.rtype].append(index)
    rows = [{"type": rtype, **figures(ours, theirs, compared, indexes)}
            for rtype, indexes in sorted(by_type.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    return figures(ours, theirs, compared, range(len(ours))), rows


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _loads(values: Sequence[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def markdown(result: dict[str, Any]) -> str:
    host = result["host"]
    out = [
        f"# Validation benchmark, {result['date']}",
        "",
        f"Host: {host['cpu_model']}, {host['cores']} cores ({host['usable_cores']} usable), "
        f"Python {host['python']}, {host['platform']}. Load average (1, 5, 15 min) at the "
        f"start {_loads(result['load_average']['start'])}, at the end "
        f"{_loads(result['load_average']['end'])}: other work on the machine slows the wall "
        "times (not the CPU times).",
        f"{result['examples']} official R4 examples; each validated {result['warmup']}x untimed, "
        f"then {result['repeat']}x timed. Times in µs per call: median and p99 (nearest rank) "
        "of every timed call of the row's examples; CPU: this thread's CPU time "
        "(`time.thread_time_ns`).",
        f"Comparison: {result['fhir_resources']}, parsing the same examples the same number "
        "of times; ratio = our median / its median, over the examples both accept.",
        "",
    ]
    rows = result["types"]
    with_fr = result.get("compared") is not None
    head = "| type | examples | median µs | p99 µs | CPU median µs |"
    rule = "|---|---:|---:|---:|---:|"
    if with_fr:
        head += " fhir.resources median µs | ratio | CPU ratio |"
        rule += "---:|---:|---:|"
    out += [head, rule]

    def line(name: str, row: dict[str, Any]) -> str:
        text = (f"| {name} | {row['examples']} | {fmt(row['median_us'])} | "
                f"{fmt(row['p99_us'])} | {fmt(row['cpu_median_us'])} |")
        if with_fr:
            text += (f" {fmt(row.get('fr_median_us'))} | {ratio(row.get('ratio'))} | "
                     f"{ratio(row.get('cpu_ratio'))} |")
        return text

    ov = result["overall"]
    out.append(line("**all**", ov))
    for name in ("Patient", "Observation"):
        row = next((r for r in rows if r["type"] == name), None)
        if row is not None:
            out.append(line(f"**{name}**", row))
    out += [line(r["type"], r) for r in rows]
    if with_fr and "fr_total_s" in ov:
        excluded = result["excluded"]
        out += ["", f"Compared: {ov['compared']} examples. Left out of the comparison: "
                f"{len(excluded['fhir_resources'])} that fhir.resources refuses (it raises "
                f"early, so its time means little: {', '.join(excluded['fhir_resources'])}) "
                f"and {len(excluded['ours'])} that our structure check refuses before any "
                f"validation ({', '.join(excluded['ours']) or 'none'}).",
                "",
                f"Total over the compared examples' timed calls: validate "
                f"{ov['cmp_total_s']:.2f} s wall, {ov['cmp_cpu_total_s']:.2f} s CPU; "
                f"fhir.resources {ov['fr_total_s']:.2f} s wall, {ov['fr_cpu_total_s']:.2f} s CPU "
                f"(ratios {ov['cmp_total_s'] / ov['fr_total_s']:.2f}x and "
                f"{ov['cmp_cpu_total_s'] / ov['fr_cpu_total_s']:.2f}x)."]
    startup = result.get("startup")
    if startup:
        med = startup["median_s"]
        out += ["", f"Start-up in a fresh interpreter (median of {len(startup['runs'])} runs):", "",
                "| phase | ms |", "|---|---:|"]
        names = {"import": "import the modules", "packaged": "`packaged()`",
                 "terminology": "`terminology()`", "validator": "`Validator(...)`",
                 "warm_up": "`warm_up()`", "first_patient": "validate one Patient (first call)"}
        out += [f"| {names[k]} | {med[k] * 1000:,.0f} |" for k in STARTUP_PHASES]
        out += [f"| **total** | **{med['total'] * 1000:,.0f}** |",
                f"| whole process (interpreter start included) | {med['process_wall'] * 1000:,.0f} |"]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per example (20)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (1)")
    parser.add_argument("--types", help="only these resource types, comma-separated")
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    parser.add_argument("--startup-runs", type=int, default=3,
                        help="fresh-interpreter start-up runs (3; 0 skips)")
    parser.add_argument("--no-fhir-resources", action="store_true",
                        help="skip the fhir.resources comparison")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    load_at_start = os.getloadavg()
    types = {t.strip() for t in args.types.split(",") if t.strip()} if args.types else None
    examples = load_examples(types)
    if not examples:
        parser.error(f"no examples of {sorted(types or ())}")

    from fhirhub.fhir.definitions import packaged
    from fhirhub.fhir.structure import check_resource
    from fhirhub.fhir.terminology import terminology
    from fhirhub.fhir.validation import Validator

    validator = Validator(packaged(), terminology(), unknown_profile="warning")
    validator.warm_up()
    print(f"validate: {len(examples)} examples x {args.repeat}", file=sys.stderr)
    ours = time_each(examples, validator.validate, args.repeat, args.warmup, "validate")

    theirs: list[Timed] | None = None
    parse, fr_label = (None, "not measured (--no-fhir-resources)")
    if not args.no_fhir_resources:
        parse, fr_label = fhir_resources_parser()
    if parse is not None:
        print(f"fhir.resources: {len(examples)} examples x {args.repeat}", file=sys.stderr)
        theirs = time_each(examples, parse, args.repeat, args.warmup, "fhir.resources")
    else:
        print(f"fhir.resources: {fr_label}", file=sys.stderr)

    refused_by_us = {i for i, e in enumerate(examples) if check_resource(e)}
    refused_by_them = {i for i, t in enumerate(theirs or ()) if t.failed}
    compared = set(range(len(examples))) - refused_by_us - refused_by_them
    overall, rows = summarise(ours, theirs, compared)
    result: dict[str, Any] = {
        "kind": "validation",
        "date": benchutil.utc_now_iso(),
        "host": benchutil.host_info(),
        "load_average": {"start": load_at_start, "end": os.getloadavg()},
        "examples": len(examples),
        "repeat": args.repeat,
        "warmup": args.warmup,
        "fhir_resources": fr_label,
        "compared": len(compared) if theirs is not None else None,
        "excluded": {"fhir_resources": [ours[i].key for i in sorted(refused_by_them)],
                     "ours": [ours[i].key for i in sorted(refused_by_us)]},
        "overall": overall,
        "types": rows,
    }
    if args.startup_runs > 0:
        print(f"start-up: {args.startup_runs} fresh interpreters", file=sys.stderr)
        patient = next(e for e in load_examples({"Patient"}) if e.get("id") == "example")
        result["startup"] = measure_startup(patient, args.startup_runs)
    print(markdown(result))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
