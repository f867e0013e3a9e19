"""Unit tests of the benchmark tools that need no server: ``pytest bench/test_bench.py``."""

from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

import benchutil
import import_bench
import loadgen
import report

# --- NHS numbers --------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["9434765919", "4010232137", "9000000009", "943 476 5919"])
def test_known_valid_nhs_numbers(number: str) -> None:
    assert loadgen.is_valid_nhs_number(number)


@pytest.mark.parametrize("number", ["9434765918", "1234567890", "943476591", "94347659190", "x"])
def test_invalid_nhs_numbers(number: str) -> None:
    assert not loadgen.is_valid_nhs_number(number)


def test_check_digit_eleven_becomes_zero_and_ten_is_invalid() -> None:
    # 900000000: 9*10 = 90, 90 % 11 = 2, 11 - 2 = 9
    assert loadgen.nhs_check_digit("900000000") == 9
    # 000000000: sum 0 -> 11 -> 0
    assert loadgen.nhs_check_digit("000000000") == 0
    # 000000001: 1*2 = 2 -> 11 - 2 = 9; 000000005: 10 -> 11 - 10 = 1; 000000006: 12 % 11 = 1 -> 10
    assert loadgen.nhs_check_digit("000000006") is None
    with pytest.raises(ValueError, match="nine digits"):
        loadgen.nhs_check_digit("12345678")


def test_sequence_is_unique_valid_and_in_the_test_range() -> None:
    seq = loadgen.NhsNumberSequence(random.Random(7))
    numbers = [next(seq) for _ in range(50_000)]
    assert len(set(numbers)) == len(numbers)
    assert all(n.startswith("999") and loadgen.is_valid_nhs_number(n) for n in numbers)


# --- Patients -------------------------------------------------------------------------------


def test_patient_is_about_one_kilobyte_and_uk_flavoured() -> None:
    rng = random.Random(1)
    seq = loadgen.NhsNumberSequence(rng)
    for _ in range(200):
        number = next(seq)
        p = loadgen.make_patient(rng, number)
        assert 900 <= len(loadgen.dumps(p)) <= 1600
        assert p["resourceType"] == "Patient"
        assert p["identifier"][0] == {**p["identifier"][0], "system": loadgen.NHS_NUMBER_SYSTEM,
                                      "value": number}
        assert p["gender"] in ("female", "male")
        assert p["address"][0]["country"] == "GB"
        assert p["telecom"][0]["value"].startswith("07700 900")
        assert len(p["birthDate"]) == 10


def test_every_update_changes_the_patient() -> None:
    rng = random.Random(2)
    p = loadgen.make_patient(rng, "9434765919")
    seen = {loadgen.dumps(p)}
    for n in range(1, 500):
        loadgen.mutate_patient(p, n, rng)
        body = loadgen.dumps(p)
        assert body not in seen
        seen.add(body)


# --- request factories ---------------------------------------------------------------------


def _pool(n: int) -> list[loadgen.PoolEntry]:
    rng = random.Random(3)
    seq = loadgen.NhsNumberSequence(rng)
    out = []
    for i in range(n):
        number = next(seq)
        out.append(loadgen.PoolEntry(f"id-{i}", number, {**loadgen.make_patient(rng, number),
                                                         "id": f"id-{i}"}))
    return out


def test_update_clients_work_disjoint_slices() -> None:
    pool = _pool(10)
    seq = loadgen.NhsNumberSequence(random.Random(0))
    touched: list[set[str]] = []
    for c in range(3):
        f = loadgen.make_factory("update", "http://h/fhir", c, 3, pool, random.Random(c), seq)
        urls = {f().url for _ in range(20)}
        assert all(u.startswith("http://h/fhir/Patient/id-") for u in urls)
        touched.append(urls)
    assert not (touched[0] & touched[1])
    assert not (touched[1] & touched[2])
    assert not (touched[0] & touched[2])
    assert sum(map(len, touched)) == 10


def test_scenario_requests() -> None:
    pool = _pool(5)
    seq = loadgen.NhsNumberSequence(random.Random(0))

    def one(scenario: str) -> loadgen.Request:
        return loadgen.make_factory(scenario, "http://h/fhir", 0, 1, pool, random.Random(1),
                                    seq)()

    create = one("create")
    assert (create.method, create.url, create.expect_status) == ("POST", "http://h/fhir/Patient",
                                                                 201)
    assert create.body is not None
    assert json.loads(create.body)["resourceType"] == "Patient"
    read = one("read")
    assert read.method == "GET"
    assert read.expect_in_body is not None
    assert read.url.endswith("/Patient/" + read.expect_in_body.decode())
    sid = one("search-id")
    assert sid.url.startswith("http://h/fhir/Patient?_id=id-")
    ident = one("search-identifier")
    query = ident.url.split("?", 1)[1]
    assert query.startswith("identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C999")
    number = unquote(query).rsplit("|", 1)[1]
    assert any(e.nhs_number == number and e.id.encode() == ident.expect_in_body for e in pool)
    with pytest.raises(ValueError, match="unknown scenario"):
        one("delete")


def test_id_from_response() -> None:
    assert loadgen._id_from_response(b'{"resourceType":"Patient","id":"abc"}', None) == "abc"
    loc = "http://127.0.0.1:8080/fhir/Patient/xyz/_history/1"
    assert loadgen._id_from_response(b"", loc) == "xyz"
    with pytest.raises(loadgen.SetupError):
        loadgen._id_from_response(b"", None)


# --- statistics -----------------------------------------------------------------------------


def test_percentiles_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50
    assert loadgen.percentile(values, 90) == 90
    assert loadgen.percentile(values, 99) == 99
    assert loadgen.percentile(values, 100) == 100
    assert loadgen.percentile([5.0], 99) == 5


