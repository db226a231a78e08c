"""P7: 1,000 DeviceFleets → all their pods ready in status, 10,000 pods on kwok nodes, against
the real control plane of the local stack; beside a raw create + PATCH loop and kwok alone.

Three measurements of the same size, each in a fresh namespace (opted out of devstack's kwok
runner, and named devicefleet-test-bench-* so the stack's own operator leaves it alone), each
torn down before the next starts so none pays for another's garbage:

- **kwok alone** (the ceiling): Deployments of as many pods as the fleets have, on the kwok
  nodes; the time until every pod is Running (a watch of Running pods). Controllers, scheduler
  and kwok only: nothing of ours.
- **raw loop** (the baseline): by hand, what the operator does per fleet, minimally. Creates
  the same DeviceFleets, and for each, from a pool of kopf's default size, the very Service and
  StatefulSet the operator builds (its own builder functions, owner reference included); one
  pod watch (the operator's pod index) PATCHes a fleet's status subresource, with the
  operator's own ``compute_status``, as soon as all its pods are Ready. Its pool and watch are
  pinned to the subject's CPU. No finalizers, no kopf bookkeeping, no status timer: the floor.
- **operator** (the subject): a ``devicefleet-operator`` process of the benchmark's own,
  watching only its namespace, pinned to the subject's CPU, with the chart's status interval.

The clock starts before the first DeviceFleet is created (one client, one after another, the
same for the raw loop and the operator) and stops when a watch of the fleets shows the last
one converged: ``status.readyReplicas`` = pods and ``podsReady`` = "P/P", which the operator
computes from its pods' Ready condition. kwok pods run no containers, so every /status read
fails and the operator rightly reports those breakers as unknown: phase Degraded and Ready
condition False (BreakersOpen) by design, so neither can be the criterion. The operator's peak
RSS is sampled from /proc while it converges and for two status intervals after.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from bench.support import (
    STATE,
    SUBJECT_CPUS,
    Measure,
    Result,
    pinned,
    run_id,
    stack_pid,
)
from devicefleet_operator.builders import build_service, build_statefulset, selector_string
from devicefleet_operator.constants import (
    FIELD_MANAGER,
    GROUP,
    LABEL_FLEET,
    LABEL_NAME,
    PLURAL,
    SIMULATOR_APP,
    VERSION,
)
from devicefleet_operator.settings import Settings as OperatorSettings
from devicefleet_operator.spec import parse_spec
from devicefleet_operator.status import PodObservation, compute_status
from tests.support import REPO, ServiceProcess, free_port

KEY = "P7"
KUBECONFIG = str(STATE / "kubeconfig")
KWOK_NODE_SELECTOR = {"type": "kwok"}
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
RUNNER_OPT_OUT = {"iot.devicefleet.io/kwok-runner": "disabled"}
IMAGE = "devicefleet/simulator:bench"  # kwok pulls nothing; any name does
GOAL_SECONDS = 60.0
GOAL_RSS_MB = 250.0  # MB = 10^6 bytes, as the issue (and kopf's docs) count
DEVICES_PER_POD = 10
# kwok alone: as many Deployments as devstack's kube-controller-manager syncs ReplicaSets at
# once (--concurrent-replicaset-syncs=20), so one ReplicaSet's worker is not the bottleneck.
KWOK_DEPLOYMENTS = 20
GOAL_FLEETS = 1000
# On two cores kwok alone needs ~150 s for 10,000 pods, 2.5× the goal, and each of the three
# clean-ups of 10,000 pods takes minutes; the default sweep stops at sizes that converge.
FULL_FLEETS = (100, 300)
SIMULATOR_PODS = f"{LABEL_NAME}={SIMULATOR_APP}"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- watching: counts of objects by state, from a raw watch ---------------------------------


class Tally(threading.Thread):
    """How many objects of one list call are in each state (``state_of``; None: not counted),
    kept from a raw watch: one ``json.loads`` per event, no model classes, so 10,000 pods cost
    the benchmark little CPU. Re-lists when the stream breaks. ``reached_at`` is when the
    counted objects first numbered ``target`` (monotonic clock, on the event's arrival)."""

    def __init__(
        self,
        name: str,
        list_call: Callable[..., Any],
        state_of: Callable[[Mapping[str, Any]], Hashable | None],
        target: int,
        on_counted: Callable[[Hashable, int], None] | None = None,
        cpus: set[int] | None = None,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.list_call = list_call
        self.state_of = state_of
        self.target = target
        self.on_counted = on_counted
        self.cpus = cpus
        self.states: dict[str, Hashable] = {}
        self.counts: Counter[Hashable] = Counter()
        self.objects = 0  # every object listed or watched, counted or not
        self.reached_at: float | None = None
        self.listed = threading.Event()
        self.stopping = threading.Event()
        self.changed = threading.Condition()
        self._response: Any = None

    @property
    def total(self) -> int:
        return len(self.states)

    def _set(self, name: str, obj: Mapping[str, Any] | None) -> tuple[Hashable, int] | None:
        """Record an object's state (None: gone); returns (state, its count) if it entered one."""
        state = self.state_of(obj) if obj is not None else None
        before = self.states.get(name)
        if before == state:
            return None
        if before is not None:
            self.counts[before] -= 1
            del self.states[name]
        if state is None:
            return None
        self.states[name] = state
        self.counts[state] += 1
        if self.reached_at is None and len(self.states) >= self.target:
            self.reached_at = time.monotonic()
        return state, self.counts[state]

    def _list(self) -> str:
        response = self.list_call(_preload_content=False, _request_timeout=120)
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        with self.changed:
            for name in list(self.states):
                self._set(name, None)
            names = set()
            for item in body["items"]:
                names.add(item["metadata"]["name"])
                self._set(item["metadata"]["name"], item)
            self.objects = len(names)
            self.changed.notify_all()
        self.listed.set()
        return str(body["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str | None:
        """Apply events until the stream ends; returns where to resume (None: re-list)."""
        self._response = response = self.list_call(
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=10,  # a stop is noticed within seconds
            _preload_content=False,
            _request_timeout=30,
        )
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if self.stopping.is_set():
                    break
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":  # e.g. 410 Gone: the version is too old
                    return None
                version = obj["metadata"]["resourceVersion"]
                if event["type"] == "BOOKMARK":
                    continue
                deleted = event["type"] == "DELETED"
                with self.changed:
                    entered = self._set(obj["metadata"]["name"], None if deleted else obj)
                    self.objects += 1 if event["type"] == "ADDED" else -1 if deleted else 0
                    self.changed.notify_all()
                if entered is not None and self.on_counted is not None:
                    self.on_counted(*entered)
        finally:
            response.release_conn()
        return version

    def run(self) -> None:
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)  # this thread only
        version: str | None = None
        while not self.stopping.is_set():
            try:
                version = self._list() if version is None else version
                version = self._watch(version)
            except Exception:  # a cut stream, a closed response: list again
                version = None
                self.stopping.wait(0.5)

    def wait(self, timeout: float) -> float | None:
        """Until ``target`` objects are counted or ``timeout`` passes; returns ``reached_at``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.reached_at is None and (left := deadline - time.monotonic()) > 0:
                self.changed.wait(min(left, 1.0))
        return self.reached_at

    def wait_empty(self, timeout: float) -> bool:
        """Until no object at all is listed (all deleted)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.objects > 0 and (left := deadline - time.monotonic()) > 0:
                self.changed.wait(min(left, 1.0))
        return self.objects == 0

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(Exception):
            if self._response is not None:
                self._response.close()
        self.join(15)


@contextlib.contextmanager
def tallying(tally: Tally) -> Iterator[Tally]:
    tally.start()
    try:
        if not tally.listed.wait(30):
            raise TimeoutError(f"{tally.name}: the first list did not arrive in 30 s")
        yield tally
    finally:
        tally.stop()


def _running(pod: Mapping[str, Any]) -> str | None:
    return "running" if (pod.get("status") or {}).get("phase") == "Running" else None


def _ready_fleet(pod: Mapping[str, Any]) -> str | None:
    """The fleet of a Ready pod, as the operator's pod index reads it (None: not ready)."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    fleet = (pod["metadata"].get("labels") or {}).get(LABEL_FLEET)
    return fleet if ready and fleet else None


def _converged(pods: int) -> Callable[[Mapping[str, Any]], bool | None]:
    want = f"{pods}/{pods}"

    def converged(fleet: Mapping[str, Any]) -> bool | None:
        status = fleet.get("status") or {}
        return (
            True
            if status.get("readyReplicas") == pods and status.get("podsReady") == want
            else None
        )

    return converged


# --- namespaces, fleets -------------------------------------------------------------------


def _fleets_tally(label: str, name: str, pods_per_fleet: int, fleets: int) -> Tally:
    """Counts the namespace's fleets whose status shows all their pods ready."""
    list_fleets = client.CustomObjectsApi(client.ApiClient()).list_namespaced_custom_object
    return Tally(
        label,
        functools.partial(list_fleets, GROUP, VERSION, name, PLURAL),
        _converged(pods_per_fleet),
        fleets,
    )


def _create_namespace(name: str) -> None:
    core = client.CoreV1Api()
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=RUNNER_OPT_OUT))
    )
    # Pods are refused until the namespace's default ServiceAccount exists.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_service_account("default", name)
            return
        except ApiException as exc:
            if exc.status != 404:
                raise
        time.sleep(0.2)
    raise TimeoutError(f"no default ServiceAccount in {name} after 30 s")


