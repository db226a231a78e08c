"""``devicefleet-bridge``: run the MQTT → Kafka bridge until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
from types import FrameType

from devicefleet_common.logging import get_logger, setup_logging
from devicefleet_common.metrics import serve_metrics
from devicefleet_common.settings import redacted
from devicefleet_common.tracing import setup_tracing
from devicefleet_ingest.bridge.service import Bridge
from devicefleet_ingest.bridge.settings import BridgeSettings

log = get_logger("devicefleet.bridge")


def main() -> None:
    settings = BridgeSettings()
    setup_logging("bridge", settings.log_level, settings.environment)
    provider = setup_tracing("bridge", settings.otlp_endpoint)
    log.info("starting bridge", settings=redacted(settings))
    serve_metrics(settings.metrics_port, settings.metrics_host)
    bridge = Bridge(settings)

    def request_stop(signum: int, _: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        bridge.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        bridge.run()
    finally:
        provider.shutdown()
    log.info("bridge stopped")
