from __future__ import annotations

import pytest

from devicefleet_operator.builders import (
    build_service,
    build_statefulset,
    fleet_id,
    selector_string,
    spec_hash,
)
from devicefleet_operator.constants import SPEC_HASH_ANNOTATION
from devicefleet_operator.settings import Settings
from devicefleet_operator.spec import InvalidSpec, parse_duration, parse_spec

CONFIG = Settings(
    simulator_image="sim:1",
    mqtt_host="broker",
    mqtt_port=1883,
    ingest_url="http://ingest:8080",
    node_selector={"type": "kwok"},
    tolerations=[{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
)


def env_of(sts: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {
        e["name"]: e.get("value", "<ref>")
        for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]
    }


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("1s", 1.0), ("1.5s", 1.5), ("2m", 120.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "x") == seconds


def test_invalid_values_name_the_field() -> None:
    with pytest.raises(InvalidSpec, match=r"spec.publishInterval"):
        parse_spec({"profile": "f2", "publishInterval": "soon"})
    with pytest.raises(InvalidSpec, match=r"spec.devicesPerPod must be >= 1, got 0"):
        parse_spec({"profile": "f2", "devicesPerPod": 0})
    with pytest.raises(InvalidSpec, match=r"spec.profile"):
        parse_spec({"profile": "toaster"})


def test_pods_follow_devices_and_pause() -> None:
    assert parse_spec({"profile": "f2", "devices": 250, "devicesPerPod": 100}).pods == 3
    assert parse_spec({"profile": "f2", "devices": 0}).pods == 0
    paused = parse_spec({"profile": "f2", "devices": 250, "paused": True})
    assert paused.pods == 0
    assert paused.devices == 250  # configuration kept
    spec = parse_spec({"profile": "f2", "devices": 250, "devicesPerPod": 100})
    assert [spec.devices_of_pod(i) for i in range(3)] == [100, 100, 50]


def test_statefulset_carries_the_whole_spec_to_the_simulator() -> None:
    spec = parse_spec(
        {
            "profile": "truck",
            "devices": 250,
            "devicesPerPod": 100,
            "publishInterval": "500ms",
            "transport": "http",
            "faults": {"duplicateRate": 0.1, "maxJitter": "1s"},
            "resilience": {
                "retry": {"maxAttempts": 3, "base": "200ms", "max": "5s"},
                "circuitBreaker": {"failMax": 4, "resetTimeout": "10s"},
                "bufferSize": 500,
            },
        }
    )
    sts = build_statefulset("ns", "trucks", spec, CONFIG)
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    env = env_of(sts)
    assert env["SIMULATOR_FLEET"] == "ns.trucks"
    assert env["SIMULATOR_DEVICE_COUNT"] == "100"
    assert env["SIMULATOR_FLEET_DEVICES"] == "250"
    assert env["SIMULATOR_POD_INDEX"] == "<ref>"
    assert env["SIMULATOR_PUBLISH_INTERVAL"] == "0.5"
    assert env["SIMULATOR_INGEST_URL"] == "http://ingest:8080"
    assert env["SIMULATOR_DUPLICATE_RATE"] == "0.1"
    assert env["SIMULATOR_DROP_RATE"] == "0.0"
    assert env["SIMULATOR_RETRY_BASE"] == "0.2"
    assert env["SIMULATOR_BREAKER_FAIL_MAX"] == "4"
    assert env["SIMULATOR_BREAKER_RESET_TIMEOUT"] == "10.0"
    assert env["SIMULATOR_BUFFER_SIZE"] == "500"
    pod = sts["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {"type": "kwok"}
    assert pod["containers"][0]["image"] == "sim:1"
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert sts["spec"]["selector"]["matchLabels"].items() <= (
        sts["spec"]["template"]["metadata"]["labels"].items()
    )


def test_spec_hash_changes_with_the_spec_only() -> None:
    spec = parse_spec({"profile": "f2", "devices": 10})
    a = build_statefulset("ns", "f", spec, CONFIG)
    b = build_statefulset("ns", "f", spec, CONFIG)
    c = build_statefulset("ns", "f", parse_spec({"profile": "f2", "devices": 300}), CONFIG)
    assert a["metadata"]["annotations"][SPEC_HASH_ANNOTATION] == spec_hash(b)
    assert spec_hash(a) != spec_hash(c)


def test_service_and_selector() -> None:
    svc = build_service("ns", "f")
    assert svc["spec"]["clusterIP"] == "None"
    assert selector_string("f") == (
        "app.kubernetes.io/name=devicefleet-simulator,iot.devicefleet.io/fleet=f"
    )


def test_fleet_id_is_bounded_and_unique() -> None:
    long_a, long_b = fleet_id("n" * 40, "a" * 60), fleet_id("n" * 40, "b" * 60)
    assert len(long_a) <= 63
    assert long_a != long_b


@pytest.mark.parametrize(
    ("spec", "edge", "truth"),
    [
        ({"profile": "truck"}, True, False),  # trucks have edge gateways unless told otherwise
        ({"profile": "truck", "edge": {"enabled": False}}, False, False),
        ({"profile": "truck", "edge": {}, "groundTruth": True}, True, True),
        ({"profile": "f2"}, False, False),
        ({"profile": "generic", "edge": {"enabled": False}}, False, False),
    ],
)
def test_edge_defaults_by_profile_and_reaches_the_pods(
    spec: dict[str, object], edge: bool, truth: bool
) -> None:
    fleet = parse_spec(spec)
    assert (fleet.edge, fleet.ground_truth) == (edge, truth)
    env = env_of(build_statefulset("ns", "f", fleet, CONFIG))
    assert env["SIMULATOR_EDGE"] == str(edge).lower()
    assert env["SIMULATOR_GROUND_TRUTH"] == str(truth).lower()


@pytest.mark.parametrize(
    "spec",
    [
        {"profile": "generic", "edge": {"enabled": True}},
        {"profile": "f2", "groundTruth": True},
    ],
)
def test_edge_and_ground_truth_are_for_trucks_only(spec: dict[str, object]) -> None:
    with pytest.raises(InvalidSpec, match="needs profile truck"):
        parse_spec(spec)
