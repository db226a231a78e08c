"""``GET /metrics`` on the API's own port, in the format the scraper asks for."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder

from devicefleet_ingest.api.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, ingest_metrics: MetricsDep) -> Response:
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(ingest_metrics.registry), media_type=content_type)
