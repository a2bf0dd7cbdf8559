"""Keeping a run going through faults, and stopping it cleanly at a budget.

plait retries model calls itself (every client's own retries are turned off, so nothing
retries twice). It does so per call rather than with LangGraph's node ``RetryPolicy`` because
a node may make several calls (structured-output re-asks, pipeline attempts) and re-running
the whole node would pay again for the ones that had succeeded. Per-call retries also let a
circuit breaker shared by every branch of a run see each failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any


@dataclass(frozen=True)
class CallPolicy:
    """How one model call is retried and timed out.

    Args:
        attempts: Calls per endpoint before giving up on it (the first plus retries).
        backoff: Seconds before the first retry; doubled each time, with full jitter.
        max_backoff: The longest wait between attempts, also the cap on ``Retry-After``.
        timeout: Seconds one call may take (None: no limit).
    """

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float | None = 120.0

    def delay(self, attempt: int, exc: BaseException) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based) after ``exc``."""
        hinted = retry_after(exc)
        if hinted is not None:
            return min(hinted, self.max_backoff)
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))


def is_transient(exc: BaseException) -> bool:
    """Rate limits, server errors, timeouts and dropped connections: worth another try."""
    from langchain_core import exceptions as lc

    causes = list(_causes(exc))
    if any(isinstance(e, _malformed_url_errors()) for e in causes):
        return False  # a URL with no scheme: every try fails the same way
    if isinstance(
        exc,
        (
            asyncio.TimeoutError,
            lc.ModelRateLimitError,
            lc.ModelConnectionError,
            lc.ModelTimeoutError,
            ConnectionError,
        ),
    ):
        return True
    status = getattr(exc, "status_code", None)
    if status in (408, 409, 429) or (status is not None and status >= 500):
        return True
    return is_unreachable(exc)


def is_unreachable(exc: BaseException) -> bool:
    """The endpoint could not be reached or did not answer: a connection or transport fault.

    Providers' SDKs wrap httpx's (or httpx2's) errors in errors of their own, and some (the
    ollama client) let them through bare: look down the chain of causes for one.
    """
    return any(isinstance(e, _transport_errors()) for e in _causes(exc))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


@functools.cache
def _transport_errors() -> tuple[type[BaseException], ...]:
    import httpx

    errors: list[type[BaseException]] = [httpx.TransportError, ConnectionError, TimeoutError]
    with contextlib.suppress(ImportError):  # the openai and anthropic SDKs' own httpx fork
        import httpx2

        errors.append(httpx2.TransportError)
    return tuple(errors)


@functools.cache
def _malformed_url_errors() -> tuple[type[BaseException], ...]:
    import httpx

    errors: list[type[BaseException]] = [httpx.UnsupportedProtocol]
    with contextlib.suppress(ImportError):
        import httpx2

        errors.append(httpx2.UnsupportedProtocol)
    return tuple(errors)


def retry_after(exc: BaseException) -> float | None:
    """The server's requested wait from ``retry-after-ms`` or ``Retry-After``, if any."""
    headers: Any = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        if (value := headers.get("retry-after")) is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
    return None


@dataclass
class CircuitBreaker:
    """Per endpoint, shared by every branch of a run.

    After ``threshold`` consecutive failures the endpoint is skipped for ``cooldown`` seconds
    (fallbacks serve meanwhile); then one call probes it: success closes the breaker, failure
    opens it again.
    """

    threshold: int = 5
    cooldown: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if self.probing or time.monotonic() - self.opened_at < self.cooldown:
            return False
        self.probing = True  # half-open: this caller is the probe
        return True

    def abandoned(self) -> None:
        """The call ended with no verdict on the endpoint (cancelled): let another probe."""
        self.probing = False

    def succeeded(self) -> None:
        self.failures, self.opened_at, self.probing = 0, None, False

    def failed(self) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.opened_at, self.probing = time.monotonic(), False

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None


class BudgetExceeded(Exception):  # noqa: N818 - it is a stop signal, not a fault
    """A budget was reached. Deliberately not a ``PlaitError``: patterns that keep a fan-out
    going past a failed branch catch ``PlaitError``, and must not swallow a budget stop.
    """

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit  # "tokens", "cost" or "calls": the flag to raise on resume


@dataclass
class Budget:
    """Limits on a whole thread, across all its branches, checked before each model call.

    Calls already in flight when a limit is reached still finish, so a fan-out can overshoot
    by at most its in-flight calls.
    """

    max_tokens: int | None = None
    max_cost: float | None = None
    max_calls: int | None = None
    tokens: int = 0
    cost: float = 0.0
    calls: int = 0
    pending: int = 0  # calls under way: they count against max_calls before they are spent

    def check(self) -> None:
        """Raise ``BudgetExceeded`` if any limit is reached."""
        for name, spent, limit in (
            ("tokens", self.tokens, self.max_tokens),
            ("cost", self.cost, self.max_cost),
            ("calls", self.calls + self.pending, self.max_calls),
        ):
            if limit is not None and spent >= limit:
                shown = (
                    f"${spent:.4f} of ${limit:.4f}" if name == "cost" else f"{spent:,} of {limit:,}"
                )
                raise BudgetExceeded(f"budget reached: {name} {shown}", name)

    def spend(self, tokens: int, cost: float) -> None:
        self.tokens += tokens
        self.cost += cost
        self.calls += 1
