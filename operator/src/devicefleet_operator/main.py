"""kopf wiring only: each handler is a one-liner delegating to ``handlers/``.

Level-based: children and pods are known through kopf indexes (no list calls), a timer per
fleet re-checks the children and reads the pods' /status, and status is patched only when
something changed.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import httpx
import kopf
from kubernetes import config as kube_config
from prometheus_client import Gauge

from devicefleet_common.logging import get_logger, setup_logging
from devicefleet_common.metrics import serve_metrics
from devicefleet_operator.builders import fleet_id
from devicefleet_operator.constants import (
    ANNOTATION_PREFIX,
    CREDENTIALS_REVISION_ANNOTATION,
    GROUP,
    LABEL_FLEET,
    LABEL_NAME,
    PLURAL,
    SIMULATOR_APP,
    VERSION,
    Phase,
)
from devicefleet_operator.handlers.broker import reconcile_broker, release_broker
from devicefleet_operator.handlers.observe import observe_fleet, observe_health
from devicefleet_operator.handlers.reconcile import (
    fleet_spec,
    reconcile_children,
    reconcile_credentials,
)
from devicefleet_operator.health import HealthReader
from devicefleet_operator.poller import PodTarget
from devicefleet_operator.registry import register_fleet_devices
from devicefleet_operator.settings import Settings

CONFIG = Settings()
log = get_logger("devicefleet.operator")
SIMULATORS = {LABEL_NAME: SIMULATOR_APP, LABEL_FLEET: kopf.PRESENT}
FLEETS = Gauge("devicefleet_operator_fleets", "DeviceFleets by phase", ["phase"])


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Keep kopf's bookkeeping in our annotations, set timeouts, open the HTTP client."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.peering.mandatory = False
    settings.peering.name = "devicefleet-operator"
    # A watch that silently stops delivering (cut connection, restarted API server) is
    # re-established within client_timeout instead of hanging forever.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # Handler log lines stay logs; only warnings become Kubernetes Events.
    settings.posting.level = logging.WARNING
    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        kube_config.load_kube_config()  # type: ignore[no-untyped-call]
    memo.http = httpx.AsyncClient(timeout=CONFIG.status_timeout)
    memo.limiter = asyncio.Semaphore(CONFIG.status_concurrency)
    memo.health = HealthReader(CONFIG.database_url) if CONFIG.database_url else None
    serve_metrics(CONFIG.metrics_port, CONFIG.metrics_host)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Close the HTTP client and the database connection."""
    await memo.http.aclose()
    if memo.health is not None:
        memo.health.close()


@kopf.on.probe(id="fleets")
def fleets_probe(fleet_phases: kopf.Index[str, tuple[str, str]], **_: Any) -> int:
    """Liveness detail: how many fleets this operator knows."""
    return sum(len(store) for _, store in fleet_phases.items())


@kopf.index(GROUP, VERSION, PLURAL)
def fleet_phases(namespace: str, name: str, status: kopf.Status, **_: Any) -> dict[str, Any]:
    """Fleets by phase, for the fleets-by-phase gauge."""
    return {status.get("phase", "Pending"): (namespace, name)}


@kopf.index("apps", "v1", "statefulsets", labels=SIMULATORS)
def statefulsets(
    namespace: str, labels: kopf.Labels, annotations: kopf.Annotations, spec: kopf.Spec, **_: Any
) -> dict[Any, Any]:
    """Live simulator StatefulSets by fleet."""
    template = (spec.get("template") or {}).get("metadata") or {}
    return {
        (namespace, labels[LABEL_FLEET]): {
            "annotations": dict(annotations),
            "replicas": spec.get("replicas"),
            "credentials_revision": (template.get("annotations") or {}).get(
                CREDENTIALS_REVISION_ANNOTATION
            ),
        }
    }


@kopf.index("", "v1", "services", labels=SIMULATORS)
def services(
    namespace: str, labels: kopf.Labels, annotations: kopf.Annotations, **_: Any
) -> dict[Any, Any]:
    """Live headless Services by fleet."""
    return {(namespace, labels[LABEL_FLEET]): {"annotations": dict(annotations)}}


@kopf.index("", "v1", "pods", labels=SIMULATORS)
def pods(
    namespace: str, name: str, labels: kopf.Labels, status: kopf.Status, **_: Any
) -> dict[Any, PodTarget]:
    """Simulator pods by fleet: name, IP and readiness."""
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return {(namespace, labels[LABEL_FLEET]): PodTarget(name, status.get("podIP"), ready)}


