"""The status server: ``/health``, ``/metrics`` and ``/status``.

``/status`` is a contract: the DeviceFleet operator polls it and aggregates the pods into the
custom resource's status, so field names and meanings change only with the operator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from typing import Literal

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

BreakerState = Literal["closed", "open", "half-open"]


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class BreakerStatus(_Camel):
    state: BreakerState
    fail_counter: int
    last_transition_time: str | None
    transitions: int
    opened_total: int


class MessageCounts(_Camel):
    generated: int
    acknowledged: int
    duplicates_acknowledged: int
    rejected: int
    failed_attempts: int
    retries: int
    dropped: int
    duplicated: int
    malformed: int
    buffered: int
    buffer_overflow: int
    in_flight: int

    def invariant_holds(self) -> bool:
        """Every generated message is in exactly one place (duplicated copies are extra)."""
        return self.generated == (
            self.acknowledged
            + self.rejected
            + self.dropped
            + self.buffered
            + self.in_flight
            + self.buffer_overflow
        )


class SimulatorStatus(_Camel):
    fleet: str
    profile: Literal["truck", "f2", "generic"]
    transport: Literal["mqtt", "http"]
    pod: str
    device_start: int
    devices: int
    boot_epoch: int
    ready: bool
    circuit_breaker: BreakerStatus
    messages: MessageCounts


def create_status_app(status: Callable[[], SimulatorStatus]) -> FastAPI:
    app = FastAPI(title="DeviceFleet simulator", docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}  # answering at all proves the event loop is running

    @app.get("/status", response_model=SimulatorStatus)
    async def get_status() -> SimulatorStatus:
        return status()

    @app.get("/metrics")
    async def get_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


class StatusServer(uvicorn.Server):
    """uvicorn in our event loop, leaving SIGTERM/SIGINT to the simulator's own shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def status_server(app: FastAPI, host: str, port: int) -> StatusServer:
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
    )
    return StatusServer(config)