@dataclass(frozen=True)
class Cleanup:
    namespace: str
    seconds: float
    gone: bool


def _delete_namespace(name: str, timeout: float = 300) -> Cleanup:
    """The namespace first (a terminating namespace takes no new objects, so no controller
    recreates a pod), then its pods without a grace period (the namespace controller would
    otherwise requeue the namespace per pod grace period); waits until it is gone, so the next
    measurement does not share the API server with this clean-up (if it can help it: after
    ``timeout`` it goes on, and says so)."""
    started = time.monotonic()
    core = client.CoreV1Api()
    with contextlib.suppress(ApiException):
        core.delete_namespace(name)
    # DeleteCollection of 10,000 pods can outlast the API server's request timeout; whatever
    # is left, the namespace controller deletes.
    with contextlib.suppress(Exception):
        core.delete_collection_namespaced_pod(name, grace_period_seconds=0, _request_timeout=180)
    deadline = started + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return Cleanup(name, time.monotonic() - started, gone=True)
        time.sleep(1)
    print(f"bench: P7 namespace {name} still there after {timeout:.0f} s", flush=True)
    return Cleanup(name, time.monotonic() - started, gone=False)


@contextlib.contextmanager
def namespace(name: str, cleanups: list[Cleanup]) -> Iterator[str]:
    _create_namespace(name)
    try:
        yield name
    finally:
        cleanups.append(_delete_namespace(name))


