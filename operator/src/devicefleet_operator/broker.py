"""A fleet's identity in the MQTT broker: Mosquitto's dynamic security plugin.

Each fleet is a broker client (username: the fleet id, password: ``mqtt_password(key, fleet)``)
with one role allowing it to publish exactly its devices' topics; the broker denies every other
publish (``defaultACLAccess.publishClientSend`` false), so a fleet cannot publish as another
fleet's devices. Topics do not name the fleet, so the role lists each device's topic (device ids
are a pure function of profile, fleet and index).

The operator manages clients and roles at runtime by publishing commands to
``$CONTROL/dynamic-security/v1`` as the plugin's admin. The commands are built by the pure
functions here; ``DynsecClient`` only carries them. Mosquitto disconnects a client whose roles
or password change, so reconciling changes nothing unless something changed: the role's name
carries a hash of its ACLs (a resize makes a new role, swapped in, then the old one deleted),
and the password is only set again when logging in with it fails (a rotated key).
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devicefleet_common.devices import fleet_device_ids
from devicefleet_common.schemas import Profile
from devicefleet_common.topics import sensor_topic, truck_topic

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
ROLE_PREFIX = "fleet:"

Command = dict[str, Any]
# Answers that mean "already as wanted" for an idempotent step.
_ALREADY = {
    "createRole": "Role already exists",
    "createClient": "Client already exists",
    "deleteRole": "Role not found",
    "deleteClient": "Client not found",
}


class BrokerError(RuntimeError):
    """The broker refused the admin, did not answer, or refused a command."""


# --- pure: what a fleet may do, as dynsec commands ----------------------------------------


def device_topic_filters(profile: Profile, fleet: str, devices: int) -> list[str]:
    """The topics a fleet's devices publish (devicefleet_common.topics); F2 controllers
    publish under several modes and components, so theirs is a subtree per device."""
    ids = fleet_device_ids(profile, fleet, 0, devices)
    if profile == "f2":
        return [f"cmnd/{device}/#" for device in ids]
    if profile == "truck":
        return [truck_topic(device) for device in ids]
    return [sensor_topic(device) for device in ids]


def fleet_acls(profile: Profile, fleet: str, devices: int) -> list[dict[str, Any]]:
    return [
        {"acltype": "publishClientSend", "topic": topic, "priority": 0, "allow": True}
        for topic in device_topic_filters(profile, fleet, devices)
    ]


def role_name(fleet: str, acls: Sequence[dict[str, Any]]) -> str:
    digest = hashlib.sha256(json.dumps(list(acls), sort_keys=True).encode()).hexdigest()[:12]
    return f"{ROLE_PREFIX}{fleet}:{digest}"


def is_fleet_role(fleet: str, role: str) -> bool:
    return role.startswith(f"{ROLE_PREFIX}{fleet}:")


def ensure_commands(fleet: str, password: str, role: str, acls: Sequence[Any]) -> list[Command]:
    """Step 1 of registering: the role and the client (each made if missing, else left
    alone), then the client as it is now, for step 2."""
    return [
        {"command": "createRole", "rolename": role, "acls": list(acls)},
        {
            "command": "createClient",
            "username": fleet,
            "password": password,
            "roles": [{"rolename": role}],
        },
        {"command": "getClient", "username": fleet},
    ]


def converge_commands(
    fleet: str, role: str, current_roles: Sequence[str], password: str | None
) -> list[Command]:
    """Step 2: give the client its role, drop its stale roles, and set its password when the
    broker holds another one (``password`` not None). Empty when nothing is to change."""
    commands: list[Command] = []
    if password is not None:
        commands.append({"command": "setClientPassword", "username": fleet, "password": password})
    if role not in current_roles:
        commands.append({"command": "addClientRole", "username": fleet, "rolename": role})
    for stale in current_roles:
        if stale != role and is_fleet_role(fleet, stale):
            commands.append({"command": "removeClientRole", "username": fleet, "rolename": stale})
            commands.append({"command": "deleteRole", "rolename": stale})
    return commands


def unregister_commands(fleet: str, roles: Sequence[str]) -> list[Command]:
    """The client (which disconnects it: its credentials stop working) and its roles."""
    return [{"command": "deleteClient", "username": fleet}] + [
        {"command": "deleteRole", "rolename": role} for role in roles if is_fleet_role(fleet, role)
    ]


def check_responses(commands: Sequence[Command], responses: Sequence[Any]) -> list[Any]:
    """Each command's answer; raises on a refused one, except "already as wanted"."""
    if len(responses) != len(commands):
        raise BrokerError(f"{len(commands)} dynsec commands, {len(responses)} answers")
    for command, response in zip(commands, responses, strict=True):
        error = response.get("error") if isinstance(response, dict) else "malformed answer"
        if error and error != _ALREADY.get(command["command"]):
            raise BrokerError(f"dynsec {command['command']} refused: {error}")
    return list(responses)


