#!/usr/bin/env python3
"""What ``fhirhub.search._ucum.canonical()`` costs per call, cold and warm.

  .venv/bin/python bench/ucum_bench.py
  .venv/bin/python bench/ucum_bench.py --rounds 20 --warm-calls 2000000

The codes are those of FHIR's ``ucum-common`` value set (1,364 codes, from the packaged R4
definitions) and of the Synthea sample's Observations. What is measured:

* **table**: reading ``ucum-essence.xml`` into the table (once per process, on first use).
* **cold**: each code's first call, with nothing remembered (no code, no unit atom): what a
  fresh worker pays for the first quantity of each unit. ``--rounds`` times per code.
* **cold code, warm atoms**: a code never seen, built of unit atoms already worked out (the
  usual case once a process has indexed a few resources).
* **warm**: a code already seen: the dictionary look-up every later call costs.
* **convert**: ``Canonical.convert`` of one value (a multiply-add and a rounding).

Medians and p99 (nearest rank) in microseconds, printed as markdown. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable, Sequence
from decimal import Decimal

from fhirhub.fhir.definitions import iter_r4
from fhirhub.search import _ucum, _ucum_table
from fhirhub.search._ucum import canonical

SYNTHEA_CODES = [
    "mg/dL", "mm[Hg]", "/min", "mmol/L", "cm", "{score}", "kg", "kg/m2", "%", "fL", "g/dL",
    "10*3/uL", "U/L", "10*6/uL", "pg", "kU/L", "mL/min", "g/L", "Cel", "mg/g",
    "mL/min/{1.73_m2}", "{count}", "ng/mL", "(score)", "mm", "{T-score}", "units",
    "{nominal}", "pH",
]


def corpus() -> list[str]:
    common = next(vs for vs in iter_r4("ValueSet")
                  if vs["url"] == "http://hl7.org/fhir/ValueSet/ucum-common")
    codes = [c["code"] for inc in common["compose"]["include"] for c in inc["concept"]]
    return list(dict.fromkeys([*codes, *SYNTHEA_CODES]))


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def time_each(codes: list[str], rounds: int, forget: Callable[[], None]) -> list[float]:
    """µs of each call, every code once per round, after ``forget()`` each round."""
    timings: list[float] = []
    for _ in range(rounds):
        forget()
        for code in codes:
            start = time.perf_counter_ns()
            canonical(code)
            timings.append((time.perf_counter_ns() - start) / 1000)
    return timings


def forget_codes() -> None:
    _ucum._cache.clear()


def forget_everything() -> None:
    _ucum._cache.clear()
    _ucum._atom.cache_clear()


def time_table(rounds: int) -> list[float]:
    timings = []
    for _ in range(rounds):
        _ucum_table.table.cache_clear()
        start = time.perf_counter_ns()
        _ucum_table.table()
        timings.append((time.perf_counter_ns() - start) / 1000)
    return timings


def time_warm(codes: list[str], calls: int) -> float:
    """Mean µs per call of codes already remembered."""
    for code in codes:
        canonical(code)
    batch = (codes * (calls // len(codes) + 1))[:calls]
    start = time.perf_counter_ns()
    for code in batch:
        canonical(code)
    return (time.perf_counter_ns() - start) / 1000 / len(batch)


def time_convert(calls: int) -> float:
    found = canonical("[degF]")
    assert found is not None
    value = Decimal("98.6")
    start = time.perf_counter_ns()
    for _ in range(calls):
        found.convert(value)
    return (time.perf_counter_ns() - start) / 1000 / calls


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="cold passes over the codes")
    parser.add_argument("--warm-calls", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    codes = corpus()
    table = time_table(max(1, args.rounds))
    cold = time_each(codes, args.rounds, forget_everything)
    cold_code = time_each(codes, args.rounds, forget_codes)
    warm = time_warm(codes, args.warm_calls)
    convert = time_convert(max(1, args.warm_calls // 10))
    print(f"canonical() over {len(codes)} distinct UCUM codes "
          f"(FHIR ucum-common and the Synthea sample), {args.rounds} cold rounds\n")
    print("| what | median µs | p99 µs |")
    print("| --- | ---: | ---: |")
    print(f"| table (read ucum-essence.xml, once per process) | {statistics.median(table):,.0f} "
          f"| {max(table):,.0f} |")
    for label, timings in [("cold (nothing remembered)", cold),
                           ("cold code, warm atoms", cold_code)]:
        print(f"| {label} | {statistics.median(timings):.1f} | {p99(timings):.1f} |")
    print(f"| warm (code seen before; mean of {args.warm_calls:,} calls) | {warm:.3f} | |")
    print(f"| Canonical.convert (mean) | {convert:.3f} | |")


if __name__ == "__main__":
    main()