def _fleet_body(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DeviceFleet",
        "metadata": {"name": name},
        "spec": dict(spec),
    }


def _fleet_spec(pods_per_fleet: int) -> dict[str, Any]:
    return {
        "profile": "generic",
        "devices": pods_per_fleet * DEVICES_PER_POD,
        "devicesPerPod": DEVICES_PER_POD,
    }


def _fleet_names(fleets: int) -> list[str]:
    return [f"fleet-{i:04d}" for i in range(fleets)]


def _create_fleets(
    namespace: str, names: list[str], spec: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    """One client, one after another, for the raw loop and the operator alike."""
    api = client.CustomObjectsApi()
    for name in names:
        yield cast(
            dict[str, Any],
            api.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, _fleet_body(name, spec)
            ),
        )


# --- one step of each measurement ---------------------------------------------------------


@dataclass
class Step:
    """One measurement at one size: the time to converge (or the timeout), and how far it got."""

    seconds: float
    reached: int
    target: int
    created_in: float = 0.0  # seconds to create the fleets or workloads, part of ``seconds``
    pods_running_in: float | None = None  # operator run: when all its pods were Running
    peak_rss_mb: float = 0.0
    idle_rss_mb: float = 0.0  # the operator's RSS started, before any fleet exists
    cpu_seconds: float = 0.0
    phases: dict[str, int] = field(default_factory=dict)
    log_warnings: int = 0

    @property
    def done(self) -> bool:
        return self.reached >= self.target

    def label(self) -> str:
        return "yes" if self.done else f"no: {self.reached:,}/{self.target:,}"


def _deployment(index: int, replicas: int) -> dict[str, Any]:
    labels = {"app": f"p7-kwok-{index:02d}"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"p7-kwok-{index:02d}", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "nodeSelector": KWOK_NODE_SELECTOR,
                    "tolerations": [KWOK_TOLERATION],
                    "containers": [{"name": "simulator", "image": IMAGE}],
                },
            },
        },
    }


