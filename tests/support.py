"""Helpers shared by the test tiers: the stack's ports, polling, service processes."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def stack_ports() -> dict[str, str]:
    """devstack/ports.env, the one place the stack's loopback ports are defined."""
    values: dict[str, str] = {}
    for line in (REPO / "devstack" / "ports.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


# The stack's loopback addresses, for the tests and the benchmarks.
PORTS = stack_ports()
KAFKA = f"127.0.0.1:{PORTS['KAFKA_PORT']}"
DATABASE_URL = (
    f"postgresql://{PORTS['PG_USER']}:{PORTS['PG_PASSWORD']}@127.0.0.1:{PORTS['PG_PORT']}/"
    f"{PORTS['PG_DATABASE']}"
)
MQTT_PORT = int(PORTS["MQTT_PORT"])


# Ports handed to test processes come from below the kernel's ephemeral range (32768-60999
# by default) and the NodePort range (30000-32767), and above devstack's (11883-19095): a
# port the kernel picked (bind to 0) can be taken again as the local port of any outgoing
# connection before the process binds it, which crashed a service with EADDRINUSE in CI.
_TEST_PORTS = range(20000, 30000)
# Never the same port twice per session: two ports picked before either is bound (a service's
# metrics and liveness ports) would otherwise collide now and then; one did, and the liveness
# probe got its 200 from the metrics server while the operator died of EADDRINUSE.
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on now, outside the ranges the kernel and devstack
    hand out, and not handed out before in this session."""
    for port in random.sample(_TEST_PORTS, min(200, len(_TEST_PORTS))):
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_TEST_PORTS}")


def port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def wait_for(
    check: Callable[[], T | None],
    timeout: float,
    interval: float = 0.25,
    message: str = "condition",
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``message`` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {message}"
        + (f" (last error: {last_error!r})" if last_error else "")
    )


class ServiceProcess:
    """One of the project's services run as a real process, logging to a file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_dir: Path,
        health_url: str | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = {**os.environ, **env}
        self.log_path = log_dir / f"{name}.log"
        self.health_url = health_url
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
        if self.health_url:
            url = self.health_url

            def healthy() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"{self.name} exited with {self.proc.returncode}; log:\n{self.log_tail()}"
                    )
                return httpx.get(url, timeout=1.0).status_code == 200

            wait_for(healthy, timeout, message=f"{self.name} at {url}")
        return self

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, exactly what a crash looks like."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode
