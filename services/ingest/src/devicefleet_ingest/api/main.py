"""All routers of the ingest API."""

from fastapi import APIRouter

from devicefleet_ingest.api.routes import health, ingest, metrics

api_router = APIRouter()
api_router.include_router(ingest.router)
api_router.include_router(health.router)
api_router.include_router(metrics.router)
