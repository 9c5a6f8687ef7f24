"""The leaky bucket: the portal's request-rate limit (503 QUERY_LIMIT_EXCEEDED).

The algorithm is the generic cell rate algorithm (virtual scheduling) with an
adaptive drain rate. Its state (:class:`~bitrix_threaded.limiter_store.BucketState`)
lives in a :class:`~bitrix_threaded.limiter_store.BucketStore`; every decision is
one store transaction built from the pure functions below.

Rate limits: b24-rest-docs ``settings/performance/limits.md`` (a bucket of 50
requests draining 2/s; Enterprise 250 and 5/s).
"""
from __future__ import annotations

import threading
from typing import Optional, Tuple

from . import _checks
from .cancel import CancelToken
from .clock import SYSTEM_CLOCK, Clock, wait_on
from .limiter_store import BucketState, BucketStore, MemoryBucketStore

__all__ = ["LeakyBucket", "book", "rescale"]


def book(tat: float, now: float, interval: float, burst: float) -> Tuple[float, float]:
    """Return ``(send_at, new_tat)`` for a request that wants to go at ``now``.

    The bucket holds ``(tat - now) / interval`` requests; one fits when its +1
    keeps the level within ``burst``.
    """
    send_at = max(now, tat - (burst - 1.0) * interval)
    return send_at, max(tat, send_at) + interval


def rescale(tat: float, now: float, old_rate: float, new_rate: float) -> float:
    """Keep the bucket's level when its drain rate changes."""
    if tat <= now:
        return tat
    return now + (tat - now) * old_rate / new_rate


