"""One leaky bucket shared by every process and host that uses the same Redis.

The same algorithm as :class:`~bitrix_threaded.limiter.LeakyBucket` (GCRA booking
with a margin, adaptive rate cut by 503s and restored by successes), but its state
lives in Redis and each decision is one Lua script on Redis time (see
:mod:`.scripts`). While Redis is unavailable the bucket books from an in-process
bucket at ``fallback_share`` of the rate, so that the processes running alone
together stay under the portal's limit.

Why not a :class:`~bitrix_threaded.limiter_store.BucketStore`: a store runs the
algorithm's Python transaction on the state, which against Redis means optimistic
WATCH/MULTI/EXEC (TIME, read, write: three or four round trips per booking, retried
on every conflict). Dozens of threads in several processes booking one key would
mostly conflict. The decision itself must run inside Redis, so the algorithm is
written again in Lua, and this class offers the bucket's public methods.
"""
from __future__ import annotations

import threading
from typing import Any, Optional

from ..cancel import CancelToken
from ..clock import Clock, wait_on
from ..limiter import LeakyBucket
from .keys import KeySpace
from .link import DOWN, RedisLink
from .scripts import Scripts, as_ints

__all__ = ["SharedBucket"]

_IDLE_TTL_MS = 600_000  # state outlives the bucket's own drain time by ten minutes
DISPATCH_JITTER = 0.25  # seconds; at the standard 2/s the client's own margin is larger


