from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devicefleet_common.credentials import (
    InvalidKey,
    ingest_token,
    load_key,
    mqtt_password,
    token_fleet,
)

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def test_a_token_names_its_fleet_only_under_its_key() -> None:
    token = ingest_token(KEY, "default.trucks")
    assert token.startswith("default.trucks.")
    assert token_fleet(KEY, token) == "default.trucks"
    assert token_fleet(OTHER_KEY, token) is None


def test_a_token_cannot_be_moved_to_another_fleet() -> None:
    signature = ingest_token(KEY, "team-a.trucks").rpartition(".")[2]
    assert token_fleet(KEY, f"team-b.trucks.{signature}") is None


def test_the_mqtt_password_is_not_the_token_signature() -> None:
    assert mqtt_password(KEY, "a.b") != ingest_token(KEY, "a.b").rpartition(".")[2]


@given(st.text(max_size=200))
def test_any_string_is_a_token_or_refused_never_an_error(token: str) -> None:
    assert token_fleet(KEY, token) is None


@given(st.text(min_size=1, max_size=80))
def test_every_fleet_round_trips(fleet: str) -> None:
    assert token_fleet(KEY, ingest_token(KEY, fleet)) == fleet


def test_keys_are_read_from_files_and_must_be_long(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_bytes(KEY + b"\n")
    assert load_key(good) == KEY
    short = tmp_path / "short"
    short.write_bytes(b"too short")
    with pytest.raises(InvalidKey, match="needs >= 32"):
        load_key(short)
    with pytest.raises(InvalidKey, match="cannot read"):
        load_key(tmp_path / "missing")
