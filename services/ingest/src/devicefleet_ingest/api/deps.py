"""Request dependencies: the objects the lifespan put on ``app.state``."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from devicefleet_ingest.metrics import IngestMetrics
from devicefleet_ingest.readiness import KafkaReadiness
from devicefleet_ingest.service import Ingestor


# async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request.
async def get_ingestor(request: Request) -> Ingestor:
    return cast(Ingestor, request.app.state.ingestor)


async def get_readiness(request: Request) -> KafkaReadiness:
    return cast(KafkaReadiness, request.app.state.readiness)


async def get_metrics(request: Request) -> IngestMetrics:
    return cast(IngestMetrics, request.app.state.metrics)


IngestorDep = Annotated[Ingestor, Depends(get_ingestor)]
ReadinessDep = Annotated[KafkaReadiness, Depends(get_readiness)]
MetricsDep = Annotated[IngestMetrics, Depends(get_metrics)]
