"""Unit tests of the benchmark tools that need no server: ``pytest bench/test_bench.py``."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import random
import threading
from collections.abc import Iterator
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


# --- bearer tokens ---------------------------------------------------------------------------

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl"  # a JWT's shape, not a real one


def test_read_token_from_file_env_or_none(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    assert loadgen.read_token(f, {}) == TOKEN
    assert loadgen.read_token(str(f), {}) == TOKEN
    # The file wins over the environment; the environment is used without a file.
    assert loadgen.read_token(f, {loadgen.TOKEN_ENV: "other"}) == TOKEN
    assert loadgen.read_token(None, {loadgen.TOKEN_ENV: f" {TOKEN} "}) == TOKEN
    # Neither: no token, so no Authorization header (the behaviour before tokens).
    assert loadgen.read_token(None, {}) is None
    assert loadgen.read_token(None, {loadgen.TOKEN_ENV: "  "}) is None


@pytest.mark.parametrize("text", ["", "\n", "two tokens", "a\nb", "Bearer x", "t\r\nX-Evil: 1",
                                  "tök"])
def test_read_token_refuses_what_is_not_one_token(tmp_path: Path, text: str) -> None:
    f = tmp_path / "token"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="token"):
        loadgen.read_token(f, {})
    if text.strip():
        with pytest.raises(ValueError, match=loadgen.TOKEN_ENV):
            loadgen.read_token(None, {loadgen.TOKEN_ENV: text})


def test_session_headers() -> None:
    plain = loadgen.session_headers()
    assert "Authorization" not in plain
    assert plain["Accept"] == loadgen.FHIR_JSON
    assert loadgen.session_headers(None) == plain
    assert loadgen.session_headers(TOKEN) == {**plain, "Authorization": f"Bearer {TOKEN}"}


def test_parse_args_token(tmp_path: Path) -> None:
    base = ["--url", "http://127.0.0.1:1/fhir", "--scenario", "read"]
    assert loadgen.parse_args(base, environ={}).token is None
    assert loadgen.parse_args(base, environ={loadgen.TOKEN_ENV: TOKEN}).token == TOKEN
    f = tmp_path / "token"
    f.write_text(TOKEN)
    assert loadgen.parse_args([*base, "--token-file", str(f)], environ={}).token == TOKEN
    with pytest.raises(SystemExit):
        loadgen.parse_args([*base, "--token-file", str(tmp_path / "missing")], environ={})
    f.write_text("")
    with pytest.raises(SystemExit):
        loadgen.parse_args([*base, "--token-file", str(f)], environ={})


@pytest.fixture
def stub_fhir() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """A stand-in FHIR server on 127.0.0.1 (aiohttp, in a thread) that creates and reads
    Patients and notes each request's method and Authorization header."""
    from aiohttp import web

    seen: list[tuple[str, str | None]] = []

    async def create(request: web.Request) -> web.Response:
        seen.append(("POST", request.headers.get("Authorization")))
        await request.read()
        rid = f"p{len(seen)}"
        return web.json_response({"resourceType": "Patient", "id": rid}, status=201,
                                 headers={"Location": f"/fhir/Patient/{rid}/_history/1"})

    async def read(request: web.Request) -> web.Response:
        seen.append(("GET", request.headers.get("Authorization")))
        return web.json_response({"resourceType": "Patient", "id": request.match_info["id"]})

    app = web.Application()
    app.router.add_post("/fhir/Patient", create)
    app.router.add_get("/fhir/Patient/{id}", read)
    runner = web.AppRunner(app)
    loop = asyncio.new_event_loop()
    port: list[int] = []
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port.append(runner.addresses[0][1])
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield f"http://127.0.0.1:{port[0]}/fhir", seen
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def _run_loadgen(base: str, out: Path, *extra: str) -> dict[str, Any]:
    rc = loadgen.main(["--url", base, "--scenario", "read", "--clients", "2", "--duration", "0.3",
                       "--warmup", "0", "--pool-size", "4", "--setup-clients", "2",
                       "--no-uvloop", "--seed", "1", "--json", str(out), *extra])
    assert rc == 0
    return json.loads(out.read_text().splitlines()[-1])


