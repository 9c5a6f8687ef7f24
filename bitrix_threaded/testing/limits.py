"""The portal's two limits, a leaky bucket and a per-method operating-time window.

Both read time from a *clock*: any object with a ``time()`` method returning
Unix seconds as a float (the :mod:`time` module itself is the default). A
clock may also offer ``sleep(seconds)``; the portal then sleeps through it,
so a :class:`ManualClock` turns the cost model's sleeps into instant clock
advances and tests never wait.
"""
from __future__ import annotations

import math
import threading
import time as _time
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["LeakyBucket", "ManualClock", "OperatingWindow", "as_clock"]


def as_clock(clock: Any) -> Any:
    """Return ``clock`` (default: the :mod:`time` module) after checking it has ``time()``.

    Raises TypeError if it has no callable ``time`` attribute.
    """
    if clock is None:
        return _time
    if not callable(getattr(clock, "time", None)):
        raise TypeError("clock must have a time() method returning Unix seconds")
    return clock


class ManualClock:
    """A clock that stands still until told to move; for deterministic tests.

    ``sleep(seconds)`` advances the clock instead of waiting and adds to
    :attr:`slept`. Thread-safe.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        if isinstance(start, bool) or not isinstance(start, (int, float)):
            raise TypeError("start must be a number of Unix seconds")
        self._now = float(start)
        self._slept = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (>= 0) and return the new time."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError("seconds must be a number")
        if seconds < 0:
            raise ValueError("a clock cannot move backwards")
        with self._lock:
            self._now += seconds
            return self._now

    def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` at once, recording the time as slept."""
        if seconds <= 0:
            return
        with self._lock:
            self._now += seconds
            self._slept += seconds

    @property
    def slept(self) -> float:
        """Total seconds passed to :meth:`sleep` so far."""
        with self._lock:
            return self._slept

    def __repr__(self) -> str:
        return f"ManualClock(time={self.time():.3f})"


class LeakyBucket:
    """Counts requests; the counter drains continuously at ``rate`` per second.

    A request that would push the counter above ``capacity`` is refused and
    not counted. Thread-safe: one lock guards the counter.
    """

    def __init__(self, capacity: float, rate: float, clock: Any = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self._clock = as_clock(clock)
        self._level = 0.0
        self._updated: Optional[float] = None
        self._lock = threading.Lock()

    def _drain(self, now: float) -> None:
        if self._updated is not None and now > self._updated:
            self._level = max(0.0, self._level - (now - self._updated) * self.rate)
        if self._updated is None or now > self._updated:
            self._updated = now

    def try_acquire(self) -> bool:
        """Count one request if it fits; return False (and count nothing) if it does not."""
        with self._lock:
            self._drain(self._clock.time())
            if self._level + 1 > self.capacity + 1e-9:
                return False
            self._level += 1
            return True

    @property
    def level(self) -> float:
        """The counter now, after draining."""
        with self._lock:
            self._drain(self._clock.time())
            return self._level

    def reset(self) -> None:
        with self._lock:
            self._level = 0.0
            self._updated = None


class OperatingWindow:
    """Operating seconds per key (method) in ``buckets`` buckets spanning ``window`` seconds.

    A bucket opens with the first call after the previous one's span
    (``window / buckets``) has passed, and expires ``window`` seconds after it
    opened. ``used(key)`` is the sum over live buckets; ``reset_at(key)`` is
    when the oldest live bucket expires, rounded up to whole seconds as the server
    does (an int), or to ``resolution`` seconds when that is under one: a portal
    whose time runs faster (``time_scale`` 0.25) rounds to its own scaled second,
    so that the rounding costs the same share of a window as on a real portal.
    Thread-safe.
    """

    def __init__(self, window: float = 600.0, buckets: int = 10, clock: Any = None,
                 resolution: float = 1.0) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        if buckets < 1:
            raise ValueError("buckets must be at least 1")
        if not 0 < resolution <= 1:
            raise ValueError("resolution must be in (0, 1]")
        self.resolution = float(resolution)
        self.window = float(window)
        self.span = self.window / buckets
        self._clock = as_clock(clock)
        self._buckets: Dict[str, List[List[float]]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> List[List[float]]:
        buckets = self._buckets.get(key)
        if not buckets:
            return []
        while buckets and now >= buckets[0][0] + self.window:
            buckets.pop(0)
        return buckets

    def record(self, key: str, seconds: float) -> None:
        """Add ``seconds`` of work to ``key`` at the current time (ignored if <= 0)."""
        if seconds <= 0:
            return
        with self._lock:
            now = self._clock.time()
            buckets = self._live(key, now)
            if buckets and now < buckets[-1][0] + self.span:
                buckets[-1][1] += seconds
            else:
                self._buckets.setdefault(key, buckets).append([now, seconds])

    def state(self, key: str) -> Tuple[float, Optional[float]]:
        """Return ``(used seconds, reset_at or None)`` for ``key`` now."""
        with self._lock:
            buckets = self._live(key, self._clock.time())
            if not buckets:
                return 0.0, None
            used = sum(bucket[1] for bucket in buckets)
            expires = buckets[0][0] + self.window
            if self.resolution == 1.0:
                return used, int(math.ceil(expires))
            steps = math.ceil(round(expires / self.resolution, 9))
            return used, round(steps * self.resolution, 9)

    def used(self, key: str) -> float:
        return self.state(key)[0]

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
