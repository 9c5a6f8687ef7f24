"""An adjustable bound on requests in flight (re-exported by :mod:`bitrix_threaded.limiter`)."""
from __future__ import annotations

import contextlib
import math
import threading
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # pragma: no cover
    from .cancel import CancelToken

__all__ = ["ConcurrencyGate"]


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


class ConcurrencyGate:
    """A semaphore whose limit can change while threads wait on it.

    ``effective_limit`` is the smallest of the configured ``limit``, the
    adaptive limit and any active :meth:`cap`. The adaptive limit follows
    AIMD: :meth:`penalize` cuts it by 20% (at least 1, never below 1),
    :meth:`reward` adds 1 after every ``limit`` successes. Lowering the limit
    never interrupts holders; raising it wakes waiters.

    One wave of rejections cuts once: :meth:`penalize` called by a thread
    whose last slot was taken before the latest cut (it was admitted under
    the old limit) does not cut again.

    Thread-safe (one ``threading.Condition``). Invalid arguments raise
    ``TypeError``/``ValueError``; releasing more than was acquired raises
    ``ValueError``.
    """

    PENALTY_FACTOR = 0.8

    def __init__(self, limit: int) -> None:
        self._limit = _positive_int(limit, "limit")
        self._adaptive = self._limit
        self._caps: list[int] = []
        self._active = 0
        self._successes = 0
        self._cuts = 0
        self._admitted = threading.local()  # .cuts: value of _cuts at this thread's last acquire
        self._cond = threading.Condition(threading.Lock())

    @property
    def limit(self) -> int:
        """The configured limit. Setting it keeps a penalized adaptive limit at or below it."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        value = _positive_int(value, "limit")
        with self._cond:
            penalized = self._adaptive < self._limit
            self._limit = value
            self._adaptive = min(self._adaptive, value) if penalized else value
            self._successes = 0
            self._cond.notify_all()

    @property
    def adaptive_limit(self) -> int:
        """The AIMD limit, between 1 and ``limit``."""
        with self._cond:
            return self._adaptive

    @property
    def effective_limit(self) -> int:
        """How many slots may be held now."""
        with self._cond:
            return self._effective()

    @property
    def active(self) -> int:
        """Slots held now."""
        with self._cond:
            return self._active

    def _effective(self) -> int:
        return min(self._limit, self._adaptive, *self._caps)

    def acquire(self, timeout: float | None = None, token: CancelToken | None = None) -> bool:
        """Take a slot, waiting while ``effective_limit`` are held.

        ``timeout`` is in real seconds (``None`` waits forever); returns False
        if it expired, or if ``token`` is (or gets) cancelled first: then no
        slot is taken.
        """
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(f"timeout must be a number, got {type(timeout).__name__}")
            if not math.isfinite(timeout) or timeout < 0:
                raise ValueError(f"timeout must be a finite number >= 0, got {timeout!r}")
        if token is None:
            with self._cond:
                if not self._cond.wait_for(lambda: self._active < self._effective(), timeout):
                    return False
                return self._take()
        unregister = token.on_cancel(self._wake_all)
        try:
            with self._cond:
                ready = self._cond.wait_for(
                    lambda: token.cancelled or self._active < self._effective(), timeout)
                if not ready or token.cancelled:
                    # A release may have woken this waiter: pass the wake-up on.
                    self._cond.notify()
                    return False
                return self._take()
        finally:
            unregister()

    def _take(self) -> bool:
        self._active += 1
        self._admitted.cuts = self._cuts
        return True

    def _wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def release(self) -> None:
        """Give a slot back."""
        with self._cond:
            if self._active <= 0:
                raise ValueError("ConcurrencyGate released more times than acquired")
            self._active -= 1
            self._cond.notify()

    def __enter__(self) -> ConcurrencyGate:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def penalize(self) -> None:
        """After a rejection (503): cut the adaptive limit by 20%, at least by 1, not below 1."""
        with self._cond:
            self._successes = 0
            if getattr(self._admitted, "cuts", self._cuts) < self._cuts:
                return
            self._adaptive = max(1, int(self._adaptive * self.PENALTY_FACTOR))
            self._cuts += 1

    def reward(self) -> None:
        """After a success: every ``limit`` successes raise the adaptive limit by 1."""
        with self._cond:
            if self._adaptive >= self._limit:
                return
            self._successes += 1
            if self._successes >= self._limit:
                self._successes = 0
                self._adaptive += 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def cap(self, n: int) -> Iterator[None]:
        """Within the block, ``effective_limit`` is at most ``n`` (nested caps: smallest wins).

        The cap applies to every thread using the gate and is removed on exit,
        also after an exception.
        """
        n = _positive_int(n, "cap")
        with self._cond:
            self._caps.append(n)
        try:
            yield
        finally:
            with self._cond:
                self._caps.remove(n)
                self._cond.notify_all()

    def __repr__(self) -> str:
        with self._cond:
            return (f"ConcurrencyGate(limit={self._limit}, effective={self._effective()}, "
                    f"active={self._active})")
