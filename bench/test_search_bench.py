"""Unit tests of the search benchmark's tools that need no server:
``pytest bench/test_search_bench.py``. Issue 4; search semantics per
https://hl7.org/fhir/R4/search.html."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import explain
import loadgen
import report
import search_urls
import synthea_scale
from loadgen import UrlSpec

Json = dict[str, Any]

# --- a small Synthea input: three patients, the shared Bundles, a Group of the three ------


@pytest.fixture(scope="module")
def sample_lines() -> list[bytes]:
    lines = synthea_scale.read_lines(synthea_scale.DEFAULT_INPUT)
    lines = lines[:3] + lines[100:]  # 100 patient Bundles come first, then the rest
    docs = [orjson.loads(ln) for ln in lines]
    patients = lines[:3]
    shared = [ln for ln, d in zip(lines, docs, strict=True) if d["resourceType"] == "Bundle"
              and all(e["resource"]["resourceType"] in synthea_scale.SHARED_TYPES
                      for e in d["entry"])]
    group = next(d for d in docs if d["resourceType"] == "Group")
    ids = {e["resource"]["id"] for d in docs[:3] for e in d["entry"]}
    group["member"] = [m for m in group["member"] if m["entity"]["reference"][9:] in ids]
    group["quantity"] = len(group["member"])
    assert len(shared) == 2 and len(group["member"]) == 3
    return [*patients, *shared, orjson.dumps(group)]


def _docs(lines: list[bytes]) -> list[Json]:
    return [orjson.loads(ln) for ln in lines]


def _resources(doc: Json) -> list[Json]:
    return synthea_scale._entries(doc)


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                yield v
            else:
                yield from _references(v)
    elif isinstance(node, list):
        for v in node:
            yield from _references(v)


@pytest.fixture(scope="module")
def five_copies(sample_lines: list[bytes]) -> list[Json]:
    return _docs(list(synthea_scale.scaled_lines(synthea_scale.Plan.of(sample_lines), 5)))


def _copies(five: list[Json], copies: int) -> list[Json]:
    """The output for fewer copies is a prefix of the output for more: 6 lines, then 4 a copy."""
    return five[: 6 + (copies - 1) * 4]


def test_copy_zero_is_the_input_line_for_line(sample_lines: list[bytes]) -> None:
    out = list(synthea_scale.scaled_lines(synthea_scale.Plan.of(sample_lines), 3))
    assert out[: len(sample_lines)] == sample_lines
    # 3 patient Bundles and the Group again in each further copy; the shared Bundles once.
    assert len(out) == len(sample_lines) + 2 * 4


def test_every_reference_resolves_the_way_the_importer_resolves_it(
        five_copies: list[Json]) -> None:
    known: set[str] = set()  # Type/id of everything written so far
    full_urls: set[str] = set()  # urn:uuid fullUrls of earlier Bundles (the Group uses them)
    for doc in _copies(five_copies, 4):
        resources = _resources(doc)
        known.update(f"{r['resourceType']}/{r['id']}" for r in resources)
        local = {e["fullUrl"] for e in doc.get("entry", [])} if doc["resourceType"] == "Bundle" \
            else set()
        for ref in _references(doc):
            if ref.startswith("#"):
                continue
            if ref.startswith("urn:uuid:"):
                assert ref in local or (not local and ref in full_urls), ref
            else:
                assert ref in known, ref
        full_urls |= local


def test_each_copy_has_its_own_ids_and_its_group_its_own_patients(
        five_copies: list[Json]) -> None:
    docs = _copies(five_copies, 3)
    per_copy = [docs[:6], docs[6:10], docs[10:14]]
    id_sets = []
    for copy in per_copy:
        ids = {(r["resourceType"], r["id"]) for d in copy for r in _resources(d)
               if r["resourceType"] not in synthea_scale.SHARED_TYPES}
        id_sets.append(ids)
        patients = {f"urn:uuid:{r['id']}" for d in copy for r in _resources(d)
                    if r["resourceType"] == "Patient"}
        group = next(d for d in copy if d["resourceType"] == "Group")
        assert {m["entity"]["reference"] for m in group["member"]} == patients
    assert len(id_sets[0]) == len(id_sets[1]) == len(id_sets[2])
    assert not (id_sets[0] & id_sets[1]) and not (id_sets[1] & id_sets[2])
    # The renaming is uuid5 of the copy number and the old id.
    old = sorted(id_sets[0])[0][1]
    assert synthea_scale.new_id(2, old) in {i for _, i in id_sets[2]}
    assert synthea_scale.new_id(0, old) == old


def test_shared_resources_are_written_once_and_referred_to_literally(
        five_copies: list[Json]) -> None:
    docs = _copies(five_copies, 3)
    later = [r for d in docs[6:] for r in _resources(d)]
    assert not [r for r in later if r["resourceType"] in synthea_scale.SHARED_TYPES]
    refs = [ref for d in docs[6:] for ref in _references(d)]
    assert any(ref.startswith("Organization/") for ref in refs)
    assert any(ref.startswith("Practitioner/") for ref in refs)


def _patients(docs: list[Json]) -> list[Json]:
    return [r for d in docs for r in _resources(d) if r["resourceType"] == "Patient"]


def test_patient_identifiers_are_unique_across_copies_and_keep_system_and_shape(
        five_copies: list[Json]) -> None:
    patients = _patients(_copies(five_copies, 5))
    pairs = [(i["system"], i["value"]) for p in patients for i in p["identifier"]]
    assert len(pairs) == len(set(pairs))
    shapes = [re.sub(r"\d", "9", i["value"]) for i in patients[0]["identifier"]]
    for k in range(1, 5):
        twin = patients[3 * k]  # the first patient of copy k
        assert [i["system"] for i in twin["identifier"]] == \
            [i["system"] for i in patients[0]["identifier"]]
        for ident, orig_shape in zip(twin["identifier"], shapes, strict=True):
            if ident["system"] in ("https://github.com/synthetichealth/synthea",
                                   "http://hospital.smarthealthit.org"):
                assert ident["value"] == twin["id"]  # the id-valued ones follow the id
            else:
                assert re.sub(r"\d", "9", ident["value"]) == orig_shape


def test_birthdates_move_back_a_day_a_copy_so_family_and_birthdate_stay_selective(
        five_copies: list[Json]) -> None:
    patients = _patients(_copies(five_copies, 4))
    keys = [(p["name"][0]["family"], p["birthDate"]) for p in patients]
    assert len(keys) == len(set(keys))
    first = dt.date.fromisoformat(patients[0]["birthDate"])
    assert [dt.date.fromisoformat(patients[3 * k]["birthDate"]) for k in range(4)] == \
        [first - dt.timedelta(days=k) for k in range(4)]


def test_output_is_deterministic_and_counted(sample_lines: list[bytes], tmp_path: Path) -> None:
    src = tmp_path / "in.ndjson"
    src.write_bytes(b"\n".join(sample_lines) + b"\n")
    a, b = tmp_path / "a.ndjson.gz", tmp_path / "b.ndjson.gz"
    result = synthea_scale.write_scaled(src, a, 3)
    synthea_scale.write_scaled(src, b, 3)
    assert a.read_bytes() == b.read_bytes()
    with gzip.open(a, "rt") as f:
        docs = [json.loads(line) for line in f]
    distinct = {(r["resourceType"], r["id"]) for d in docs for r in _resources(d)}
    entries = sum(len(_resources(d)) for d in docs)
    plan = synthea_scale.Plan.of(sample_lines)
    assert result.resources == entries == plan.total_resources(3)
    assert len(distinct) < entries  # the patient Bundles repeat the shared ones in copy 0
    assert result.patients == 9 and result.lines == len(docs)


def test_a_reference_to_nothing_is_an_error() -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "id": "00000000-0000-4000-8000-000000000001",
                      "managingOrganization": {
                          "reference": "urn:uuid:00000000-0000-4000-8000-00000000dead"}},
         "request": {"method": "POST", "url": "Patient"}}]}
    plan = synthea_scale.Plan.of([orjson.dumps(bundle)])
    with pytest.raises(ValueError, match="references to nothing"):
        list(synthea_scale.scaled_lines(plan, 2))


# --- URL files ------------------------------------------------------------------------------


def test_url_spec_parses_its_checks_and_writes_them_back() -> None:
    line = "Patient?identifier=http%3A%2F%2Fx%7C1\tid=abc\tmin=1\tmax=1\tincludes=2\ttotal=5\n"
    spec = UrlSpec.parse(line)
    assert spec == UrlSpec("Patient?identifier=http%3A%2F%2Fx%7C1", 200, "abc", 1, 1, 2, 5)
    assert UrlSpec.parse(spec.line()) == spec
    assert UrlSpec.parse("Observation?code=x\tstatus=404").status == 404
    assert UrlSpec.parse("Patient").line() == "Patient"


@pytest.mark.parametrize(("line", "message"), [
    ("http://other.host/fhir/Patient", "relative"),
    ("/Patient", "relative"),
    ("Patient?name=a b", "relative"),
    ("Patient\tfoo=1", "unknown check"),
    ("Patient\tmin=one", "whole number"),
    ("Patient\tid=", "needs a value"),
])
def test_bad_url_lines_are_refused(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UrlSpec.parse(line)


def test_url_file_skips_comments_and_names_a_bad_line(tmp_path: Path) -> None:
    good = tmp_path / "s-x.urls"
    loadgen.write_url_file(good, [UrlSpec("Patient?_id=1", expect_id="1")], "a\ncomment")
    assert good.read_text().startswith("# a\n# comment\n")
    assert loadgen.load_url_file(good) == [UrlSpec("Patient?_id=1", expect_id="1")]
    bad = tmp_path / "bad.urls"
    bad.write_text("# c\n\nPatient\nPatient\tnope=1\n")
    with pytest.raises(ValueError, match=r"bad.urls:4: unknown check"):
        loadgen.load_url_file(bad)
    empty = tmp_path / "empty.urls"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no requests"):
        loadgen.load_url_file(empty)


def _bundle(matches: int, includes: int = 0, total: int | None = None) -> bytes:
    entries = [{"resource": {"id": f"m{i}"}, "search": {"mode": "match"}} for i in range(matches)]
    entries += [{"resource": {"id": f"i{i}"}, "search": {"mode": "include"}}
                for i in range(includes)]
    doc: Json = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    if total is not None:
        doc["total"] = total
    return orjson.dumps(doc)


def test_url_spec_checks_the_answer() -> None:
    spec = UrlSpec("Encounter?patient=1", min_matches=1, max_matches=3, min_includes=1, total=2)
    assert spec.check(_bundle(2, 1, total=2)) is None
    assert spec.check(_bundle(0, 1, total=2)) == "with too few matches"
    assert spec.check(_bundle(4, 1, total=2)) == "with too many matches"
    assert spec.check(_bundle(2, 0, total=2)) == "with too few includes"
    assert spec.check(_bundle(2, 1, total=3)) == "with a wrong total"
    assert spec.check(b"<html>") == "not JSON"
    assert spec.check(b'{"resourceType":"OperationOutcome"}') == "not a Bundle"
    assert UrlSpec("Patient?_id=m1", expect_id="m1").check(_bundle(2)) is None
    assert UrlSpec("Patient?_id=x", expect_id="x").check(_bundle(2)) == "without expected id"
    assert UrlSpec("Patient").check(b"anything") is None  # no checks: no parsing


def test_url_factory_picks_at_random_and_sends_paths_as_written() -> None:
    specs = [UrlSpec(f"Patient?identifier=s%7C{i}", expect_id=str(i)) for i in range(5)]
    f1 = loadgen.make_url_factory("http://127.0.0.1:1/fhir", specs, random.Random(4))
    f2 = loadgen.make_url_factory("http://127.0.0.1:1/fhir", specs, random.Random(4))
    picks = [f1() for _ in range(200)]
    assert [str(r.url) for r in picks] == [str(f2().url) for _ in range(200)]
    assert {str(r.url) for r in picks} == {f"http://127.0.0.1:1/fhir/{s.path}" for s in specs}
    req = picks[0]
    assert req.method == "GET" and req.body is None and req.expect_status == 200
    assert req.check is not None
    assert req.check(b'{"id":"nothing"}') == "without expected id"


def test_loadgen_takes_any_scenario_name_with_urls_only(tmp_path: Path) -> None:
    urls = tmp_path / "s-identifier.urls"
    urls.write_text("Patient?_id=1\tid=1\n")
    args = loadgen.parse_args(["--url", "http://127.0.0.1:1/fhir", "--scenario", "s-identifier",
                               "--urls", str(urls)])
    assert args.url_specs == [UrlSpec("Patient?_id=1", expect_id="1")]
    with pytest.raises(SystemExit):
        loadgen.parse_args(["--url", "http://127.0.0.1:1/fhir", "--scenario", "s-identifier"])
    with pytest.raises(SystemExit):
        loadgen.parse_args(["--url", "http://127.0.0.1:1/fhir", "--scenario", "a b",
                            "--urls", str(urls)])


# --- building the URL files from data --------------------------------------------------------


def _patient(pid: str, family: str, birth: str, ssn: str) -> search_urls.PatientData:
    resource = {"resourceType": "Patient", "id": pid, "birthDate": birth,
                "name": [{"family": family, "given": ["A"]}],
                "identifier": [{"system": search_urls.SSN, "value": ssn},
                               {"system": search_urls.MRN, "value": pid},
                               {"system": "urn:oid:1.2", "value": "S1"}]}
    p = search_urls.PatientData(resource)
    p.encounters = [{"resourceType": "Encounter", "id": f"e-{pid}", "participant": [
        {"individual": {"reference": "Practitioner/pr1"}}]}]
    p.observations = [
        {"resourceType": "Observation", "id": f"o{n}-{pid}", "encounter": {
            "reference": f"Encounter/e-{pid}"}, "effectiveDateTime": f"20{10 + n}-01-02T10:00:00Z",
         "code": {"coding": [{"system": search_urls.LOINC, "code": "8302-2"}]}}
        for n in range(3)]
    return p


def test_the_url_builders_derive_requests_and_checks_from_the_data() -> None:
    ps = [_patient("p1", "Lemke", "1965-01-13", "999-18-8203"),
          _patient("p2", "O'Hara", "1970-02-03", "999-11-1111")]
    ident = search_urls.identifier_specs(ps)
    assert [s.path for s in ident][:2] == [
        "Patient?identifier=http%3A%2F%2Fhl7.org%2Ffhir%2Fsid%2Fus-ssn%7C999-18-8203",
        "Patient?identifier=http%3A%2F%2Fhospital.smarthealthit.org%7Cp1"]
    assert all(s.max_matches == 1 for s in ident) and len(ident) == 4
    fb = search_urls.family_birthdate_specs(ps)
    assert fb[1] == UrlSpec("Patient?family=O%27Hara&birthdate=1970-02-03", expect_id="p2",
                            min_matches=1)
    plain, dated = search_urls.observation_specs(ps, random.Random(0))
    assert plain[0].path == "Observation?patient=p1&code=http%3A%2F%2Floinc.org%7C8302-2"
    assert dated[0].path == plain[0].path + "&date=ge2011-01-02"  # the median day
    chain = search_urls.chain_specs(ps, {"pr1": "9999999889"})
    assert [s.path for s in chain] == [
        "Observation?encounter%3AEncounter.participant%3APractitioner.identifier="
        "http%3A%2F%2Fhl7.org%2Ffhir%2Fsid%2Fus-npi%7C9999999889"]
    has = search_urls.has_specs(ps)
    assert has[0].path == "Patient?_has%3AObservation%3Apatient%3Acode=http%3A%2F%2Floinc.org%7C8302-2"
    inc = search_urls.include_specs(ps)
    assert inc[0] == UrlSpec("Encounter?patient=p1&_include=Encounter%3Apractitioner",
                             min_matches=1, min_includes=1)
    rev = search_urls.revinclude_specs(ps)
    assert rev[0].expect_id == "p1" and rev[0].min_includes == 1
    assert search_urls.total_specs(1234)[0] == UrlSpec(
        "Observation?_total=accurate&_count=10", min_matches=10, total=1234)


def test_links_are_made_relative_to_the_base() -> None:
    client = search_urls.Client("http://127.0.0.1:9/fhir")
    assert client.relative("http://127.0.0.1:9/fhir/Observation?_cursor=abc&_count=20") == \
        "Observation?_cursor=abc&_count=20"
    with pytest.raises(RuntimeError, match="not under the base"):
        client.relative("http://127.0.0.1:9/other/Observation")


# --- explain.py and report.py ----------------------------------------------------------------


def test_explain_turns_urls_and_placeholders_into_what_psycopg_gets(tmp_path: Path) -> None:
    assert explain.split_url("Observation?patient=p1&code=a%7Cb") == (
        ("Observation",), [("patient", "p1"), ("code", "a|b")])
    assert explain.split_url("?_summary=count") == ((), [("_summary", "count")])
    assert explain.to_psycopg("a = ? AND b IN (?, ?)") == "a = %s AND b IN (%s, %s)"
    assert explain.to_numbered("a = %s AND b IN (%s, %s)") == "a = $1 AND b IN ($2, $3)"
    (tmp_path / "s-a.urls").write_text("# c\nPatient?_id=1\nPatient?_id=2\n")
    (tmp_path / "s-b.urls").write_text("Observation\n")
    (tmp_path / "info.json").write_text(json.dumps(
        {"scenarios": {"s-a": {"median_url": "Patient?_id=2", "slowest_url": "Patient?_id=1"}}}))
    assert explain.pick_urls(tmp_path, "median", []) == [("s-a", "Patient?_id=2"),
                                                         ("s-b", "Observation")]
    assert explain.pick_urls(tmp_path, "first", ["s-a"]) == [("s-a", "Patient?_id=1")]


def test_explain_lists_the_indexes_a_plan_uses() -> None:
    st = explain.Statement("page", "SELECT 1", [], plan=(
        "Limit\n  -> Index Scan using resources_pkey on resources r\n"
        "     -> Bitmap Index Scan on idx_token_code\n  -> Seq Scan on idx_date x\n"
        "Planning Time: 0.5 ms\nExecution Time: 12.25 ms"))
    assert st.indexes() == ["resources_pkey", "idx_token_code"]
    assert st.seq_scans() == ["idx_date"]
    assert (st.execution_ms, st.planning_ms) == (12.25, 0.5)


def _search_record(scenario: str, backend: str, scale: str, rps: float, p50: float,
                   p99: float, errors: int = 0) -> Json:
    return {"kind": "http", "scenario": scenario, "clients": 16, "label": backend,
            "requests": 1000, "errors": errors, "errors_by_status": {"500": errors} if errors
            else {}, "warmup_requests": 10, "warmup_errors": 0, "rps": rps, "p50_ms": p50,
            "p90_ms": p99, "p99_ms": p99, "max_ms": p99, "duration_s": 15, "warmup_s": 3,
            "pool_size": 0, "meta": {"suite": "search", "scale": scale, "patients": "100",
                                     "resources": "40000"}, "date": "2026-11-25T10:00:00Z",
            "host": {"cpu_model": "x", "cores": 2}}


def test_report_renders_the_search_table_with_medplum_and_targets() -> None:
    records = [
        _search_record("s-total", "postgresql", "10", 50, 30.0, 90.0),
        _search_record("s-identifier", "sqlite", "1", 3100, 4.0, 12.0),
        _search_record("s-identifier", "postgresql", "1", 2000, 8.0, 20.0),
        _search_record("s-chain2", "postgresql", "10", 900, 10.0, 60.0),
        _search_record("s-has", "sqlite", "1", 500, 10.0, 60.0, errors=3),
        {"kind": "http", "scenario": "read", "clients": 16, "label": "sqlite", "requests": 5,
         "errors": 0, "rps": 9000, "p50_ms": 1, "p99_ms": 2, "duration_s": 15, "warmup_s": 3},
    ]
    text = report.render(records)
    rows = [line for line in text.splitlines() if line.startswith("| s-")]
    assert [r.split(" | ")[0] for r in rows] == ["| s-identifier", "| s-identifier",
                                                  "| s-chain2", "| s-has", "| s-total"]
    assert "| s-identifier | postgresql | 100 | 2,000 | 8.00 | 20.0 | 0 | 1,495 | ≥ 2,990/s | **no** |" \
        in rows
    assert rows[1].endswith("| 1,495 | ≥ 2,990/s | yes |")
    assert rows[2].endswith("| - | p50 < 20, p99 < 100 ms | yes |")
    assert rows[3].endswith("| - | - | - |")
    assert rows[4].endswith("| - | p50 < 20, p99 < 100 ms | **no** |")
    assert "| read |" in text  # the other HTTP runs keep their own table
    assert "**WARNING: 1 run(s)" in text


def test_search_scenario_names_agree_across_the_tools() -> None:
    assert set(search_urls.SCENARIOS) == set(report.SEARCH_ORDER)
    script = (Path(__file__).parent / "search_bench.sh").read_text()
    listed = re.findall(r"\bs-[a-z0-9-]+", script.split("SCENARIOS=")[0] + script)
    assert set(search_urls.SCENARIOS) <= set(listed)
    assert set(report.MEDPLUM_RPS) == {"s-identifier", "s-family-birthdate",
                                       "s-obs-patient-code", "s-include"}