def test_summarise() -> None:
    s = loadgen.summarise([0.001] * 98 + [0.010, 0.100], 2.0)
    assert s["rps"] == 50.0
    assert s["p50_ms"] == 1.0
    assert s["p99_ms"] == 10.0
    assert s["max_ms"] == 100.0
    empty = loadgen.summarise([], 2.0)
    assert empty["rps"] == 0.0
    assert empty["p50_ms"] is None


def test_budget() -> None:
    b = loadgen.Budget(2)
    assert [b.take(), b.take(), b.take()] == [True, True, False]
    assert loadgen.Budget(0).take()


# --- helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "ok"), [("127.0.0.1", True), ("127.3.4.5", True),
                                          ("::1", True), ("[::1]", True), ("localhost", True),
                                          ("10.0.0.1", False), ("192.168.1.1", False),
                                          ("8.8.8.8", False), ("", False)])
def test_loopback_only(host: str, ok: bool) -> None:
    assert benchutil.is_loopback_host(host) is ok


def test_require_loopback_url_refuses_other_hosts() -> None:
    benchutil.require_loopback_url("http://127.0.0.1:8080/fhir")
    with pytest.raises(SystemExit, match="not a loopback address"):
        benchutil.require_loopback_url("http://10.1.2.3:8080/fhir")


def test_database_url() -> None:
    assert (benchutil.database_url("postgresql://postgres@127.0.0.1:5432/postgres", "b")
            == "postgresql://postgres@127.0.0.1:5432/b")
    with pytest.raises(ValueError, match="postgresql"):
        benchutil.database_url("sqlite:///x", "b")


def test_host_info_and_cpu_accounting() -> None:
    info = benchutil.host_info()
    assert info["cores"] >= 1
    assert info["python"]
    assert info["cpu_model"]
    if Path("/proc/self/stat").exists():
        cpu = benchutil.proc_tree_cpu_seconds(os.getpid())
        assert cpu is not None
        assert cpu > 0
        assert benchutil.proc_tree_cpu_seconds(2**22 + 12345) is None


# --- import counting --------------------------------------------------------------------------


def test_count_resources_small_files(tmp_path: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST"}},
        {"resource": {"resourceType": "Observation"}, "request": {"method": "POST"}},
        {"request": {"method": "DELETE", "url": "Patient/x"}},
    ]}
    nd = tmp_path / "x.ndjson.gz"
    with gzip.open(nd, "wt") as f:
        f.write(json.dumps(bundle) + "\n\n" + json.dumps({"resourceType": "Group"}) + "\n")
    assert import_bench.count_resources(nd) == {"Patient": 1, "Observation": 1, "Group": 1}
    single = tmp_path / "b.json"
    single.write_text(json.dumps(bundle))
    assert sum(import_bench.count_resources(single).values()) == 2
    doc = tmp_path / "d.json"
    doc.write_text(json.dumps({"resourceType": "Bundle", "type": "document", "entry": []}))
    assert import_bench.count_resources(doc) == {"Bundle": 1}


def test_count_resources_synthea_sample() -> None:
    if not import_bench.DEFAULT_FILE.exists():
        pytest.skip("sample data not present")
    counts = import_bench.count_resources(import_bench.DEFAULT_FILE)
    assert sum(counts.values()) == 38_971
    assert counts["Patient"] == 100
    assert counts["Group"] == 1


# --- report -----------------------------------------------------------------------------------


def _http(**kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "kind": "http", "scenario": "read", "clients": 16, "label": "sqlite", "requests": 30000,
        "errors": 0, "errors_by_status": {}, "warmup_errors": 0, "rps": 1999.96,
        "p50_ms": 7.123, "p90_ms": 9.9, "p99_ms": 15.25, "max_ms": 40.0, "duration_s": 15,
        "warmup_s": 3, "pool_size": 1000, "loadgen_cpu_pct": 40.2, "server_cpu_pct": 150.0,
        "meta": {"workers": "2"}, "date": "2026-11-24T05:00:00Z",
        "host": {"cpu_model": "AMD EPYC", "cores": 2, "python": "3.11.7"},
    }
    r.update(kw)
    return r


def test_report_table(tmp_path: Path) -> None:
    imp = {"kind": "import", "label": "postgresql", "resources": 38971, "ok": True,
           "exit_code": 0, "wall_s": 52.0, "resources_per_s": 749.4, "cpu_s": 60.1,
           "peak_rss_kb": 204800, "db_bytes": 120_000_000, "date": "2026-11-24T05:10:00Z",
           "host": {"cpu_model": "AMD EPYC", "cores": 2, "python": "3.11.7"}}
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in
                              [_http(), _http(scenario="create", clients=1, rps=87.25), imp]))
    text = report.render(report.load_records([path]))
    lines = text.splitlines()
    assert "| backend | scenario | clients | req/s | p50 ms | p99 ms | errors |" in lines
    assert "| sqlite | read | 16 | 2,000 | 7.12 | 15.2 | 0 |" in lines
    assert "| sqlite | create | 1 | 87.2 | 7.12 | 15.2 | 0 |" in lines
    assert "| postgresql | 38,971 | 52.0 | 749 | 60.1 | 200 | 120.0 | ok |" in lines
    assert "AMD EPYC, 2 cores, Python 3.11.7" in lines[0]
    assert "server --workers 2" in text
    assert "WARNING" not in text
    assert report.main([str(path)]) == 0


def test_report_flags_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_http(errors=3, errors_by_status={"500": 3})) + "\n")
    assert report.main([str(path), "--wide"]) == 1
    out = capsys.readouterr().out
    assert "**3** (500: 3)" in out
    assert "WARNING" in out
    assert "loadgen CPU" in out