def client_roles(get_client: Any) -> list[str]:
    """Role names from a getClient answer ([] when the client does not exist)."""
    client = (get_client.get("data") or {}).get("client") or {}
    return [r["rolename"] for r in client.get("roles") or [] if "rolename" in r]


def role_names(list_roles: Any) -> list[str]:
    return [str(r) for r in (list_roles.get("data") or {}).get("roles") or []]


# --- the thin client ---------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerAdmin:
    """Where and as whom the operator manages the broker."""

    host: str
    port: int
    username: str
    password: str
    tls_ca_file: Path | None = None
    timeout: float = 10.0


def _client(admin: BrokerAdmin, username: str, password: str) -> Any:
    # Only an operator managing a broker needs paho.
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"devicefleet-operator-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(username, password)
    if admin.tls_ca_file is not None:
        client.tls_set(ca_certs=str(admin.tls_ca_file))
    return client


def _connect(client: Any, admin: BrokerAdmin) -> int:
    """Connect and wait for the CONNACK: its reason code (0 = accepted)."""
    connack: list[int] = []
    done = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        connack.append(int(reason.value))
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(admin.host, admin.port, keepalive=max(5, int(admin.timeout)))
    except OSError as exc:
        raise BrokerError(f"cannot reach the MQTT broker {admin.host}:{admin.port}: {exc}") from exc
    client.loop_start()
    if not done.wait(admin.timeout):
        client.loop_stop()
        raise BrokerError(f"no CONNACK from {admin.host}:{admin.port} in {admin.timeout}s")
    return connack[0]


def can_log_in(admin: BrokerAdmin, username: str, password: str) -> bool:
    """Whether the broker accepts these credentials (a real CONNECT)."""
    client = _client(admin, username, password)
    try:
        return _connect(client, admin) == 0
    finally:
        client.disconnect()
        client.loop_stop()


def execute(admin: BrokerAdmin, commands: Sequence[Command]) -> list[Any]:
    """Send commands in one request as the admin; their answers, checked, in order."""
    if not commands:
        return []
    client = _client(admin, admin.username, admin.password)
    correlation = uuid.uuid4().hex
    answers: list[Any] = []
    answered = threading.Event()

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        responses = body.get("responses") if isinstance(body, dict) else None
        if responses and responses[0].get("correlationData") == correlation:
            answers.extend(responses)
            answered.set()

    subscribed = threading.Event()
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    try:
        code = _connect(client, admin)
        if code != 0:
            raise BrokerError(
                f"the MQTT broker refused the operator's admin {admin.username!r} (CONNACK {code})"
            )
        client.subscribe(RESPONSE_TOPIC, qos=1)
        if not subscribed.wait(admin.timeout):
            raise BrokerError("the broker did not confirm the dynsec response subscription")
        # correlationData on the first command: the broker echoes it, so another admin's
        # answers on the shared response topic are never taken for ours.
        tagged = [dict(commands[0], correlationData=correlation), *commands[1:]]
        client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
        if not answered.wait(admin.timeout):
            raise BrokerError(f"no dynsec answer within {admin.timeout}s")
    finally:
        client.disconnect()
        client.loop_stop()
    return check_responses(commands, answers)


def register_fleet(
    admin: BrokerAdmin,
    fleet: str,
    password: str,
    profile: Profile,
    devices: int,
    check_password: bool = True,
) -> str:
    """Make the broker hold the fleet's client and its role; what changed
    (``created``/``updated``/``unchanged``). ``check_password=False`` (the periodic check)
    trusts an existing client's password: one admin connection instead of two."""
    acls = fleet_acls(profile, fleet, devices)
    role = role_name(fleet, acls)
    first = execute(admin, ensure_commands(fleet, password, role, acls))
    created = "error" not in first[1]
    roles = client_roles(first[2])
    password_ok = created or not check_password or can_log_in(admin, fleet, password)
    stale_password = None if password_ok else password
    changes = converge_commands(fleet, role, roles, stale_password)
    execute(admin, changes)
    if created:
        return "created"
    return "updated" if changes else "unchanged"


def unregister_fleet(admin: BrokerAdmin, fleet: str) -> int:
    """Delete the fleet's client (disconnecting it) and every role of the fleet, including
    one left behind by an interrupted registration; how many commands that took."""
    roles = role_names(execute(admin, [{"command": "listRoles"}])[0])
    commands = unregister_commands(fleet, roles)
    execute(admin, commands)
    return len(commands)
