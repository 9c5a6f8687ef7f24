"""Cancellation: one token that every layer of the engine honours.

A :class:`CancelToken` is a one-way flag. Once set (by ``Bitrix.close()``, a
KeyboardInterrupt in the calling thread, a cancelled coroutine of the async
client, or a caller's own code) no new request leaves the process on its
behalf: the engine checks it before a plan is submitted, before the limiter
is booked and before each retry, and every wait in the engine waits on it
instead of sleeping blind.

Tokens form a tree: a client owns a root token, each call gets a child of it,
so closing the client stops every call while cancelling one call stops only
that call. :func:`cancel_scope` lets code above the engine (the async facade)
hand a token to the sync calls made inside it without changing their
signatures: the engine combines the scope's token with the client's.

Thread safety: every method may be called from any thread.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import TYPE_CHECKING, Callable, Iterator, List, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .errors import Cancelled

__all__ = ["CancelToken", "cancel_scope", "current_scope"]


class CancelToken:
    """A flag that, once set, stays set; waits on it end as soon as it is set.

    ``parent``: a token whose cancellation cancels this one too (not the
    other way round). ``reason`` says why, for error messages.
    """

    def __init__(self, parent: Optional["CancelToken"] = None) -> None:
        if parent is not None and not isinstance(parent, CancelToken):
            raise TypeError(f"parent must be a CancelToken, got {type(parent).__name__}")
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reason: Optional[str] = None
        self._closed = False
        self._followed: List[Callable[[], None]] = []
        self._detach_from_parent: Optional[Callable[[], None]] = None
        self._callbacks: List[Callable[[], None]] = []
        self._parent = parent
        if parent is not None:
            parent._add_child(self)

    # -- setting -----------------------------------------------------------------------
    def cancel(self, reason: str = "cancelled", *, closed: bool = False) -> None:
        """Set the flag (idempotent: the first reason is kept), wake every waiter,
        run the callbacks registered with :meth:`on_cancel` (outside the lock).

        ``closed=True`` says the owner (a client) was closed: :meth:`error` then
        gives ``ClientClosed``; children inherit it.
        """
        with self._lock:
            if self._event.is_set():
                return
            self._reason = reason
            self._closed = bool(closed)
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` once when the token is cancelled (at once if it is already).

        Returns a function that unregisters it; call it when the work is over so that a
        long-lived parent does not keep callbacks of finished calls.
        """
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                registered = True
            else:
                registered = False
        if not registered:
            callback()
            return lambda: None

        def remove() -> None:
            with self._lock:
                try:
                    self._callbacks.remove(callback)
                except ValueError:
                    pass
        return remove

    def _add_child(self, child: "CancelToken") -> None:
        unregister = self.on_cancel(
            lambda: child.cancel(self.reason or "cancelled", closed=self._closed))
        child._detach_from_parent = unregister

    def follow(self, other: "CancelToken") -> None:
        """Also be cancelled (with its reason, as not closed) when ``other`` is; a
        second parent that :meth:`detach` lets go of too."""
        if not isinstance(other, CancelToken):
            raise TypeError(f"other must be a CancelToken, got {type(other).__name__}")
        unregister = other.on_cancel(
            lambda: self.cancel(other.reason or "cancelled", closed=other.closed))
        with self._lock:
            self._followed.append(unregister)

    def detach(self) -> None:
        """Stop listening to the parent and followed tokens (a finished call's token);
        idempotent."""
        unregister = getattr(self, "_detach_from_parent", None)
        if unregister is not None:
            self._detach_from_parent = None
            unregister()
        with self._lock:
            followed, self._followed = self._followed, []
        for unregister in followed:
            unregister()

    # -- reading -----------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> Optional[str]:
        return self._reason

    def wait(self, timeout: Optional[float]) -> bool:
        """Block up to ``timeout`` real seconds (None: until set); True if the token is set."""
        return self._event.wait(timeout)

    @property
    def closed(self) -> bool:
        """True when cancelled because the owning client was closed."""
        return self._closed

    def error(self, method: Optional[str] = None) -> "Cancelled":
        """The exception a call stopped by this token raises: ``ClientClosed`` after
        the client was closed, else ``Cancelled`` (with the reason)."""
        from .errors import Cancelled, ClientClosed

        if self._closed:
            return ClientClosed(method=method)
        return Cancelled(f"the call was cancelled: {self._reason or 'cancelled'}",
                         method=method)

    def raise_if_cancelled(self, method: Optional[str] = None) -> None:
        """Raise :meth:`error` when the token is cancelled; else return."""
        if self._event.is_set():
            raise self.error(method)

    def child(self) -> "CancelToken":
        """A new token cancelled with this one."""
        return CancelToken(self)

    def __repr__(self) -> str:
        state = f"cancelled: {self._reason}" if self.cancelled else "active"
        return f"CancelToken({state})"


_SCOPE: contextvars.ContextVar[Optional[CancelToken]] = contextvars.ContextVar(
    "bitrix_threaded_cancel_scope", default=None
)


@contextlib.contextmanager
def cancel_scope(token: CancelToken) -> Iterator[CancelToken]:
    """Within the block, calls into the engine are cancelled along with ``token``."""
    if not isinstance(token, CancelToken):
        raise TypeError(f"token must be a CancelToken, got {type(token).__name__}")
    reset = _SCOPE.set(token)
    try:
        yield token
    finally:
        _SCOPE.reset(reset)


def current_scope() -> Optional[CancelToken]:
    """The token set by the innermost :func:`cancel_scope` of this context, if any."""
    return _SCOPE.get()
