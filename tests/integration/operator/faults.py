"""Faults between the operator and the real kube-apiserver, for test_faults.py: an identity
of the operator's own (so API Priority and Fairness can single it out), a loopback TCP proxy
that cuts connections, restarts of the stack's kube-apiserver, a noisy neighbour."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from tests.integration.operator.conftest import KUBECONFIG, kubectl
from tests.support import REPO, wait_for

APISERVER_PORT = int(
    re.search(
        r"^KUBE_APISERVER_PORT=(\d+)$",
        (REPO / "devstack/k8s/ports.env").read_text(),
        re.MULTILINE,
    ).group(1)  # type: ignore[union-attr]
)


def admin_ca() -> bytes:
    """The cluster CA from the admin kubeconfig (kubectl prints it, so no YAML parsing)."""
    data = kubectl(
        "config", "view", "--raw", "--minify", "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ).stdout  # fmt: skip
    return base64.b64decode(data)


def write_kubeconfig(path: Path, port: int, token: str) -> Path:
    """A kubeconfig (JSON is YAML) for a bearer token at https://127.0.0.1:<port>; the
    apiserver's certificate names 127.0.0.1, so a proxy on another port verifies the same."""
    ca = base64.b64encode(admin_ca()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "faults",
                "cluster": {
                    "server": f"https://127.0.0.1:{port}",
                    "certificate-authority-data": ca,
                },
            }
        ],
        "users": [{"name": "faults", "user": {"token": token}}],
        "contexts": [{"name": "faults", "context": {"cluster": "faults", "user": "faults"}}],
        "current-context": "faults",
    }
    path.write_text(json.dumps(config))
    return path


def service_account_token(namespace: str, name: str) -> str:
    return kubectl("create", "token", name, "-n", namespace, "--duration=2h").stdout.strip()


# --- kube-apiserver restarts --------------------------------------------------------------


def _devstack(script: str, *components: str) -> str:
    """Runs a devstack script; its log lines (stderr)."""
    result = subprocess.run(
        ["bash", str(REPO / "devstack" / script), *components],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        env={**os.environ, "KUBECONFIG": KUBECONFIG},
    )
    if result.returncode != 0:
        raise AssertionError(f"devstack/{script} {components} failed:\n{result.stderr[-3000:]}")
    return result.stderr


# The stack's control-plane components that only talk to the API server.
API_CLIENTS = ("kube-controller-manager", "kube-scheduler", "kwok")


def apiserver_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", APISERVER_PORT), timeout=1):
            return True
    except OSError:
        return False


def _kill_apiserver() -> None:
    """SIGKILL through devstack's own pid file (only the process devstack started). A crash,
    not down.sh's SIGTERM: the apiserver drains its watch connections for devstack's whole
    30 s grace period, an outage far longer than the test needs to impose on the stack."""
    result = subprocess.run(
        ["bash", "-c", 'source "$1/lib.sh" && stop_process kube-apiserver 10 KILL', "_",
         str(REPO / "devstack")],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"could not kill kube-apiserver:\n{result.stderr[-3000:]}")


@contextmanager
def apiserver_down() -> Iterator[None]:
    """The stack's kube-apiserver killed for the body of the ``with``; started again (and
    waited for, /readyz) by devstack whatever happens, since every other test shares it."""
    try:
        _kill_apiserver()
        # Its port closes when the last of its threads has exited, which under load can be a
        # moment after the process is reported gone.
        wait_for(lambda: not apiserver_up(), 10, message="kube-apiserver's port to close")
        yield
    finally:
        # Then the API server's clients, as a node's supervisor would (kubelet static pods,
        # systemd): each is started again only if it is not running. One that had to be is
        # reported, since it says something about the stack, not about the operator.
        log = _devstack("up.sh", "kube-apiserver", *API_CLIENTS)
        restarted = [c for c in API_CLIENTS if f"started {c} " in log]
        if restarted:
            warnings.warn(
                f"{restarted} exited while kube-apiserver was down; started again", stacklevel=1
            )


# --- API Priority and Fairness ------------------------------------------------------------


