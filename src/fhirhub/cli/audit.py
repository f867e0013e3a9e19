"""``fhirhub audit …``: the audit log for support desks, assurance teams and SIEMs.

- ``verify``: check every hash chain and signed checkpoint; exit 1 on tampering.
- ``show REQUEST_ID``: the whole story of one request, and everything it caused.
- ``patient PATIENT``: who read or changed a patient's record, when, and how.
- ``export --since …``: NDJSON (FHIR AuditEvents, or the raw records) for a SIEM.
- ``checkpoint``: sign a checkpoint of the chains' heads now.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click
import orjson

from fhirhub.cli._shared import settings_and_store

if TYPE_CHECKING:
    from rich.console import Console

    from fhirhub.audit.record import AuditRecord
    from fhirhub.store import Store
    from fhirhub.store.audit import AuditQuery, AuditRow

PAGE = 500


_store = settings_and_store


def _console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


@click.group()
def audit() -> None:
    """The audit log: verify it, follow a request, a patient's access log, export."""


@audit.command()
@click.option("--db", "database_url", help="Database URL (as for serve)")
@click.option("--public-key", "keys", multiple=True, type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="PEM key(s) the checkpoints were signed with (default: "
              "the public half of the server's signing key); repeat after a key rotation")
def verify(database_url: str | None, keys: tuple[Path, ...]) -> None:
    """Check the audit log's hash chains and signed checkpoints; exit 1 on tampering."""
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn

    from fhirhub.audit.signing import load_public_keys
    from fhirhub.audit.verify import verify as run_verify

    console = _console()
    settings, store = _store(database_url)
    try:
        paths = list(keys) or [settings.audit_key_path]
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise click.ClickException(f"no signing key at {missing[0]}: give the public key "
                                       "with --public-key")
        public = load_public_keys(paths)
        total = sum(h.chain_seq for h in store.audit_heads())
        with Progress(SpinnerColumn(), "[progress.description]{task.description}",
                      MofNCompleteColumn(), console=console) as progress:
            task = progress.add_task("Verifying audit records", total=total)
            report = run_verify(store, public, progress=lambda n: progress.update(
                task, completed=n))
            progress.update(task, completed=report.records)
    finally:
        store.close()
    console.print(f"{report.records} records in {report.chains} chain(s), "
                  f"{report.checkpoints} signed checkpoint(s)")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if report.ok:
        console.print("[green]The audit log is intact.[/green]")
        return
    for problem in report.problems:
        where = "" if problem.chain is None else (
            f" chain {problem.chain}" + ("" if problem.chain_seq is None
                                         else f" position {problem.chain_seq}"))
        console.print(f"[red]{problem.kind}[/red]{where}: {problem.message}")
    sys.exit(1)


@audit.command()
@click.argument("request_id")
@click.option("--db", "database_url", help="Database URL (as for serve)")
@click.option("--json", "as_json", is_flag=True, help="The records as NDJSON instead")
def show(request_id: str, database_url: str | None, as_json: bool) -> None:
    """The whole story of one request (by its X-Request-ID): the request, the response,
    each Bundle entry, and every message it caused downstream, in order."""
    from fhirhub.store.audit import AuditQuery

    _, store = _store(database_url)
    try:
        rows = list(_all(store, AuditQuery(request_ids=(request_id,), oldest_first=True,
                                           count=PAGE)))
        ids = {r.id for r in rows}
        children = list(_all(store, AuditQuery(refs=(tuple(f"parent:{i}" for i in ids),),
                                               oldest_first=True, count=PAGE))) if ids else []
        rows += [c for c in children if c.id not in ids]
        rows.sort(key=lambda r: (r.recorded, r.chain, r.chain_seq))
        if not rows:
            raise click.ClickException(f"no audit record has X-Request-ID {request_id}")
        if as_json:
            for row in rows:
                click.echo(row.record.decode())
            return
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)  # the command's output: stdout
        for row in rows:
            _story(console, store, row)
    finally:
        store.close()


@audit.command()
@click.argument("patient")
@click.option("--db", "database_url", help="Database URL (as for serve)")
@click.option("--since", help="Only from this instant or date on (e.g. 2026-11-01)")
@click.option("--json", "as_json", is_flag=True, help="The records as NDJSON instead")
def patient(patient: str, database_url: str | None, since: str | None, as_json: bool) -> None:
    """Who read or changed a patient's record, when, how and for what (PATIENT: an NHS
    number or Patient/[id])."""
    from fhirhub.audit.record import AuditRecord
    from fhirhub.audit.search import is_nhs_number, patients_with_nhs
    from fhirhub.store.audit import AuditQuery

    _, store = _store(database_url)
    try:
        keys = [f"patient:{patient}" if "/" in patient else f"patient:Patient/{patient}"]
        if is_nhs_number(patient):
            keys += [f"nhs:{patient}", *(f"patient:{r}" for r in patients_with_nhs(store, patient))]
        query = AuditQuery(refs=(tuple(dict.fromkeys(keys)),), oldest_first=True, count=PAGE,
                           recorded=((">=", _instant(since)),) if since else ())
        rows = list(_all(store, query))
    finally:
        store.close()
    if as_json:
        for row in rows:
            click.echo(row.record.decode())
        return
    from rich.table import Table

    table = Table(title=f"Access log of {patient} ({len(rows)} events)")
    for column in ("When", "Who", "Role / ODS", "What", "Resource", "Purpose", "Outcome",
                   "X-Request-ID"):
        table.add_column(column)
    for row in rows:
        rec = AuditRecord.from_json(row.record)
        who = " / ".join(x for x in (rec.user, rec.client) if x) or "(no client identified)"
        what = rec.interaction + (f" {rec.operation}" if rec.operation else "")
        resources = ", ".join(e.reference for e in rec.entities[:3]) + (
            " …" if len(rec.entities) > 3 else "")
        table.add_row(rec.recorded, who, " / ".join(x for x in (rec.role, rec.organization) if x),
                      what, resources, rec.purpose or "", f"{rec.status or ''} {_outcome(rec)}",
                      rec.request_id or "")
    from rich.console import Console

    Console(highlight=False, width=200).print(table)


@audit.command()
@click.option("--db", "database_url", help="Database URL (as for serve)")
@click.option("--since", required=True, help="From this instant or date (e.g. 2026-11-01)")
@click.option("--until", help="Before this instant or date")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (default: standard output)")
@click.option("--format", "fmt", type=click.Choice(["auditevent", "record"]),
              default="auditevent", show_default=True,
              help="FHIR AuditEvent resources, or the raw records with their chain links")
