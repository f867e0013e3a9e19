"""Measured conformance of the profile validator (:mod:`fhirhub.fhir.validation`) on real
content, kept true by the suite (figures in docs/conformance.md, printed by
``bench/conformance_report.py``).

* The 773 official R4 examples (``tests/data/r4-examples.ndjson.gz``), each against its base
  definition and the profiles it claims; a claimed profile we do not package (another IG's)
  is a warning, not an error.
* The 215 UK Core examples (``tests/data/ukcore-examples``, FHIR XML), each against its
  UK Core profile: the StructureDefinition whose id is the longest prefix of the file name;
  an ``Extension-UKCore-*`` example against ``UKCore-<its resourceType>``.
* The reference validator's cases (``tests/data/test-cases/validator``): our verdict (any
  error or not) against the reference Java validator's (``expected_errors > 0``). A file
  that does not even parse counts as having errors (the server refuses it with 400).

Every exception names its reason. An example outside the lists must have no errors, and an
example in them must still have some, so that the lists say what the validator does now.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhirhub.errors import InvalidError, Issue
from fhirhub.fhir import json as fhir_json
from fhirhub.fhir.definitions import packaged
from fhirhub.fhir.terminology import terminology
from fhirhub.fhir.validation import Validator
from fhirhub.fhir.xml import parse_resource

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data"
R4_EXAMPLES = DATA / "r4-examples.ndjson.gz"
VALIDATOR_CASES = DATA / "test-cases" / "validator"
UKCORE_EXAMPLES = DATA / "ukcore-examples"
UKCORE_CANONICAL = "https://fhir.hl7.org.uk/"

R4_COUNT = 773
UKCORE_COUNT = 215
VALIDATOR_CASE_COUNT = 92
REQUIRED_AGREEMENT = 0.95

# -- the exceptions ---------------------------------------------------------------------------

R4_EXCEPTIONS: dict[str, str] = {
    "ActivityDefinition/blood-tubes-supply": "official example is invalid: its narrative div "
    "holds only whitespace (txt-2: the narrative SHALL have some non-whitespace content)",
    "ActivityDefinition/heart-valve-replacement": "official example is invalid: its narrative "
    "div holds only whitespace (txt-2)",
    "Basic/referral": "official example uses three modifierExtensions whose definitions were "
    "never published (http://example.org/do-not-use/fhir-extensions/referral#...); an unknown "
    "modifier extension is an error by design (a receiver must not process a modifier it does "
    "not understand)",
    "Bundle/10bb101f-a121-4264-a920-67be9cb82c74": "official example is invalid: an entry's "
    "fullUrl, http://acme.com/ehr/fhir/Patient/pat12, is a RESTful URL that does not end with "
    "its resource's type and id (Patient/pat2)",
    "Bundle/3a0707d3-549e-4467-b8b8-5a2ab3800efe": "official example is invalid: an entry's "
    "fullUrl, http://acme.com/ehr/fhir/Patient/pat12, is a RESTful URL that does not end with "
    "its resource's type and id (Patient/pat2)",
    "Bundle/dataelements": "official example is invalid: bdl-7, the same fullUrl (e.g. "
    "http://hl7.org/fhir/StructureDefinition/de-Quantity.value) occurs three times without "
    "distinct meta.versionId",
    "Bundle/lri-example": "official example is invalid: its fullUrls (e.g. "
    "http://test.fhir.org/r4/Observation/lri-gramstain1) are RESTful URLs that do not end with "
    "their resources' ids (gramstain1)",
    "Bundle/valueset-expansions": "official example is invalid: the translation extension "
    "(context string, code, markdown) is put on ValueSet.expansion.contains (51 times) "
    "instead of on its display",
    "DeviceMetric/example": "official example is invalid: DeviceMetric.parent refers to "
    "DeviceDefinition/dc102; only a Device is allowed",
    "DeviceUseStatement/example": "official example is invalid: reasonReference refers to "
    "Procedure/example; only Condition, Observation, DiagnosticReport, DocumentReference and "
    "Media are allowed",
    "EventDefinition/example": "official example is invalid: its narrative div holds only "
    "whitespace (txt-2)",
    "ExampleScenario/example": "the packaged R4 definitions have no ExampleScenario "
    "StructureDefinition, so the type is unknown (see the structure checks above)",
    "ImplementationGuide/fhir": "official example is invalid: ImplementationGuide.name and "
    ".status are required (1..1) and missing; it also refers to ExampleScenario/example, a "
    "type our packaged definitions lack",
    "MedicationRequest/medrx0301": "official example is invalid: dispenseRequest.performer "
    "refers to Practitioner/f001; only an Organization is allowed",
    "Observation/clinical-gender": "official example is invalid: Observation.performer refers "
    "to Encounter/example, which is not an allowed target",
    "Observation/f202": "official example is invalid: a body temperature (LOINC 8310-5, "
    "category vital-signs) must conform to R4's bodytemp profile (observation-vitalsigns.html), "
    "which requires effective[x]; it has none",
    "Questionnaire/qs1": "official example is invalid: 32 nested items have no linkId "
    "(required, 1..1), and it uses questionnaire-allowedResource, an STU3 extension that R4 "
    "replaced by questionnaire-referenceResource",
    "Questionnaire/zika-virus-exposure-assessment": "official example is invalid: its narrative "
    "div holds only an empty <pre> (txt-2)",
}

UKCORE_EXCEPTIONS: dict[str, str] = {
    "Extension-UKCore-ConditionEpisode-Example.xml": "UK Core example is invalid: its "
    "ConditionEpisode extension has both valueCode and valueCodeableConcept (value[x] is 0..1)",
    "UKCore-Bundle-NEWS2Observations-Example.xml": "UK Core example is invalid: its 8 entries' "
    "fullUrls are relative ('Observation/<uuid>'; a fullUrl is absolute), and two entries break "
    "the vital-signs profiles R4 mandates for their LOINC codes (valueQuantity.code "
    "'{Breaths}/min' and '{beats}/min' where resprate and heartrate fix '/min')",
    "UKCore-MedicationDispense-Amoxicillin-Example.xml": "UK Core example is invalid: "
    "authorizingPrescription.reference is 'UKCore-MedicationRequest-Amoxicillin-Example', "
    "neither Type/id, an absolute URL nor #id",
    "UKCore-MedicationDispense-CiprofloxacinIV-Example.xml": "UK Core example is invalid: "
    "authorizingPrescription.reference is a bare id "
    "('UKCore-MedicationRequest-CiprofloxacinIV-Example'), not Type/id",
    "UKCore-MedicationDispense-CiprofloxacinOral-Example.xml": "UK Core example is invalid: "
    "authorizingPrescription.reference is a bare id "
    "('UKCore-MedicationRequest-CiprofloxacinOral-Example'), not Type/id",
    "UKCore-Observation-VitalSigns-BodyHeight-Example.xml": "UK Core example is invalid against "
    "R4's bodyheight profile, which R4 mandates for LOINC 8302-2: its unit 'm' is not in "
    "ucum-bodylength (cm, [in_i]), a required binding",
    "UKCore-Patient-BabyPatient-Example.xml": "UK Core example is invalid: its NHS number "
    "9912003890 fails the Modulus 11 check (the check digit would be 6)",
}

# File names whose words are not in the order of the profile's id.
UKCORE_PROFILE_OVERRIDES = {
    "UKCore-VitalSigns-Observation-OxygenSaturation-Example.xml":
        "UKCore-Observation-VitalSigns-OxygenSaturation",
}

VALIDATOR_DISAGREEMENTS: dict[str, str] = {
    # -- needs what we cannot have: code systems we do not package
    "bundle-id-5": "needs CVX (http://hl7.org/fhir/sid/cvx), which we do not package: the "
    "reference's one error is a wrong display for CVX 207",
    "ips-nz-pj": "needs LOINC, which we do not package: the reference's four errors are wrong "
    "display names of LOINC codes",
    # -- a rule of the reference validator we do not check
    "obs-temp-bad": "not checked: the reference validator applies R4's bodytemp profile to an "
    "Observation coded SNOMED CT 276885007 (body temperature) too, and reports its missing "
    "LOINC 8310-5; we apply the vital-signs profiles by LOINC code, and this one has none",
}


# -- the validator and the corpora -----------------------------------------------------------


@cache
def conformance_validator() -> Validator:
    """One validator for the three corpora: a claimed profile we do not know is a warning,
    as it is for the reference validator ("has not been checked because it could not be
    found"); a profile asked for explicitly (UK Core's) must be known."""
    return Validator(packaged(), terminology(), unknown_profile="warning")


@cache
def reference_like_validator() -> Validator:
    """For the reference validator's cases: configured as that validator is by default, an
    extension whose definition cannot be found is an error ("could not be found so is not
    allowed here"). The server's default is a warning (FHIRHUB_UNKNOWN_EXTENSIONS), so that
    data carrying other programmes' extensions (US Core in Synthea) can be loaded."""
    return Validator(packaged(), terminology(), unknown_profile="warning",
                     unknown_extension="error")


def error_lines(issues: Iterable[Issue]) -> list[str]:
    """The errors (and fatal issues) among ``issues``, one line each."""
    return [f"{', '.join(i.expression) or '(resource)'}: {i.diagnostics}"
            for i in issues if i.severity in ("error", "fatal")]


def validation_errors(resource: dict[str, Any], profiles: tuple[str, ...] = (), *,
                      validator: Validator | None = None) -> list[str]:
    """Our errors for ``resource``; the validator crashing is one (the server would answer
    500), named so that it can be listed like any other."""
    try:
        issues = (validator or conformance_validator()).validate(resource, profiles=profiles)
    except Exception as exc:
        return [f"(the validator raised {type(exc).__name__}: {exc})"]
    return error_lines(issues)


@cache
def r4_keys() -> tuple[str, ...]:
    """``Type/id`` of every official example, in file order (two are the same:
    ImplementationGuide/fhir is in the examples twice, identical)."""
    keys = []
    with gzip.open(R4_EXAMPLES, "rb") as fh:
        for line in fh:
            if line.strip():
                head = orjson.loads(line)
                keys.append(f"{head['resourceType']}/{head.get('id')}")
    return tuple(keys)


@cache
def r4_examples() -> tuple[dict[str, Any], ...]:
    with gzip.open(R4_EXAMPLES, "rb") as fh:
        return tuple(fhir_json.loads(line) for line in fh if line.strip())


def r4_errors(index: int) -> list[str]:
    return validation_errors(r4_examples()[index])


def ukcore_files() -> tuple[str, ...]:
    if not UKCORE_EXAMPLES.is_dir():
        return ()
    return tuple(sorted(p.name for p in UKCORE_EXAMPLES.glob("*.xml")))


@cache
def ukcore_profile_ids() -> dict[str, str]:
    """UK Core StructureDefinition ids and their canonical URLs."""
    return {sd["id"]: sd["url"] for sd in packaged().all("StructureDefinition")
            if str(sd.get("url", "")).startswith(UKCORE_CANONICAL)}


def ukcore_profile(file_name: str, resource_type: str) -> str | None:
    """The canonical URL of the UK Core profile an example file shows (None: there is none)."""
    ids = ukcore_profile_ids()
    stem = file_name.removesuffix(".xml")
    chosen = f"UKCore-{resource_type}"
    if file_name in UKCORE_PROFILE_OVERRIDES:
        chosen = UKCORE_PROFILE_OVERRIDES[file_name]
    elif not stem.startswith("Extension-UKCore-"):
        prefixes = [i for i in ids if stem.startswith(f"{i}-")]
        if prefixes:
            chosen = max(prefixes, key=len)
    return ids.get(chosen)


@cache
def ukcore_example(file_name: str) -> tuple[dict[str, Any], str | None]:
    resource = parse_resource((UKCORE_EXAMPLES / file_name).read_bytes())
    return resource, ukcore_profile(file_name, resource["resourceType"])


def ukcore_errors(file_name: str) -> list[str]:
    resource, profile = ukcore_example(file_name)
    return validation_errors(resource, (profile,) if profile else ())


@dataclass(frozen=True)
class Case:
    name: str
    file: str
    module: str
    expected_errors: int
    outcome: str

    def reference_errors(self) -> list[str]:
        """The errors the reference validator reports, one line each."""
        outcome = json.loads((VALIDATOR_CASES / self.outcome).read_text())
        lines = []
        for issue in outcome.get("issue", ()):
            if issue.get("severity") in ("error", "fatal"):
                where = ", ".join(issue.get("expression") or issue.get("location") or ())
                text = issue.get("details", {}).get("text") or issue.get("diagnostics", "")
                lines.append(f"{where or '(resource)'}: {text}")
        return lines


@cache
def validator_cases() -> tuple[Case, ...]:
    manifest = json.loads((VALIDATOR_CASES / "manifest.json").read_text())
    return tuple(Case(c["name"], c["file"], c["module"], c["expected_errors"], c["outcome"])
                 for c in manifest["cases"])


def case_by_name(name: str) -> Case:
    return next(c for c in validator_cases() if c.name == name)


def case_errors(case: Case) -> list[str]:
    """Our errors for a case; a file that does not parse is one error."""
    data = (VALIDATOR_CASES / case.file).read_bytes()
    try:
        resource = parse_resource(data) if case.file.endswith(".xml") else fhir_json.loads(data)
    except InvalidError as exc:
        return [f"(not parsed): {exc.diagnostics if hasattr(exc, 'diagnostics') else exc}"]
    return validation_errors(resource, validator=reference_like_validator())


def _listing(lines: list[str], limit: int = 20) -> str:
    shown = [f"  {line[:300]}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"  ... and {len(lines) - limit} more")
    return "\n".join(shown)


def _check(key: str, errors: list[str], exceptions: dict[str, str], listed_in: str) -> None:
    reason = exceptions.get(key)
    if reason is None:
        assert not errors, (f"{key} has {len(errors)} errors (fix the validator, or list it "
                            f"in {listed_in} with the reason):\n{_listing(errors)}")
    else:
        assert errors, (f"{key} now validates without errors: remove it from {listed_in} "
                        f"(it said: {reason})")


# -- the official R4 examples ----------------------------------------------------------------


def test_the_r4_corpus_holds_every_official_example() -> None:
    assert len(r4_keys()) == R4_COUNT


def test_every_r4_exception_names_an_official_example() -> None:
    assert set(R4_EXCEPTIONS) - set(r4_keys()) == set()


@pytest.mark.parametrize("index", range(len(r4_keys())), ids=r4_keys())
def test_official_r4_example_has_no_errors_unless_listed(index: int) -> None:
    _check(r4_keys()[index], r4_errors(index), R4_EXCEPTIONS, "R4_EXCEPTIONS")


# -- the UK Core examples --------------------------------------------------------------------

needs_ukcore = pytest.mark.skipif(not UKCORE_EXAMPLES.is_dir(),
                                  reason=f"UK Core examples not found at {UKCORE_EXAMPLES}")


@needs_ukcore
def test_the_ukcore_corpus_holds_every_example_and_each_has_a_profile() -> None:
    files = ukcore_files()
    assert len(files) == UKCORE_COUNT
    without = [name for name in files if ukcore_example(name)[1] is None]
    assert without == []


@needs_ukcore
def test_every_ukcore_exception_names_an_example() -> None:
    assert set(UKCORE_EXCEPTIONS) - set(ukcore_files()) == set()


@needs_ukcore
@pytest.mark.parametrize("file_name", ukcore_files() or ["(missing)"])
def test_ukcore_example_conforms_to_its_profile_unless_listed(file_name: str) -> None:
    _check(file_name, ukcore_errors(file_name), UKCORE_EXCEPTIONS, "UKCORE_EXCEPTIONS")


# -- the reference validator's cases ---------------------------------------------------------


def test_the_validator_cases_are_all_there() -> None:
    assert len(validator_cases()) == VALIDATOR_CASE_COUNT
    assert set(VALIDATOR_DISAGREEMENTS) - {c.name for c in validator_cases()} == set()


@pytest.mark.parametrize("name", [c.name for c in validator_cases()])
def test_validator_case_verdict_agrees_with_the_reference_unless_listed(name: str) -> None:
    case = case_by_name(name)
    errors = case_errors(case)
    agrees = bool(errors) == (case.expected_errors > 0)
    reason = VALIDATOR_DISAGREEMENTS.get(name)
    if reason is None:
        assert agrees, (
            f"{name}: the reference validator reports {case.expected_errors} errors, we "
            f"report {len(errors)} (fix it, or list it in VALIDATOR_DISAGREEMENTS):\n"
            f"ours:\n{_listing(errors)}\nreference:\n{_listing(case.reference_errors())}")
    else:
        assert not agrees, (f"{name} now agrees with the reference validator: remove it from "
                            f"VALIDATOR_DISAGREEMENTS (it said: {reason})")


def test_validator_case_agreement_meets_the_floor() -> None:
    """The per-case test keeps VALIDATOR_DISAGREEMENTS exactly the disagreeing cases, so
    the agreement is read from it."""
    total = len(validator_cases())
    agreement = 1 - len(VALIDATOR_DISAGREEMENTS) / total
    assert agreement >= REQUIRED_AGREEMENT, (
        f"the validator agrees with the reference validator on {total - len(VALIDATOR_DISAGREEMENTS)}"
        f" of {total} cases ({agreement:.1%}), under the floor of {REQUIRED_AGREEMENT:.0%}")