def kwok_alone(name: str, pods: int, timeout: float, cleanups: list[Cleanup]) -> Step:
    """Deployments of ``pods`` pods on the kwok nodes → all Running."""
    per_deployment = [
        pods // KWOK_DEPLOYMENTS + (1 if i < pods % KWOK_DEPLOYMENTS else 0)
        for i in range(KWOK_DEPLOYMENTS)
    ]
    apps = client.AppsV1Api()
    with namespace(name, cleanups):
        running = Tally(
            "p7-kwok-running",
            functools.partial(
                client.CoreV1Api(client.ApiClient()).list_namespaced_pod,
                name,
                field_selector="status.phase=Running",
            ),
            _running,
            pods,
        )
        with tallying(running):
            started = time.monotonic()
            for index, replicas in enumerate(per_deployment):
                if replicas:
                    apps.create_namespaced_deployment(name, _deployment(index, replicas))  # type: ignore[arg-type]
            created = time.monotonic() - started
            reached_at = running.wait(timeout - (time.monotonic() - started))
            end = reached_at if reached_at is not None else time.monotonic()
            return Step(end - started, running.total, pods, created_in=created)


def raw_loop(
    name: str, fleets: int, pods_per_fleet: int, timeout: float, cleanups: list[Cleanup]
) -> Step:
    """By hand: each fleet's Service + StatefulSet, and a status PATCH once its pods are ready."""
    spec_body = _fleet_spec(pods_per_fleet)
    spec = parse_spec(spec_body)
    settings = OperatorSettings(
        simulator_image=IMAGE,
        node_selector=KWOK_NODE_SELECTOR,
        tolerations=[KWOK_TOLERATION],
        log_level="WARNING",
    )
    cpus = {int(c) for c in SUBJECT_CPUS.split(",")} if SUBJECT_CPUS else None
    apps, core = client.AppsV1Api(), client.CoreV1Api()
    custom = client.CustomObjectsApi()
    generations: dict[str, int] = {}
    patched: set[str] = set()
    errors: list[str] = []

    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    def create_children(fleet: dict[str, Any]) -> None:
        fleet_name = fleet["metadata"]["name"]
        service = build_service(name, fleet_name)
        statefulset = build_statefulset(name, fleet_name, spec, settings)
        kopf.adopt([service, statefulset], owner=kopf.Body(cast(Any, fleet)))
        try:
            core.create_namespaced_service(name, service, field_manager=FIELD_MANAGER)  # type: ignore[arg-type]
            apps.create_namespaced_stateful_set(name, statefulset, field_manager=FIELD_MANAGER)  # type: ignore[arg-type]
        except ApiException as exc:
            errors.append(f"children of {fleet_name}: {exc.status} {exc.reason}")

    def patch_status(fleet_name: str) -> None:
        observations = [
            PodObservation(f"{fleet_name}-sim-{i}", True, None) for i in range(pods_per_fleet)
        ]
        status = compute_status(
            spec,
            generations.get(fleet_name, 1),
            selector_string(fleet_name),
            observations,
            {},
            datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        )
        try:
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, name, PLURAL, fleet_name, {"status": status}
            )
        except ApiException as exc:
            errors.append(f"status of {fleet_name}: {exc.status} {exc.reason}")

    with (
        namespace(name, cleanups),
        # kopf's default executor: a ThreadPoolExecutor of default size, as here.
        ThreadPoolExecutor(thread_name_prefix="p7-raw", initializer=pin) as pool,
    ):

        def on_ready(fleet_name: Hashable, ready: int) -> None:
            if ready >= pods_per_fleet and fleet_name not in patched:
                patched.add(str(fleet_name))
                pool.submit(patch_status, str(fleet_name))

        pods = Tally(
            "p7-raw-pods",
            functools.partial(
                client.CoreV1Api(client.ApiClient()).list_namespaced_pod,
                name,
                label_selector=SIMULATOR_PODS,
            ),
            _ready_fleet,
            fleets * pods_per_fleet,
            on_counted=on_ready,
            cpus=cpus,
        )
        converged = _fleets_tally("p7-raw-fleets", name, pods_per_fleet, fleets)
        with tallying(pods), tallying(converged):
            started = time.monotonic()
            for fleet in _create_fleets(name, _fleet_names(fleets), spec_body):
                generations[fleet["metadata"]["name"]] = int(fleet["metadata"]["generation"])
                pool.submit(create_children, fleet)
            created = time.monotonic() - started
            reached_at = converged.wait(timeout - (time.monotonic() - started))
            end = reached_at if reached_at is not None else time.monotonic()
            step = Step(end - started, converged.total, fleets, created_in=created)
        pool.shutdown(wait=True, cancel_futures=True)
    if errors:
        step.phases = {"errors": len(errors)}
        step.log_warnings = len(errors)
    return step


