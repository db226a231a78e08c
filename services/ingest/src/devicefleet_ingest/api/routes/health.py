"""Kubernetes probes: liveness never touches Kafka, readiness does (cached)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from devicefleet_ingest import models
from devicefleet_ingest.api.deps import ReadinessDep

router = APIRouter(tags=["health"])


@router.get("/health", response_model=models.Health)
async def health() -> models.Health:
    return models.Health(status="ok")


@router.get(
    "/ready",
    response_model=models.Health,
    responses={503: {"model": models.Health, "description": "Kafka metadata not answered"}},
)
async def ready(readiness: ReadinessDep, response: Response) -> models.Health:
    if await readiness.ready():
        return models.Health(status="ok")
    response.status_code = 503
    return models.Health(status="unavailable")
