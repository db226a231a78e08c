"""Observe a fleet's pods and turn what they report into the fleet's status."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from devicefleet_operator.builders import selector_string
from devicefleet_operator.constants import STATUS_PORT
from devicefleet_operator.poller import PodTarget, observe_pods
from devicefleet_operator.spec import FleetSpec
from devicefleet_operator.status import breaker_events, compute_status, status_patch


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
