from __future__ import annotations

import kopf
import pytest

from devicefleet_operator.registry import REGISTRATIONS, register_fleet_devices
from devicefleet_operator.spec import parse_spec
from tests.support import free_port


def test_unreachable_registry_is_retried_not_fatal() -> None:
    """A database outage must not fail the fleet: kopf retries the handler later."""
    before = REGISTRATIONS.labels("error")._value.get()
    url = f"postgresql://x:y@127.0.0.1:{free_port()}/none?connect_timeout=2"
    with pytest.raises(kopf.TemporaryError, match="registering devices failed") as raised:
        register_fleet_devices(url, "iot", "trucks", parse_spec({"profile": "truck"}))
    assert raised.value.delay == 10
    # The URL (with its password) is not in the message kopf logs and posts as an event.
    assert "x:y" not in str(raised.value)
    assert REGISTRATIONS.labels("error")._value.get() == before + 1
