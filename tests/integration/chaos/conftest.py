"""Each chaos module runs with its scenario's bridge as the only one on the broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import LIVE_PIPELINES


@pytest.fixture(scope="module", autouse=True)
def the_scenarios_bridge_alone() -> Iterator[None]:
    """Another pipeline's bridge (the session's) would store the chaos fleets' MQTT readings
    as well, so a loss in the scenario's own pipeline would not show in the database: stop
    the others (SIGTERM keeps their sessions) for the module, then start them again."""
    others = [p.services["bridge"] for p in LIVE_PIPELINES if p.services["bridge"].alive()]
    for bridge in others:
        bridge.stop()
    yield
    for bridge in others:
        bridge.start()
