"""Retry decisions: which failures are tried again, and after how long.

Everything here is pure: nothing sleeps or reads a clock. The caller asks
:meth:`RetryPolicy.decide` after each failure and does the waiting itself.

Writes are retried only when the failure proves the request did not run
(rate limits, a connection that never opened); a retried write that did
run the first time would create a second deal or send a second message.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .errors import (
    AuthError,
    BitrixError,
    Cancelled,
    InvalidResponse,
    OperationTimeLimit,
    OverloadLimit,
    QueryLimitExceeded,
    ServerError,
    TransportError,
)

__all__ = ["READ_SEGMENTS", "RetryDecision", "RetryPolicy", "RetryState", "is_write_method",
           "jittered"]

READ_SEGMENTS = frozenset({
    "access", "count", "current", "fields", "get", "getfields", "getlist", "info", "list",
    "methods", "profile", "scope", "search", "time", "version",
})

# Shared by threads; Random.random() is atomic in CPython.
_RNG = random.Random()

# 2 ** 1000 is still a finite float; beyond that the cap applies anyway.
_MAX_EXPONENT = 1000


def is_write_method(method: str) -> bool:
    """True unless ``method`` is recognisably a read (its last dot segment,
    case-insensitive, is in :data:`READ_SEGMENTS`, starts with ``get`` or
    ``list``, or ends with ``list``). Unknown methods count as writes, which
    only makes retries more cautious. ``batch`` counts as a write: judge its
    commands instead.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    name = method.strip().lower()
    if not name:
        raise ValueError("method must not be empty")
    last = name.rsplit(".", 1)[-1]
    is_read = (last in READ_SEGMENTS or last.startswith(("get", "list"))
               or last.endswith("list"))
    return not is_read


def jittered(delay: float, fraction: float, u: float) -> float:
    """``delay`` with its last ``fraction`` randomised by ``u`` in [0, 1):
    the result lies in ``(delay * (1 - fraction), delay]``, never above ``delay``."""
    return delay * (1.0 - fraction * u)


