"""``devicefleet-ingest``: the FastAPI app (``create_app``) and its uvicorn entry point."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import uvicorn
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry

from devicefleet_common.credentials import load_key
from devicefleet_common.logging import get_logger, setup_logging
from devicefleet_common.settings import redacted
from devicefleet_common.tracing import setup_tracing
from devicefleet_ingest.api.auth import BearerAuthMiddleware, with_bearer_auth
from devicefleet_ingest.api.errors import install_error_handlers, without_422
from devicefleet_ingest.api.main import api_router
from devicefleet_ingest.api.middleware import ContentLengthLimitMiddleware, HttpMetricsMiddleware
from devicefleet_ingest.metrics import IngestMetrics
from devicefleet_ingest.producer import RecordProducer, kafka_producer
from devicefleet_ingest.readiness import KafkaReadiness
from devicefleet_ingest.service import Ingestor
from devicefleet_ingest.settings import IngestSettings

log = get_logger("devicefleet.ingest")


def create_app(
    settings: IngestSettings | None = None,
    producer: RecordProducer | None = None,
    *,
    registry: CollectorRegistry = REGISTRY,
    tracer_provider: TracerProvider | None = None,
    rng: Callable[[], float] = random.random,
) -> FastAPI:
    """The app; ``producer`` defaults to a real Kafka producer created at startup."""
    settings = settings or IngestSettings()
    metrics = IngestMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        kafka = producer or kafka_producer(settings)
        app.state.ingestor = Ingestor(kafka, settings, metrics, rng)
        app.state.readiness = KafkaReadiness(
            partial(kafka.cluster_reachable, settings.ready_check_timeout_seconds),
            settings.ready_cache_seconds,
        )
        try:
            yield
        finally:
            # uvicorn has finished the in-flight requests; flush whatever librdkafka still holds.
            unflushed = await asyncio.to_thread(kafka.close, settings.produce_timeout_seconds)
            log.info("kafka producer closed", unflushed=unflushed)

    app = FastAPI(
        title="DeviceFleet ingest",
        summary="Telemetry over HTTP into Kafka, idempotent by message id",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(api_router, max_body_size=settings.max_body_bytes)
    install_error_handlers(app)
    app.add_middleware(
        ContentLengthLimitMiddleware, max_body_bytes=settings.max_body_bytes, metrics=metrics
    )
    # A bad key file stops the start (InvalidKey): never an ingest silently without auth.
    token_key = load_key(settings.auth_token_key_file) if settings.auth_token_key_file else None
    if token_key is not None:  # before the 413 check: strangers learn nothing about limits
        app.add_middleware(BearerAuthMiddleware, key=token_key, metrics=metrics)
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)  # outermost: sees every 413
    # Continues the device's trace from its traceparent header; Kafka headers carry it on.
    # One server span per request; the per-chunk "http receive/send" spans cost a quarter of
    # the request's CPU (bench P1's profile) and say nothing a reader of the trace needs.
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider,
        excluded_urls="/health,/ready,/metrics",
        exclude_spans=["receive", "send"],
    )
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = without_422(default_openapi())
            app.openapi_schema = with_bearer_auth(schema) if token_key is not None else schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def main() -> None:
    settings = IngestSettings()
    setup_logging("ingest", settings.log_level, settings.environment)
    provider = setup_tracing("ingest", settings.otlp_endpoint)
    log.info("starting ingest", settings=redacted(settings))
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=None,  # keep the JSON logging set up above
            access_log=False,  # http_requests_total and traces cover it
        )
    finally:
        provider.shutdown()


if __name__ == "__main__":
    main()
