"""MQTT topic layouts of the supported device profiles.

- F2 controllers (seed 004): ``cmnd/f2-<mac>/<connector mode>/J1/<component>``
- trucks (seed 000): ``trucks/<machine id>/telemetry``
- generic sensors (seed 003): ``sensors/<device id>``
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from devicefleet_common.schemas import Profile

_F2 = re.compile(
    r"^cmnd/(?P<device>f2-[0-9a-f]{12})/(?P<mode>[a-z0-9-]+)/J1/(?P<component>[a-z0-9-]+)$"
)
_TRUCK = re.compile(r"^trucks/(?P<device>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})/telemetry$")
_SENSOR = re.compile(r"^sensors/(?P<device>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})$")
_HTTP = re.compile(r"^http/(?P<device>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})$")

# What the bridge subscribes to.
SUBSCRIPTIONS = ("cmnd/+/+/J1/+", "trucks/+/telemetry", "sensors/+")


@dataclass(frozen=True)
class TopicInfo:
    device_id: str
    profile: Profile | None  # None: the layout does not say (HTTP without a topic)
    connector_mode: str | None = None
    component_type: str | None = None


def parse_topic(topic: str) -> TopicInfo | None:
    # fullmatch: with match, "$" also matches before a trailing newline ("sensors/s1\n").
    if m := _F2.fullmatch(topic):
        return TopicInfo(m["device"], "f2", m["mode"], m["component"])
    if m := _TRUCK.fullmatch(topic):
        return TopicInfo(m["device"], "truck")
    if m := _SENSOR.fullmatch(topic):
        return TopicInfo(m["device"], "generic")
    if m := _HTTP.fullmatch(topic):
        return TopicInfo(m["device"], None)
    return None


def f2_topic(device_id: str, mode: str, component: str) -> str:
    return f"cmnd/{device_id}/{mode}/J1/{component}"


def truck_topic(device_id: str) -> str:
    return f"trucks/{device_id}/telemetry"


def sensor_topic(device_id: str) -> str:
    return f"sensors/{device_id}"
