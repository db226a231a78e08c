"""Reads simulator pods' /status endpoints (the operator's only source of breaker state)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import Counter, Histogram

from devicefleet_operator.status import PodObservation

POLL_DURATION = Histogram(
    "devicefleet_operator_status_poll_duration_seconds", "Time to read one fleet's pods"
)
POLL_ERRORS = Counter(
    "devicefleet_operator_pod_status_errors_total", "Pod /status reads that failed"
)


@dataclass(frozen=True)
class PodTarget:
    name: str
    ip: str | None
    ready: bool


async def _read(
    client: httpx.AsyncClient, pod: PodTarget, port: int, limiter: asyncio.Semaphore
) -> PodObservation:
    if not pod.ip:
        return PodObservation(pod.name, pod.ready, None)
    async with limiter:
        try:
            response = await client.get(f"http://{pod.ip}:{port}/status")
            response.raise_for_status()
            status: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError):
            POLL_ERRORS.inc()
            return PodObservation(pod.name, pod.ready, None)
    return PodObservation(pod.name, pod.ready, status)


async def observe_pods(
    client: httpx.AsyncClient, pods: Sequence[PodTarget], port: int, limiter: asyncio.Semaphore
) -> list[PodObservation]:
    started = time.perf_counter()
    observations = await asyncio.gather(*(_read(client, pod, port, limiter) for pod in pods))
    POLL_DURATION.observe(time.perf_counter() - started)
    return list(observations)
