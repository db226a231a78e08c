"""Operator scale smoke: N fleets of P pods on kwok nodes → time until every fleet's status
shows all its pods ready, and the operator's peak RSS. Not a test; issue 9's benchmark suite
grows out of it.

    uv run python bench/operator_smoke.py --fleets 100 --pods 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("DEVSTACK_STATE", Path.home() / ".local/state/devicefleet"))
GROUP, VERSION, PLURAL = "iot.devicefleet.io", "v1alpha1", "devicefleets"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fleets", type=int, default=100)
    parser.add_argument("--pods", type=int, default=10, help="pods per fleet")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    kubeconfig = str(STATE / "kubeconfig")
    config.load_kube_config(kubeconfig)
    api, core = client.CustomObjectsApi(), client.CoreV1Api()
    namespace = f"devicefleet-test-smoke-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        {"metadata": {"name": namespace, "labels": {"iot.devicefleet.io/kwok-runner": "disabled"}}}
    )
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "OPERATOR_STANDALONE": "true",
        "OPERATOR_NAMESPACES": json.dumps([namespace]),
        "OPERATOR_LOG_LEVEL": "WARNING",
        "OPERATOR_NODE_SELECTOR": json.dumps({"type": "kwok"}),
        "OPERATOR_TOLERATIONS": json.dumps([{"key": "kwok.x-k8s.io/node", "operator": "Exists"}]),
        "OPERATOR_METRICS_PORT": "18185",
        "OPERATOR_LIVENESS_PORT": "18186",
    }
    operator = subprocess.Popen(
        [str(REPO / ".venv/bin/devicefleet-operator")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0.0
    try:
        time.sleep(3)
        started = time.monotonic()
        for i in range(args.fleets):
            api.create_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "DeviceFleet",
                    "metadata": {"name": f"fleet-{i:04d}"},
                    "spec": {"profile": "generic", "devices": args.pods * 10, "devicesPerPod": 10},
                },
            )
        created = time.monotonic() - started
        want = f"{args.pods}/{args.pods}"
        while time.monotonic() - started < args.timeout:
            peak = max(peak, rss_mib(operator.pid))
            items = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
            ready = sum(1 for f in items if (f.get("status") or {}).get("podsReady") == want)
            if ready == args.fleets:
                break
            time.sleep(1)
        elapsed = time.monotonic() - started
        print(
            json.dumps(
                {
                    "fleets": args.fleets,
                    "pods": args.fleets * args.pods,
                    "created_in_s": round(created, 1),
                    "converged_in_s": round(elapsed, 1),
                    "converged": ready == args.fleets,
                    "fleets_converged": ready,
                    "operator_peak_rss_mib": round(peak, 1),
                }
            )
        )
    finally:
        # Fleets carry the operator's finalizer: delete them while it still runs.
        for i in range(args.fleets):
            api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, f"fleet-{i:04d}")
        deadline = time.monotonic() + 120
        while (
            api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
            and time.monotonic() < deadline
        ):
            time.sleep(1)
        operator.terminate()
        operator.wait(30)
        core.delete_namespace(namespace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
