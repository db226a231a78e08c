"""RS-485 sensor registers: 16-bit values sent as 4 upper-case hex digits.

Physical value = raw * scale + offset (``F2_RS485_DEFAULTS``); signed registers use two's
complement, so -1.5 C with scale 0.1 is ``FFF1``.
"""

from __future__ import annotations

from typing import Any

from devicefleet_common.devices import F2_RS485_DEFAULTS


def encode_register(value: float, scale: float, offset: float, signed: bool) -> str:
    raw = round((value - offset) / scale)
    low, high = (-0x8000, 0x7FFF) if signed else (0, 0xFFFF)
    if not low <= raw <= high:
        raise ValueError(f"{value} does not fit a 16-bit register (raw {raw})")
    return f"{raw & 0xFFFF:04X}"


def decode_register(text: str, scale: float, offset: float, signed: bool) -> float:
    if len(text) != 4:
        raise ValueError(f"register {text!r} is not 4 hex digits")
    raw = int(text, 16)
    if signed and raw & 0x8000:
        raw -= 0x10000
    return raw * scale + offset


def encode_sensor(name: str, value: float, params: dict[str, Any] | None = None) -> str:
    p = (params or F2_RS485_DEFAULTS)[name]
    return encode_register(value, float(p["scale"]), float(p["offset"]), bool(p["signed"]))


def decode_sensor(name: str, text: str, params: dict[str, Any] | None = None) -> float:
    p = (params or F2_RS485_DEFAULTS)[name]
    return decode_register(text, float(p["scale"]), float(p["offset"]), bool(p["signed"]))
