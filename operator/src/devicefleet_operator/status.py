"""A fleet's status from what its pods report. Pure: no I/O, the clock is a parameter.

Follows CloudNativePG's shape: a short CamelCase ``phase`` with a ``phaseReason``, conditions
in ``metav1.Condition`` form whose ``lastTransitionTime`` only moves when their status does,
and nothing written when nothing changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devicefleet_operator.constants import ConditionType, Phase, Reason
from devicefleet_operator.spec import FleetSpec

BREAKER_KEYS = {"closed": "closed", "open": "open", "half-open": "halfOpen"}
MESSAGE_KEYS = {
    "generated": "generated",
    "acknowledged": "sent",
    "failedAttempts": "failed",
    "rejected": "rejected",
    "dropped": "dropped",
    "buffered": "buffered",
    "bufferOverflow": "bufferOverflow",
}


@dataclass(frozen=True)
class PodObservation:
    """One simulator pod: what Kubernetes says, and what its /status said (None: unreadable)."""

    name: str
    ready: bool
    status: Mapping[str, Any] | None


def breaker_counts(pods: Sequence[PodObservation]) -> dict[str, int]:
    counts = {"closed": 0, "open": 0, "halfOpen": 0, "unknown": 0}
    for pod in pods:
        state = ((pod.status or {}).get("circuitBreaker") or {}).get("state")
        counts[BREAKER_KEYS.get(str(state), "unknown")] += 1
    return counts


def message_totals(pods: Sequence[PodObservation]) -> dict[str, int]:
    totals = dict.fromkeys(MESSAGE_KEYS.values(), 0)
    for pod in pods:
        messages = (pod.status or {}).get("messages") or {}
        for source, target in MESSAGE_KEYS.items():
            totals[target] += int(messages.get(source, 0))
    return totals


def _condition(
    type_: ConditionType,
    ok: bool,
    reason: Reason,
    message: str,
    generation: int,
    previous: Mapping[str, Mapping[str, Any]],
    now: str,
) -> dict[str, Any]:
    status = "True" if ok else "False"
    before = previous.get(type_.value)
    unchanged = before is not None and before.get("status") == status
    return {
        "type": type_.value,
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": before["lastTransitionTime"] if unchanged and before else now,
        "reason": reason.value,
        "message": message,
    }


def _phase(
    spec: FleetSpec, pods: int, ready: int, counts: Mapping[str, int]
) -> tuple[Phase, Reason, str]:
    """Phase, the Ready condition's reason, and a sentence saying why."""
    desired = spec.pods
    if spec.paused and pods == 0:
        return Phase.PAUSED, Reason.PAUSED, "spec.paused is true; configuration kept, no pods"
    if ready != desired or pods != desired:
        return Phase.PROGRESSING, Reason.PODS_NOT_READY, f"{ready} of {desired} pods ready"
    if counts["open"] or counts["halfOpen"] or counts["unknown"]:
        return (
            Phase.DEGRADED,
            Reason.BREAKERS_OPEN,
            f"circuit breakers: {counts['open']} open, {counts['halfOpen']} half-open, "
            f"{counts['unknown']} unreadable of {ready} publishers",
        )
    return Phase.RUNNING, Reason.ALL_PODS_READY, f"{desired} simulator pods publishing"


def _publisher_reason(ready: int, counts: Mapping[str, int]) -> Reason:
    if ready == 0:
        return Reason.NO_PUBLISHERS
    if counts["open"] or counts["halfOpen"]:
        return Reason.BREAKERS_OPEN
    if counts["unknown"]:
        return Reason.STATUS_UNREADABLE
    return Reason.BREAKERS_CLOSED


