"""The ASGI application: turns HTTP into :class:`FhirRequest` and back.

Everything FHIR happens in the engine; this module only reads bodies (with the size
limit), picks the base URL, carries the NHS request/correlation ids, and runs the engine
in a worker thread so the event loop never waits on the database.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fhirhub.config import Settings
from fhirhub.engine import Engine, FhirRequest
from fhirhub.engine.engine import WireResponse
from fhirhub.errors import FhirError, InvalidError, TooLargeError

log = logging.getLogger("fhirhub.api")

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def create_app(settings: Settings, engine: Engine | None = None) -> Starlette:
    fhir_engine = engine if engine is not None else Engine(settings)

    async def fhir(request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        correlation_id = request.headers.get("x-correlation-id")
        try:
            _check_id_header("X-Request-ID", request.headers.get("x-request-id"))
            _check_id_header("X-Correlation-ID", correlation_id)
            body = await _read_body(request, settings.max_body_bytes)
            fhir_request = FhirRequest(
                method=request.method,
                path=request.path_params.get("path", ""),
                query=parse_qsl(request.url.query, keep_blank_values=True),
                headers=_headers(request),
                body=body,
                base_url=_base_url(settings, request),
                request_id=request_id,
                correlation_id=correlation_id,
                client_ip=request.client.host if request.client else None,
            )
            wire = await run_in_threadpool(fhir_engine.respond, fhir_request)
        except FhirError as error:
            wire = _error_wire(fhir_engine, error)
        headers = dict(wire.headers)
        headers["X-Request-ID"] = request_id
        if correlation_id:
            headers["X-Correlation-ID"] = correlation_id
        return Response(wire.body, status_code=wire.status, headers=headers)

    async def status(request: Request) -> Response:
        try:
            await run_in_threadpool(fhir_engine.store.count, "Patient")
        except FhirError:
            return JSONResponse({"status": "fail"}, status_code=503)
        return JSONResponse({"status": "pass", "backend": fhir_engine.store.backend})

    routes = [
        Route("/fhir", fhir, methods=METHODS),
        Route("/fhir/{path:path}", fhir, methods=METHODS),
        Route("/_status", status, methods=["GET"]),
    ]
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        fhir_engine.store.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.engine = fhir_engine
    return app


def _check_id_header(name: str, value: str | None) -> None:
    if value is not None and not _TOKEN.fullmatch(value):
        raise InvalidError(
            f"{name} must be a UUID (or a token of letters, digits, '.', '_', ':' or '-', "
            f"at most 128 characters), not {value[:64]!r}",
            spine_code="INVALID_VALUE",
        )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> TooLargeError:
    return TooLargeError(
        f"The request body is larger than this server's limit of {limit} bytes; split it "
        "(for example, smaller Bundles)", spine_code="INVALID_REQUEST",
    )


def _headers(request: Request) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _base_url(settings: Settings, request: Request) -> str:
    if settings.base_url:
        return settings.base_url.rstrip("/")
    host = request.headers.get("host") or f"{settings.host}:{settings.port}"
    return f"{request.url.scheme}://{host}/fhir"


def _error_wire(engine: Engine, error: FhirError) -> WireResponse:
    from fhirhub.engine.formats import CONTENT_TYPE
    from fhirhub.fhir import json as fjson

    response = engine.error_response(error)
    headers = {**response.headers, "Content-Type": CONTENT_TYPE["json"]}
    return WireResponse(response.status, headers, fjson.dumps(response.resource))


__all__ = ["create_app"]
