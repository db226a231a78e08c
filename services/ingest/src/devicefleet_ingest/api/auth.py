"""Bearer tokens on ``/ingest`` and ``/ingest/batch`` (on when ``auth_token_key_file`` is set).

A fleet's token is ``<fleet>.<HMAC signature>`` under the signing key ingest shares with the
operator (devicefleet_common.credentials), so any fleet's token is checked from the key alone:
no Secret reads, and a fleet created a second ago works at once.

The check is a pure ASGI middleware, so a request without a valid token is refused before its
body is read (no parsing, no 400 or 413 details for strangers). It leaves the token's fleet in
the request scope; the route hands it to the envelope (``RawEnvelope.fleet``) and the processor
dead-letters a reading whose device belongs to another fleet (``fleet_mismatch``): ingest has
no device registry, and device ids do not always name their fleet (F2 ids are hashes).

``/health``, ``/ready``, ``/metrics`` and the OpenAPI document stay open.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from devicefleet_common.credentials import token_fleet
from devicefleet_common.logging import get_logger
from devicefleet_ingest.metrics import INGEST_PATHS, IngestMetrics, Outcome

log = get_logger("devicefleet.ingest")

FLEET_SCOPE_KEY = "devicefleet.fleet"
REALM = "devicefleet-ingest"
SCHEME_NAME = "fleetToken"
# What a log line may show of the fleet a refused token claims (never the signature).
_CLAIM_SHOWN = 64


class Unauthorized(BaseModel):
    """401: no valid bearer token; retrying the same request cannot succeed."""

    status: Literal["unauthorized"] = "unauthorized"
    reason: str


def _refusal(authorization: str | None, key: bytes) -> tuple[str, str | None, str | None]:
    """(reason, RFC 6750 error code, claimed fleet) of a refused header; reason "" = valid,
    and then the third item is the token's fleet."""
    if not authorization:
        return "missing bearer token", None, None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return "authorization is not a bearer token", "invalid_request", None
    fleet = token_fleet(key, token)
    if fleet is None:
        claimed = token.rpartition(".")[0][:_CLAIM_SHOWN] or None
        return "invalid token", "invalid_token", claimed
    return "", None, fleet


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, key: bytes, metrics: IngestMetrics) -> None:
        self.app = app
        self.key = key
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in INGEST_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        reason, error, fleet = _refusal(headers.get("authorization"), self.key)
        if not reason:
            scope.setdefault("state", {})[FLEET_SCOPE_KEY] = fleet
            await self.app(scope, receive, send)
            return
        # Its messages were never read: one received, one refused, like a 400 or 413.
        self.metrics.received.inc()
        self.metrics.count(Outcome.UNAUTHORIZED)
        client = scope.get("client")
        log.warning(
            "request unauthorized",
            status=401,
            reason=reason,
            path=scope["path"],
            claimed_fleet=fleet,
            client=client[0] if client else None,
        )
        challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
        response = JSONResponse(
            Unauthorized(reason=reason).model_dump(),
            status_code=401,
            headers={"WWW-Authenticate": challenge},
        )
        await response(scope, receive, send)


async def get_fleet(request: Request) -> str | None:
    """The fleet whose token the request carried; ``None`` when auth is off."""
    fleet = request.scope.get("state", {}).get(FLEET_SCOPE_KEY)
    return fleet if isinstance(fleet, str) else None


FleetDep = Annotated[str | None, Depends(get_fleet)]


def with_bearer_auth(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the bearer scheme and the 401 answer on the ingest operations (auth on)."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME_NAME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "The fleet's ingest token (`<fleet>.<signature>`, Secret "
        "`<fleet>-sim-credentials`, key `ingest-token`)",
    }
    components.setdefault("schemas", {})["Unauthorized"] = Unauthorized.model_json_schema()
    for path in INGEST_PATHS:
        for operation in schema.get("paths", {}).get(path, {}).values():
            operation["security"] = [{SCHEME_NAME: []}]
            operation.setdefault("responses", {})["401"] = {
                "description": "Missing or invalid bearer token; do not retry",
                "headers": {
                    "WWW-Authenticate": {
                        "description": "Bearer challenge (RFC 6750)",
                        "schema": {"type": "string"},
                    }
                },
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Unauthorized"}}
                },
            }
    return schema