def _rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    return 0.0


def _cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    return 0.0


class RssSampler(threading.Thread):
    """Peak VmRSS of a process, sampled every quarter second."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="p7-rss", daemon=True)
        self.pid = pid
        self.peak = 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.peak = max(self.peak, _rss_mb(self.pid))
            self.stopping.wait(0.25)

    def stop(self) -> float:
        self.stopping.set()
        self.join(5)
        return self.peak


def _operator_process(namespace: str, interval: float, log_dir: Path) -> ServiceProcess:
    """Standalone, only this namespace, pods onto kwok nodes, no
    device registry (the generic profile reads no health predictions either)."""
    liveness = free_port()
    env = {
        "KUBECONFIG": KUBECONFIG,
        "OPERATOR_STANDALONE": "true",
        "OPERATOR_NAMESPACES": json.dumps([namespace]),
        "OPERATOR_LOG_LEVEL": "WARNING",
        "OPERATOR_SIMULATOR_IMAGE": IMAGE,
        "OPERATOR_NODE_SELECTOR": json.dumps(KWOK_NODE_SELECTOR),
        "OPERATOR_TOLERATIONS": json.dumps([KWOK_TOLERATION]),
        "OPERATOR_STATUS_INTERVAL": f"{interval:g}",
        "OPERATOR_METRICS_PORT": str(free_port()),
        "OPERATOR_LIVENESS_PORT": str(liveness),
    }
    return ServiceProcess(
        f"p7-operator-{namespace}",
        pinned(["devicefleet-operator"], SUBJECT_CPUS),
        env,
        log_dir,
        health_url=f"http://127.0.0.1:{liveness}/healthz",
    )


def _delete_fleets(name: str, timeout: float = 180) -> None:
    """Delete every fleet while the operator still runs (they carry its finalizer); strip the
    finalizer from any it did not release in time, so the namespace can go."""
    custom = client.CustomObjectsApi()
    with contextlib.suppress(ApiException):
        custom.delete_collection_namespaced_custom_object(
            GROUP, VERSION, name, PLURAL, _request_timeout=120
        )
    fleets = Tally(
        "p7-fleets-gone",
        functools.partial(
            client.CustomObjectsApi(client.ApiClient()).list_namespaced_custom_object,
            GROUP,
            VERSION,
            name,
            PLURAL,
        ),
        lambda fleet: None,
        1,
    )
    with tallying(fleets):
        if fleets.wait_empty(timeout):
            return
    listed = cast(
        dict[str, Any], custom.list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)
    )
    for item in listed["items"]:
        with contextlib.suppress(ApiException):
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, name, PLURAL, item["metadata"]["name"],
                {"metadata": {"finalizers": None}},
            )  # fmt: skip


def operator_run(
    name: str,
    fleets: int,
    pods_per_fleet: int,
    timeout: float,
    interval: float,
    log_dir: Path,
    cleanups: list[Cleanup],
) -> Step:
    spec_body = _fleet_spec(pods_per_fleet)
    with namespace(name, cleanups):
        operator = _operator_process(name, interval, log_dir)
        rss: RssSampler | None = None
        try:
            operator.start(60)
            assert operator.proc is not None
            pid = operator.proc.pid  # taskset execs the operator: the same process
            rss = RssSampler(pid)
            rss.start()
            converged = _fleets_tally("p7-operator-fleets", name, pods_per_fleet, fleets)
            running = Tally(
                "p7-operator-pods",
                functools.partial(
                    client.CoreV1Api(client.ApiClient()).list_namespaced_pod,
                    name,
                    field_selector="status.phase=Running",
                ),
                _running,
                fleets * pods_per_fleet,
            )
            idle_rss = _rss_mb(pid)
            cpu_before = _cpu_seconds(pid)
            with tallying(converged), tallying(running):
                started = time.monotonic()
                for _ in _create_fleets(name, _fleet_names(fleets), spec_body):
                    pass
                created = time.monotonic() - started
                reached_at = converged.wait(timeout - (time.monotonic() - started))
                end = reached_at if reached_at is not None else time.monotonic()
                cpu = _cpu_seconds(pid) - cpu_before
                # Steady state too: the status timers keep polling every pod.
                time.sleep(2 * interval)
                step = Step(
                    end - started,
                    converged.total,
                    fleets,
                    created_in=created,
                    pods_running_in=(
                        running.reached_at - started if running.reached_at is not None else None
                    ),
                    peak_rss_mb=rss.stop(),
                    idle_rss_mb=idle_rss,
                    cpu_seconds=cpu,
                )
            listed = cast(
                dict[str, Any],
                client.CustomObjectsApi().list_namespaced_custom_object(
                    GROUP, VERSION, name, PLURAL
                ),
            )
            step.phases = dict(
                Counter(str((f.get("status") or {}).get("phase")) for f in listed["items"])
            )
        finally:
            if rss is not None:
                rss.stop()
            with contextlib.suppress(Exception):
                _delete_fleets(name)
            operator.stop(30)
        if operator.log_path.exists():
            step.log_warnings = sum(
                1 for line in operator.logs().splitlines() if re.search(r"warn|error", line, re.I)
            )
        return step


# --- what the stack allows ------------------------------------------------------------------


def _cmdline(component: str) -> list[str]:
    pid = stack_pid(component)
    if pid is None:
        return []
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    return []


def _flag(argv: list[str], flag: str) -> str | None:
    for arg in argv:
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    return None


def control_plane_limits() -> str:
    """The client QPS/burst and in-flight limits the running control plane was started with:
    kwok's published rate (10,000 pods Running ≤ 60 s) is measured with them all off
    (``kwokctl --disable-qps-limits``: controller-manager and scheduler at 5000/10000, the
    API server's in-flight limits 0 and priority & fairness off)."""
    kcm = _cmdline("kube-controller-manager")
    scheduler = _cmdline("kube-scheduler")
    apiserver = _cmdline("kube-apiserver")
    scheduler_qps = "?"
    config_file = _flag(scheduler, "--config")
    if config_file:
        with contextlib.suppress(OSError):
            text = Path(config_file).read_text()
            qps = re.search(r"^\s*qps:\s*(\S+)", text, re.MULTILINE)
            burst = re.search(r"^\s*burst:\s*(\S+)", text, re.MULTILINE)
            scheduler_qps = f"{qps[1] if qps else '?'}/{burst[1] if burst else '?'}"
    apf = _flag(apiserver, "--enable-priority-and-fairness") or "true (default)"
    return (
        f"kube-controller-manager QPS/burst {_flag(kcm, '--kube-api-qps') or '20 (default)'}/"
        f"{_flag(kcm, '--kube-api-burst') or '30 (default)'}, concurrent StatefulSet syncs "
        f"{_flag(kcm, '--concurrent-statefulset-syncs') or '5 (default)'}; kube-scheduler "
        f"QPS/burst {scheduler_qps}; kube-apiserver in-flight "
        f"{_flag(apiserver, '--max-requests-inflight') or '400 (default)'}/"
        f"{_flag(apiserver, '--max-mutating-requests-inflight') or '200 (default)'}, "
        f"priority & fairness {apf}; kwok's own client is never rate-limited"
    )


def _chart_status_interval() -> float:
    """The operator chart's ``statusInterval`` (what a cluster runs), else the code default."""
    values = (REPO / "charts" / "devicefleet-operator" / "values.yaml").read_text()
    match = re.search(r"^statusInterval:\s*([0-9.]+)", values, re.MULTILINE)
    if match:
        return float(match[1])
    return float(OperatorSettings.model_fields["status_interval"].default)


# --- the benchmark --------------------------------------------------------------------------


@dataclass
class Size:
    fleets: int
    kwok: Step
    raw: Step
    operator: Step
    cleanups: list[Cleanup]


def _timeout(pods: int) -> float:
    """Per measurement: four times the goal at 10,000 pods, never under a minute."""
    return max(60.0, 0.024 * pods)


def _measure(fleets: int, pods_per_fleet: int, interval: float, log_dir: Path) -> Size:
    rid = run_id()
    base = f"devicefleet-test-bench-{rid}"
    pods = fleets * pods_per_fleet
    timeout = _timeout(pods)
    cleanups: list[Cleanup] = []

    def report(what: str, step: Step) -> Step:
        cleanup = cleanups[-1] if cleanups else None
        print(
            f"bench: P7 {fleets} fleets × {pods_per_fleet} pods: {what} {step.seconds:.1f} s "
            f"(converged: {step.label()})"
            + (f", peak RSS {step.peak_rss_mb:.0f} MB" if step.peak_rss_mb else "")
            + (f"; clean-up {cleanup.seconds:.0f} s" if cleanup else ""),
            flush=True,
        )
        return step

    kwok = report("kwok alone", kwok_alone(f"{base}-kwok", pods, timeout, cleanups))
    raw = report("raw loop", raw_loop(f"{base}-raw", fleets, pods_per_fleet, timeout, cleanups))
    operator = report(
        "operator",
        operator_run(f"{base}-op", fleets, pods_per_fleet, timeout, interval, log_dir, cleanups),
    )
    return Size(fleets, kwok, raw, operator, cleanups)


def run(quick: bool, log_dir: Path) -> Result:
    """Fleet counts from BENCH_P7_FLEETS (e.g. ``1000``, the issue's size), else a sweep that
    converges on two cores; the largest is the headline."""
    pods_per_fleet = 5 if quick else 10
    chosen = os.environ.get("BENCH_P7_FLEETS", "")
    sizes_wanted = (
        [int(n) for n in chosen.split(",")] if chosen else ([20] if quick else list(FULL_FLEETS))
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    interval = _chart_status_interval()
    config.load_kube_config(KUBECONFIG)  # type: ignore[no-untyped-call]
    client.ApiextensionsV1Api().read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    if not client.CoreV1Api().list_node(label_selector="type=kwok").items:
        raise RuntimeError("no kwok nodes (label type=kwok) in the local cluster")
    limits = control_plane_limits()
    sizes = [_measure(fleets, pods_per_fleet, interval, log_dir) for fleets in sorted(sizes_wanted)]
    return _result(sizes[-1], sizes, pods_per_fleet, interval, limits)


def _result(
    main: Size, sizes: list[Size], pods_per_fleet: int, interval: float, limits: str
) -> Result:
    fleets, pods = main.fleets, main.fleets * pods_per_fleet
    operator, raw, kwok = main.operator, main.raw, main.kwok
    met = (
        fleets >= GOAL_FLEETS
        and operator.done
        and operator.seconds <= GOAL_SECONDS
        and operator.peak_rss_mb <= GOAL_RSS_MB
    )
    details = [
        {
            "fleets": s.fleets,
            "operator (s)": round(s.operator.seconds, 1),
            "raw PATCH loop (s)": round(s.raw.seconds, 1),
            "kwok alone (s)": round(s.kwok.seconds, 1),
            "pods": s.fleets * pods_per_fleet,
            "operator: pods Running (s)": (
                round(s.operator.pods_running_in, 1)
                if s.operator.pods_running_in is not None
                else "never"
            ),
            "operator peak RSS (MB)": round(s.operator.peak_rss_mb),
            "operator idle RSS (MB)": round(s.operator.idle_rss_mb),
            "operator CPU (s)": round(s.operator.cpu_seconds, 1),
            "converged (operator / raw / kwok)": (
                f"{s.operator.label()} / {s.raw.label()} / {s.kwok.label()}"
            ),
        }
        for s in sizes
    ]
    notes = [
        f"Operator peak RSS {operator.peak_rss_mb:.0f} MB (VmRSS, 10^6 bytes) with {fleets:,} "
        f"fleets and {pods:,} pods in its indexes, {operator.idle_rss_mb:.0f} MB of it there "
        "before the first fleet (the imports: kopf, the kubernetes client, pydantic, httpx, "
        f"prometheus_client); it used {operator.cpu_seconds:.1f} s of CPU "
        f"in {operator.seconds:.1f} s (pinned to one CPU). Its pods were all Running after "
        + (
            f"{operator.pods_running_in:.1f} s"
            if operator.pods_running_in is not None
            else "— never, within the timeout"
        )
        + f"; fleet phases at the end: {operator.phases or 'none listed'}.",
        "Converged = `status.readyReplicas` equals the fleet's pods and `podsReady` is "
        '"P/P", computed by the operator from its pod index (the pods\' Ready condition). '
        "kwok pods run no containers, so each /status read is refused: the operator counts "
        "those breakers as unknown and the phase is Degraded, the Ready condition False "
        "(BreakersOpen) — correct, hence not the criterion.",
        f"The operator observes a fleet every {interval:g} s (its status timer, the chart's "
        "statusInterval); the raw loop PATCHes on the pod event itself, so up to one interval "
        "of the gap is the timer, by design.",
        f"Control plane as running: {limits}. So QPS limits are not off here, unlike the "
        "setup of kwok's published rate; kwok alone also goes through the scheduler and the "
        "ReplicaSet controller, where kwok's benchmark creates pods bound to a node.",
    ]
    if not operator.done:
        notes.append(
            f"The operator did not converge: {operator.reached:,} of {fleets:,} fleets in "
            f"{operator.seconds:.0f} s (the timeout); the figure is a lower bound."
        )
    timed_out = [
        f"{what} {step.label()}"
        for what, step in (("kwok alone", kwok), ("raw loop", raw))
        if not step.done
    ]
    if timed_out:
        notes.append(f"Baselines that hit the timeout (lower bounds): {', '.join(timed_out)}.")
    notes.append(
        f"Creating the {fleets:,} DeviceFleets took {operator.created_in:.1f} s in the operator's "
        f"run and {raw.created_in:.1f} s in the raw loop's: each create waits on an API server "
        "busy with the pods being created meanwhile."
    )
    lingering = [c.namespace for s in sizes for c in s.cleanups if not c.gone]
    if lingering:
        notes.append(
            f"Clean-up outlasted its timeout in {', '.join(lingering)}: the measurement after "
            "it shared the API server with the namespace's deletion."
        )
    if operator.log_warnings:
        notes.append(f"The operator logged {operator.log_warnings} warning/error lines.")
    if raw.log_warnings:
        notes.append(f"The raw loop saw {raw.log_warnings} API errors.")
    return Result(
        key=KEY,
        title="Operator: DeviceFleets → pods ready in status, on kwok nodes",
        subject=Measure(
            f"operator: {fleets:,} fleets × {pods_per_fleet} pods → podsReady {pods_per_fleet}/"
            f"{pods_per_fleet}",
            operator.seconds,
            "s",
            lower_is_better=True,
        ),
        baselines=[
            Measure(
                "raw loop: same Service + StatefulSet per fleet, status PATCH on pod readiness",
                raw.seconds,
                "s",
                lower_is_better=True,
            ),
            Measure(
                f"kwok alone: {pods:,} pods of {KWOK_DEPLOYMENTS} Deployments → Running",
                kwok.seconds,
                "s",
                lower_is_better=True,
            ),
        ],
        goal=(
            f"{GOAL_FLEETS:,} fleets converge in ≤ {GOAL_SECONDS:.0f} s, operator RSS ≤ "
            f"{GOAL_RSS_MB:.0f} MB"
        ),
        met=met,
        command="make bench ONLY=P7",
        setup=(
            f"{fleets:,} DeviceFleets (generic profile, {pods_per_fleet * DEVICES_PER_POD} "
            f"devices, {DEVICES_PER_POD} per pod) = {pods:,} simulator pods on "
            "the stack's kwok nodes, against its real etcd, kube-apiserver, controller-manager "
            "and scheduler; each measurement in a fresh namespace, cleaned up before the next. "
            "Clock: from the first DeviceFleet create (one client, sequential; "
            f"{operator.created_in:.1f} s of the operator's figure) to the watch event showing "
            f"the last fleet converged, or {_timeout(pods):.0f} s (the timeout, fleet creation "
            "included). The operator is a process of its own, standalone, pinned "
            f"to CPU {SUBJECT_CPUS or 'any'}, status interval {interval:g} s (the chart's), no "
            "device registry; the raw loop's pool (kopf's default executor size) and pod watch "
            "are pinned to the same CPU and do no kopf bookkeeping (finalizer, annotations) and "
            "no /status polling"
        ),
        details=details,
        notes=notes,
        plot_columns=["fleets", "operator (s)", "raw PATCH loop (s)", "kwok alone (s)"],
        plot_unit="s",
    )
