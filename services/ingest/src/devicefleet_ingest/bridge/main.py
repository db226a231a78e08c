"""``devicefleet-bridge``: run the MQTT → Kafka bridge until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from devicefleet_common.lifecycle import run_until_signalled, start_observability
from devicefleet_common.metrics import Readiness
from devicefleet_ingest.bridge.service import NOT_CONNECTED, Bridge
from devicefleet_ingest.bridge.settings import BridgeSettings


def main() -> int:
    settings = BridgeSettings()
    readiness = Readiness(NOT_CONNECTED)
    start_observability("bridge", settings, settings.metrics_port, readiness)
    return run_until_signalled("bridge", Bridge(settings, readiness))


if __name__ == "__main__":
    sys.exit(main())
