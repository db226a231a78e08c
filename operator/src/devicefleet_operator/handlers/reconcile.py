"""Make a fleet's children (headless Service + StatefulSet) match its spec."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import kopf
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter, Histogram

from devicefleet_operator.builders import build_service, build_statefulset
from devicefleet_operator.constants import FIELD_MANAGER, SPEC_HASH_ANNOTATION
from devicefleet_operator.credentials import (
    apply_secret,
    credentials_revision,
    fleet_credentials,
    signing_keys,
    simulator_mqtt_ca,
)
from devicefleet_operator.settings import Settings
from devicefleet_operator.spec import FleetSpec, InvalidSpec, parse_spec

RECONCILES = Counter("devicefleet_operator_reconcile_total", "Reconciliations", ["outcome"])
RECONCILE_DURATION = Histogram(
    "devicefleet_operator_reconcile_duration_seconds", "Time to reconcile one fleet"
)


def fleet_spec(spec: Mapping[str, Any]) -> FleetSpec:
    try:
        return parse_spec(spec)
    except InvalidSpec as exc:
        RECONCILES.labels("invalid").inc()
        raise kopf.PermanentError(str(exc)) from exc


@functools.cache
def _api() -> tuple[client.AppsV1Api, client.CoreV1Api]:
    """One API client for the process, made at first use (after the config is loaded). A
    client per call meant a new connection pool, so a TLS handshake per write: a quarter of
    the operator's CPU time at 1,000 fleets (P7, docs/benchmarks/notes.md)."""
    shared = client.ApiClient()
    return client.AppsV1Api(shared), client.CoreV1Api(shared)


def retry_delay(status: int | None, headers: Mapping[str, str] | None) -> float:
    """Seconds until a failed write is tried again: what a 429 asks for (API Priority and
    Fairness sends Retry-After), soon after a 5xx, later after another 4xx (it will not heal
    by retrying quickly, but may after an edit)."""
    if status == 429:
        try:
            return max(1.0, float((headers or {}).get("Retry-After", 1)))
        except ValueError:
            return 1.0
    return 10 if status and status < 500 else 3


def owned_by_same(desired: Mapping[str, Any], owner_references: Sequence[Any]) -> bool:
    """Whether a live object's owner references (client models) name the desired owner."""
    wanted = {ref["uid"] for ref in desired["metadata"].get("ownerReferences") or []}
    return any(ref.uid in wanted for ref in owner_references)


