"""The UCUM micro-benchmark runs and reports (its figures are printed, never asserted)."""

from __future__ import annotations

import pytest

import ucum_bench


def test_ucum_bench_prints_cold_and_warm_costs(capsys: pytest.CaptureFixture[str]) -> None:
    ucum_bench.main(["--rounds", "1", "--warm-calls", "2000"])
    out = capsys.readouterr().out
    for row in ("| table", "| cold (nothing remembered)", "| cold code, warm atoms", "| warm",
                "| Canonical.convert"):
        assert row in out
