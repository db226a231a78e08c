"""Breaker + retry + buffer behaviour against a scripted transport (small timeouts)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from devicefleet_common.resilience import PermanentError, TransientError
from devicefleet_simulator.delivery import Delivery, ResiliencePolicy
from devicefleet_simulator.stats import MessageStats

from .conftest import FAST, FakeTransport, make_message


async def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_breaker_opens_after_fail_max_attempts_and_buffers(
    delivery: Delivery, transport: FakeTransport
) -> None:
    transport.up = False
    delivery.submit(make_message(0))
    await wait_for(lambda: delivery.stats.in_flight == 0)
    # 3 attempts (= fail_max): the third trips the breaker, which stops the retries.
    assert len(transport.attempts) == FAST.breaker_fail_max
    assert delivery.breaker_state == "open"
    assert delivery.opened_total == 1
    assert delivery.transitions == 1
    assert delivery.breaker_status().last_transition_time is not None
    assert [m.sequence for m in delivery.buffer] == [0]
    # While open, new messages go straight to the buffer without touching the transport.
    for seq in range(1, 5):
        delivery.submit(make_message(seq))
    await wait_for(lambda: delivery.stats.in_flight == 0)
    assert len(transport.attempts) == FAST.breaker_fail_max
    assert [m.sequence for m in delivery.buffer] == [0, 1, 2, 3, 4]


async def test_half_open_probe_then_close_and_drain_in_order(
    delivery: Delivery, transport: FakeTransport
) -> None:
    transitions: list[tuple[str, str]] = []
    original = delivery._on_transition

    def spy(old: str, new: str, fail_counter: int) -> None:
        if old != new:
            transitions.append((old, new))
        original(old, new, fail_counter)

    delivery.breaker._listeners[0]._on_transition = spy  # type: ignore[attr-defined]
    drain = asyncio.create_task(delivery.run_drain())
    try:
        transport.up = False
        for seq in range(10):
            delivery.submit(make_message(seq))
        await wait_for(lambda: delivery.stats.in_flight == 0)
        assert delivery.breaker_state == "open"
        assert len(delivery.buffer) == 10
        # First probe after reset_timeout fails: back to open, nothing lost.
        await wait_for(lambda: ("half-open", "open") in transitions)
        assert len(delivery.buffer) == 10
        transport.up = True
        await asyncio.wait_for(delivery.wait_idle(), 2.0)
    finally:
        drain.cancel()
    assert transitions[:3] == [("closed", "open"), ("open", "half-open"), ("half-open", "open")]
    assert transitions[-1] == ("half-open", "closed")
    assert delivery.breaker_state == "closed"
    seqs = [int(mid.rsplit(":", 1)[1]) for mid in transport.delivered]
    assert seqs == list(range(10)), "drained in order, nothing lost"
    assert delivery.stats.acknowledged == 10
    assert delivery.stats.buffer_overflow == 0


async def test_new_messages_queue_behind_the_buffer_until_it_is_empty(
    delivery: Delivery, transport: FakeTransport
) -> None:
    transport.up = False
    for seq in range(3):
        delivery.submit(make_message(seq))
    await wait_for(lambda: delivery.stats.in_flight == 0)
    transport.up = True
    drain = asyncio.create_task(delivery.run_drain())
    try:
        await asyncio.sleep(0.01)  # still open: these join the tail
        for seq in range(3, 6):
            delivery.submit(make_message(seq))
        await asyncio.wait_for(delivery.wait_idle(), 2.0)
    finally:
        drain.cancel()
    assert [int(m.rsplit(":", 1)[1]) for m in transport.delivered] == list(range(6))


async def test_retries_exhausted_while_closed_goes_back_to_the_buffer(
    transport: FakeTransport,
) -> None:
    policy = ResiliencePolicy(
        retry_max_attempts=2,
        retry_base=0.001,
        retry_max=0.002,
        breaker_fail_max=10,
        breaker_reset_timeout=0.1,
    )
    delivery = Delivery(transport, policy, MessageStats())
    transport.script.extend([TransientError("503"), TransientError("503")])
    delivery.submit(make_message(0))
    await wait_for(lambda: delivery.stats.in_flight == 0)
    assert delivery.breaker_state == "closed"
    assert [m.sequence for m in delivery.buffer] == [0]
    assert delivery.stats.retries == 1
    assert delivery.stats.failed_attempts == 2
    drain = asyncio.create_task(delivery.run_drain())
    try:
        await asyncio.wait_for(delivery.wait_idle(), 2.0)
    finally:
        drain.cancel()
    assert delivery.stats.acknowledged == 1


async def test_permanent_errors_are_rejected_not_retried_and_do_not_count(
    delivery: Delivery, transport: FakeTransport
) -> None:
    transport.script.extend([PermanentError("http 400", 400)] * 5)
    for seq in range(5):
        delivery.submit(make_message(seq))
    await delivery.wait_idle()
    assert delivery.stats.rejected == 5
    assert len(transport.attempts) == 5
    assert delivery.breaker.fail_counter == 0
    assert delivery.breaker_state == "closed"


async def test_buffer_overflow_is_the_only_loss(transport: FakeTransport) -> None:
    policy = ResiliencePolicy(
        retry_max_attempts=1,
        retry_base=0.001,
        retry_max=0.001,
        breaker_fail_max=1,
        breaker_reset_timeout=60,
        buffer_size=4,
    )
    stats = MessageStats()
    delivery = Delivery(transport, policy, stats)
    transport.up = False
    for seq in range(10):
        stats.count("generated")
        delivery.submit(make_message(seq))
    await wait_for(lambda: stats.in_flight == 0)
    snapshot = stats.snapshot(len(delivery.buffer))
    assert snapshot.buffered == 4
    assert snapshot.buffer_overflow == 6
    assert snapshot.invariant_holds()


async def test_cancelled_sends_return_to_the_buffer(transport: FakeTransport) -> None:
    stats = MessageStats()
    delivery = Delivery(transport, FAST, stats)
    for seq in range(3):
        stats.count("generated")
        delivery.submit(make_message(seq), jitter=10.0)  # still waiting at shutdown
    await asyncio.sleep(0.01)
    assert stats.in_flight == 3
    await delivery.cancel_in_flight()
    snapshot = stats.snapshot(len(delivery.buffer))
    assert snapshot.in_flight == 0
    assert snapshot.buffered == 3
    assert snapshot.invariant_holds()
    assert delivery.breaker.fail_counter == 0  # cancelling is not a failure


async def test_a_closed_breaker_drains_the_buffer_in_chunks_in_order(
    transport: FakeTransport,
) -> None:
    """One probe, then up to drain_batch at once: a backlog of 250 needs 1 + 3 rounds, not
    250 round trips (an edge gateway's batching uplink depends on it)."""
    policy = ResiliencePolicy(
        retry_max_attempts=1, retry_base=0.001, retry_max=0.005, breaker_fail_max=1,
        breaker_reset_timeout=0.05, buffer_size=1000, drain_batch=100,
    )  # fmt: skip
    delivery = Delivery(transport, policy, MessageStats())
    concurrent = peak = 0
    send = transport.send

    async def counting_send(message: Any) -> Any:
        nonlocal concurrent, peak
        concurrent += 1
        peak = max(peak, concurrent)
        try:
            return await send(message)
        finally:
            concurrent -= 1

    transport.send = counting_send  # type: ignore[method-assign]
    transport.up = False
    for seq in range(250):
        delivery.submit(make_message(seq))
    await wait_for(lambda: delivery.stats.in_flight == 0)
    assert len(delivery.buffer) == 250
    peak = 0  # the live sends above were all out at once; count the drain only
    transport.up = True
    drain = asyncio.create_task(delivery.run_drain())
    try:
        await asyncio.wait_for(delivery.wait_idle(), 5.0)
    finally:
        drain.cancel()
    assert peak == 100
    seqs = [int(mid.rsplit(":", 1)[1]) for mid in transport.delivered]
    assert seqs == list(range(250)), "drained in order, nothing lost"
    assert delivery.stats.acknowledged == 250
