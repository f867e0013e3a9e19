"""Loading files into the store through the engine, so imported data obeys every rule a
write over the API obeys (structure checks, indexing, transactions).

NDJSON lines are resources or Bundles; a file may also be one Bundle. Transaction and
batch Bundles run as such; a collection's entries, and plain resources, are written with
their own ids kept (an update, so importing the same file twice changes nothing) or
created when they have none. Resources are grouped into transactions of ``group``
resources for speed; a group that fails is retried one resource at a time so that one
bad line is reported with its line number and costs nothing else.
"""

from __future__ import annotations

import getpass
import gzip
import io
import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhirhub.auth.principal import operator
from fhirhub.bulk import _prevalidate
from fhirhub.bulk._prevalidate import Verdict
from fhirhub.bulk._references import rewrite_references
from fhirhub.engine import Engine, FhirRequest
from fhirhub.engine.router import ID_RE
from fhirhub.errors import FhirError, InvalidError
from fhirhub.fhir import json as fjson

Json = dict[str, Any]


@dataclass
class ImportReport:
    resources: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lines: int = 0

    @property
    def total(self) -> int:
        return sum(self.resources.values())


def open_text(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, text) for NDJSON; a whole-file JSON document is line 1."""
    with open_text(path) as fh:
        head = fh.read(1 << 16)
        rest = fh.read()
    data = head + rest
    stripped = data.lstrip()
    if stripped.startswith(b"{") and b"\n{" not in data.strip():
        yield 1, data
        return
    for number, line in enumerate(io.BytesIO(data), start=1):
        if line.strip():
            yield number, line


class Importer:
    def __init__(self, engine: Engine, *, group: int = 200,
                 progress: Callable[[int], None] | None = None, jobs: int = 0) -> None:
        """``jobs``: worker processes validating lines ahead of the writer (0: the writer
        validates, in this process)."""
        self.engine = engine
        self.group = group
        self.progress = progress or (lambda n: None)
        self.report = ImportReport()
        self.jobs = jobs
        self._pending: list[tuple[int, Json, bool]] = []
        self._known: dict[str, str] = {}  # urn fullUrl -> Type/id, across lines and files
        self._file = ""
        self._operator = operator(getpass.getuser())

    def _error(self, number: int, message: str) -> None:
        self.report.errors.append(f"{self._file} line {number}: {message}")

    def run(self, path: Path) -> ImportReport:
        """Import one file; call again for the next (references to earlier files'
        ``urn:uuid`` fullUrls still resolve). The report covers every file so far."""
        self._file = path.name
        with self._verdicts(iter_lines(path)) as verdicts:
            for number, line, valid in verdicts:
                self.report.lines += 1
                try:
                    item = fjson.loads(line)
                    if not isinstance(item, dict) or "resourceType" not in item:
                        raise InvalidError("the line is not a FHIR resource")
                    self._item(number, item, valid)
                except FhirError as error:
                    self._error(number, error.diagnostics)
                self.progress(len(line))
        self._flush()
        return self.report

    @contextmanager
    def _verdicts(self, lines: Iterator[tuple[int, bytes]]) -> Iterator[Iterator[Verdict]]:
        """Each line with whether workers found it valid (always False without workers)."""
        if self.jobs <= 0:
            yield ((number, line, False) for number, line in lines)
            return
        context = multiprocessing.get_context(
            "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        with context.Pool(self.jobs, initializer=_prevalidate.start,
                          initargs=(self.engine.settings, self.engine.profiles.resources())) as pool:
            yield pool.imap(_prevalidate.verdict, lines, chunksize=8)

    def _item(self, number: int, item: Json, valid: bool) -> None:
        if item["resourceType"] == "Bundle" and item.get("type") in ("transaction", "batch"):
            self._flush()
            self._bundle(number, _keep_ids(item), trusted=valid)
        elif item["resourceType"] == "Bundle" and item.get("type") == "collection":
            # Its entries may refer to each other by fullUrl: load them as one transaction.
            self._flush()
            self._bundle(number, _collection_as_transaction(item), trusted=valid)
        else:
            self._add(number, item, valid)

    def _add(self, number: int, resource: Json, valid: bool) -> None:
        self._pending.append((number, resource, valid))
        if len(self._pending) >= self.group:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if self._known:  # references to earlier Bundles' urn:uuid fullUrls (a Synthea Group's)
            pending = [(n, rewrite_references(r, self._known), v) for n, r, v in pending]
        bundle = _transaction([r for _, r, _ in pending])
        try:
            self._bundle(pending[0][0], bundle, quiet=True,
                         trusted=all(v for _, _, v in pending))
        except FhirError:
            for number, resource, _ in pending:  # find the bad ones, keep the good ones
                try:
                    self._bundle(number, _transaction([resource]))
                except FhirError as error:
                    self._error(number, error.diagnostics)

    def _bundle(self, number: int, bundle: Json, quiet: bool = False,
                trusted: bool = False) -> None:
        request = FhirRequest(method="POST", path="", parsed=bundle,
                              headers={"content-type": "application/fhir+json",
                                       "prefer": "return=minimal"},
                              base_url="", request_id=f"import-{number}",
                              principal=self._operator)
        # A line the workers validated is written without validating it again.
        response = (self.engine.trusted() if trusted else self.engine).handle(request)
        if response.status >= 400:
            outcome = response.resource or {}
            issues = outcome.get("issue") or [{}]
            message = str(issues[0].get("diagnostics", f"failed with {response.status}"))
            if quiet:
                raise InvalidError(message)
            self._error(number, message)
            return
        sent = bundle.get("entry") or []
        for i, entry in enumerate((response.resource or {}).get("entry", [])):
            location = entry.get("response", {}).get("location", "")
            status = entry.get("response", {}).get("status", "")
            if status.startswith("2") and location:
                target = "/".join(location.strip("/").split("/")[:2])
                self.report.resources[target.split("/")[0]] += 1
                full_url = sent[i].get("fullUrl") if i < len(sent) else None
                if isinstance(full_url, str) and full_url.startswith("urn:"):
                    self._known[full_url] = target
            elif not status.startswith("2"):
                outcome = entry.get("response", {}).get("outcome") or {}
                reason = (outcome.get("issue") or [{}])[0].get("diagnostics", "")
                self._error(number, f"Bundle.entry[{i}] failed with {status}: {reason}")



def _keep_ids(bundle: Json) -> Json:
    """Turn ``POST Type`` entries whose resource has an id into ``PUT Type/id``, so that
    imported data keeps its ids (and re-importing updates instead of duplicating)."""
    entries = []
    for entry in bundle.get("entry") or []:
        request = (entry or {}).get("request") or {}
        resource = (entry or {}).get("resource") or {}
        rid = resource.get("id")
        if request.get("method") == "POST" and isinstance(rid, str) and ID_RE.fullmatch(rid) \
                and "ifNoneExist" not in request:
            url = f"{resource['resourceType']}/{rid}"
            entries.append({**entry, "request": {"method": "PUT", "url": url}})
        else:
            entries.append(entry)
    return {**bundle, "entry": entries}


def _collection_as_transaction(bundle: Json) -> Json:
    entries = [e for e in bundle.get("entry") or []
               if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    transaction = _transaction([e["resource"] for e in entries])
    for made, entry in zip(transaction["entry"], entries, strict=True):
        if isinstance(entry.get("fullUrl"), str):
            made["fullUrl"] = entry["fullUrl"]
    return transaction


def _transaction(resources: list[Json]) -> Json:
    entries = []
    for resource in resources:
        rtype = resource.get("resourceType")
        rid = resource.get("id")
        if isinstance(rid, str) and ID_RE.fullmatch(rid):
            request = {"method": "PUT", "url": f"{rtype}/{rid}"}
        else:
            request = {"method": "POST", "url": str(rtype)}
        entries.append({"resource": resource, "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


__all__ = ["ImportReport", "Importer", "iter_lines"]
