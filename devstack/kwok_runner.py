"""Stand-in kubelet for simulator pods on kwok nodes (local stack only).

kwok fakes pods: they are Running with an IP in 127.128.0.0/16, but no container runs. This
runner starts a real ``devicefleet-simulator`` process for every such pod, with the pod's own
environment (downward-API references resolved from the pod), serving /status on the pod's IP,
so the operator, Prometheus and the pipeline see real publishers, and stops the process when
the pod goes away. The devices are registered by the operator (OPERATOR_DATABASE_URL), as in a
cluster.

    uv run python devstack/kwok_runner.py        (started by `make up`)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from kubernetes import client, config

SELECTOR = "app.kubernetes.io/name=devicefleet-simulator"
# Namespaces labelled with this run their simulators themselves (the integration tests do).
OPT_OUT_LABEL = "iot.devicefleet.io/kwok-runner=disabled"
STATE = Path(os.environ.get("DEVSTACK_STATE", Path.home() / ".local/state/devicefleet"))
LOGS = STATE / "logs" / "kwok-pods"
VENV_BIN = Path(sys.executable).parent
_LABEL_REF = re.compile(r"^metadata\.labels\['(?P<key>[^']+)'\]$")


def resolve(pod: Any, field_path: str) -> str:
    if match := _LABEL_REF.match(field_path):
        return str((pod.metadata.labels or {}).get(match["key"], ""))
    return {
        "metadata.name": pod.metadata.name,
        "metadata.namespace": pod.metadata.namespace,
        "status.podIP": pod.status.pod_ip or "",
    }.get(field_path, "")


def pod_environment(pod: Any) -> dict[str, str]:
    """The container's environment as a kubelet would build it."""
    env: dict[str, str] = {}
    for var in pod.spec.containers[0].env or []:
        if var.value is not None:
            env[var.name] = var.value
        elif var.value_from and var.value_from.field_ref:
            env[var.name] = resolve(pod, var.value_from.field_ref.field_path)
    # The pod IP is the one address this "container" owns on the host.
    env["SIMULATOR_STATUS_HOST"] = pod.status.pod_ip
    return env


class Runner:
    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.running = True

    def kwok_pods(self, core: client.CoreV1Api) -> dict[str, Any]:
        kwok_nodes = {n.metadata.name for n in core.list_node(label_selector="type=kwok").items}
        opted_out = {
            ns.metadata.name for ns in core.list_namespace(label_selector=OPT_OUT_LABEL).items
        }
        return {
            pod.metadata.uid: pod
            for pod in core.list_pod_for_all_namespaces(label_selector=SELECTOR).items
            if pod.spec.node_name in kwok_nodes
            and pod.metadata.namespace not in opted_out
            and pod.status.phase == "Running"
            and pod.status.pod_ip
            and pod.metadata.deletion_timestamp is None
        }

    def sync(self, core: client.CoreV1Api) -> None:
        pods = self.kwok_pods(core)
        for uid in set(self.processes) - set(pods):
            self.stop(uid)
        for uid, pod in pods.items():
            if uid in self.processes and self.processes[uid].poll() is None:
                continue
            env = pod_environment(pod)
            LOGS.mkdir(parents=True, exist_ok=True)
            log = (LOGS / f"{pod.metadata.namespace}_{pod.metadata.name}.log").open("ab")
            self.processes[uid] = subprocess.Popen(  # noqa: S603 - fixed program, no shell
                [str(VENV_BIN / "devicefleet-simulator")],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            print(
                f"kwok-runner: started simulator for {pod.metadata.namespace}/"
                f"{pod.metadata.name} on {pod.status.pod_ip}",
                flush=True,
            )

    def stop(self, uid: str) -> None:
        process = self.processes.pop(uid)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()

    def run(self) -> None:
        config.load_kube_config(os.environ.get("KUBECONFIG", str(STATE / "kubeconfig")))
        core = client.CoreV1Api()
        while self.running:
            try:
                self.sync(core)
            except Exception as exc:
                print(f"kwok-runner: sync failed: {exc!r}", flush=True)
            time.sleep(2)
        for uid in list(self.processes):
            self.stop(uid)


def main() -> int:
    runner = Runner()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        runner.running = False

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
