"""``devicefleet-simulator``: simulate a fleet until its message limit or SIGTERM/SIGINT.

Configuration: ``SIMULATOR_*`` environment variables and/or the TOML file named by
``SIMULATOR_CONFIG_FILE`` (see docs/simulator.md). Exits 0 after a graceful shutdown.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from devicefleet_common.logging import get_logger, setup_logging
from devicefleet_common.settings import redacted
from devicefleet_common.tracing import setup_tracing
from devicefleet_simulator.settings import Settings
from devicefleet_simulator.simulator import Simulator

log = get_logger("devicefleet.simulator")


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _request_stop, stop, sig)
    await Simulator(settings).run(stop)


def _request_stop(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("shutdown requested", signal=sig.name)
    stop.set()


def main() -> None:
    settings = Settings()
    setup_logging("simulator", settings.log_level, settings.environment)
    provider = setup_tracing("simulator", settings.otlp_endpoint)
    log.info("configuration", **redacted(settings))
    try:
        asyncio.run(run(settings))
    finally:
        provider.shutdown()  # export the last spans
    sys.exit(0)


if __name__ == "__main__":
    main()