def _live(index: kopf.Index[Any, Any], namespace: str, name: str) -> Any:
    store = index.get((namespace, name))
    return next(iter(store), None) if store else None


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile(
    namespace: str,
    name: str,
    spec: kopf.Spec,
    body: kopf.Body,
    statefulsets: kopf.Index[Any, Any],
    services: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    """Create or update the fleet's credentials, broker identity, Service and StatefulSet;
    register its devices."""
    fleet = fleet_spec(spec)
    reconcile_credentials(namespace, name, body, CONFIG)
    # The broker first, so pods find their login; but a broker outage must not keep the
    # children from following the spec (their clients retry): kopf retries the handler after.
    broker_error: kopf.TemporaryError | None = None
    try:
        reconcile_broker(namespace, name, fleet, CONFIG)
    except kopf.TemporaryError as exc:
        broker_error = exc
    reconcile_children(
        namespace,
        name,
        body,
        fleet,
        CONFIG,
        _live(services, namespace, name),
        _live(statefulsets, namespace, name),
    )
    if CONFIG.database_url:
        register_fleet_devices(CONFIG.database_url, namespace, name, fleet)
    if broker_error is not None:
        raise broker_error


# A finalizer only when there is something outside Kubernetes to clean up (the broker's
# client and role): without one, deleting a fleet never waits for the operator.
@kopf.on.delete(GROUP, VERSION, PLURAL, optional=not CONFIG.manages_broker)
def release(namespace: str, name: str, **_: Any) -> None:
    """Remove the fleet from the MQTT broker: its credentials stop working."""
    release_broker(namespace, name, CONFIG)


@kopf.timer(
    GROUP,
    VERSION,
    PLURAL,
    interval=CONFIG.mqtt_admin_resync_interval,
    initial_delay=CONFIG.mqtt_admin_resync_interval,
    when=lambda **_: CONFIG.manages_broker,
)
def broker_resync(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> None:
    """Put the fleet back into a broker that forgot it (restarted without its state)."""
    reconcile_broker(namespace, name, fleet_spec(spec), CONFIG, periodic=True)


@kopf.timer(GROUP, VERSION, PLURAL, interval=CONFIG.status_interval)
async def observe(
    namespace: str,
    name: str,
    spec: kopf.Spec,
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    statefulsets: kopf.Index[Any, Any],
    services: kopf.Index[Any, Any],
    pods: kopf.Index[Any, PodTarget],
    fleet_phases: kopf.Index[str, tuple[str, str]],
    **_: Any,
) -> None:
    """Recreate deleted or drifted children; read the pods; write status when it changed."""
    fleet = fleet_spec(spec)
    await asyncio.to_thread(
        reconcile_children,
        namespace,
        name,
        body,
        fleet,
        CONFIG,
        _live(services, namespace, name),
        _live(statefulsets, namespace, name),
    )
    changes, events = await observe_fleet(
        name,
        meta.get("generation", 0),
        fleet,
        pods.get((namespace, name), []),
        status,
        memo.http,
        memo.limiter,
    )
    if memo.health is not None and fleet.profile == "truck":
        health = await observe_health(
            memo.health,
            fleet_id(namespace, name),
            fleet.devices,
            status.get("health"),
            CONFIG.health_stale_after,
        )
        if health is not None and health != dict(status.get("health") or {}):
            changes["health"] = health
    patch.status.update(changes)
    for event_type, reason, message in events:
        kopf.event(body, type=event_type, reason=reason, message=message)
    for phase in [*Phase, "Pending"]:
        FLEETS.labels(str(phase)).set(len(fleet_phases.get(str(phase), [])))


def main() -> int:
    setup_logging("operator", CONFIG.log_level, CONFIG.environment)
    log.info(
        "operator starting",
        namespaces=CONFIG.namespaces or "all",
        simulator_image=CONFIG.simulator_image,
    )
    kopf.run(
        clusterwide=not CONFIG.namespaces,
        namespaces=CONFIG.namespaces,
        standalone=CONFIG.standalone,
        liveness_endpoint=f"http://{CONFIG.metrics_host}:{CONFIG.liveness_port}/healthz",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
