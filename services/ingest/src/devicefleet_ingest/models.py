"""Response bodies (requests are the shared wire schemas ``TelemetryIn``/``TelemetryBatchIn``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    message_id: str


class Duplicate(BaseModel):
    status: Literal["duplicate"] = "duplicate"
    message_id: str


class FieldError(BaseModel):
    field: str
    reason: str
    index: int | None = None  # position in a batch


class Rejected(BaseModel):
    """400 and 413: the device must not retry the same request."""

    status: Literal["rejected"] = "rejected"
    reason: str
    errors: list[FieldError] = []


class Unavailable(BaseModel):
    """503 (with Retry-After): retry the same message later."""

    status: Literal["unavailable"] = "unavailable"
    reason: str


class BatchItem(BaseModel):
    message_id: str
    status: Literal["accepted", "duplicate"]


class BatchAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    results: list[BatchItem]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
