"""Clocks: the one source of time for limiters and retries.

Everything that waits or measures time takes a :class:`Clock`, so tests
drive it with a :class:`ManualClock` and never really sleep.
"""
from __future__ import annotations

import abc
import math
import threading
import time as _time
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .cancel import CancelToken

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock", "wait_on"]


def _check_seconds(seconds: float, what: str) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, got {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {seconds!r}")
    return float(seconds)


class Clock(abc.ABC):
    """Monotonic time for intervals, wall time for the server's timestamps, and sleep.

    Implementations must be thread-safe.
    """

    @abc.abstractmethod
    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""

    @abc.abstractmethod
    def time(self) -> float:
        """Unix wall time in seconds."""

    @abc.abstractmethod
    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (>= 0); raises ``ValueError`` for a negative or non-finite value."""

    def wait(self, seconds: float, token: Optional["CancelToken"] = None) -> bool:
        """Wait ``seconds``, or less if ``token`` is cancelled; True when it is cancelled.

        Every wait of the engine goes through here, so a cancelled call stops
        waiting at once. Without a token this is :meth:`sleep`. The default
        polls the token in short sleeps; clocks override it to wait on it.
        """
        seconds = _check_seconds(seconds, "wait")
        if token is None:
            self.sleep(seconds)
            return False
        remaining = seconds
        while remaining > 0 and not token.cancelled:
            step = min(remaining, 0.05)
            self.sleep(step)
            remaining -= step
        return token.cancelled


def wait_on(clock: object, seconds: float, token: Optional["CancelToken"] = None) -> bool:
    """``clock.wait(seconds, token)``, also for duck-typed clocks that only have ``sleep``."""
    wait = getattr(clock, "wait", None)
    if callable(wait):
        return bool(wait(seconds, token))
    return Clock.wait(clock, seconds, token)  # type: ignore[arg-type]


class SystemClock(Clock):
    """The real clock: :func:`time.monotonic`, :func:`time.time`, :func:`time.sleep`."""

    def monotonic(self) -> float:
        return _time.monotonic()

    def time(self) -> float:
        return _time.time()

    def sleep(self, seconds: float) -> None:
        seconds = _check_seconds(seconds, "sleep")
        if seconds > 0:
            _time.sleep(seconds)

    def wait(self, seconds: float, token: Optional["CancelToken"] = None) -> bool:
        seconds = _check_seconds(seconds, "wait")
        if token is None:
            if seconds > 0:
                _time.sleep(seconds)
            return False
        if seconds <= 0:
            return token.cancelled
        return token.wait(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


class ManualClock(Clock):
    """A clock that moves only when told to; for tests and simulations.

    ``sleep(s)`` advances monotonic and wall time together by ``s`` and
    returns at once; every requested sleep is appended to :attr:`sleeps`.
    ``wait(s, token)`` returns True at once when ``token`` is cancelled, else
    sleeps as above (the ``on_sleep`` hook may cancel it) and reports whether
    the token is cancelled now.
    ``on_sleep``, if given, is called with the seconds after each sleep
    (outside the lock), so a test can make things happen "during" a wait.
    Monotonic time starts at ``monotonic_start``, deliberately unlike the
    wall time, so code that mixes the two shows up in tests.

    Thread-safe: one lock guards the time and the sleep log.
    """

    def __init__(
        self,
        start: float = 1_700_000_000.0,
        *,
        monotonic_start: float = 1_000.0,
        on_sleep: Callable[[float], None] | None = None,
    ) -> None:
        for name, value in (("start", start), ("monotonic_start", monotonic_start)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
        if on_sleep is not None and not callable(on_sleep):
            raise TypeError("on_sleep must be callable or None")
        self._lock = threading.Lock()
        self._wall = float(start)
        self._mono = float(monotonic_start)
        self._on_sleep = on_sleep
        self._sleeps: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def time(self) -> float:
        with self._lock:
            return self._wall

    def sleep(self, seconds: float) -> None:
        seconds = _check_seconds(seconds, "sleep")
        with self._lock:
            self._sleeps.append(seconds)
            self._mono += seconds
            self._wall += seconds
        if self._on_sleep is not None:
            self._on_sleep(seconds)
        # Lets other threads sharing this clock run, so a polling loop in
        # one thread cannot starve the thread it is waiting for.
        _time.sleep(0)

    def wait(self, seconds: float, token: Optional["CancelToken"] = None) -> bool:
        seconds = _check_seconds(seconds, "wait")
        if token is not None and token.cancelled:
            return True
        self.sleep(seconds)
        return token is not None and token.cancelled

    def advance(self, seconds: float) -> None:
        """Move monotonic and wall time forward by ``seconds`` (not logged as a sleep)."""
        seconds = _check_seconds(seconds, "advance")
        with self._lock:
            self._mono += seconds
            self._wall += seconds

    def set_time(self, wall: float) -> None:
        """Set the wall time only (either direction), as an NTP step would; monotonic stays."""
        if isinstance(wall, bool) or not isinstance(wall, (int, float)):
            raise TypeError(f"wall time must be a number, got {type(wall).__name__}")
        if not math.isfinite(wall):
            raise ValueError(f"wall time must be finite, got {wall!r}")
        with self._lock:
            self._wall = float(wall)

    @property
    def sleeps(self) -> list[float]:
        """A copy of the sleeps requested so far, in order."""
        with self._lock:
            return list(self._sleeps)

    @property
    def slept(self) -> float:
        """Total seconds slept."""
        with self._lock:
            return sum(self._sleeps)

    def __repr__(self) -> str:
        with self._lock:
            return f"ManualClock(time={self._wall!r}, monotonic={self._mono!r})"
