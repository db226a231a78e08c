"""Bearer tokens on the ingest API (auth on: ``auth_token_key_file`` set), with a fake producer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from devicefleet_common.credentials import InvalidKey, ingest_token

from .fakes import Api, reading

KEY = b"k" * 48
OTHER_KEY = b"o" * 48
FLEET = "iot.trucks"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "ingest-token-key"
    path.write_bytes(KEY + b"\n")  # a mounted Secret may end with a newline
    return path


@pytest.fixture
def secured(make_api: Callable[..., Api], key_file: Path) -> Api:
    return make_api(auth_token_key_file=key_file)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_valid_token_is_accepted_and_its_fleet_goes_into_the_envelope(secured: Api) -> None:
    response = secured.client.post(
        "/ingest", json=reading(1), headers=bearer(ingest_token(KEY, FLEET))
    )
    assert response.status_code == 200, response.text
    [record] = secured.producer.records
    assert record.envelope["fleet"] == FLEET


def test_batch_with_valid_token_carries_the_fleet(secured: Api) -> None:
    response = secured.client.post(
        "/ingest/batch",
        json={"messages": [reading(1), reading(2)]},
        headers=bearer(ingest_token(KEY, FLEET)),
    )
    assert response.status_code == 200, response.text
    assert [r.envelope["fleet"] for r in secured.producer.records] == [FLEET, FLEET]


@pytest.mark.parametrize(
    ("headers", "reason", "error"),
    [
        ({}, "missing bearer token", None),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "authorization is not a bearer token", "invalid_request"),
        ({"authorization": "Bearer"}, "authorization is not a bearer token", "invalid_request"),
        (bearer(ingest_token(OTHER_KEY, FLEET)), "invalid token", "invalid_token"),
        (bearer(ingest_token(KEY, FLEET)[:-1] + "A"), "invalid token", "invalid_token"),
        (bearer(ingest_token(KEY, FLEET).replace("trucks", "sensors", 1)), "invalid token", "invalid_token"),
        (bearer("no-dot-at-all"), "invalid token", "invalid_token"),
    ],
    ids=["missing", "basic", "empty-bearer", "other-key", "altered-signature", "altered-fleet", "garbled"],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/ingest", "/ingest/batch"])
def test_missing_or_wrong_token_is_401_with_challenge(
    secured: Api, path: str, headers: dict[str, str], reason: str, error: str | None
) -> None:
    body = reading(1) if path == "/ingest" else {"messages": [reading(1)]}
    with capture_logs() as logs:
        response = secured.client.post(path, json=body, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"status": "unauthorized", "reason": reason}
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="devicefleet-ingest"')
    assert (f'error="{error}"' in challenge) if error else ("error=" not in challenge)
    assert secured.producer.records == []
    assert secured.sample("ingest_messages_total", outcome="unauthorized") == 1
    assert secured.sample("ingest_messages_received_total") == 1
    [line] = [entry for entry in logs if entry["event"] == "request unauthorized"]
    assert line["reason"] == reason
    assert line["path"] == path
    # Never the credential: neither the token nor its signature is in the log line.
    token = headers.get("authorization", "").partition(" ")[2]
    signature = token.rpartition(".")[2]
    if token:
        assert token not in str(line)
    if len(signature) > 8:
        assert signature not in str(line)


def test_refused_before_the_body_is_read(make_api: Callable[..., Api], key_file: Path) -> None:
    """No token: 401 even for a malformed or oversize body (strangers learn nothing)."""
    api = make_api(auth_token_key_file=key_file, max_body_bytes=100)
    json_headers = {"content-type": "application/json"}
    assert api.client.post("/ingest", content=b"{", headers=json_headers).status_code == 401
    assert api.client.post("/ingest", content=b"x" * 500, headers=json_headers).status_code == 401


def test_open_endpoints_need_no_token(secured: Api) -> None:
    for path in ("/health", "/ready", "/metrics", "/openapi.json"):
        assert secured.client.get(path).status_code == 200, path


def test_auth_off_without_key_file(api: Api) -> None:
    response = api.client.post("/ingest", json=reading(1))
    assert response.status_code == 200
    assert api.producer.records[0].envelope["fleet"] is None


def test_unreadable_or_short_key_refuses_to_start(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    with pytest.raises(InvalidKey, match="cannot read"):
        make_api(auth_token_key_file=tmp_path / "absent")
    short = tmp_path / "short"
    short.write_bytes(b"too-short")
    with pytest.raises(InvalidKey, match="needs >= 32"):
        make_api(auth_token_key_file=short)


def test_openapi_declares_bearer_scheme_and_401(secured: Api) -> None:
    schema = secured.client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["fleetToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["fleetToken"]["description"],
    }
    for path in ("/ingest", "/ingest/batch"):
        operation = schema["paths"][path]["post"]
        assert operation["security"] == [{"fleetToken": []}]
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    assert "security" not in schema["paths"]["/health"]["get"]


def test_message_ids_are_remembered_per_fleet(secured: Api) -> None:
    """A fleet sending another fleet's next message id first does not make that fleet's own
    message a "duplicate" (the squatter's copy is dead-lettered downstream: fleet_mismatch)."""
    theirs = bearer(ingest_token(KEY, FLEET))
    squatter = bearer(ingest_token(KEY, "iot.other"))
    assert secured.client.post("/ingest", json=reading(5), headers=squatter).status_code == 200
    assert secured.client.post("/ingest", json=reading(5), headers=theirs).status_code == 200
    # Within one fleet, a repeat is still a duplicate.
    assert secured.client.post("/ingest", json=reading(5), headers=theirs).status_code == 409
    assert [r.envelope["fleet"] for r in secured.producer.records] == ["iot.other", FLEET]
