"""Start-up and shutdown shared by the long-running consumer services (bridge, processor,
sink): observability first, then run until SIGTERM/SIGINT, then close cleanly."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Protocol

from devicefleet_common.logging import get_logger, setup_logging
from devicefleet_common.metrics import Readiness, serve_metrics
from devicefleet_common.settings import ObservabilitySettings, redacted
from devicefleet_common.tracing import setup_tracing

log = get_logger("devicefleet.lifecycle")


class Runnable(Protocol):
    def run(self) -> None: ...

    def stop(self) -> None:
        """Ask ``run`` to return after the work in hand (called from a signal handler)."""

    def close(self) -> None: ...


def start_observability(
    service: str,
    settings: ObservabilitySettings,
    metrics_port: int,
    readiness: Readiness | None = None,
) -> None:
    """JSON logs, tracing and /metrics (and /ready with ``readiness``), before anything else
    can log or count."""
    setup_logging(service, settings.log_level, settings.environment)
    setup_tracing(service, settings.otlp_endpoint)
    serve_metrics(metrics_port, settings.metrics_host, readiness)
    log.info(f"{service} starting", settings=redacted(settings))


def run_until_signalled(service: str, runnable: Runnable) -> int:
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "signal received, finishing the work in hand",
            service=service,
            signal=signal.Signals(signum).name,
        )
        runnable.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        runnable.run()
    finally:
        runnable.close()
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if hasattr(provider, "shutdown"):
            provider.shutdown()  # flush spans still being exported
        log.info(f"{service} stopped")
    return 0
