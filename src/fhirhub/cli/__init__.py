"""The ``fhirhub`` command line."""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fhirhub import __version__
from fhirhub.config import ConfigError, Settings, redact

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import ProgressColumn

    from fhirhub.bulk.reindex import Checkpoint, Reindexer, ReindexReport


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
@click.version_option(__version__, prog_name="fhirhub")
def main() -> None:
    """fhirhub: a FHIR R4 / UK Core interoperability server."""


@main.command()
@click.option("--db", "database_url", help="sqlite:///path or postgresql://… (default: "
              "FHIRHUB_DATABASE_URL or sqlite:///data/fhirhub.sqlite3)")
@click.option("--host", help="Listen address (default 127.0.0.1)")
@click.option("--port", type=int, help="Listen port (default 8080)")
@click.option("--workers", type=int, help="Server processes (default 1)")
@click.option("--base-url", help="Public base URL of the FHIR endpoint, for links")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
def serve(**options: object) -> None:
    """Run the FHIR server (http://HOST:PORT/fhir)."""
    from fhirhub.api.server import serve as serve_forever

    settings = _settings(**options)
    # Workers are separate processes: hand them the settings through the environment,
    # which Settings.from_env reads again in each of them.
    for name, value in options.items():
        if value is not None:
            os.environ[f"FHIRHUB_{name.upper()}"] = str(value)
    try:
        from fhirhub.store import open_store

        store = open_store(settings)  # create the schema once, and fail early and clearly
        try:
            registered = len(store.clients())
        finally:
            store.close()
    except Exception as exc:  # any failure to reach the database stops start-up
        raise click.ClickException(
            f"cannot open the database {redact(settings.database_url)}: "
            f"{redact(str(exc))}") from None
    _audit_key(settings)
    _auth_key(settings, registered)
    if settings.load_definitions:
        _install_definitions(settings)
    click.echo(f"fhirhub {__version__} starting: FHIR R4 at http://{settings.host}:{settings.port}/fhir "
               f"({settings.backend}, {settings.workers} worker(s))")
    try:
        serve_forever(settings)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None


@main.command(name="import")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--db", "database_url", help="Database URL (as for serve)")
@click.option("--group", default=200, show_default=True,
              help="Resources written per transaction for plain NDJSON")
@click.option("--jobs", type=click.IntRange(min=0), default=None,
              help="Worker processes validating ahead of the writer (default: one fewer "
                   "than the CPUs, at least 1; 0: validate in the writer)")
def import_(files: tuple[Path, ...], database_url: str | None, group: int,
            jobs: int | None) -> None:
    """Load NDJSON files (.gz too) or Bundle JSON files into the database."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from fhirhub.bulk.importer import Importer
    from fhirhub.engine import Engine

    logging.basicConfig(level=logging.WARNING)
    console = Console(stderr=True)
    engine = Engine(_settings(database_url=database_url))
    gc.freeze()  # the definitions live for the whole run: keep them out of GC scans
    started = time.perf_counter()
    if jobs is None:
        jobs = max((os.cpu_count() or 2) - 1, 1)
    importer = Importer(engine, group=group, jobs=jobs)
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), console=console) as progress:
        for path in files:
            task = progress.add_task(path.name, total=_uncompressed_size(path))
            importer.progress = partial(progress.advance, task)
            before = (sum(importer.report.resources.values()), len(importer.report.errors))
            report = importer.run(path)
            _audit_import(engine, path, sum(report.resources.values()) - before[0],
                          len(report.errors) - before[1])
    totals = dict(report.resources)
    errors = report.errors
    engine.store.close()
    elapsed = time.perf_counter() - started
    total = sum(totals.values())
    console.print(f"Imported {total} resources in {elapsed:.1f} s "
                  f"({total / elapsed if elapsed else 0:.0f}/s)")
    for rtype, count in sorted(totals.items(), key=lambda kv: -kv[1]):
        console.print(f"  {rtype:<28} {count}")
    if errors:
        console.print(f"[red]{len(errors)} error(s):[/red]")
        for line in errors[:200]:
            console.print(f"  {line}")
        if len(errors) > 200:
            console.print(f"  … and {len(errors) - 200} more")
        sys.exit(1)


@main.command()
@click.option("--db", "database_url", help="Database URL (as for serve)")
@click.option("--type", "types", multiple=True, metavar="TYPE",
              help="Only resources of this type (repeat for several; default: every type)")
@click.option("--restart", is_flag=True,
              help="Start over, discarding the checkpoint of an interrupted run")
@click.option("--batch", default=200, show_default=True, type=click.IntRange(min=1),
              help="Resources reindexed per transaction")
def reindex(database_url: str | None, types: tuple[str, ...], restart: bool,
            batch: int) -> None:
    """Rebuild the search index of the stored resources, with the official and the custom
    SearchParameters (safe while the server runs; an interrupted run resumes)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from fhirhub.bulk.reindex import Reindexer, check_types
    from fhirhub.engine import Engine
    from fhirhub.errors import FhirError

    try:
        check_types(types)
    except FhirError as exc:
        raise click.UsageError(exc.diagnostics) from None
    logging.basicConfig(level=logging.WARNING)
    console = Console(stderr=True)
    engine = Engine(_settings(database_url=database_url))
    try:
        try:
            reindexer = Reindexer(engine, types=types, batch=batch)
            start = reindexer.start(restart=restart)
        except FhirError as exc:
            raise click.ClickException(exc.diagnostics) from None
        if reindexer.note:
            console.print(reindexer.note)
        if start.after is not None:
            console.print(f"Resuming the interrupted reindex of {start.describe()} after "
                          f"{start.after[0]}/{start.after[1]} ({start.done} resources done)")
        started = time.perf_counter()
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), _rate_column(), TimeRemainingColumn(),
                      console=console) as progress:
            # The total is what is there now; the checkpoint's count, what was there then.
            total = max(reindexer.total(), start.done)
            task = progress.add_task("Reindexing", completed=start.done, total=total)
            reindexer.progress = partial(progress.advance, task)
            report = _run_reindex(reindexer, start, console)
    finally:
        engine.store.close()
    _reindex_summary(console, report, start, time.perf_counter() - started)


