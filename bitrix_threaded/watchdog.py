"""A watchdog that cuts a socket off when its request's deadline passes.

A socket read timeout bounds each read, not a whole reply: a server that sends its
status line and headers a byte at a time never trips it. The transport bounds the
body itself (it reads piece by piece and checks the time); for the part it cannot
see, the status line and headers parsed inside ``http.client``, it arms this
watchdog with the socket and the deadline. Past the deadline the watchdog shuts the
socket down, so the blocked read returns at once and the request fails. A stopped
call hastens the deadlines of its requests still on the wire (:meth:`Watchdog.hasten`):
they get a short grace to finish, then are cut off the same way.

One daemon thread serves every client in the process and sleeps until the earliest
deadline; arming and disarming cost a heap push and a flag under one lock. Disarming
and firing take the same lock, so a socket disarmed in time (and perhaps back in the
connection pool, serving another request) is never cut off late.

Thread-safe.
"""

from __future__ import annotations

import heapq
import itertools
import math
import socket
import threading
import time
from typing import Callable, List, Optional, Tuple

__all__ = ["Watchdog", "WATCHDOG"]

_COMPACT_AT = 4096


class _Entry:
    __slots__ = ("sock", "armed")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.armed = True


def _cut(sock: socket.socket) -> None:
    try:
        # The plain socket method, also for an SSLSocket: its own shutdown() would
        # tear down TLS state that the reading thread is still using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass  # already closed: nothing left to cut


class Watchdog:
    """Shuts down armed sockets whose deadline (``monotonic`` seconds) has passed.

    ``background=False`` starts no thread; the owner calls :meth:`sweep` (for tests).
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, *,
                 background: bool = True):
        self._monotonic = monotonic
        self._background = background
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: List[Tuple[float, int, _Entry]] = []
        self._order = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def arm(self, deadline: float, sock: socket.socket) -> _Entry:
        """Watch ``sock`` until :meth:`disarm`; cut it off once ``deadline`` passes."""
        entry = _Entry(sock)
        with self._lock:
            self._push(deadline, entry)
        return entry

    def hasten(self, entry: _Entry, deadline: float) -> None:
        """Cut ``entry``'s socket off at ``deadline`` if that is earlier (and it is still
        armed then); the later deadline it had stays, harmless."""
        with self._lock:
            if entry.armed:
                self._push(deadline, entry)

    def _push(self, deadline: float, entry: _Entry) -> None:
        if len(self._heap) > _COMPACT_AT:
            # Disarmed entries leave the heap lazily; drop them in one go.
            self._heap = [item for item in self._heap if item[2].armed]
            heapq.heapify(self._heap)
        earliest = self._heap[0][0] if self._heap else math.inf
        heapq.heappush(self._heap, (deadline, next(self._order), entry))
        if self._background and self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="bitrix_threaded-watchdog", daemon=True)
            self._thread.start()
        elif deadline < earliest:
            # The thread sleeps until the old earliest deadline at most.
            self._wake.notify()

    def disarm(self, entry: _Entry) -> None:
        """Stop watching; once this returns the socket is never cut off by this entry."""
        with self._lock:
            entry.armed = False

    def sweep(self) -> float:
        """Cut off every armed socket past its deadline; seconds until the next one."""
        with self._lock:
            return self._sweep_locked()

    def _sweep_locked(self) -> float:
        now = self._monotonic()
        heap = self._heap
        while heap:
            deadline, _, entry = heap[0]
            if entry.armed and deadline > now:
                return deadline - now
            # An entry may be in the heap more than once (hastened): the first cut
            # disarms it, its later deadlines then just leave.
            heapq.heappop(heap)
            if entry.armed:
                entry.armed = False
                _cut(entry.sock)
        return math.inf

    def _run(self) -> None:
        with self._lock:
            while True:
                delay = self._sweep_locked()
                self._wake.wait(None if delay == math.inf else delay)


#: The process-wide watchdog the transport uses.
WATCHDOG = Watchdog()
