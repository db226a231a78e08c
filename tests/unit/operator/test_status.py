from __future__ import annotations

from typing import Any

from devicefleet_operator.spec import parse_spec
from devicefleet_operator.status import (
    PodObservation,
    breaker_events,
    compute_status,
    health_summary,
    status_patch,
)

SPEC = parse_spec({"profile": "f2", "devices": 30, "devicesPerPod": 10})


def pod(i: int, state: str | None = "closed", ready: bool = True) -> PodObservation:
    status: dict[str, Any] | None = None
    if state is not None:
        status = {
            "devices": 10,
            "circuitBreaker": {"state": state},
            "messages": {"generated": 5, "acknowledged": 4, "dropped": 1, "buffered": 0},
        }
    return PodObservation(f"p-{i}", ready, status)


def status(
    pods: list[PodObservation],
    previous: dict[str, Any] | None = None,
    now: str = "2026-01-01T00:00:00Z",
    spec: Any = SPEC,
) -> dict[str, Any]:
    return compute_status(spec, 3, "sel", pods, previous or {}, now)


def conditions(s: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in s["conditions"]}


def test_running_fleet() -> None:
    s = status([pod(0), pod(1), pod(2)])
    assert s["phase"] == "Running"
    assert s["circuitBreaker"]["summary"] == "3/0/0"
    assert (s["readyReplicas"], s["replicas"], s["devices"]) == (3, 3, 30)
    assert s["messages"]["sent"] == 12
    assert conditions(s) == {
        "Ready": ("True", "AllPodsReady"),
        "Progressing": ("False", "RolledOut"),
        "PublisherHealthy": ("True", "BreakersClosed"),
    }


def test_open_breakers_degrade_the_fleet() -> None:
    s = status([pod(0), pod(1, "open"), pod(2, "half-open")])
    assert s["phase"] == "Degraded"
    assert (s["circuitBreaker"]["open"], s["circuitBreaker"]["halfOpen"]) == (1, 1)
    assert conditions(s)["PublisherHealthy"] == ("False", "BreakersOpen")
    assert conditions(s)["Ready"][0] == "False"


def test_unreadable_status_is_unknown_not_closed() -> None:
    s = status([pod(0), pod(1), pod(2, state=None)])
    assert s["circuitBreaker"]["unknown"] == 1
    assert conditions(s)["PublisherHealthy"] == ("False", "StatusUnreadable")


def test_progressing_while_pods_start_and_paused_without_pods() -> None:
    assert status([pod(0), pod(1, ready=False)])["phase"] == "Progressing"
    paused = status([], spec=parse_spec({"profile": "f2", "devices": 30, "paused": True}))
    assert paused["phase"] == "Paused"
    assert paused["replicas"] == 0
    assert conditions(paused)["Ready"] == ("True", "Paused")


def test_transition_times_move_only_on_change() -> None:
    first = status([pod(0), pod(1), pod(2)], now="2026-01-01T00:00:00Z")
    same = status([pod(0), pod(1), pod(2)], previous=first, now="2026-01-01T00:05:00Z")
    assert status_patch(first, same) == {}  # nothing to write
    opened = status([pod(0), pod(1, "open"), pod(2)], previous=same, now="2026-01-01T00:06:00Z")
    assert opened["circuitBreaker"]["lastTransitionTime"] == "2026-01-01T00:06:00Z"
    ready = {c["type"]: c for c in opened["conditions"]}
    assert ready["Progressing"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert ready["PublisherHealthy"]["lastTransitionTime"] == "2026-01-01T00:06:00Z"
    assert set(status_patch(same, opened)) >= {"phase", "circuitBreaker", "conditions"}


def test_breaker_events() -> None:
    closed = status([pod(0), pod(1), pod(2)])
    opened = status([pod(0, "open"), pod(1, "open"), pod(2)], previous=closed)
    assert breaker_events(closed, opened) == [
        (
            "Warning",
            "CircuitBreakerOpened",
            "2 publisher(s) opened their circuit breaker; 2 of 3 open",
        )
    ]
    recovered = status([pod(0), pod(1), pod(2)], previous=opened)
    assert breaker_events(opened, recovered) == [
        ("Normal", "CircuitBreakersClosed", "all publishers' circuit breakers are closed")
    ]
    assert breaker_events(recovered, recovered) == []


def test_health_counts_fresh_predictions_and_the_rest_as_unknown() -> None:
    rows = [("normal", 6, "truck-health-v1"), ("degrading", 2, "truck-health-v1"),
            ("critical", 1, "truck-health-v1")]  # fmt: skip
    health = health_summary(rows, devices=10, previous=None, now="2026-01-01T00:00:00Z")
    assert health == {
        "normal": 6, "degrading": 2, "critical": 1, "maintenance": 0, "unknown": 1,
        "modelVersion": "truck-health-v1", "observedAt": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    # Same counts later: nothing moves, so nothing is written.
    again = health_summary(rows, devices=10, previous=health, now="2026-01-01T00:05:00Z")
    assert again == health
    fewer = health_summary(rows[:1], devices=10, previous=health, now="2026-01-01T00:06:00Z")
    assert (fewer["degrading"], fewer["unknown"]) == (0, 4)
    assert fewer["observedAt"] == "2026-01-01T00:06:00Z"


def test_health_without_predictions_is_all_unknown() -> None:
    health = health_summary([], devices=3, previous=None, now="2026-01-01T00:00:00Z")
    assert health["unknown"] == 3
    assert "modelVersion" not in health
