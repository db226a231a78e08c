"""Test tiers. ``integration`` tests need the local stack (``make up`` or ``make stack-up``);
when it is missing they FAIL with a message naming the component, they never skip.
``chaos`` tests (tests/integration/chaos) stop and kill parts of that stack, so they run last."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.get_closest_marker("chaos") is not None)  # stable
