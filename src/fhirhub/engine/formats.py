"""Wire formats: which one the caller sends and wants, parsing bodies, rendering responses,
and the ``_summary`` / ``_elements`` views (https://hl7.org/fhir/R4/http.html#mime-type,
https://hl7.org/fhir/R4/search.html#summary)."""

from __future__ import annotations

from typing import Any, Literal

from fhirhub.errors import InvalidError, NotAcceptableError, UnsupportedMediaError
from fhirhub.fhir import json as fjson
from fhirhub.fhir.model import element_model

Format = Literal["json", "xml"]

JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir",
                        "json", "text/json"})
XML_TYPES = frozenset({"application/fhir+xml", "application/xml", "application/xml+fhir",
                       "xml", "text/xml"})
CONTENT_TYPE: dict[Format, str] = {
    "json": "application/fhir+json; charset=utf-8",
    "xml": "application/fhir+xml; charset=utf-8",
}
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED", "display": "Resource encoded in summary mode"}


def _other_fhir_version(media: str) -> str | None:
    """The fhirVersion a media type asks for, when it is not R4 (4.0)."""
    for param in media.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        version = value.strip().strip('"')
        if name.strip().lower() == "fhirversion" and not version.startswith("4.0"):
            return version
    return None


def _check_fhir_version(media: str) -> None:
    version = _other_fhir_version(media)
    if version is not None:
        raise NotAcceptableError(
            f"This server speaks FHIR 4.0.1 (R4) only, not fhirVersion={version}",
            spine_code="NOT_ACCEPTABLE",
        )


def response_format(format_param: str | None, accept: str | None) -> Format:
    """The format to answer in: ``_format`` wins over ``Accept``; JSON by default."""
    if format_param:
        media = format_param.split(";")[0].strip().lower()
        if media in JSON_TYPES:
            return "json"
        if media in XML_TYPES:
            return "xml"
        raise NotAcceptableError(
            f"_format={format_param!r} is not supported; use json or xml",
            spine_code="NOT_ACCEPTABLE",
        )
    if not accept:
        return "json"
    lowered = accept.lower()
    if "text/html" in lowered and "fhir+" not in lowered:
        # A browser: its Accept ranks application/xml above */*, but a person reading the
        # API in a browser is better served by JSON, as FHIR servers commonly do.
        return "json"
    candidates: list[tuple[float, int, Format | None]] = []
    for index, item in enumerate(accept.split(",")):
        media = item.split(";")[0].strip().lower()
        quality = 1.0
        for param in item.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        _check_fhir_version(item)
        if quality <= 0:
            continue
        kind: Format | None = None
        if media in JSON_TYPES or media in ("*/*", "application/*"):
            kind = "json"
        elif media in XML_TYPES:
            kind = "xml"
        candidates.append((quality, -index, kind))
    usable = sorted((c for c in candidates if c[2] is not None), reverse=True)
    if usable:
        return usable[0][2] or "json"
    if candidates and all(c[2] is None for c in candidates) and "html" not in accept:
        raise NotAcceptableError(
            f"None of the media types in Accept ({accept}) is one this server writes; use "
            "application/fhir+json or application/fhir+xml",
            spine_code="NOT_ACCEPTABLE",
        )
    return "json"


def request_format(content_type: str | None) -> Format:
    """The format of a request body, from its Content-Type."""
    media = (content_type or "").split(";")[0].strip().lower()
    version = _other_fhir_version(content_type or "")
    if version is not None and (media in JSON_TYPES or media in XML_TYPES):
        raise UnsupportedMediaError(
            f"This server reads FHIR 4.0.1 (R4) only; the body is declared fhirVersion={version}",
            spine_code="UNSUPPORTED_MEDIA_TYPE",
        )
    if media in JSON_TYPES:
        return "json"
    if media in XML_TYPES:
        return "xml"
    if not media:
        raise UnsupportedMediaError(
            "The request has a body but no Content-Type; send application/fhir+json or "
            "application/fhir+xml",
            spine_code="UNSUPPORTED_MEDIA_TYPE",
        )
    raise UnsupportedMediaError(
        f"Content-Type {media!r} is not supported here; send application/fhir+json or "
        "application/fhir+xml",
        spine_code="UNSUPPORTED_MEDIA_TYPE",
    )


def parse_body(body: bytes, content_type: str | None) -> Any:
    """The request body as FHIR JSON (a dict for a resource)."""
    if not body.strip():
        raise InvalidError("The request needs a body, and it is empty", spine_code="MISSING_VALUE")
    if request_format(content_type) == "xml":
        from fhirhub.fhir.xml import parse_resource

        return parse_resource(body)
    return fjson.loads(body)


def render(resource: dict[str, Any] | None, json_body: bytes | None, fmt: Format,
           pretty: bool) -> bytes:
    if fmt == "xml":
        from fhirhub.fhir.xml import dump_resource

        data = resource if resource is not None else fjson.loads(json_body or b"{}")
        return dump_resource(data, pretty=pretty)
    if resource is None:
        if not pretty:
            return json_body or b""
        resource = fjson.loads(json_body or b"{}")
    return fjson.dumps(resource, pretty=pretty)


# -- _summary and _elements ---------------------------------------------------------------------

SummaryMode = Literal["true", "text", "data", "count", "false"]


def summary_mode(value: str | None) -> SummaryMode | None:
    if value is None:
        return None
    if value not in ("true", "text", "data", "count", "false"):
        raise InvalidError(
            f"_summary={value!r} is not one of true, text, data, count, false",
            spine_code="INVALID_VALUE",
        )
    return value  # type: ignore[return-value]  # checked against the Literal just above


def parse_elements(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    names = frozenset(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise InvalidError("_elements needs at least one element name", spine_code="INVALID_VALUE")
    return names


def apply_view(resource: dict[str, Any], summary: SummaryMode | None,
               elements: frozenset[str] | None) -> dict[str, Any]:
    """The resource reduced as ``_summary`` / ``_elements`` ask, marked SUBSETTED."""
    if (summary is None or summary == "false") and elements is None:
        return resource
    rtype = resource.get("resourceType", "")
    children = element_model().children(rtype)
    keep: set[str] = {"resourceType", "id", "meta"}
    if elements is not None:
        keep |= {n for n in elements if n in children or n.endswith("[x]")}
        keep |= {n for n, e in children.items() if e.min > 0 or e.is_modifier}
        choice_bases = {n[:-3] for n in elements if n.endswith("[x]")} | set(elements)
        keep |= {n for n, e in children.items() if e.is_choice and e.path.rsplit(".", 1)[-1][:-3]
                 in choice_bases}
    elif summary == "true":
        keep |= {n for n, e in children.items() if e.is_summary}
    elif summary == "text":
        keep |= {"text"} | {n for n, e in children.items() if e.min > 0}
    elif summary == "data":
        keep |= {n for n in resource if n != "text"}
    elif summary == "count":
        keep = {"resourceType", "id", "meta"}
    reduced = {k: v for k, v in resource.items() if k in keep or (k.startswith("_") and k[1:] in keep)}
    meta = dict(reduced.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    reduced["meta"] = meta
    return reduced


__all__ = [
    "CONTENT_TYPE",
    "Format",
    "apply_view",
    "parse_body",
    "parse_elements",
    "render",
    "request_format",
    "response_format",
    "summary_mode",
]
