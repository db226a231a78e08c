"""Observe a fleet's pods and turn what they report into the fleet's status."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg

from devicefleet_common.logging import get_logger
from devicefleet_operator.builders import selector_string
from devicefleet_operator.constants import STATUS_PORT
from devicefleet_operator.health import HealthReadBusy, HealthReader
from devicefleet_operator.poller import PodTarget, observe_pods
from devicefleet_operator.spec import FleetSpec
from devicefleet_operator.status import (
    breaker_events,
    compute_status,
    health_summary,
    status_patch,
)

log = get_logger("devicefleet.operator.observe")


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


async def observe_fleet(
    name: str,
    generation: int,
    spec: FleetSpec,
    pods: Iterable[PodTarget],
    previous: Mapping[str, Any],
    client: httpx.AsyncClient,
    limiter: asyncio.Semaphore,
    status_port: int = STATUS_PORT,
) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """The status fields to patch (empty: nothing changed) and the events to post."""
    observations = await observe_pods(
        client, sorted(pods, key=lambda p: p.name), status_port, limiter
    )
    new = compute_status(
        spec, generation, selector_string(name), observations, previous, now_rfc3339()
    )
    return status_patch(previous, new), breaker_events(previous, new)


async def observe_health(
    reader: HealthReader,
    fleet: str,
    devices: int,
    previous: Mapping[str, Any] | None,
    stale_after: float,
) -> dict[str, Any] | None:
    """The fleet's ``status.health``; None (keep what is there) if the database is away."""
    try:
        rows = await asyncio.to_thread(reader.fleet_states, fleet, stale_after)
    except psycopg.Error as exc:
        log.warning("health predictions unreadable", fleet=fleet, error=type(exc).__name__)
        return None
    except HealthReadBusy:
        return None
    return health_summary(rows, devices, previous, now_rfc3339())