def throttled_identity_manifests(
    name: str, namespace: str, service_accounts: dict[str, str]
) -> str:
    """A priority level with no concurrency shares (one request at a time, the rest answered
    429 at once) and one FlowSchema per service account sending it there; ``service_accounts``
    maps a FlowSchema name to a service account of ``namespace``."""
    level = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": name},
        "spec": {
            "type": "Limited",
            "limited": {
                "nominalConcurrencyShares": 0,
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,
                "limitResponse": {"type": "Reject"},
            },
        },
    }
    schemas = [
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": schema},
            "spec": {
                "priorityLevelConfiguration": {"name": name},
                # Before every built-in schema but exempt/probes (1, 2): the service-accounts
                # schema (9000) would match first otherwise.
                "matchingPrecedence": 200,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [
                            {
                                "kind": "ServiceAccount",
                                "serviceAccount": {"name": account, "namespace": namespace},
                            }
                        ],
                        "resourceRules": [
                            {
                                "verbs": ["*"],
                                "apiGroups": ["*"],
                                "resources": ["*"],
                                "namespaces": ["*"],
                                "clusterScope": True,
                            }
                        ],
                        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    }
                ],
            },
        }
        for schema, account in service_accounts.items()
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [level, *schemas]})


def rejected_requests(flow_schema: str) -> int:
    """apiserver_flowcontrol_rejected_requests_total of one FlowSchema, from /metrics."""
    metrics = kubectl("get", "--raw", "/metrics").stdout
    pattern = re.compile(
        r'^apiserver_flowcontrol_rejected_requests_total\{[^}]*flow_schema="'
        + re.escape(flow_schema)
        + r'"[^}]*\} (\S+)$',
        re.MULTILINE,
    )
    return int(sum(float(v) for v in pattern.findall(metrics)))


class NoisyNeighbour:
    """Threads that keep a priority level busy with requests of another identity, so the
    operator's requests find no free seat (429) a good part of the time: each one lists the
    ~1 MB of ConfigMaps in ``namespace`` (a seat is held until the response is written; an
    empty answer such as a 403 frees it too soon to matter)."""

    def __init__(self, token: str, ca: Path, namespace: str, threads: int = 4) -> None:
        self.token = token
        self.ca = ca
        self.path = f"/api/v1/namespaces/{namespace}/configmaps"
        self.threads = threads
        self.stopping = threading.Event()
        self.workers: list[threading.Thread] = []
        self.sent = 0

    def _run(self) -> None:
        with httpx.Client(
            base_url=f"https://127.0.0.1:{APISERVER_PORT}",
            verify=ssl.create_default_context(cafile=str(self.ca)),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=5,
        ) as http:
            while not self.stopping.is_set():
                try:
                    http.get(self.path)
                except httpx.HTTPError:
                    time.sleep(0.1)
                self.sent += 1

    def __enter__(self) -> NoisyNeighbour:
        for _ in range(self.threads):
            worker = threading.Thread(target=self._run, daemon=True)
            worker.start()
            self.workers.append(worker)
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for worker in self.workers:
            worker.join(10)


# --- loopback TCP proxy -------------------------------------------------------------------


class CuttingProxy:
    """Plain TCP between 127.0.0.1:<port> and the apiserver (TLS passes through untouched);
    ``cut()`` closes every open connection mid-stream, ``refuse`` turns new ones away."""

    def __init__(self, target_port: int = APISERVER_PORT) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.refuse = False
        self.accepted = 0
        self.cut_connections = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            if self.refuse:
                downstream.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._open |= {downstream, upstream}
            for src, dst in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def open_connections(self) -> int:
        with self._lock:
            return len(self._open) // 2

    def cut(self) -> int:
        """Close every connection in both directions; returns how many were cut."""
        with self._lock:
            victims = list(self._open)
        for sock in victims:
            self._close(sock)
        self.cut_connections += len(victims) // 2
        return len(victims) // 2

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.cut()


def wait_connections(proxy: CuttingProxy, at_least: int, timeout: float = 30) -> int:
    return wait_for(
        lambda: (n := proxy.open_connections()) >= at_least and n,
        timeout,
        message=f"{at_least} connections through the proxy",
    )