def compute_status(
    spec: FleetSpec,
    generation: int,
    selector: str,
    pods: Sequence[PodObservation],
    previous: Mapping[str, Any],
    now: str,
) -> dict[str, Any]:
    desired = spec.pods
    ready = [p for p in pods if p.ready]
    counts = breaker_counts(ready)
    phase, ready_reason, why = _phase(spec, len(pods), len(ready), counts)
    rolled_out = len(ready) == desired == len(pods)
    publisher_reason = _publisher_reason(len(ready), counts)

    old_conditions = {c["type"]: c for c in previous.get("conditions") or []}
    conditions = [
        _condition(
            ConditionType.READY,
            phase in (Phase.RUNNING, Phase.PAUSED),
            ready_reason,
            why,
            generation,
            old_conditions,
            now,
        ),
        _condition(
            ConditionType.PROGRESSING,
            not rolled_out,
            Reason.ROLLED_OUT if rolled_out else Reason.SCALING,
            f"{len(ready)}/{desired} pods ready",
            generation,
            old_conditions,
            now,
        ),
        _condition(
            ConditionType.PUBLISHER_HEALTHY,
            publisher_reason == Reason.BREAKERS_CLOSED,
            publisher_reason,
            f"{counts['closed']} closed, {counts['open']} open, {counts['halfOpen']} "
            f"half-open, {counts['unknown']} unreadable",
            generation,
            old_conditions,
            now,
        ),
    ]

    old_breaker = previous.get("circuitBreaker") or {}
    breaker_changed = any(old_breaker.get(k) != v for k, v in counts.items())
    circuit_breaker: dict[str, Any] = counts | {
        "summary": f"{counts['closed']}/{counts['open']}/{counts['halfOpen']}",
    }
    last = now if breaker_changed else old_breaker.get("lastTransitionTime")
    if last:
        circuit_breaker["lastTransitionTime"] = last

    return {
        "observedGeneration": generation,
        "phase": phase.value,
        "phaseReason": why,
        "replicas": desired,
        "readyReplicas": len(ready),
        "podsReady": f"{len(ready)}/{desired}",
        "devices": sum(int((p.status or {}).get("devices", 0)) for p in ready),
        "selector": selector,
        "circuitBreaker": circuit_breaker,
        "messages": message_totals(pods),
        "conditions": conditions,
    }


HEALTH_KEYS = ("normal", "degrading", "critical", "maintenance")


def health_summary(
    rows: Sequence[tuple[str, int, str | None]],
    devices: int,
    previous: Mapping[str, Any] | None,
    now: str,
) -> dict[str, Any]:
    """``status.health`` from (state, devices, newest model) rows of fresh predictions.

    ``observedAt`` moves only when a count does, so an unchanged fleet writes nothing.
    """
    counts = dict.fromkeys(HEALTH_KEYS, 0)
    model: str | None = None
    for state, n, version in rows:
        if state in counts:
            counts[state] += n
            model = model or version
    counts["unknown"] = max(0, devices - sum(counts.values()))
    before = previous or {}
    changed = any(before.get(k) != v for k, v in counts.items())
    health: dict[str, Any] = dict(counts)
    if model or before.get("modelVersion"):
        health["modelVersion"] = model or before.get("modelVersion")
    observed = now if changed else before.get("observedAt", now)
    health["observedAt"] = observed
    return health


def status_patch(previous: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Only the keys whose value changed; empty when nothing did (then nothing is written)."""
    return {k: v for k, v in new.items() if previous.get(k) != v}


def breaker_events(
    previous: Mapping[str, Any], new: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """Kubernetes Events (type, reason, message) for breaker transitions of the fleet."""
    before = previous.get("circuitBreaker") or {}
    after = new.get("circuitBreaker") or {}
    events: list[tuple[str, str, str]] = []
    opened = after.get("open", 0) - before.get("open", 0)
    publishers = sum(after.get(k, 0) for k in ("closed", "open", "halfOpen", "unknown"))
    if opened > 0:
        events.append(
            (
                "Warning",
                "CircuitBreakerOpened",
                f"{opened} publisher(s) opened their circuit breaker; "
                f"{after.get('open', 0)} of {publishers} open",
            )
        )
    if before.get("open", 0) and not after.get("open", 0) and not after.get("halfOpen", 0):
        events.append(
            ("Normal", "CircuitBreakersClosed", "all publishers' circuit breakers are closed")
        )
    return events
