"""F2 Smart Controller (seed 004): one component per tick on
``cmnd/<device_id>/<mode>/J1/<component>``.

The processor decodes exactly these payloads: booleans keyed ``<component-singular>-<n>``,
raw QR text, NFC UIDs as upper-case hex, and RS-485 registers as 4 hex digits.
"""

from __future__ import annotations

import random
import string
from datetime import datetime
from typing import Any

from devicefleet_common.topics import f2_topic
from devicefleet_simulator.profiles.base import Reading, clamp, rfc3339
from devicefleet_simulator.profiles.rs485 import encode_sensor

MODES = ("access-control-mode", "monitoring-mode")

# component -> number of boolean channels it reports
BOOLEAN_COMPONENTS: dict[str, int] = {
    "door-sensors": 2,
    "electric-strikes": 2,
    "exit-buttons": 1,
    "motion-sensors": 2,
    "sirens": 1,
}
COMPONENTS = (*BOOLEAN_COMPONENTS, "qr-readers", "nfc-readers", "rs485-sensors")


def channel_key(component: str, n: int) -> str:
    """``door-sensors``, 1 -> ``door-sensor-1``."""
    return f"{component.removesuffix('s')}-{n}"


class F2Controller:
    def __init__(self, device_id: str, rng: random.Random) -> None:
        self.device_id = device_id
        self._rng = rng
        self._temperature = rng.uniform(18.0, 26.0)
        self._humidity = rng.uniform(35.0, 60.0)
        self._pressure = rng.uniform(1005.0, 1020.0)

    def tick(self, now: datetime) -> Reading:
        mode = self._rng.choice(MODES)
        component = self._rng.choice(COMPONENTS)
        payload: dict[str, Any] = {"timestamp": rfc3339(now), **self._values(component)}
        return Reading(f2_topic(self.device_id, mode, component), payload)

    def _values(self, component: str) -> dict[str, Any]:
        rng = self._rng
        if component in BOOLEAN_COMPONENTS:
            channels = BOOLEAN_COMPONENTS[component]
            return {channel_key(component, n): rng.random() < 0.5 for n in range(1, channels + 1)}
        if component == "qr-readers":
            code = "".join(rng.choices(string.ascii_uppercase + string.digits, k=12))
            return {"qr-reader-1": f"ACCESS:{code}"}
        if component == "nfc-readers":
            # 7-byte ISO 14443 UID; NXP tags start with manufacturer byte 04.
            return {"nfc-reader-1": "04" + "".join(f"{rng.randrange(256):02X}" for _ in range(6))}
        return self._rs485()

    def _rs485(self) -> dict[str, str]:
        rng = self._rng
        self._temperature = clamp(self._temperature + rng.gauss(0.0, 0.3), -40.0, 80.0)
        self._humidity = clamp(self._humidity + rng.gauss(0.0, 0.8), 0.0, 100.0)
        self._pressure = clamp(self._pressure + rng.gauss(0.0, 0.5), 900.0, 1100.0)
        return {
            "temperature": encode_sensor("temperature", self._temperature),
            "humidity": encode_sensor("humidity", self._humidity),
            "pressure": encode_sensor("pressure", self._pressure),
        }