def _reindex_summary(console: Console, report: ReindexReport, start: Checkpoint,
                     elapsed: float) -> None:
    console.print(f"Reindexed {report.total} resources in {elapsed:.1f} s "
                  f"({report.total / elapsed if elapsed else 0:.0f}/s)"
                  + (f", after {start.done} done by the interrupted run" if start.done else ""))
    for rtype, count in sorted(report.resources.items(), key=lambda kv: -kv[1]):
        console.print(f"  {rtype:<28} {count}")


def _run_reindex(reindexer: Reindexer, start: Checkpoint, console: Console) -> ReindexReport:
    """Run it; an interruption or a failure says where it stopped and how to go on."""
    from fhirhub.errors import FhirError

    try:
        return reindexer.run(start)
    except KeyboardInterrupt:
        console.print(f"Interrupted{_reindex_position(reindexer)}")
        sys.exit(130)
    except FhirError as exc:
        raise click.ClickException(f"{exc.diagnostics}{_reindex_position(reindexer)}") from None


def _reindex_position(reindexer: Reindexer) -> str:
    saved = reindexer.saved()
    if saved is None or saved.after is None:
        return "; nothing was finished: run the same command again to start"
    return (f" after {saved.after[0]}/{saved.after[1]} ({saved.done} resources done); "
            "run the same command again to continue from there")


def _rate_column() -> ProgressColumn:
    """Resources a second."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if not speed else f"{speed:,.0f}/s", style="progress.data.speed")

    return Rate()


def _install_definitions(settings: Settings) -> None:
    """Put the packaged conformance resources in the database (once per database)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress

    from fhirhub.engine import Engine
    from fhirhub.engine.definitions import install, installed

    engine = Engine(settings)
    try:
        if installed(engine):
            return
        console = Console(stderr=True)
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), console=console) as progress:
            task = progress.add_task("Installing R4 and UK Core definitions", total=None)
            count = install(engine, lambda done, total: progress.update(
                task, completed=done, total=total))
        console.print(f"Installed {count} conformance resources (StructureDefinition, "
                      "ValueSet, CodeSystem, ConceptMap, SearchParameter)")
    finally:
        engine.store.close()


def _audit_key(settings: Settings) -> None:
    """The audit log's signing key must be usable before the server takes a request."""
    from fhirhub.audit.signing import load_or_create_key

    existed = settings.audit_key_path.exists()
    try:
        load_or_create_key(settings.audit_key_path)
    except (OSError, ValueError) as exc:
        raise click.ClickException(
            f"cannot use the audit signing key {settings.audit_key_path}: {exc}") from None
    if not existed:
        click.echo(f"Created the audit signing key {settings.audit_key_path}: keep a copy "
                   "away from the database (fhirhub audit verify needs its public half)",
                   err=True)


def _auth_key(settings: Settings, registered: int) -> None:
    """The access-token signing key must be usable before the server takes a request
    (and exist before worker processes start, so that they all read the same one); with
    authorisation off, say so loudly; with no way in yet (``registered`` clients, trusted
    issuers), say how to make one."""
    if settings.auth == "off":
        from fhirhub.api.app import AUTH_OFF_WARNING

        click.secho(f"WARNING: {AUTH_OFF_WARNING}", fg="red", bold=True, err=True)
        return
    from fhirhub.auth.issuers import load_issuers
    from fhirhub.auth.keys import load_or_create_signing_key

    try:
        load_or_create_signing_key(settings.auth_key_path)
        issuers = load_issuers(settings.auth_issuers)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot use the authorisation settings: {exc}") from None
    if not registered and not issuers:
        click.echo("Every request needs an access token, and no client application is "
                   "registered yet: fhirhub clients add NAME --scopes \"system/*.cruds\" "
                   "--generate-key NAME.pem (see docs/security.md)", err=True)


def _audit_import(engine: Any, path: Path, resources: int, errors: int) -> None:
    """One audit record for each file imported from the command line."""
    import getpass
    import uuid

    from fhirhub.audit.auditor import Exchange
    from fhirhub.audit.record import MINOR_FAILURE, SUCCESS, AuditRecord, instant

    record = AuditRecord(
        id=str(uuid.uuid4()), recorded=instant(), kind="system", interaction="import",
        outcome=MINOR_FAILURE if errors else SUCCESS, request_id=str(uuid.uuid4()),
        user=getpass.getuser(), user_agent=f"fhirhub-cli/{__version__}",
        detail=f"fhirhub import {path.name} ({path.stat().st_size} bytes): {resources} "
               f"resources written, {errors} line(s) refused")
    engine.auditor.log([Exchange(record)])


def _uncompressed_size(path: Path) -> int | None:
    if path.suffix != ".gz":
        return path.stat().st_size
    import gzip

    with gzip.open(path, "rb") as fh:
        return sum(len(chunk) for chunk in iter(lambda: fh.read(1 << 20), b""))


from fhirhub.cli.audit import audit  # noqa: E402  (the group is defined above)
from fhirhub.cli.clients import clients  # noqa: E402

main.add_command(audit)
main.add_command(clients)

__all__ = ["main"]