@dataclass(frozen=True)
class RetryDecision:
    """What to do after a failure: retry or not, wait ``delay`` seconds first, and why."""

    retry: bool
    delay: float
    reason: str


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def _seconds(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _give_up(reason: str) -> RetryDecision:
    return RetryDecision(False, 0.0, reason)


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed request is retried; an immutable value, safe to share between threads.

    ``max_attempts`` counts tries of one request, the first included, for
    ordinary transient failures. ``limit_attempts`` is a separate, larger
    budget of retries for QUERY_LIMIT_EXCEEDED and OPERATION_TIME_LIMIT,
    which are certainly not executed. Backoff is ``backoff_base * 2 **
    attempt`` capped at ``backoff_max``, its last ``jitter`` fraction
    randomised. ``retry_transport_errors=False`` never retries a failure
    without a reply. Invalid values raise ``TypeError``/``ValueError``.

    The same budgets bound a whole request, each command inside a batch and
    each list page: all of them advance a :class:`RetryState`.
    """

    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.5
    retry_transport_errors: bool = True
    limit_attempts: int = 30

    def __post_init__(self) -> None:
        if _count(self.max_attempts, "max_attempts") < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        _count(self.limit_attempts, "limit_attempts")
        _seconds(self.backoff_base, "backoff_base")
        _seconds(self.backoff_max, "backoff_max")
        _seconds(self.jitter, "jitter")
        if self.jitter > 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter!r}")
        if not isinstance(self.retry_transport_errors, bool):
            raise TypeError("retry_transport_errors must be a bool")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` >= 0).

        Lies in ``(d * (1 - jitter), d]`` with ``d = min(backoff_max,
        backoff_base * 2 ** attempt)``; pass a seeded ``rng`` for a fixed
        sequence.
        """
        attempt = _count(attempt, "attempt")
        delay = min(self.backoff_max, self.backoff_base * 2.0 ** min(attempt, _MAX_EXPONENT))
        return jittered(delay, self.jitter, (rng or _RNG).random())

    def decide(
        self,
        error: BitrixError,
        *,
        attempt: int,
        limit_attempt: int = 0,
        write: bool,
        rng: random.Random | None = None,
    ) -> RetryDecision:
        """Whether to retry after ``error``, and the delay before it.

        ``attempt`` is how many ordinary tries of this request failed before
        this one, ``limit_attempt`` how many limit retries were already
        spent; ``write`` says whether the request may change data (see
        :func:`is_write_method`). Count the retry against ``limit_attempt``
        for QueryLimitExceeded / OperationTimeLimit, else against ``attempt``.
        """
        if not isinstance(error, BitrixError):
            raise TypeError(f"error must be a BitrixError, got {type(error).__name__}")
        attempt = _count(attempt, "attempt")
        limit_attempt = _count(limit_attempt, "limit_attempt")
        if not isinstance(write, bool):
            raise TypeError("write must be a bool")

        if isinstance(error, AuthError):
            return _give_up(f"{error.code}: authentication failure, not retried")
        if isinstance(error, QueryLimitExceeded):
            return self._limit_retry(
                limit_attempt, self.backoff(limit_attempt, rng),
                "rate limit hit, request rejected before it ran")
        if isinstance(error, OperationTimeLimit):
            # The operating window holds the method until its reset; waiting
            # here as well would add to that wait.
            return self._limit_retry(
                limit_attempt, 0.0,
                "method blocked by its operating-time limit, request not run")
        if isinstance(error, OverloadLimit):
            return self._ordinary(attempt, rng, "portal overloaded, request rejected before it ran")
        if isinstance(error, TransportError):
            if not error.retryable:
                return _give_up(f"{error.code}: trying again cannot help")
            if not self.retry_transport_errors:
                return _give_up(f"{error.code}: transport errors are not retried "
                                "(retry_transport_errors=False)")
            if error.executed is False:
                return self._ordinary(attempt, rng, "no connection, request never sent")
            if write:
                return _give_up(f"{error.code}: write not retried, the failure is ambiguous "
                                "(the request may have been executed)")
            return self._ordinary(attempt, rng, "transport failure on a read")
        if isinstance(error, ServerError) or (
            isinstance(error, InvalidResponse) and error.status is not None
            and error.status >= 500
        ):
            if write:
                return _give_up(f"{error.code}: write not retried, the server error is "
                                "ambiguous (the request may have been executed)")
            return self._ordinary(attempt, rng, "server error on a read")
        return _give_up(f"{error.code}: not a transient failure")

    def _ordinary(self, attempt: int, rng: random.Random | None, why: str) -> RetryDecision:
        tries = attempt + 1
        if tries >= self.max_attempts:
            return _give_up(f"{why}; giving up after {tries} of {self.max_attempts} tries")
        return RetryDecision(True, self.backoff(attempt, rng),
                             f"{why}; try {tries + 1} of {self.max_attempts}")

    def _limit_retry(self, limit_attempt: int, delay: float, why: str) -> RetryDecision:
        if limit_attempt >= self.limit_attempts:
            return _give_up(f"{why}; {self.limit_attempts} limit retries used up")
        return RetryDecision(True, delay,
                             f"{why}; limit retry {limit_attempt + 1} of {self.limit_attempts}")


@dataclass(frozen=True)
class RetryState:
    """Where one unit of work stands in its retry budget; an immutable value.

    The one retry state of the engine: a request, a command inside a batch and a
    list page each start from ``RetryState(policy)`` and, after each failure, go
    on with ``state = state.increment(error, write=...)`` (as urllib3's
    ``Retry.increment`` does). The new state counts the failure against the
    ordinary budget (``policy.max_attempts`` tries) or, for
    QUERY_LIMIT_EXCEEDED / OPERATION_TIME_LIMIT, the limit budget
    (``policy.limit_attempts`` retries), and carries the decision: ``retry``,
    ``delay`` (seconds to wait first) and ``reason``. A command the portal
    dropped unrun (``NOT_EXECUTED``) is asked again at once, within the
    ordinary budget; a cancelled call is never retried.

    So ``RetryPolicy(max_attempts=..., limit_attempts=...)`` bounds every
    kind of retry the same way. Thread-safe (immutable).
    """

    policy: RetryPolicy = RetryPolicy()
    attempts: int = 0
    limit_attempts: int = 0
    decision: RetryDecision | None = None

    @property
    def retry(self) -> bool:
        """True when the last failure may be retried (False before any failure)."""
        return self.decision is not None and self.decision.retry

    @property
    def delay(self) -> float:
        """Seconds to wait before the retry (0.0 before any failure)."""
        return 0.0 if self.decision is None else self.decision.delay

    @property
    def reason(self) -> str:
        return "" if self.decision is None else self.decision.reason

    def increment(self, error: BitrixError, *, write: bool,
                  rng: random.Random | None = None) -> "RetryState":
        """The state after ``error``; see :attr:`retry`, :attr:`delay`, :attr:`reason`."""
        if not isinstance(error, BitrixError):
            raise TypeError(f"error must be a BitrixError, got {type(error).__name__}")
        policy = self.policy
        if isinstance(error, Cancelled):
            decision = _give_up(f"{error.code}: the call was stopped")
        elif error.code == "NOT_EXECUTED":
            tries = self.attempts + 1
            if tries >= policy.max_attempts:
                decision = _give_up(f"not executed; giving up after {tries} of "
                                    f"{policy.max_attempts} tries")
            else:
                decision = RetryDecision(True, 0.0, f"not executed; try {tries + 1} of "
                                         f"{policy.max_attempts}")
        else:
            decision = policy.decide(error, attempt=self.attempts,
                                     limit_attempt=self.limit_attempts, write=write, rng=rng)
        attempts, limit_attempts = self.attempts, self.limit_attempts
        if isinstance(error, (QueryLimitExceeded, OperationTimeLimit)):
            limit_attempts += 1
        else:
            attempts += 1
        return RetryState(policy, attempts, limit_attempts, decision)
