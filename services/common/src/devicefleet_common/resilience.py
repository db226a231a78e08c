"""Retry with exponential backoff + jitter (tenacity) and circuit breakers (pybreaker).

The classic composition: retry wraps the breaker, so every attempt counts towards the
breaker and an open breaker stops the retries at once (``CircuitBreakerError`` is not
retried). Only transient failures (429, 503, timeouts, connection errors) are retried;
permanent ones (400, 409, 413) are neither retried nor counted against the breaker, since
they prove the backend is up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pybreaker
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

CircuitBreakerError = pybreaker.CircuitBreakerError


class TransientError(Exception):
    """Worth retrying; ``retry_after`` (seconds) is the server's hint, if it gave one."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentError(Exception):
    """Retrying will not help (bad request, conflict, too large)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def transient_retry(
    max_attempts: int,
    base: float,
    maximum: float,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> AsyncRetrying:
    backoff = wait_exponential_jitter(multiplier=base, max=maximum, jitter=base)

    def wait(state: RetryCallState) -> float:
        # Honour Retry-After when the server sent one, but never wait less than the backoff.
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after", None) or 0.0
        return max(float(backoff(state)), min(float(hint), maximum))

    return AsyncRetrying(
        stop=stop_after_attempt(max_attempts),
        wait=wait,
        retry=retry_if_exception_type(TransientError),
        reraise=True,
        before_sleep=before_sleep,
    )


class _TransitionListener(pybreaker.CircuitBreakerListener):
    def __init__(self, on_transition: Callable[[str, str, int], None]) -> None:
        self._on_transition = on_transition

    def state_change(self, cb: pybreaker.CircuitBreaker, old: Any, new: Any) -> None:
        self._on_transition(old.name if old else "closed", new.name, cb.fail_counter)


class _FailureListener(pybreaker.CircuitBreakerListener):
    def __init__(self, on_failure: Callable[[BaseException], None]) -> None:
        self._on_failure = on_failure

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        self._on_failure(exc)


def circuit_breaker(
    name: str,
    fail_max: int,
    reset_timeout: float,
    on_transition: Callable[[str, str, int], None] | None = None,
    on_failure: Callable[[BaseException], None] | None = None,
) -> pybreaker.CircuitBreaker:
    """A breaker whose state names are ``closed``, ``open`` and ``half-open``."""
    listeners: list[pybreaker.CircuitBreakerListener] = []
    if on_transition:
        listeners.append(_TransitionListener(on_transition))
    if on_failure:
        listeners.append(_FailureListener(on_failure))
    return pybreaker.CircuitBreaker(
        name=name,
        fail_max=fail_max,
        reset_timeout=reset_timeout,
        exclude=[PermanentError],
        listeners=listeners,
    )
