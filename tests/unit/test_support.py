"""The test helpers' own guarantees that other tests lean on."""

import socket

import pytest

from tests import support
from tests.support import free_port


def test_free_port_never_hands_out_a_port_twice() -> None:
    # Services take two or three ports before binding any; each must be their own.
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(20000 <= port < 30000 for port in ports)


def test_free_port_skips_a_port_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        # Only the taken port and the one after it to choose from.
        monkeypatch.setattr(support, "_TEST_PORTS", range(taken, taken + 2))
        monkeypatch.setattr(support, "_handed_out", set())
        assert free_port() == taken + 1
        with pytest.raises(RuntimeError, match="no free port"):
            free_port()
