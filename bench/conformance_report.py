#!/usr/bin/env python3
"""Print the "Validation (issue 3)" section of docs/conformance.md, measured now.

  .venv/bin/python bench/conformance_report.py            # the markdown
  .venv/bin/python bench/conformance_report.py --draft    # + dict entries for new offenders
  .venv/bin/python bench/conformance_report.py --update docs/conformance.md

Runs the three validator corpora exactly as ``tests/fhir/validation/test_conformance.py``
does (it imports that module: the corpora, the validator set-up and the exception lists with
their reasons live there), and the official FHIRPath suite as ``tests/fhir/test_fhirpath.py``
does. Every figure is measured, not read from the lists; where the measure and the lists
differ (an offender not listed, a listed one that now passes) the report says so and the
exit status is 1, as the test suite would fail too. Takes about half a minute.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fhir import test_fhirpath as fhirpath_suite  # noqa: E402
from tests.fhir.validation import test_conformance as conf  # noqa: E402

T = TypeVar("T")
TEST_FILE = "tests/fhir/validation/test_conformance.py"
SECTION = "## Validation (issue 3)"


def guarded(errors: Callable[[T], list[str]], item: T) -> list[str]:
    """``errors(item)``; a crash of the validator is an error too, and says so."""
    try:
        return errors(item)
    except Exception as exc:
        return [f"(the validator raised {type(exc).__name__}: {exc})"]


class Corpus:
    """One corpus measured: the keys with errors (and their first errors)."""

    def __init__(self, title: str, keys: Sequence[str], errors: Callable[[int], list[str]],
                 exceptions: dict[str, str], dict_name: str) -> None:
        self.title = title
        self.total = len(keys)
        self.exceptions = exceptions
        self.dict_name = dict_name
        self.failing: dict[str, list[str]] = {}
        for index, key in enumerate(keys):
            found = guarded(errors, index)
            if found:
                self.failing.setdefault(key, found)
        self.failing_items = sum(1 for key in keys if key in self.failing)

    @property
    def unlisted(self) -> list[str]:
        return [key for key in self.failing if key not in self.exceptions]

    @property
    def stale(self) -> list[str]:
        return [key for key in self.exceptions if key not in self.failing]

    def passing(self) -> int:
        return self.total - self.failing_items


def measure_validator_cases() -> tuple[int, dict[str, list[str]], list[str], list[str]]:
    """(agreeing count, disagreeing case -> our errors, unlisted, stale)."""
    disagreeing: dict[str, list[str]] = {}
    agreeing = 0
    for case in conf.validator_cases():
        errors = guarded(conf.case_errors, case)
        if bool(errors) == (case.expected_errors > 0):
            agreeing += 1
        else:
            disagreeing[case.name] = errors
    unlisted = [n for n in disagreeing if n not in conf.VALIDATOR_DISAGREEMENTS]
    stale = [n for n in conf.VALIDATOR_DISAGREEMENTS if n not in disagreeing]
    return agreeing, disagreeing, unlisted, stale


def measure_fhirpath() -> tuple[int, int, int]:
    """(passed, applicable, strict-mode tests not counted)."""
    results = list(fhirpath_suite._run_suite())
    passed = sum(1 for _, why in results if why is None)
    strict = len(fhirpath_suite._cases()) - len(results)
    return passed, len(results), strict


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def replace_section(text: str, section: str) -> str:
    """``text`` with its "## Validation (issue 3)" section (up to the next "## " heading)
    replaced by ``section``, or with ``section`` appended."""
    lines = text.splitlines()
    start = next((n for n, line in enumerate(lines) if line.strip() == SECTION), None)
    if start is None:
        return text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    end = next((n for n in range(start + 1, len(lines)) if lines[n].startswith("## ")),
               len(lines))
    kept_after = lines[end:]
    new = [*lines[:start], *section.rstrip("\n").splitlines()]
    if kept_after:
        new += ["", *kept_after]
    return "\n".join(new) + "\n"


def wrap(lines: list[str], width: int = 92) -> list[str]:
    """Paragraphs and list items filled to ``width`` as in the rest of docs/conformance.md;
    tables, headings and code as they are."""
    out: list[str] = []
    in_code = False
    for line in lines:
        if line.startswith("```"):
            in_code = not in_code
        if in_code or line.startswith(("```", "|", "#")) or not line.strip():
            out.append(line)
            continue
        indent = "  " if line.startswith("- ") else ""
        out += textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False,
                             break_on_hyphens=False)
    return out


def pct(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def text(plain: str) -> str:
    """Plain text for markdown: no HTML tags (reasons quote some, e.g. an empty <pre>)."""
    return plain.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def exception_lines(exceptions: dict[str, str], failing: dict[str, list[str]]) -> list[str]:
    lines = []
    for key, reason in exceptions.items():
        note = "" if key in failing else " **(listed, but now passes: remove it)**"
        lines.append(f"- `{key}`: {text(reason)}{note}")
    for key, errors in failing.items():
        if key not in exceptions:
            first = text(errors[0][:200]) if errors else ""
            lines.append(f"- `{key}`: **not listed**: {plural(len(errors), 'error')}, first: {first}")
    return lines


def draft(title: str, failing: dict[str, list[str]], exceptions: dict[str, str]) -> list[str]:
    """Python dict entries for offenders not yet listed, their errors as comments."""
    lines = [f"# -- {title}: new entries"]
    for key, errors in failing.items():
        if key in exceptions:
            continue
        lines += [f"    # {e[:150]}" for e in errors[:4]]
        lines.append(f'    "{key}": "TODO",')
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draft", action="store_true",
                        help="also print dict entries for offenders not yet listed")
    parser.add_argument("--no-fhirpath", action="store_true", help="skip the FHIRPath suite")
    parser.add_argument("--update", metavar="FILE",
                        help=f"also write the section into FILE, replacing its '{SECTION}'")
    args = parser.parse_args(argv)

    r4 = Corpus("Official R4 examples", conf.r4_keys(), conf.r4_errors, conf.R4_EXCEPTIONS,
                "R4_EXCEPTIONS")
    files = conf.ukcore_files()
    uk = Corpus("UK Core examples", files, lambda i: conf.ukcore_errors(files[i]),
                conf.UKCORE_EXCEPTIONS, "UKCORE_EXCEPTIONS")
    agreeing, disagreeing, case_unlisted, case_stale = measure_validator_cases()
    cases = len(conf.validator_cases())
    fp = None if args.no_fhirpath else measure_fhirpath()

    out: list[str] = []
    out += [
        SECTION,
        "",
        f"Measured on {dt.date.today().isoformat()} by `bench/conformance_report.py`; "
        f"`{TEST_FILE}` keeps every figure and list below true (an example outside a list "
        "must have no errors, and one in a list must still have some).",
        "",
        "`fhirhub.fhir.validation.Validator` checks a resource against its base definition, "
        "the profiles it claims and the profiles asked for. Here a claimed profile we do not "
        "package (another IG's) is a warning, as it is for the reference validator; UK Core "
        "examples are checked against their UK Core profile (the StructureDefinition whose "
        "id is the longest prefix of the file name; `Extension-UKCore-*` examples against "
        "`UKCore-<resourceType>`, as is a file whose name starts with no profile's id, "
        f"except {len(conf.UKCORE_PROFILE_OVERRIDES)} whose name has the words of its "
        "profile's id in another order: `UKCORE_PROFILE_OVERRIDES`). The reference "
        "validator's cases are run as that validator runs by default: an extension whose "
        "definition cannot be found is an error (`unknown_extension=\"error\"`, the "
        "server's `FHIRHUB_UNKNOWN_EXTENSIONS=error`; RFC 2606 example domains excepted). "
        "The server's default is a warning, so that data carrying other programmes' "
        "extensions (US Core's, in the Synthea sample) loads; with that default, 2 more "
        "cases differ (`pat-dob-ext`, `q-bp`: 87 of 92, 94.6%).",
        "",
        "| corpus | result | test |",
        "|---|---|---|",
        f"| {r4.total} official R4 examples | **{r4.passing()} with no errors "
        f"({pct(r4.passing(), r4.total)})** | `{TEST_FILE}` |",
    ]
    if uk.total:
        out.append(f"| {uk.total} UK Core examples, against their profiles | "
                   f"**{uk.passing()} with no errors ({pct(uk.passing(), uk.total)})** | "
                   f"`{TEST_FILE}` |")
    else:
        out.append(f"| UK Core examples | not measured: {conf.UKCORE_EXAMPLES} is missing | |")
    out.append(f"| {cases} reference validator cases (`test-cases/validator`) | **same verdict "
               f"(errors or none) as the reference validator in {agreeing} ({pct(agreeing, cases)})"
               f"**; the floor is {conf.REQUIRED_AGREEMENT:.0%} | `{TEST_FILE}` |")
    if fp is not None:
        passed, applicable, strict = fp
        out.append(f"| official FHIRPath suite (`tests-fhir-r4.xml`) | **{passed} of {applicable} "
                   f"applicable tests ({pct(passed, applicable)})**; {strict} `mode=\"strict\"` "
                   "tests not counted | `tests/fhir/test_fhirpath.py` |")
    out += ["", f"### Official R4 examples with errors ({r4.failing_items})", ""]
    out += exception_lines(r4.exceptions, r4.failing)
    out += ["", f"### UK Core examples with errors ({uk.failing_items})", ""]
    out += exception_lines(uk.exceptions, uk.failing)
    out += ["", f"### Validator cases where our verdict differs ({len(disagreeing)})", ""]
    for name, reason in conf.VALIDATOR_DISAGREEMENTS.items():
        case = next((c for c in conf.validator_cases() if c.name == name), None)
        expected = f"reference: {plural(case.expected_errors, 'error')}" if case else "no such case"
        ours = (f"ours: {plural(len(disagreeing[name]), 'error')}" if name in disagreeing
                else "now agrees: remove it")
        out.append(f"- `{name}` ({expected}, {ours}): {text(reason)}")
    for name in case_unlisted:
        first = text(disagreeing[name][0][:200]) if disagreeing[name] else "no errors"
        out.append(f"- `{name}`: **not listed**; ours: {first}")
    out += [
        "",
        "To reproduce:",
        "",
        "```sh",
        f".venv/bin/python -m pytest -q {TEST_FILE}",
        ".venv/bin/python -m pytest -q tests/fhir/test_fhirpath.py",
        ".venv/bin/python bench/conformance_report.py     # this section",
        "```",
    ]
    out = wrap(out)
    print("\n".join(out))
    if args.update:
        path = Path(args.update)
        path.write_text(replace_section(path.read_text(encoding="utf-8"), "\n".join(out)),
                        encoding="utf-8")
        print(f"{SECTION} written to {path}", file=sys.stderr)

    mismatches = [*r4.unlisted, *r4.stale, *uk.unlisted, *uk.stale, *case_unlisted, *case_stale]
    if args.draft:
        print()
        print("\n".join(draft("R4_EXCEPTIONS", r4.failing, r4.exceptions)))
        print("\n".join(draft("UKCORE_EXCEPTIONS", uk.failing, uk.exceptions)))
        print("\n".join(draft("VALIDATOR_DISAGREEMENTS",
                              {n: disagreeing[n] for n in case_unlisted},
                              conf.VALIDATOR_DISAGREEMENTS)))
    if mismatches:
        print(f"\nThe lists in {TEST_FILE} are out of date for: {', '.join(mismatches)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