class SharedBucket:
    """Drop-in for :class:`~bitrix_threaded.limiter.LeakyBucket`, shared through Redis.

    Same public methods and meaning. :meth:`penalize` cuts the shared rate once per
    wave of 503s across all processes: a rejection counts only when its request was
    booked after the latest cut. Thread-safe.
    """

    PENALTY_FACTOR = LeakyBucket.PENALTY_FACTOR
    REWARD_FACTOR = LeakyBucket.REWARD_FACTOR

    def __init__(self, scripts: Scripts, link: RedisLink, keys: KeySpace, *,
                 capacity: int = 50, rate: float = 2.0, clock: Clock, margin: float = 1.0,
                 min_rate_factor: float = 0.25, fallback_share: float = 0.25) -> None:
        # The in-process bucket validates the arguments and serves during outages.
        self._fallback = LeakyBucket(capacity, rate * fallback_share, clock=clock,
                                     margin=margin, min_rate_factor=min_rate_factor)
        # Requests booked together leave from many processes (hosts), whenever each
        # gets the CPU: a burst may reach the portal spread out while the slots after
        # it come on time, so keep at least DISPATCH_JITTER seconds of drain free too.
        margin = min(capacity - 1.0, max(float(margin), DISPATCH_JITTER * float(rate)))
        self._scripts = scripts
        self._link = link
        self._keys = keys
        self._clock = clock
        self._capacity = capacity
        self._rate = float(rate)
        self._margin = float(margin)
        self._min_factor = float(min_rate_factor)
        self._share = float(fallback_share)
        self._lock = threading.Lock()
        self._interval_us = self._base_interval()
        self._seen_rejoins = link.rejoins
        self._filled_for = 0  # the outage for which the fallback bucket was filled
        self._booked = threading.local()  # .cuts: shared cut count at this thread's booking

    def _base_interval(self) -> int:
        return max(1, round(1_000_000 / self._rate))

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def margin(self) -> float:
        return self._margin

    @property
    def current_rate(self) -> float:
        """The shared adaptive rate as last seen (the fallback's while Redis is down)."""
        if not self._link.up:
            return self._fallback.current_rate
        with self._lock:
            return 1_000_000 / self._interval_us

    @property
    def level(self) -> float:
        """Requests counted in the shared bucket now, including slots booked ahead."""
        reply = self._link.call(lambda: self._scripts.run("peek", [self._keys.bucket], []))
        if reply is DOWN:
            return self._fallback.level
        return as_ints(reply)[0] / 1_000_000

    def reserve(self) -> float:
        """Book the next free slot; return how long to wait before sending (0.0 = now)."""
        with self._lock:
            rejoins = self._link.rejoins
            fill = rejoins != self._seen_rejoins
        args = [self._capacity, repr(self._margin), self._base_interval(), _IDLE_TTL_MS,
                1 if fill else 0]
        reply = self._link.call(lambda: self._scripts.run("book", [self._keys.bucket], args))
        if reply is DOWN:
            self._booked.cuts = None
            self._fill_fallback_once()
            return self._fallback.reserve()
        wait_us, interval_us, cuts = as_ints(reply)
        with self._lock:
            if fill:
                self._seen_rejoins = rejoins
            self._interval_us = interval_us
        self._booked.cuts = cuts
        return wait_us / 1_000_000

    def _fill_fallback_once(self) -> None:
        """At the start of each outage, count the in-process bucket as full: the
        shared one may have been full when Redis went away."""
        outages = self._link.outages
        with self._lock:
            if outages == self._filled_for:
                return
            self._filled_for = outages
        store = self._fallback.store
        now = store.now()
        full = now + self._capacity / (self._rate * self._share)

        def fill(state: Any) -> None:
            state.tat = max(state.tat, full)

        store.transact(fill)

    def book(self) -> float:
        """Book the next free slot; return the monotonic time at which to send."""
        return self._clock.monotonic() + self.reserve()

    def acquire(self, token: Optional[CancelToken] = None) -> float:
        """:meth:`reserve`, then wait until the slot; return the seconds waited.

        With a ``token``, the wait ends early when it is cancelled and the token's
        error is raised (the booked slot is then left unused).
        """
        if token is not None:
            token.raise_if_cancelled()
        wait = self.reserve()
        if wait > 0 and wait_on(self._clock, wait, token) and token is not None:
            raise token.error()
        return wait

    def penalize(self) -> None:
        """After a 503: the portal's bucket is full; cut the shared rate by 20% once per wave."""
        seen = getattr(self._booked, "cuts", None)
        if seen is None:  # booked from the fallback: the local bucket takes it
            self._fallback.penalize()
            return
        slowest = round(1_000_000 / (self._rate * self._min_factor))
        args = [self._capacity, self._base_interval(), slowest, seen,
                repr(self.PENALTY_FACTOR), _IDLE_TTL_MS]
        reply = self._link.call(lambda: self._scripts.run("penalize", [self._keys.bucket], args))
        if reply is DOWN:
            self._fallback.penalize()
            return
        interval_us, _ = as_ints(reply)
        with self._lock:
            self._interval_us = interval_us

    def reward(self) -> None:
        """After a success: raise the shared rate by 10%, up to the configured rate.

        Costs no round trip while the rate last seen is the configured one.
        """
        base = self._base_interval()
        with self._lock:
            at_full_rate = self._interval_us <= base
        if at_full_rate:
            return
        args = [base, repr(self.REWARD_FACTOR), _IDLE_TTL_MS]
        reply = self._link.call(lambda: self._scripts.run("reward", [self._keys.bucket], args))
        if reply is DOWN:
            self._fallback.reward()
            return
        with self._lock:
            self._interval_us = as_ints(reply)[0]

    def configure(self, capacity: int | None = None, rate: float | None = None) -> None:
        """Change the bucket size and/or configured rate for this process's bookings."""
        self._fallback.configure(capacity, None if rate is None else rate * self._share)
        with self._lock:
            if capacity is not None:
                self._capacity = capacity
            if rate is not None:
                self._rate = float(rate)
                self._interval_us = max(self._interval_us, self._base_interval())

    @property
    def fallback(self) -> LeakyBucket:
        """The in-process bucket used while Redis is unavailable."""
        return self._fallback

    def __repr__(self) -> str:
        return (f"SharedBucket({self._keys.bucket!r}, capacity={self._capacity}, "
                f"rate={self._rate}, margin={self._margin})")