def export(database_url: str | None, since: str, until: str | None, output: Path | None,
           fmt: str) -> None:
    """Write audit records as NDJSON, oldest first, for a SIEM."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from fhirhub.store.audit import AuditQuery

    bounds = [(">=", _instant(since))] + ([("<", _instant(until))] if until else [])
    _, store = _store(database_url)
    console = _console()
    written = 0
    try:
        query = AuditQuery(recorded=tuple(bounds), oldest_first=True, count=PAGE)
        with _open(output) as out, Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                            console=console) as progress:
            task = progress.add_task("Exporting")
            for row in _all(store, query):
                out.write(_export_line(row, fmt))
                written += 1
                if written % PAGE == 0:
                    progress.update(task, description=f"Exported {written} records")
    finally:
        store.close()
    console.print(f"Exported {written} audit records" + (f" to {output}" if output else ""))


@audit.command()
@click.option("--db", "database_url", help="Database URL (as for serve)")
def checkpoint(database_url: str | None) -> None:
    """Sign a checkpoint of every chain's head now (the server does so every
    FHIRHUB_AUDIT_CHECKPOINT_SECONDS)."""
    from fhirhub.audit.checkpoints import make_checkpoint
    from fhirhub.audit.record import instant
    from fhirhub.audit.signing import load_or_create_key

    settings, store = _store(database_url)
    try:
        cp = make_checkpoint(store, load_or_create_key(settings.audit_key_path), instant(),
                             force=True)
    finally:
        store.close()
    click.echo(f"Checkpoint {cp.seq} signed at {cp.created}")


def _all(store: Store, query: AuditQuery) -> Iterator[AuditRow]:
    from dataclasses import replace

    while True:
        page = store.audit_search(query)
        yield from page.rows
        if page.next_cursor is None:
            return
        query = replace(query, cursor=page.next_cursor)


def _instant(text: str) -> str:
    from fhirhub.search._parse_values import BadValue, date

    try:
        value = date(text)
    except BadValue as exc:
        raise click.BadParameter(f"{text!r}: {exc}") from None
    return f"{value.lo}Z"


def _outcome(rec: AuditRecord) -> str:
    return {"0": "success", "4": "refused", "8": "failed", "12": "failed"}.get(rec.outcome, "")


def _story(console: Console, store: Store, row: AuditRow) -> None:
    from fhirhub.audit.record import AuditRecord

    rec = AuditRecord.from_json(row.record)
    if rec.kind == "outbound":
        head = f"→ {rec.interaction} over {rec.channel} to {rec.destination}"
    elif rec.entry is not None:
        head = f"  entry {rec.entry}: {rec.method} {rec.path or ''}"
    else:
        head = f"{rec.method or rec.interaction} /{rec.path or ''}" + (
            f"?{rec.query}" if rec.query else "")
    console.print(f"[bold]{rec.recorded}[/bold]  {head}  [{'green' if rec.outcome == '0' else 'red'}]"
                  f"{rec.status or ''} {_outcome(rec)}[/]")
    details: list[tuple[str, Any]] = [
        ("interaction", rec.interaction), ("AuditEvent", rec.id), ("caused by", rec.parent),
        ("client", rec.client), ("user", rec.user), ("role", rec.role),
        ("organisation", rec.organization), ("from", rec.source_ip),
        ("user agent", rec.user_agent), ("X-Correlation-ID", rec.correlation_id),
        ("patients", ", ".join(p.nhs_number or p.reference or "" for p in rec.patients)),
        ("resources", ", ".join(f"{e.reference}/_history/{e.version}" if e.version else
                                e.reference for e in rec.entities)),
        ("request sha256", rec.request_sha256), ("response sha256", rec.response_sha256),
        ("detail", rec.detail),
    ]
    if rec.outcome_resource:
        issues = rec.outcome_resource.get("issue") or [{}]
        details.append(("error", issues[0].get("diagnostics")))
    for label, value in details:
        if value:
            console.print(f"    {label:<18} {value}")
    for body in store.audit_bodies(row.chain, row.chain_seq):
        text = body.content.decode("utf-8", "replace")
        console.print(f"    {body.part} body ({body.mode}): {text[:2000]}")


def _export_line(row: AuditRow, fmt: str) -> str:
    if fmt == "record":
        raw = orjson.loads(row.record)
        return orjson.dumps({"record": raw, "chain": row.chain, "position": row.chain_seq,
                             "prev_hash": row.prev_hash, "hash": row.hash}).decode() + "\n"
    from fhirhub.audit.balp import audit_event
    from fhirhub.audit.record import AuditRecord

    return orjson.dumps(audit_event(AuditRecord.from_json(row.record))).decode() + "\n"


class _open:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.handle: IO[str] | None = None

    def __enter__(self) -> IO[str]:
        self.handle = self.path.open("w", encoding="utf-8") if self.path else sys.stdout
        return self.handle

    def __exit__(self, *exc: object) -> None:
        if self.path and self.handle:
            self.handle.close()


__all__ = ["audit"]