class LeakyBucket:
    """Client-side mirror of the portal's leaky bucket (``capacity`` requests, ``rate``/s).

    Take a slot *before* sending each HTTP request (a batch is one request).
    :meth:`reserve` books the next free send time at once, so concurrent
    callers get distinct, evenly spaced times instead of waking together.
    ``margin`` tokens of ``capacity`` are kept free because the portal sees
    a request a little after it is counted here. The drain rate adapts:
    :meth:`penalize` after a 503 QUERY_LIMIT_EXCEEDED, :meth:`reward` after
    a success. ``store``: where the state lives (default: in this process).

    Thread-safe; :meth:`acquire` waits outside any lock. Invalid arguments
    raise ``TypeError``/``ValueError``.
    """

    PENALTY_FACTOR = 0.8
    REWARD_FACTOR = 1.1

    def __init__(
        self,
        capacity: int = 50,
        rate: float = 2.0,
        *,
        clock: Clock = SYSTEM_CLOCK,
        margin: float = 1.0,
        min_rate_factor: float = 0.25,
        store: Optional[BucketStore] = None,
    ) -> None:
        capacity = _checks.integer(capacity, "capacity", minimum=1)
        rate = _checks.number(rate, "rate", strict=True)
        margin = _checks.number(margin, "margin")
        factor = _checks.number(min_rate_factor, "min_rate_factor", strict=True)
        if factor > 1.0:
            raise ValueError(f"min_rate_factor must be <= 1, got {factor!r}")
        if capacity - margin < 1.0:
            raise ValueError(f"capacity - margin must be >= 1, got {capacity} - {margin}")
        if store is not None and not isinstance(store, BucketStore):
            raise TypeError(f"store must be a BucketStore, got {type(store).__name__}")
        self._clock = _checks.clock(clock)
        self._store = store if store is not None else MemoryBucketStore(self._clock)
        self._config_lock = threading.Lock()
        self._capacity = capacity
        self._rate = rate
        self._margin = margin
        self._min_factor = factor
        # Rejections of requests booked before the latest cut were sent under
        # the old rate; matching each penalty to its thread's last booking
        # makes one wave of 503s one cut, not one cut per rejected request.
        self._booked = threading.local()  # .cuts: the store's cuts at this thread's booking

    @property
    def store(self) -> BucketStore:
        return self._store

    @property
    def capacity(self) -> int:
        """The portal's bucket size (requests)."""
        return self._capacity

    @property
    def rate(self) -> float:
        """The configured drain rate (requests per second)."""
        return self._rate

    @property
    def current_rate(self) -> float:
        """The adaptive drain rate in use, between ``min_rate_factor * rate`` and ``rate``."""
        return self._store.transact(self._current)

    @property
    def margin(self) -> float:
        return self._margin

    @property
    def level(self) -> float:
        """Requests counted in the bucket now, including slots booked for the future."""
        now = self._store.now()
        return self._store.transact(
            lambda state: max(0.0, state.tat - now) * self._current(state))

    def _current(self, state: BucketState, configured: Optional[float] = None) -> float:
        # Unset (0.0), or set by a client configured differently: within our bounds.
        configured = self._rate if configured is None else configured
        rate = state.rate if state.rate > 0 else configured
        return min(configured, max(configured * self._min_factor, rate))

    def book(self) -> float:
        """Book the next free slot; return the time (monotonic, for the in-process
        store) at which to send."""
        return self._book()[1]

    def reserve(self) -> float:
        """Book the next free slot; return how long to wait before sending (0.0 = now)."""
        now, send_at = self._book()
        return max(0.0, send_at - now)

    def _book(self) -> Tuple[float, float]:
        now = self._store.now()
        burst = self._capacity - self._margin

        def transaction(state: BucketState) -> Tuple[float, int]:
            rate = self._current(state)
            send_at, state.tat = book(state.tat, now, 1.0 / rate, burst)
            state.rate = rate
            return send_at, state.cuts

        send_at, cuts = self._store.transact(transaction)
        self._booked.cuts = cuts
        return now, send_at

    def acquire(self, token: Optional[CancelToken] = None) -> float:
        """:meth:`reserve`, then wait until the slot; return the seconds waited.

        With a ``token``, the wait ends early when it is cancelled and the
        token's error (``Cancelled``/``ClientClosed``) is raised.
        """
        if token is not None:
            token.raise_if_cancelled()
        wait = self.reserve()
        if wait > 0 and wait_on(self._clock, wait, token) and token is not None:
            raise token.error()
        return wait

    def penalize(self) -> None:
        """After a 503 QUERY_LIMIT_EXCEEDED: treat the portal's bucket as full now and
        cut the current rate by 20% (not below ``min_rate_factor * rate``).

        Called by a thread whose last booking predates the latest cut (its
        request went out under the old rate), it only refills the bucket.
        """
        now = self._store.now()
        seen = getattr(self._booked, "cuts", None)

        def transaction(state: BucketState) -> None:
            rate = self._current(state)
            if seen is None or seen >= state.cuts:
                floor = self._rate * self._min_factor
                new_rate = max(floor, rate * self.PENALTY_FACTOR)
                state.tat = rescale(state.tat, now, rate, new_rate)
                state.rate = rate = new_rate
                state.cuts += 1
            state.tat = max(state.tat, now + self._capacity / rate)

        self._store.transact(transaction)

    def reward(self) -> None:
        """After a success: raise the current rate by 10%, up to the configured rate."""
        now = self._store.now()

        def transaction(state: BucketState) -> None:
            rate = self._current(state)
            if rate < self._rate:
                new_rate = min(self._rate, rate * self.REWARD_FACTOR)
                state.tat = rescale(state.tat, now, rate, new_rate)
                state.rate = new_rate

        self._store.transact(transaction)

    def configure(self, capacity: Optional[int] = None, rate: Optional[float] = None) -> None:
        """Change the bucket size and/or configured rate (e.g. 250 and 5.0 for Enterprise).

        A penalized current rate keeps its ratio to the configured one.
        """
        with self._config_lock:
            new_capacity = self._capacity if capacity is None else _checks.integer(
                capacity, "capacity", minimum=1)
            new_rate = self._rate if rate is None else _checks.number(rate, "rate", strict=True)
            if new_capacity - self._margin < 1.0:
                raise ValueError(
                    f"capacity - margin must be >= 1, got {new_capacity} - {self._margin}")
            old_rate = self._rate
            now = self._store.now()

            def transaction(state: BucketState) -> None:
                current = self._current(state, old_rate)
                target = new_rate * current / old_rate
                state.tat = rescale(state.tat, now, current, target)
                state.rate = target

            self._capacity = new_capacity
            self._rate = new_rate
            self._store.transact(transaction)

    def __repr__(self) -> str:
        return (f"LeakyBucket(capacity={self._capacity}, rate={self._rate}, "
                f"current_rate={self.current_rate:.3g}, margin={self._margin})")
