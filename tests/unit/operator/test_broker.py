from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from devicefleet_common.devices import device_id
from devicefleet_common.topics import SUBSCRIPTIONS, parse_topic
from devicefleet_operator.broker import (
    BrokerError,
    check_responses,
    client_roles,
    converge_commands,
    device_topic_filters,
    ensure_commands,
    fleet_acls,
    is_fleet_role,
    role_name,
    unregister_commands,
)
from devicefleet_operator.settings import Settings


@pytest.mark.parametrize("profile", ["generic", "truck", "f2"])
def test_a_fleet_may_publish_exactly_its_devices_topics(profile: str) -> None:
    filters = device_topic_filters(profile, "ns.a", 3)  # type: ignore[arg-type]
    assert len(filters) == 3
    for index, topic_filter in enumerate(filters):
        device = device_id(profile, "ns.a", index)  # type: ignore[arg-type]
        concrete = topic_filter.replace("#", "rs485/J1/temperature")
        info = parse_topic(concrete)
        assert info is not None
        assert info.device_id == device
    # Never a wildcard above one device: no fleet can cover another fleet's devices.
    assert all("+" not in f and f.count("#") <= 1 for f in filters)
    assert not set(filters) & set(device_topic_filters(profile, "ns.b", 3))  # type: ignore[arg-type]
    assert not set(filters) & set(SUBSCRIPTIONS)


def test_the_role_name_follows_the_acls() -> None:
    small, big = fleet_acls("generic", "ns.a", 2), fleet_acls("generic", "ns.a", 3)
    assert role_name("ns.a", small) == role_name("ns.a", fleet_acls("generic", "ns.a", 2))
    assert role_name("ns.a", small) != role_name("ns.a", big)
    assert is_fleet_role("ns.a", role_name("ns.a", small))
    # "ns.a" is not a prefix match for "ns.ab"'s roles.
    assert not is_fleet_role("ns.a", role_name("ns.ab", small))
    assert all(acl["acltype"] == "publishClientSend" and acl["allow"] for acl in small)


def test_an_unchanged_fleet_needs_no_second_step() -> None:
    role = role_name("ns.a", fleet_acls("generic", "ns.a", 2))
    assert converge_commands("ns.a", role, [role], None) == []


def test_a_resize_swaps_the_role_and_keeps_foreign_roles() -> None:
    old = role_name("ns.a", fleet_acls("generic", "ns.a", 2))
    new = role_name("ns.a", fleet_acls("generic", "ns.a", 3))
    commands = converge_commands("ns.a", new, [old, "hand-made"], "pw")
    assert [c["command"] for c in commands] == [
        "setClientPassword",
        "addClientRole",
        "removeClientRole",
        "deleteRole",
    ]
    assert commands[1]["rolename"] == new
    assert commands[3]["rolename"] == old


def test_registration_and_removal_commands() -> None:
    acls = fleet_acls("truck", "ns.a", 1)
    role = role_name("ns.a", acls)
    first = ensure_commands("ns.a", "pw", role, acls)
    assert [c["command"] for c in first] == ["createRole", "createClient", "getClient"]
    assert first[1]["roles"] == [{"rolename": role}]
    removal = unregister_commands("ns.a", [role, "admin", role_name("ns.ab", acls)])
    assert removal == [
        {"command": "deleteClient", "username": "ns.a"},
        {"command": "deleteRole", "rolename": role},
    ]


def test_answers_are_checked_already_done_is_fine() -> None:
    commands = [{"command": "createRole"}, {"command": "deleteClient"}]
    ok = [{"command": "createRole", "error": "Role already exists"}, {"command": "deleteClient"}]
    assert check_responses(commands, ok) == ok
    with pytest.raises(BrokerError, match="createRole refused: Internal error"):
        check_responses(commands, [{"error": "Internal error"}, {}])
    with pytest.raises(BrokerError, match="2 dynsec commands, 1 answers"):
        check_responses(commands, [{}])
    with pytest.raises(BrokerError, match="malformed"):
        check_responses(commands, ["?", {}])


def test_client_roles_from_a_get_client_answer() -> None:
    answer = {"data": {"client": {"roles": [{"rolename": "r1"}, {"rolename": "r2"}]}}}
    assert client_roles(answer) == ["r1", "r2"]
    assert client_roles({"error": "Client not found"}) == []


def test_the_broker_admin_needs_the_fleet_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="mqtt_password_key_file"):
        Settings(mqtt_admin_username="admin", mqtt_admin_password_file=tmp_path / "pw")
    assert not Settings().manages_broker
    assert Settings(
        mqtt_admin_username="admin",
        mqtt_admin_password_file=tmp_path / "pw",
        mqtt_password_key_file=tmp_path / "key",
    ).manages_broker
