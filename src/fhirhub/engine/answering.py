"""Answering a request with its audit record (docs/adr/0012-audit.md).

:class:`Answering` is the part of the engine that makes auditing impossible to bypass:
:meth:`Answering.answer` is the only way from a request to a response, and every answer
comes with its record, either committed in the write's own transaction
(:meth:`Answering._audited_write`) or handed to the store's group commit, with a future
the web layer waits on before it sends anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from fhirhub.audit.auditor import Auditor
from fhirhub.audit.outbound import Cause
from fhirhub.engine import auditing
from fhirhub.engine.auditing import AuditTrail
from fhirhub.engine.formats import parse_elements, response_format, summary_mode
from fhirhub.engine.request import FhirRequest, FhirResponse, WireResponse
from fhirhub.errors import BusyError, FhirError
from fhirhub.store.base import Transaction

if TYPE_CHECKING:
    View = tuple[Any, frozenset[str] | None]

log = logging.getLogger("fhirhub.engine")

_PLAIN: Any = (None, None)
_DONE: Future[None] = Future()
_DONE.set_result(None)


class Answering:
    """The engine's request cycle; :class:`~fhirhub.engine.engine.Engine` supplies the
    rest (handling, rendering, errors)."""

    auditor: Auditor
    listeners: list[Callable[[Cause, FhirRequest, FhirResponse], None]]

    def handle(self, req: FhirRequest) -> FhirResponse:
        raise NotImplementedError

    def error_response(self, error: FhirError) -> FhirResponse:
        raise NotImplementedError

    def fault(self, req: FhirRequest) -> FhirResponse:
        raise NotImplementedError

    def _render(self, req: FhirRequest, response: FhirResponse, fmt: Any,
                view: Any) -> WireResponse:
        raise NotImplementedError

    def respond(self, req: FhirRequest) -> WireResponse:
        """Handle a request and render its response, never raising; return once its audit
        record is durable (see :meth:`answer`)."""
        wire, durable = self.answer(req)
        return self.await_audit(req, wire, durable)

    def answer(self, req: FhirRequest) -> tuple[WireResponse, Future[None]]:
        """Handle a request and render its response, never raising, with a future that
        completes once the request's audit record is durable: the response must not be
        sent before. (A write's record committed with the write: that future is done.)
        The response-shaping parameters are checked first, so a bad one refuses the
        request before any write."""
        trail = req.trail = AuditTrail()
        try:
            fmt = response_format(req.param("_format"), req.header("accept"))
            view: View = (summary_mode(req.param("_summary")),
                          parse_elements(req.param("_elements")))
        except FhirError as error:
            response = self.error_response(error)
            return self._audited(req, response, self._render(req, response, "json", _PLAIN))
        trail.render = lambda response: self._render(req, response, fmt, view)
        response = self.handle(req)
        if trail.rendered is not None and trail.rendered[0] is response:
            self._committed(req, response)
            return trail.rendered[1], _DONE  # rendered and audited in the write's transaction
        return self._audited(req, response, self._render_safely(req, response, fmt, view))

    def _committed(self, req: FhirRequest, response: FhirResponse) -> None:
        """Tell the listeners about a write that has committed (with its audit record)."""
        cause = Cause(req.trail.id, req.request_id or None, req.correlation_id)
        for listener in self.listeners:
            try:
                listener(cause, req, response)
            except Exception:
                log.exception("a listener failed after request %s", req.request_id)

    def refused(self, req: FhirRequest, error: FhirError) -> tuple[WireResponse, Future[None]]:
        """The answer to a request refused before the engine could take it (the web
        layer's own checks), audited like any other."""
        req.trail = req.trail or AuditTrail()
        response = self.error_response(error)
        return self._audited(req, response, self._render(req, response, "json", _PLAIN))

    def await_audit(self, req: FhirRequest, wire: WireResponse,
                    durable: Future[None]) -> WireResponse:
        try:
            durable.result()
        except Exception:
            return self.audit_failed(req)
        return wire

    def audit_failed(self, req: FhirRequest) -> WireResponse:
        """The answer when a request's audit record could not be written: nothing is
        disclosed without its record (the record of a change commits with the change, so
        no change is left unrecorded either)."""
        log.error("the audit record of request %s could not be written", req.request_id,
                  exc_info=True)
        error = BusyError("The audit log could not be written, so the request was not "
                          f"answered; try again (X-Request-ID {req.request_id})")
        return self._render(req, self.error_response(error), "json", _PLAIN)

    def _render_safely(self, req: FhirRequest, response: FhirResponse, fmt: Any,
                       view: View) -> WireResponse:
        try:
            return self._render(req, response, fmt, view)
        except FhirError as error:
            return self._render(req, self.error_response(error), "json", _PLAIN)
        except Exception:
            log.exception("rendering failed for request %s", req.request_id)
            return self._render(req, self.fault(req), "json", _PLAIN)

    def _audited(self, req: FhirRequest, response: FhirResponse,
                 wire: WireResponse) -> tuple[WireResponse, Future[None]]:
        trail: AuditTrail = req.trail
        outcome = response.resource if response.status >= 400 else None
        try:
            top = auditing.exchange(req, trail, wire.status, wire.body, outcome)
            return wire, self.auditor.submit([top, *trail.children])
        except Exception:  # no record, no answer
            return self.audit_failed(req), _DONE


    def _audited_write(self, req: FhirRequest, work: Callable[[Transaction], FhirResponse]
                       ) -> Callable[[Transaction], FhirResponse]:
        """``work``, noting what it writes on the request's trail and appending the audit
        record as the transaction's last step. A top-level request's response is rendered
        here, so that the record digests the bytes the client will get; a Bundle entry's
        record joins the records of its own transaction."""
        trail: AuditTrail | None = req.trail
        if trail is None:
            return work

        def audited(tx: Transaction) -> FhirResponse:
            before = len(trail.children)
            noted = dict(trail.entities), list(trail.patients)
            try:
                response = work(auditing.recording(tx, trail))
                if trail.render is None:  # a batch entry: its own transaction
                    self.auditor.append(tx, [auditing.entry_exchange(req, trail, response),
                                             *trail.children[before:]])
                    trail.committed = True
                    return response
                wire = trail.render(response)
                outcome = response.resource if response.status >= 400 else None
                self.auditor.append(tx, [auditing.exchange(req, trail, wire.status, wire.body,
                                                           outcome), *trail.children])
            except BaseException:
                # They described what is rolled back.
                del trail.children[before:]
                trail.entities, trail.patients = noted
                raise
            trail.rendered = (response, wire)
            return response

        return audited



__all__ = ["Answering"]
