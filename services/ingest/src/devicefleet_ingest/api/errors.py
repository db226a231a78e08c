"""Error responses: 400 instead of FastAPI's 422, JSON 413, 503 with Retry-After."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from devicefleet_common.logging import get_logger
from devicefleet_ingest import models
from devicefleet_ingest.metrics import INGEST_PATHS, IngestMetrics
from devicefleet_ingest.service import TooLarge, Unavailable
from devicefleet_ingest.settings import IngestSettings

log = get_logger("devicefleet.ingest")


def field_errors(errors: Sequence[Any]) -> list[models.FieldError]:
    """Pydantic errors as ``messages[3].device_id: String should match pattern ...``."""
    out: list[models.FieldError] = []
    for error in errors:
        loc = [part for part in error.get("loc", ()) if part != "body"]
        if error.get("type") == "json_invalid":
            detail = error.get("ctx", {}).get("error", "invalid JSON")
            out.append(models.FieldError(field="body", reason=f"malformed JSON: {detail}"))
            continue
        index = (
            loc[1] if len(loc) > 1 and loc[0] == "messages" and isinstance(loc[1], int) else None
        )
        field = ""
        for part in loc:
            field += f"[{part}]" if isinstance(part, int) else f".{part}" if field else str(part)
        out.append(models.FieldError(field=field or "body", reason=error["msg"], index=index))
    return out


def _rejected(request: Request, status: int, body: models.Rejected) -> JSONResponse:
    if request.url.path in INGEST_PATHS:
        cast(IngestMetrics, request.app.state.metrics).reject()
    log.info(
        "request rejected", status=status, reason=body.reason, errors=body.model_dump()["errors"]
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status)


async def on_validation_error(request: Request, exc: Exception) -> Response:
    errors = field_errors(cast(RequestValidationError, exc).errors())
    malformed = any(e.reason.startswith("malformed JSON") for e in errors)
    reason = "malformed JSON" if malformed else "validation failed"
    return _rejected(request, 400, models.Rejected(reason=reason, errors=errors))


async def on_http_error(request: Request, exc: Exception) -> Response:
    http_exc = cast(HTTPException, exc)
    settings = cast(IngestSettings, request.app.state.settings)
    if http_exc.status_code == 413:
        reason = f"request body exceeds {settings.max_body_bytes} bytes"
        return _rejected(request, 413, models.Rejected(reason=reason))
    if http_exc.status_code == 400:  # FastAPI could not decode the body (e.g. not UTF-8)
        reason = "malformed body: not UTF-8 encoded JSON"
        return _rejected(request, 400, models.Rejected(reason=reason))
    return await http_exception_handler(request, http_exc)


async def on_unavailable(request: Request, exc: Exception) -> Response:
    settings = cast(IngestSettings, request.app.state.settings)
    body = models.Unavailable(reason=cast(Unavailable, exc).reason)
    return JSONResponse(
        body.model_dump(),
        status_code=503,
        headers={"Retry-After": str(settings.retry_after_seconds)},
    )


async def on_too_large(request: Request, exc: Exception) -> Response:
    # Its messages were counted (rejected) by the ingestor: no reject() here.
    too_large = cast(TooLarge, exc)
    body = models.Rejected(
        reason=f"{too_large.reason}: {', '.join(too_large.message_ids)}",
        errors=[models.FieldError(field="payload", reason=too_large.reason)],
    )
    log.info("request rejected", status=413, reason=body.reason)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=413)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Unavailable, on_unavailable)
    app.add_exception_handler(TooLarge, on_too_large)


def without_422(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents 422 for every body; this API answers 400 instead."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    return schema
