"""``POST /ingest`` and ``POST /ingest/batch``: 200 only after Kafka acknowledged."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from devicefleet_common.schemas import TelemetryBatchIn, TelemetryIn
from devicefleet_ingest import models
from devicefleet_ingest.api.auth import FleetDep
from devicefleet_ingest.api.deps import IngestorDep

router = APIRouter(prefix="/ingest", tags=["ingest"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": models.Rejected, "description": "Invalid body; do not retry"},
    413: {
        "model": models.Rejected,
        "description": "Body larger than max_body_bytes, or a message larger than a Kafka record",
    },
    503: {
        "model": models.Unavailable,
        "description": "Overloaded or Kafka unavailable; retry the same message later",
        "headers": {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
        },
    },
}


@router.post(
    "",
    response_model=models.Accepted,
    responses={
        **_ERRORS,
        409: {
            "model": models.Duplicate,
            "description": (
                "Already acknowledged by Kafka (a copy of a message in flight waits for its "
                "outcome)"
            ),
        },
    },
)
async def ingest(message: TelemetryIn, ingestor: IngestorDep, fleet: FleetDep) -> Any:
    if await ingestor.ingest(message, fleet) == "duplicate":
        body = models.Duplicate(message_id=message.message_id)
        return JSONResponse(body.model_dump(), status_code=409)
    return models.Accepted(message_id=message.message_id)


@router.post("/batch", response_model=models.BatchAccepted, responses=_ERRORS)
async def ingest_batch(
    batch: TelemetryBatchIn, ingestor: IngestorDep, fleet: FleetDep
) -> models.BatchAccepted:
    results = await ingestor.ingest_batch(batch.messages, fleet)
    return models.BatchAccepted(
        results=[models.BatchItem(message_id=r.message_id, status=r.status) for r in results]
    )