def test_every_request_carries_the_token(stub_fhir: tuple[str, list[tuple[str, str | None]]],
                                         tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    base, seen = stub_fhir
    monkeypatch.delenv(loadgen.TOKEN_ENV, raising=False)
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    record = _run_loadgen(base, tmp_path / "a.jsonl", "--token-file", str(f))
    assert record["auth"] == "bearer"
    assert TOKEN not in json.dumps(record)
    methods = [m for m, _ in seen]
    assert methods.count("POST") == 4  # the pool, made in set-up
    assert methods.count("GET") > 4
    assert {auth for _, auth in seen} == {f"Bearer {TOKEN}"}

    seen.clear()  # the environment variable does the same
    monkeypatch.setenv(loadgen.TOKEN_ENV, TOKEN)
    _run_loadgen(base, tmp_path / "b.jsonl")
    assert seen
    assert {auth for _, auth in seen} == {f"Bearer {TOKEN}"}


def test_no_token_no_authorization_header(stub_fhir: tuple[str, list[tuple[str, str | None]]],
                                          tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    base, seen = stub_fhir
    monkeypatch.delenv(loadgen.TOKEN_ENV, raising=False)
    record = _run_loadgen(base, tmp_path / "a.jsonl")
    assert "auth" not in record
    assert seen
    assert {auth for _, auth in seen} == {None}


# --- auth_micro.py: the helpers of auth_bench.sh --------------------------------------------


def test_patient_setup_writes_token_and_urls(tmp_path: Path) -> None:
    import jwt

    import auth_micro

    issuers = json.loads(auth_micro.write_issuer(tmp_path).read_text())["issuers"]
    assert [i["kind"] for i in issuers] == ["patient"]
    assert (tmp_path / "issuer-key.pem").stat().st_mode & 0o077 == 0
    pool = _pool(3)
    loadgen.save_pool_file(tmp_path / "pool.json", "http://h/fhir", pool)
    rid, nhs = auth_micro.patient_setup(tmp_path, tmp_path / "pool.json", 600)
    assert (rid, nhs) == (pool[0].id, pool[0].nhs_number)
    token = (tmp_path / "patient-token").read_text().strip()
    assert (tmp_path / "patient-token").stat().st_mode & 0o077 == 0
    assert loadgen.read_token(tmp_path / "patient-token", {}) == token
    key = jwt.PyJWK(issuers[0]["jwks"]["keys"][0])
    claims = jwt.decode(token, key.key, algorithms=["RS512"], audience=issuers[0]["audience"],
                        issuer=issuers[0]["issuer"])
    assert claims["nhs_number"] == nhs
    assert 590 <= claims["exp"] - claims["iat"] <= 600
    read = loadgen.load_url_file(tmp_path / "patient-read.urls")
    assert [(s.path, s.expect_id) for s in read] == [(f"Patient/{rid}", rid)]
    search = loadgen.load_url_file(tmp_path / "patient-search-id.urls")
    assert [(s.path, s.min_matches, s.max_matches) for s in search] == [
        (f"Patient?_id={rid}", 1, 1)]


def test_auth_report(tmp_path: Path) -> None:
    import auth_micro

    def rec(mode: str, rep: int, rps: float, **kw: Any) -> dict[str, Any]:
        return _http(rps=rps, meta={"mode": mode, "rep": str(rep), "workers": "2"}, **kw)

    records = [rec("off", 1, 1000), rec("on", 1, 960), rec("patient", 1, 700),
               rec("on", 2, 1000), rec("patient", 2, 720), rec("off", 2, 1050),
               rec("off", 1, 500, clients=1), rec("on", 1, 400, clients=1)]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records)
                    + json.dumps({"kind": "import"}) + "\n")
    loaded = auth_micro.load_records([path])
    assert len(loaded) == 8
    text, clean = auth_micro.report(loaded)
    assert clean
    lines = text.splitlines()
    # mean off 1025, on 980: -4.4 %; pairs 960/1000 = -4.0 %, 1000/1050 = -4.8 %; the
    # pairs agree, but the change is smaller than off's spread (4.9 %): within noise
    row = next(line for line in lines if line.startswith("| sqlite | read | 16 | 1,025 |"))
    assert "| 980 | -4.4 % | -4.0 %, -4.8 % | 4.9 % / 4.1 % |" in row
    assert row.endswith("| 0 | yes (within noise) |")
    one = next(line for line in lines if line.startswith("| sqlite | read | 1 | 500 |"))
    assert "-20.0 %" in one
    assert one.endswith("| **no** |")  # one pair: no spread to compare with
    patient = next(line for line in lines if line.startswith("| sqlite | read | 16 | 710 |"))
    assert "| -30.7 % | -27.6 % | 700, 720 |" in patient
    assert "WARNING" not in text
    assert auth_micro.main(["--report", str(path)]) == 0

    noisy = [rec("off", 1, 1000), rec("on", 1, 990), rec("on", 2, 1100), rec("off", 2, 900)]
    text, _ = auth_micro.report(noisy)
    assert "yes (within noise)" in text  # the pairs disagree: -1.0 %, +22.2 %
    assert auth_micro.within_noise(-3.0, [-3.0, -3.1], [100.0, 110.0], [97.0, 98.0])
    assert not auth_micro.within_noise(-3.0, [-3.0, -3.1], [100.0, 101.0], [97.0, 98.0])
    assert not auth_micro.within_noise(-3.0, [-3.0], [100.0], [97.0])
    steady = [rec("off", 1, 1000), rec("on", 1, 990), rec("on", 2, 995), rec("off", 2, 1002)]
    assert any(line.startswith("| sqlite | read | 16 |") and line.endswith("| 0 | yes |")
               for line in auth_micro.report(steady)[0].splitlines())
    shaky = [rec("off", 1, 1000), rec("on", 1, 700), rec("on", 2, 1000), rec("off", 2, 1050)]
    assert "inconclusive (within noise)" in auth_micro.report(shaky)[0]
    text, clean = auth_micro.report([*noisy, rec("on", 3, 1000, errors=2,
                                                 errors_by_status={"401": 2})])
    assert not clean
    assert "**no: errors**" in text
    assert "WARNING" in text


def test_spread() -> None:
    import auth_micro

    assert auth_micro.spread_pct([100.0]) == 0.0
    assert auth_micro.spread_pct([90.0, 110.0]) == pytest.approx(20.0)


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
