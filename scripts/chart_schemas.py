"""Write charts/*/values.schema.json from one set of shared definitions.

Every chart validates its values (draft-07, `additionalProperties: false` on leaf objects, so a
typo fails `helm install` instead of being ignored). The blocks the charts share (global, image,
resources, scheduling, hardening) are defined once here; tests/unit/charts checks that the
committed schemas are current.

    uv run python scripts/chart_schemas.py          # rewrite the schemas
    uv run python scripts/chart_schemas.py --check  # exit 1 if one is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

CHARTS = Path(__file__).resolve().parent.parent / "charts"

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}
PORT: Schema = {"type": "integer", "minimum": 1, "maximum": 65535}
LABELS: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
DURATION: Schema = {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"}
DNS_NAME: Schema = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
# A namespace name, a glob of them (team-*), or either negated (!kube-*): what kopf's
# --namespace accepts, and the operator passes through.
NAMESPACE_PATTERN: Schema = {
    "type": "string",
    "pattern": "^!?[a-z0-9*?]([-a-z0-9*?]*[a-z0-9*?])?$",
    "maxLength": 64,
}


def obj(properties: dict[str, Schema], required: list[str] | None = None, **extra: Any) -> Schema:
    """A closed object: unknown keys are errors."""
    schema: Schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = required
    return schema | extra


IMAGE = obj(
    {
        "registry": STRING,
        "repository": {"type": "string", "minLength": 1},
        "tag": {
            "type": "string",
            "description": "Empty: the chart's appVersion; sha256:... pins a digest",
        },
        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    },
    required=["repository"],
)
QUANTITIES: Schema = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number"]},
}
RESOURCES = obj({"requests": QUANTITIES, "limits": QUANTITIES})
TOLERATIONS: Schema = {"type": "array", "items": {"type": "object"}}
ENV_VARS: Schema = {
    "type": "array",
    "items": {"type": "object", "required": ["name"], "properties": {"name": STRING}},
}
PERSISTENCE = obj({"enabled": BOOL, "size": STRING, "storageClass": STRING}, required=["enabled"])

GLOBAL = obj(
    {
        "imageRegistry": STRING,
        "imagePullSecrets": {"type": "array", "items": {"type": "object"}},
        "environment": STRING,
        "otlpEndpoint": STRING,
        "nodeSelector": LABELS,
        "tolerations": TOLERATIONS,
        "kafka": obj({"bootstrapServers": STRING}),
        "mqtt": obj(
            {
                "host": STRING,
                "port": PORT,
                "auth": obj(
                    {
                        "enabled": BOOL,
                        "existingSecret": STRING,
                        "adminUsername": {"type": "string", "minLength": 1},
                        "bridgeUsername": {"type": "string", "minLength": 1},
                    }
                ),
                "tls": obj(
                    {
                        "caSecret": STRING,
                        "caKey": {"type": "string", "minLength": 1},
                        "selfSignedCA": BOOL,
                    }
                ),
            }
        ),
        "database": obj(
            {"existingSecret": STRING, "secretKey": {"type": "string", "minLength": 1}}
        ),
        "signingKeys": obj({"existingSecret": STRING}),
        "ingestUrl": STRING,
        "topics": obj(
            {"raw": STRING, "decoded": STRING, "deadLetter": STRING},
            required=["raw", "decoded", "deadLetter"],
        ),
        "serviceMonitor": obj(
            {"enabled": BOOL, "interval": DURATION, "scrapeTimeout": DURATION, "labels": LABELS}
        ),
    }
)

PEERS: Schema = {
    "type": "array",
    "items": {"type": "object"},
    "description": "NetworkPolicyPeer objects; empty = any source",
}
NETWORK_POLICY = obj(
    {
        "enabled": BOOL,
        "metricsFrom": PEERS,
        "egress": obj(
            {
                "enabled": BOOL,
                "ports": {"type": "array", "items": PORT},
                "extra": {
                    "type": "array",
                    "items": {"type": "object"},
                    "description": "NetworkPolicyEgressRule objects",
                },
            }
        ),
    },
    required=["enabled"],
)

# Keys every chart has.
BASE: dict[str, Schema] = {
    "global": GLOBAL,
    "enabled": {"type": "boolean", "description": "Read by the umbrella chart's condition"},
    "nameOverride": STRING,
    "fullnameOverride": STRING,
    "commonLabels": LABELS,
    "component": STRING,
    # Helm adds a (global-only) values block for every dependency, the library chart too.
    "devicefleet-lib": {"type": "object"},
}

# Keys of a chart that runs one of the services as a Deployment.
WORKLOAD: dict[str, Schema] = BASE | {
    "replicaCount": {"type": "integer", "minimum": 0},
    "image": IMAGE,
    "logLevel": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]},
    "extraEnv": ENV_VARS,
    "serviceAccount": obj({"create": BOOL, "name": STRING}),
    "podAnnotations": LABELS,
    "podSecurityContext": {"type": "object"},
    "securityContext": {"type": "object"},
    "nodeSelector": LABELS,
    "tolerations": TOLERATIONS,
    "affinity": {"type": "object"},
    "resources": RESOURCES,
    "networkPolicy": NETWORK_POLICY,
}
SINGLE_REPLICA = {
    "type": "integer",
    "minimum": 0,
    "maximum": 1,
    "description": "One at a time (see values.yaml)",
}


def chart_schema(title: str, properties: dict[str, Schema]) -> Schema:
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": title,
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }


def schemas() -> dict[str, Schema]:
    consumer = WORKLOAD | {"groupId": STRING, "metricsPort": PORT}
    subchart = {"type": "object", "description": "Values of the component chart"}
    return {
        "devicefleet-ingest": chart_schema(
            "devicefleet-ingest values",
            WORKLOAD
            | {
                "service": obj(
                    {
                        "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                        "port": PORT,
                        "nodePort": {
                            "type": ["integer", "null"],
                            "minimum": 30000,
                            "maximum": 32767,
                        },
                    }
                ),
                "podDisruptionBudget": obj(
                    {"enabled": BOOL, "maxUnavailable": {"type": ["integer", "string"]}}
                ),
                "networkPolicy": NETWORK_POLICY
                | {"properties": NETWORK_POLICY["properties"] | {"ingressFrom": PEERS}},
                "auth": obj({"enabled": BOOL}),
            },
        ),
        "devicefleet-bridge": chart_schema(
            "devicefleet-bridge values",
            WORKLOAD | {"replicaCount": SINGLE_REPLICA, "metricsPort": PORT},
        ),
        "devicefleet-processor": chart_schema("devicefleet-processor values", consumer),
        "devicefleet-sink": chart_schema("devicefleet-sink values", consumer),
        "devicefleet-operator": chart_schema(
            "devicefleet-operator values",
            WORKLOAD
            | {
                "replicaCount": SINGLE_REPLICA,
                "watchNamespaces": {"type": "array", "items": NAMESPACE_PATTERN},
                "metricsPort": PORT,
                "livenessPort": PORT,
                "simulator": obj(
                    {"image": IMAGE, "nodeSelector": LABELS, "tolerations": TOLERATIONS}
                ),
                "statusInterval": {"type": "number", "exclusiveMinimum": 0},
                "registerDevices": BOOL,
                "rbac": obj({"create": BOOL}),
                "credentials": obj({"enabled": BOOL}),
                "brokerResyncInterval": {"type": "number", "exclusiveMinimum": 0},
            },
        ),
        "devicefleet-simulator": chart_schema(
            "devicefleet-simulator values",
            BASE
            | {
                "podMonitor": obj(
                    {"allNamespaces": BOOL, "namespaces": {"type": "array", "items": DNS_NAME}}
                ),
                "fleets": {
                    "type": "array",
                    "items": obj(
                        {"name": DNS_NAME, "namespace": DNS_NAME, "spec": {"type": "object"}},
                        required=["name", "spec"],
                    ),
                },
            },
        ),
        "devicefleet-monitoring": chart_schema(
            "devicefleet-monitoring values",
            BASE
            | {
                "prometheusRules": obj({"enabled": BOOL, "labels": LABELS}),
                "dashboards": obj(
                    {
                        "enabled": BOOL,
                        "label": {"type": "string", "minLength": 1},
                        "labelValue": STRING,
                        "folderAnnotation": {"type": "string", "minLength": 1},
                        "folder": STRING,
                    }
                ),
            },
        ),
        "devicefleet": chart_schema(
            "devicefleet (umbrella) values",
            BASE
            | {
                "logLevel": WORKLOAD["logLevel"],
                **dict.fromkeys(
                    [
                        "operator",
                        "ingest",
                        "bridge",
                        "processor",
                        "sink",
                        "simulator",
                        "monitoring",
                    ],
                    subchart,
                ),
                "bootstrap": obj(
                    {
                        "enabled": BOOL,
                        "image": IMAGE,
                        "topicPartitions": {"type": "integer", "minimum": 1},
                        "topicReplicationFactor": {"type": "integer", "minimum": 1},
                        "waitTimeout": {"type": "number", "minimum": 0},
                        "backoffLimit": {"type": "integer", "minimum": 0},
                        "resources": RESOURCES,
                    }
                ),
                "database": obj({"url": STRING}),
                "kafka": obj(
                    {
                        "enabled": BOOL,
                        "image": IMAGE,
                        "persistence": PERSISTENCE,
                        "resources": RESOURCES,
                    }
                ),
                "mosquitto": obj(
                    {
                        "enabled": BOOL,
                        "image": IMAGE,
                        "service": obj(
                            {
                                "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                                "nodePort": {
                                    "type": ["integer", "null"],
                                    "minimum": 30000,
                                    "maximum": 32767,
                                },
                            }
                        ),
                        "resources": RESOURCES,
                        "dynsecPlugin": {"type": "string", "minLength": 1},
                    }
                ),
                "postgresql": obj(
                    {
                        "enabled": BOOL,
                        "image": IMAGE,
                        "auth": obj(
                            {"username": DNS_NAME, "database": DNS_NAME, "password": STRING}
                        ),
                        "persistence": PERSISTENCE,
                        "resources": RESOURCES,
                    }
                ),
                "nodeSelector": LABELS,
                "tolerations": TOLERATIONS,
                "affinity": {"type": "object"},
                "podSecurityContext": {"type": "object"},
                "securityContext": {"type": "object"},
            },
        ),
    }


def render(schema: Schema) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a schema is out of date")
    args = parser.parse_args(argv)
    stale = []
    for chart, schema in schemas().items():
        path = CHARTS / chart / "values.schema.json"
        text = render(schema)
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("out of date (run scripts/chart_schemas.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
