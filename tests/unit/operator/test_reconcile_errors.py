"""How reconcile treats API errors and children it finds but did not index (pure parts)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from devicefleet_operator.handlers.reconcile import owned_by_same, retry_delay


@pytest.mark.parametrize(
    ("status", "headers", "delay"),
    [
        (429, {"Retry-After": "4"}, 4.0),  # API Priority and Fairness says when
        (429, {}, 1.0),
        (429, {"Retry-After": "0"}, 1.0),  # never a busy loop
        (429, {"Retry-After": "soon"}, 1.0),
        (503, None, 3),
        (500, {"Retry-After": "30"}, 3),
        (422, None, 10),
        (None, None, 3),
    ],
)
def test_retry_delay(status: int | None, headers: dict[str, str] | None, delay: float) -> None:
    assert retry_delay(status, headers) == delay


def test_owned_by_same_compares_owner_uids() -> None:
    desired = {"metadata": {"ownerReferences": [{"uid": "fleet-uid", "controller": True}]}}
    assert owned_by_same(desired, [SimpleNamespace(uid="fleet-uid")])
    assert not owned_by_same(desired, [SimpleNamespace(uid="someone-else")])
    assert not owned_by_same(desired, [])
    assert not owned_by_same({"metadata": {}}, [SimpleNamespace(uid="fleet-uid")])