def _drifted(desired: dict[str, Any], live: Mapping[str, Any], read_replicas: bool) -> bool:
    live_hash = (live.get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    if live_hash != desired["metadata"]["annotations"][SPEC_HASH_ANNOTATION]:
        return True
    return read_replicas and live.get("replicas") != desired["spec"]["replicas"]


def _apply(
    desired: dict[str, Any],
    live: Mapping[str, Any] | None,
    read_replicas: bool,
) -> str:
    """Create if absent, patch the spec if it drifted; returns what was done."""
    meta = desired["metadata"]
    apps, core = _api()
    is_sts = desired["kind"] == "StatefulSet"
    if live is None:
        create = apps.create_namespaced_stateful_set if is_sts else core.create_namespaced_service
        try:
            # The client serialises plain dicts as well as its model classes.
            create(meta["namespace"], desired, field_manager=FIELD_MANAGER)  # type: ignore[arg-type]
            return "created"
        except ApiException as exc:
            if exc.status != 409:
                raise
        # It exists but the index does not list it: our own earlier create the index has not
        # seen yet, or someone edited its labels (the index selects by label). Patch it if it
        # is this fleet's: a child left without its labels would never be looked at again.
        read = apps.read_namespaced_stateful_set if is_sts else core.read_namespaced_service
        existing = read(meta["name"], meta["namespace"]).metadata
        if not owned_by_same(desired, (existing and existing.owner_references) or []):
            raise kopf.TemporaryError(
                f"{desired['kind']} {meta['name']} exists and is not this fleet's", delay=30
            )
    elif not _drifted(desired, live, read_replicas):
        return "unchanged"
    if is_sts:
        # Merge patch of the whole spec: replicas, template (a rollout) and the hash.
        apps.patch_namespaced_stateful_set(
            meta["name"],
            meta["namespace"],
            {
                "metadata": {"annotations": meta["annotations"], "labels": meta["labels"]},
                "spec": {
                    "replicas": desired["spec"]["replicas"],
                    "template": desired["spec"]["template"],
                },
            },
            field_manager=FIELD_MANAGER,
        )
    else:
        core.patch_namespaced_service(
            meta["name"],
            meta["namespace"],
            {"metadata": {"annotations": meta["annotations"]}, "spec": desired["spec"]},
            field_manager=FIELD_MANAGER,
        )
    return "updated"


def rolls_onto_new_credentials(revision: str | None, live: Mapping[str, Any] | None) -> bool:
    """Whether applying the StatefulSet starts pods with credentials it has not run with (a
    new StatefulSet, or a roll onto new ones). The Secret is then written first, so no pod
    starts with old values: kopf runs the observe timer beside the create and resume handlers,
    so after a restart with a rotated key it can get here before they have rewritten it."""
    if revision is None:
        return False
    return live is None or live.get("credentials_revision") != revision


def reconcile_children(
    namespace: str,
    name: str,
    body: kopf.Body,
    spec: FleetSpec,
    config: Settings,
    live_service: Mapping[str, Any] | None,
    live_statefulset: Mapping[str, Any] | None,
) -> dict[str, str]:
    """Bring both children to the desired state; ``live_*`` come from kopf indexes
    (``None`` = absent), so an up-to-date fleet costs no API call at all."""
    started = time.perf_counter()
    service = build_service(namespace, name)
    secret = fleet_credentials(namespace, name, config)
    revision = credentials_revision(secret) if secret else None
    statefulset = build_statefulset(
        namespace,
        name,
        spec,
        config,
        signing_keys(config).credential_keys(),
        mqtt_ca=simulator_mqtt_ca(config) is not None,
        credentials_revision=revision,
    )
    if rolls_onto_new_credentials(revision, live_statefulset):
        reconcile_credentials(namespace, name, body, config)
    for child in (service, statefulset):
        kopf.adopt(child, owner=body)
    try:
        actions = {
            "service": _apply(service, live_service, read_replicas=False),
            "statefulset": _apply(statefulset, live_statefulset, read_replicas=True),
        }
    except ApiException as exc:
        RECONCILES.labels("error").inc()
        raise kopf.TemporaryError(
            f"applying children failed: {exc.status} {exc.reason}",
            delay=retry_delay(exc.status, exc.headers),
        ) from exc
    except urllib3.exceptions.HTTPError as exc:
        # API server unreachable (restarting, connection cut): kopf's default for an
        # unexpected exception is a 60 s pause; this heals as soon as the server is back.
        RECONCILES.labels("error").inc()
        raise kopf.TemporaryError(f"API server unreachable: {exc!r}", delay=3) from exc
    outcome = "changed" if set(actions.values()) - {"unchanged"} else "unchanged"
    RECONCILES.labels(outcome).inc()
    RECONCILE_DURATION.observe(time.perf_counter() - started)
    return actions


def reconcile_credentials(namespace: str, name: str, body: kopf.Body, config: Settings) -> str:
    """Write the fleet's credentials Secret (owned by the fleet, so deleted with it) before
    its pods need it; "none" when the operator has no signing keys."""
    secret = fleet_credentials(namespace, name, config)
    if secret is None:
        return "none"
    kopf.adopt(secret, owner=body)
    try:
        return apply_secret(_api()[1], secret)
    except ApiException as exc:
        RECONCILES.labels("error").inc()
        raise kopf.TemporaryError(
            f"writing the credentials Secret failed: {exc.status} {exc.reason}", delay=10
        ) from exc
