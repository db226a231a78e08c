"""Fixtures: the ingest app with a fake producer and its own metrics registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from devicefleet_ingest.main import create_app
from devicefleet_ingest.settings import IngestSettings

from .fakes import Api, FakeProducer

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


def pytest_configure(config: pytest.Config) -> None:
    # Starlette's TestClient announces its move to httpx2; nothing to act on here.
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx`:UserWarning")


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


@pytest.fixture
def make_api(producer: FakeProducer) -> Iterator[Callable[..., Api]]:
    clients: list[TestClient] = []

    def build(**settings: Any) -> Api:
        registry = CollectorRegistry()
        app = create_app(
            IngestSettings(**settings),
            producer,
            registry=registry,
            tracer_provider=TracerProvider(),
        )
        from fastapi.testclient import TestClient

        client = TestClient(app)
        client.__enter__()  # run the lifespan
        clients.append(client)
        return Api(client, producer, registry)

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()
