"""Names shared by the CRD, the operator and its tests."""

from __future__ import annotations

import enum

GROUP = "iot.devicefleet.io"
VERSION = "v1alpha1"
PLURAL = "devicefleets"
KIND = "DeviceFleet"

FIELD_MANAGER = "devicefleet-operator"
# Annotations: where kopf keeps its bookkeeping, and the hash of what we last applied.
ANNOTATION_PREFIX = GROUP
SPEC_HASH_ANNOTATION = f"{GROUP}/spec-hash"
# On the simulators' pod template: a digest of the fleet's credentials, so a rotated key or CA
# rolls the pods (they read them from env and files only at start).
CREDENTIALS_REVISION_ANNOTATION = f"{GROUP}/credentials-revision"

LABEL_FLEET = f"{GROUP}/fleet"
LABEL_NAME = "app.kubernetes.io/name"
SIMULATOR_APP = "devicefleet-simulator"
# Set by the StatefulSet controller on every pod (Kubernetes >= 1.28).
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"

STATUS_PORT = 8080

# A fleet's credentials Secret (operator/credentials.py): its keys → the simulator's env.
CREDENTIAL_ENV = {
    "mqtt-username": "SIMULATOR_MQTT_USERNAME",
    "mqtt-password": "SIMULATOR_MQTT_PASSWORD",
    "ingest-token": "SIMULATOR_INGEST_TOKEN",
}
# The broker's CA in a fleet's credentials Secret, mounted as a file into its pods.
MQTT_CA_KEY = "mqtt-ca.crt"
MQTT_CA_PATH = "/etc/devicefleet/mqtt-ca/ca.crt"
STATUS_PORT_NAME = "status"


class Phase(enum.StrEnum):
    RUNNING = "Running"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    PAUSED = "Paused"
    FAILED = "Failed"


class ConditionType(enum.StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    PUBLISHER_HEALTHY = "PublisherHealthy"


class Reason(enum.StrEnum):
    ALL_PODS_READY = "AllPodsReady"
    PODS_NOT_READY = "PodsNotReady"
    SCALING = "Scaling"
    ROLLED_OUT = "RolledOut"
    PAUSED = "Paused"
    BREAKERS_CLOSED = "BreakersClosed"
    BREAKERS_OPEN = "BreakersOpen"
    STATUS_UNREADABLE = "StatusUnreadable"
    NO_PUBLISHERS = "NoPublishers"
    INVALID_SPEC = "InvalidSpec"
