"""How reconcile treats API errors, children it finds but did not index, and new credentials
(pure parts)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from devicefleet_operator.handlers.reconcile import (
    owned_by_same,
    retry_delay,
    rolls_onto_new_credentials,
)


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


def test_the_secret_is_written_before_a_roll_onto_new_credentials() -> None:
    live = {"annotations": {}, "replicas": 2, "credentials_revision": "old"}
    assert rolls_onto_new_credentials("new", live)
    # An operator without the annotation before (an upgrade) writes it once too.
    assert rolls_onto_new_credentials("new", live | {"credentials_revision": None})
    assert not rolls_onto_new_credentials("old", live)
    # A StatefulSet to create (a new fleet, or one deleted by hand while the key rotated).
    assert rolls_onto_new_credentials("new", None)
    # No credentials at all.
    assert not rolls_onto_new_credentials(None, live)
