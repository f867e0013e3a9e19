"""The ASGI application: turns HTTP into :class:`FhirRequest` and back.

Everything FHIR happens in the engine; this module only reads bodies (with the size
limit), picks the base URL, carries the NHS request/correlation ids, and runs the engine
off the event loop. It is plain ASGI: one FHIR endpoint needs no router, and a framework's
middleware stack cost more per request than the whole engine does for a read (see
docs/adr/0002-web-stack.md).

Where the engine runs: a thread from a pool, so that the event loop never waits on the
database, except for single-resource reads (read, vread, metadata) on SQLite, which are
one primary-key lookup in a local file, cheaper than the hand-off to a thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

from fhirhub.config import Settings
from fhirhub.engine import Engine, FhirRequest
from fhirhub.engine.engine import WireResponse
from fhirhub.engine.router import route
from fhirhub.errors import FhirError, InvalidError, NotAllowedError, NotFoundError, TooLargeError
from fhirhub.fhir import json as fjson

log = logging.getLogger("fhirhub.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
_INLINE = frozenset({"read", "vread", "capabilities"})
_JSON = "application/fhir+json; charset=utf-8"
HOUSEKEEPING_SECONDS = 300
AUTH_OFF_WARNING = ("AUTHORISATION IS OFF (FHIRHUB_AUTH=off): every request is accepted "
                    "without a token. Use this only for local development or a sandbox.")
DEFINITIONS_SECONDS = 5


class FhirApp:
    """The ASGI callable. ``engine`` is public so tests and tools can reach it."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine if engine is not None else Engine(settings)
        self._inline_reads = self.engine.store.backend == "sqlite"
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="fhirhub")
        self._auth_off = settings.auth == "off"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        tasks: list[asyncio.Task[None]] = []
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self._auth_off:
                    log.warning(AUTH_OFF_WARNING)
                tasks = [asyncio.create_task(self._housekeeping()),
                         asyncio.create_task(self._definitions()),
                         asyncio.create_task(self._checkpoints())]
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in tasks:
                    task.cancel()
                self._pool.shutdown(wait=True)
                self.engine.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _housekeeping(self) -> None:
        """Forget idempotency records once their window has passed, and audit bodies once
        their retention has, every few minutes."""
        loop = asyncio.get_running_loop()
        while True:
            for job, what in ((self.engine.purge_expired, "expired idempotency records"),
                              (self.engine.purge_jtis, "expired client assertion ids"),
                              (self.engine.auditor.purge_bodies, "expired audit bodies")):
                try:
                    await loop.run_in_executor(self._pool, job)
                except FhirError:
                    log.warning("purging %s failed; will retry", what, exc_info=True)
            await asyncio.sleep(HOUSEKEEPING_SECONDS)

    async def _checkpoints(self) -> None:
        """Sign a checkpoint of the audit chains' heads every so often (and at start)."""
        from fhirhub.audit.checkpoints import make_checkpoint
        from fhirhub.audit.record import instant
        from fhirhub.audit.signing import load_or_create_key

        loop = asyncio.get_running_loop()
        key = await loop.run_in_executor(self._pool, load_or_create_key,
                                         self.settings.audit_key_path)
        while True:
            try:
                await loop.run_in_executor(self._pool, lambda: make_checkpoint(
                    self.engine.store, key, instant()))
            except FhirError:
                log.warning("signing an audit checkpoint failed; will retry", exc_info=True)
            await asyncio.sleep(self.settings.audit_checkpoint_seconds)

    async def _definitions(self) -> None:
        """Pick up StructureDefinitions and SearchParameters other worker processes wrote,
        every few seconds."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(DEFINITIONS_SECONDS)
            try:
                await loop.run_in_executor(self._pool, self.engine.refresh_definitions)
            except FhirError:
                log.warning("reloading stored definitions failed; will retry",
                            exc_info=True)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        request_id = headers.get("x-request-id") or str(uuid.uuid4())
        correlation_id = headers.get("x-correlation-id")
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/_status":  # the health probe: no FHIR, no data, not audited
            wire = await self._status()
        else:
            # What is known of the request before its checks, so that a refusal is
            # audited like everything else.
            request = FhirRequest(
                method=method, path=path, headers=headers, request_id=request_id,
                correlation_id=correlation_id if _TOKEN.fullmatch(correlation_id or "-")
                else None, base_url=self._base_url(scope, headers),
                client_ip=(scope.get("client") or (None,))[0])
            try:
                _check_id_header("X-Request-ID", headers.get("x-request-id"))
                _check_id_header("X-Correlation-ID", correlation_id)
                request.path = _fhir_path(path)
                if method not in METHODS:
                    raise NotAllowedError(f"{method} is not a FHIR interaction",
                                          spine_code="METHOD_NOT_ALLOWED")
                request.body = await _read_body(receive, headers, self.settings.max_body_bytes)
                request.query = parse_qsl(scope["query_string"].decode("latin-1"),
                                          keep_blank_values=True)
                wire, durable = await self._run(request)
            except FhirError as error:
                wire, durable = self.engine.refused(request, error)
            wire = await self._durable(request, wire, durable)
        out = dict(wire.headers)
        out["X-Request-ID"] = request_id
        if correlation_id:
            out["X-Correlation-ID"] = correlation_id
        if self._auth_off:
            out["X-Fhirhub-Auth"] = "off"
        out["Content-Length"] = str(len(wire.body))
        await send({"type": "http.response.start", "status": wire.status,
                    "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                                for k, v in out.items()]})
        # HEAD: the same headers as GET (length included), no body.
        body = b"" if scope["method"] == "HEAD" else wire.body
        await send({"type": "http.response.body", "body": body})

    async def _run(self, request: FhirRequest) -> tuple[WireResponse, Future[None]]:
        if self._inline_reads and request.method in ("GET", "HEAD"):
            try:
                inline = route(request.method, request.path).interaction in _INLINE
            except FhirError:
                inline = True  # the engine answers a bad route at once
            if inline:
                return self.engine.answer(request)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.engine.answer, request)

    async def _durable(self, request: FhirRequest, wire: WireResponse,
                       durable: Future[None]) -> WireResponse:
        """``wire`` once the request's audit record is durable; never before."""
        if not durable.done():
            try:
                await asyncio.wrap_future(durable)
            except Exception:
                return self.engine.audit_failed(request)
        return self.engine.await_audit(request, wire, durable)

    async def _status(self) -> WireResponse:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self.engine.store.count, "Patient")
        except FhirError:
            body = fjson.dumps({"status": "fail"})
            return WireResponse(503, {"Content-Type": "application/json"}, body)
        body = fjson.dumps({"status": "pass", "backend": self.engine.store.backend})
        return WireResponse(200, {"Content-Type": "application/json"}, body)

    def _base_url(self, scope: Scope, headers: dict[str, str]) -> str:
        if self.settings.base_url:
            return self.settings.base_url.rstrip("/")
        host = headers.get("host") or f"{self.settings.host}:{self.settings.port}"
        return f"{scope.get('scheme', 'http')}://{host}/fhir"


def create_app(settings: Settings, engine: Engine | None = None) -> FhirApp:
    return FhirApp(settings, engine)


def _fhir_path(path: str) -> str:
    if path in {"/fhir", "/fhir/"}:
        return ""
    if path.startswith("/fhir/"):
        return path[len("/fhir/"):]
    raise NotFoundError(f"Nothing is served at {path[:200]!r}; the FHIR endpoint is /fhir",
                        spine_code="INVALID_REQUEST", issue_code="not-found")


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_key, raw_value in scope["headers"]:
        key = raw_key.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _check_id_header(name: str, value: str | None) -> None:
    if value is not None and not _TOKEN.fullmatch(value):
        raise InvalidError(
            f"{name} must be a UUID (or a token of letters, digits, '.', '_', ':' or '-', "
            f"at most 128 characters), not {value[:64]!r}",
            spine_code="INVALID_VALUE",
        )


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _too_large(limit: int) -> TooLargeError:
    return TooLargeError(
        f"The request body is larger than this server's limit of {limit} bytes; split it "
        "(for example, smaller Bundles)", spine_code="INVALID_REQUEST",
    )


__all__ = ["FhirApp", "create_app"]
