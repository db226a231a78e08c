"""Per-fleet credentials derived from signing keys.

A fleet's ingest token and MQTT password are HMAC-SHA256 of the fleet id under a key only the
operator (and, for tokens, ingest) holds. So the operator can (re)write a fleet's Secret at any
time without reading Secrets back, and ingest can check a token of any fleet, including one
created a second ago, without reading the fleet's Secret: it recomputes the signature. Rotating
a key revokes every credential made with it.

Token format: ``<fleet id>.<signature>``; the signature is URL-safe base64 without padding, so
it never contains a dot, while fleet ids may (``<namespace>.<name>``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

# What a signature is for: part of the signed message, so one never doubles as the other.
FOR_INGEST = "ingest-token"
FOR_MQTT = "mqtt-password"
MIN_KEY_BYTES = 32


class InvalidKey(ValueError):
    """A signing key that is missing or too short to be safe."""


def load_key(path: Path) -> bytes:
    """A signing key from a file (a mounted Secret key); surrounding whitespace is ignored."""
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise InvalidKey(f"cannot read signing key {path}: {exc.strerror}") from exc
    if len(key) < MIN_KEY_BYTES:
        raise InvalidKey(f"signing key {path} has {len(key)} bytes, needs >= {MIN_KEY_BYTES}")
    return key


def _signature(key: bytes, purpose: str, fleet: str) -> str:
    digest = hmac.new(key, f"{purpose}\n{fleet}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def ingest_token(key: bytes, fleet: str) -> str:
    return f"{fleet}.{_signature(key, FOR_INGEST, fleet)}"


def token_fleet(key: bytes, token: str) -> str | None:
    """The fleet a token was issued to, or ``None`` if it was not issued under ``key``."""
    fleet, dot, signature = token.rpartition(".")
    if not dot or not fleet:
        return None
    expected = _signature(key, FOR_INGEST, fleet)
    return fleet if hmac.compare_digest(signature.encode(), expected.encode()) else None


def mqtt_password(key: bytes, fleet: str) -> str:
    """The fleet's MQTT password; its MQTT username is the fleet id."""
    return _signature(key, FOR_MQTT, fleet)
