"""The connection to Redis as the shared limiter sees it: up, or down and re-probed.

A shared limiter must never stall an export because Redis stalled. Every Redis call
goes through :meth:`RedisLink.call`: when Redis fails (refused, timed out, loading,
read-only), the link turns *down*, logs one WARNING for the outage, and answers
:data:`DOWN` at once until the next probe is due (0.5 s, doubling up to 30 s).
The caller then uses its in-process fallback - or, with ``fallback="raise"``, the
link raises :class:`SharedLimitsUnavailable`. The first call that succeeds again
ends the outage (INFO) and bumps :attr:`rejoins`, so the bucket knows to count
itself as full: while the processes were apart, together they may have filled it.

Thread-safe: one probe at a time; the other threads fall back meanwhile.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, TypeVar, cast

from ..clock import Clock
from ..errors import BitrixError

__all__ = ["DOWN", "RedisLink", "SharedLimitsUnavailable"]

log = logging.getLogger("bitrix_threaded.shared_limits")

T = TypeVar("T")

FIRST_PROBE = 0.5
LAST_PROBE = 30.0

# Error replies that mean "this server cannot serve now", not "the script is wrong".
_UNAVAILABLE_REPLIES = ("LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "BUSY",
                        "TRYAGAIN", "MOVED", "ASK")


class SharedLimitsUnavailable(BitrixError):
    """Redis holding the shared limits cannot be reached and ``shared_limits_fallback``
    is ``"raise"``. Never retried: the caller asked to stop instead of going on alone."""

    def __init__(self, description: str = "the shared limits in Redis are unavailable") -> None:
        super().__init__("SHARED_LIMITS_UNAVAILABLE", description)


class _Down:
    def __repr__(self) -> str:
        return "DOWN"

    def __bool__(self) -> bool:
        return False


#: What :meth:`RedisLink.call` returns while Redis is unavailable.
DOWN: Any = _Down()


def _unavailable(exc: BaseException) -> bool:
    try:
        from redis import exceptions as rex
    except ImportError:  # pragma: no cover - the link is only built with redis installed
        return isinstance(exc, OSError)
    if isinstance(exc, (rex.ConnectionError, rex.TimeoutError, OSError)):
        return True
    if isinstance(exc, rex.ResponseError):
        return str(exc).split(" ", 1)[0].upper() in _UNAVAILABLE_REPLIES
    return False


class RedisLink:
    """Runs Redis calls and tracks whether Redis is up.

    ``fallback``: ``"local"`` (answer :data:`DOWN`) or ``"raise"``.
    """

    def __init__(self, *, clock: Clock, fallback: str = "local",
                 first_probe: float = FIRST_PROBE, last_probe: float = LAST_PROBE) -> None:
        if fallback not in ("local", "raise"):
            raise ValueError('fallback must be "local" or "raise"')
        self._clock = clock
        self._fallback = fallback
        self._first = first_probe
        self._last = last_probe
        self._lock = threading.Lock()
        self._down = False
        self._probe_at = 0.0
        self._backoff = first_probe
        self._probing = False
        self.rejoins = 0
        self.outages = 0

    @property
    def up(self) -> bool:
        with self._lock:
            return not self._down

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``, or :data:`DOWN` (or raise) while Redis is unavailable."""
        with self._lock:
            probe = False
            if self._down:
                if self._probing or self._clock.monotonic() < self._probe_at:
                    return cast(T, self._unavailable())
                self._probing = probe = True
        try:
            result = fn()
        except Exception as exc:
            if not _unavailable(exc):
                if probe:
                    with self._lock:
                        self._probing = False
                raise
            self._fail(exc, probe)
            return cast(T, self._unavailable())
        if probe:
            with self._lock:
                self._down = False
                self._probing = False
                self._backoff = self._first
                self.rejoins += 1
            log.info("shared limits: Redis is back; the shared bucket counts as full")
        return result

    def _fail(self, exc: BaseException, probe: bool) -> None:
        with self._lock:
            first = not self._down
            self._down = True
            if probe:
                self._probing = False
                self._backoff = min(self._last, self._backoff * 2)
            else:
                self._backoff = self._first
            self._probe_at = self._clock.monotonic() + self._backoff
            if first:
                self.outages += 1
        if first:
            action = ("stopping" if self._fallback == "raise" else
                      "each process now limits itself at its fallback share of the rate")
            # The exception's class only: its text may carry a connection URL.
            log.warning("shared limits: Redis unavailable (%s); %s until it is back",
                        type(exc).__name__, action)

    def _unavailable(self) -> Any:
        if self._fallback == "raise":
            raise SharedLimitsUnavailable()
        return DOWN

    def __repr__(self) -> str:
        return f"RedisLink(up={self.up}, fallback={self._fallback!r})"
