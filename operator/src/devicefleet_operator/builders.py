"""Desired child objects of a DeviceFleet, as plain dicts. Pure: tested as dict assertions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from devicefleet_operator.constants import (
    CREDENTIAL_ENV,
    CREDENTIALS_REVISION_ANNOTATION,
    LABEL_FLEET,
    LABEL_NAME,
    MQTT_CA_KEY,
    MQTT_CA_PATH,
    POD_INDEX_LABEL,
    SIMULATOR_APP,
    SPEC_HASH_ANNOTATION,
    STATUS_PORT,
    STATUS_PORT_NAME,
)
from devicefleet_operator.settings import Settings
from devicefleet_operator.spec import FleetSpec

DEFAULT_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def fleet_id(namespace: str, name: str) -> str:
    """The fleet's name in device ids: unique across namespaces, short enough for topics."""
    full = f"{namespace}.{name}"
    if len(full) <= 63:
        return full
    return f"{full[:54]}-{hashlib.sha256(full.encode()).hexdigest()[:8]}"


def selector_labels(name: str) -> dict[str, str]:
    return {LABEL_NAME: SIMULATOR_APP, LABEL_FLEET: name}


def fleet_labels(name: str) -> dict[str, str]:
    return selector_labels(name) | {
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "simulator",
        "app.kubernetes.io/part-of": "devicefleet",
        "app.kubernetes.io/managed-by": "devicefleet-operator",
    }


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def workload_name(name: str) -> str:
    return f"{name}-sim"


def credentials_secret_name(name: str) -> str:
    return f"{workload_name(name)}-credentials"


def simulator_env(
    namespace: str,
    name: str,
    spec: FleetSpec,
    config: Settings,
    credential_keys: Sequence[str] = (),
) -> list[dict[str, Any]]:
    values: dict[str, Any] = {
        "FLEET": fleet_id(namespace, name),
        "PROFILE": spec.profile,
        "TRANSPORT": spec.transport,
        "DEVICE_COUNT": spec.devices_per_pod,
        "FLEET_DEVICES": spec.devices,
        "PUBLISH_INTERVAL": spec.publish_interval,
        "MQTT_HOST": spec.mqtt_host or config.mqtt_host,
        "MQTT_PORT": spec.mqtt_port or config.mqtt_port,
        "INGEST_URL": spec.ingest_url or config.ingest_url,
        "DROP_RATE": spec.drop_rate,
        "JITTER_RATE": spec.jitter_rate,
        "MAX_JITTER": spec.max_jitter,
        "DUPLICATE_RATE": spec.duplicate_rate,
        "MALFORMED_RATE": spec.malformed_rate,
        "RETRY_MAX_ATTEMPTS": spec.retry_max_attempts,
        "RETRY_BASE": spec.retry_base,
        "RETRY_MAX": spec.retry_max,
        "BREAKER_FAIL_MAX": spec.breaker_fail_max,
        "BREAKER_RESET_TIMEOUT": spec.breaker_reset_timeout,
        "BUFFER_SIZE": spec.buffer_size,
        "EDGE": str(spec.edge).lower(),
        "GROUND_TRUTH": str(spec.ground_truth).lower(),
        "STATUS_HOST": "0.0.0.0",
        "STATUS_PORT": STATUS_PORT,
        "LOG_LEVEL": config.log_level,
    }
    env: list[dict[str, Any]] = [
        {"name": f"SIMULATOR_{key}", "value": str(value)} for key, value in values.items()
    ]
    env.append(
        {
            "name": "SIMULATOR_POD_INDEX",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}},
        }
    )
    # Credentials only by reference: the pod spec (and so this StatefulSet) never holds them.
    env.extend(
        {
            "name": CREDENTIAL_ENV[key],
            "valueFrom": {"secretKeyRef": {"name": credentials_secret_name(name), "key": key}},
        }
        for key in credential_keys
    )
    return env


def build_statefulset(
    namespace: str,
    name: str,
    spec: FleetSpec,
    config: Settings,
    credential_keys: Sequence[str] = (),
    mqtt_ca: bool = False,
    credentials_revision: str | None = None,
) -> dict[str, Any]:
    """``mqtt_ca``: the fleet's credentials Secret holds the broker's CA (MQTT_CA_KEY); the
    pods mount it and connect by TLS. ``credentials_revision``: the digest of that Secret's
    values (credentials.credentials_revision), on the pod template so new values roll the pods."""
    labels = fleet_labels(name)
    probe = {"httpGet": {"path": "/health", "port": STATUS_PORT_NAME}, "periodSeconds": 5}
    pod_spec: dict[str, Any] = {
        # Simulators never talk to the API server: the operator reads their /status.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "simulator",
                "image": spec.image or config.simulator_image,
                "env": simulator_env(namespace, name, spec, config, credential_keys),
                "ports": [{"name": STATUS_PORT_NAME, "containerPort": STATUS_PORT}],
                "readinessProbe": probe,
                "livenessProbe": probe | {"failureThreshold": 6},
                "resources": spec.resources or DEFAULT_RESOURCES,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
        "terminationGracePeriodSeconds": 30,
    }
    if mqtt_ca:
        container = pod_spec["containers"][0]
        container["env"].append({"name": "SIMULATOR_MQTT_TLS_CA_FILE", "value": MQTT_CA_PATH})
        ca_dir = str(PurePosixPath(MQTT_CA_PATH).parent)
        container["volumeMounts"] = [{"name": "mqtt-ca", "mountPath": ca_dir, "readOnly": True}]
        pod_spec["volumes"] = [
            {
                "name": "mqtt-ca",
                "secret": {
                    "secretName": credentials_secret_name(name),
                    "items": [{"key": MQTT_CA_KEY, "path": PurePosixPath(MQTT_CA_PATH).name}],
                },
            }
        ]
    if config.node_selector:
        pod_spec["nodeSelector"] = dict(config.node_selector)
    if config.tolerations:
        pod_spec["tolerations"] = list(config.tolerations)
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": workload_name(name), "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": spec.pods,
            "serviceName": workload_name(name),
            # Pods are independent publishers: start and stop them all at once.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(name)},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    if credentials_revision is not None:
        body["spec"]["template"]["metadata"]["annotations"] = {
            CREDENTIALS_REVISION_ANNOTATION: credentials_revision
        }
    body["metadata"]["annotations"] = {SPEC_HASH_ANNOTATION: spec_hash(body)}
    return body


def build_service(namespace: str, name: str) -> dict[str, Any]:
    """Headless Service the StatefulSet requires; gives every pod a stable DNS name."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": workload_name(name),
            "namespace": namespace,
            "labels": fleet_labels(name),
        },
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(name),
            "ports": [
                {"name": STATUS_PORT_NAME, "port": STATUS_PORT, "targetPort": STATUS_PORT_NAME}
            ],
            "publishNotReadyAddresses": True,
        },
    }
    body["metadata"]["annotations"] = {SPEC_HASH_ANNOTATION: spec_hash(body)}
    return body


def spec_hash(body: dict[str, Any]) -> str:
    """Hash of what we want, so drift is found by comparing one annotation."""
    return hashlib.sha256(json.dumps(body["spec"], sort_keys=True).encode()).hexdigest()[:16]
