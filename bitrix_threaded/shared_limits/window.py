"""One operating-time window per application and method, shared through Redis.

The portal counts each method's operating seconds per application (a webhook or
an OAuth client) in a 10-minute window, whichever process or host calls it (REST
docs, ``limits.md``). :class:`SharedWindow` keeps, per method, the newest report
the server sent (``operating``, ``operating_reset_at``), any explicit block after a
429, a decaying estimate of one command's cost, and the commands in flight as
*leases* that expire: a process that dies mid-request frees its share by itself.

Compared with the in-process :class:`~bitrix_threaded.limiter.OperatingWindow`, the
shared one keeps no log of each process's spent seconds (it cannot know when time
leaves the window before the server's reset says so) and estimates a class never
reported from the nearest deeper one, without interpolating; it is a little more
cautious near the limit and exactly as strict at it. While Redis is unavailable the
in-process window (fed with every report all along) decides.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Tuple)

from ..cancel import CancelToken
from ..clock import Clock, wait_on
from ..limiter import OperatingWindow, Report, WindowTicket
from ..operating import RESET
from .keys import KeySpace
from .link import DOWN, RedisLink
from .scripts import Scripts, as_ints

__all__ = ["SharedTicket", "SharedWindow"]

_US = 1_000_000
_NONE = -1
LEASE_SECONDS = 180.0  # a request's lease: past the longest request (60 s server timeout)
_KEY_TTL_MS = 1_500_000  # report state: a 600 s window and more (scaled windows: longer)


def _us(seconds: Optional[float]) -> int:
    return _NONE if seconds is None else max(0, round(seconds * _US))


class SharedTicket:
    """Commands booked as in flight by :meth:`SharedWindow.acquire`."""

    __slots__ = ("_owner", "lease", "methods", "costs", "local", "released")

    def __init__(self, owner: "SharedWindow", lease: Optional[str], methods: Dict[str, int],
                 costs: Dict[str, int], local: Optional[WindowTicket] = None) -> None:
        self._owner = owner
        self.lease = lease  # None: booked from the in-process window
        self.methods = methods
        self.costs = costs  # microseconds booked per method, as the lease names them
        self.local = local
        self.released = False

    def __repr__(self) -> str:
        return f"SharedTicket({self.methods!r}, released={self.released})"


class SharedWindow:
    """Drop-in for :class:`~bitrix_threaded.limiter.OperatingWindow`, shared through Redis.

    :meth:`record` buffers a thread's reports until its ticket is released, so a
    batch reply with fifty ``result_time`` blocks costs one round trip, not fifty.
    Method names are case-insensitive. Thread-safe; waits sleep on the clock.
    """

    def __init__(self, scripts: Scripts, link: RedisLink, keys: KeySpace, *,
                 limit: float = 480.0, clock: Clock, enabled: bool = True,
                 headroom: float = 0.1, default_block: float = 60.0,
                 poll_interval: float = 0.05, span: Optional[float] = None,
                 on_wait: Optional[Callable[[str, str, float], None]] = None,
                 cost_half_life: Optional[float] = None,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self._local = OperatingWindow(limit, clock=clock, enabled=enabled, headroom=headroom,
                                      default_block=default_block, poll_interval=poll_interval,
                                      span=span, on_wait=on_wait, cost_half_life=cost_half_life)
        self._on_wait = on_wait
        self._half_life = default_block if cost_half_life is None else cost_half_life
        self._scripts = scripts
        self._link = link
        self._keys = keys
        self._clock = clock
        self._default_block = default_block
        self._poll = poll_interval
        self._lease_us = _us(lease_seconds)
        self._key_ttl_ms = max(_KEY_TTL_MS, round(2500 * self._local.limit))
        self._pending = threading.local()  # .open: tickets open; .reports: method -> report
        self._counter = 0
        self._counter_lock = threading.Lock()
        self._prefix = f"{os.getpid():x}.{os.urandom(4).hex()}"

    # -- the in-process window's settings -----------------------------------------------
    @property
    def limit(self) -> float:
        return self._local.limit

    @property
    def threshold(self) -> float:
        return self._local.threshold

    @property
    def enabled(self) -> bool:
        return self._local.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._local.enabled = value

    @property
    def fallback(self) -> OperatingWindow:
        """The in-process window used while Redis is unavailable."""
        return self._local

    # -- reports ------------------------------------------------------------------------
    def record(self, method: str, operating: float, *, reset_in: Optional[float],
               server_time: Optional[float] = None, cost: Optional[float] = None,
               started: Optional[float] = None, cost_class: int = 0) -> None:
        """Store one report (see :meth:`OperatingWindow.record`); shared at release."""
        self.record_many([Report(method, operating, reset_in, server_time, cost, started,
                                 cost_class)])

    def record_many(self, reports: Iterable[Report]) -> None:
        """Store several reports (see :meth:`OperatingWindow.record_many`); shared at
        release."""
        reports = list(reports)
        self._local.record_many(reports)  # checks them all first
        buffered = self._reports()
        for method, operating, reset_in, server_time, cost, _, cost_class in reports:
            key = method.strip().lower()
            known = buffered.get(key)
            classes = {} if known is None else known[3]
            if cost is not None:
                classes[cost_class] = max(cost, classes.get(cost_class, 0.0))
            if (known is None or server_time is None or known[1] is None
                    or server_time >= known[1]):
                buffered[key] = (float(operating), server_time, reset_in, classes)
        if not getattr(self._pending, "open", 0):
            self._settle(None, {}, {})

    def _reports(self) -> Dict[str, Tuple[Any, ...]]:
        reports = getattr(self._pending, "reports", None)
        if reports is None:
            reports = self._pending.reports = {}
        return reports

    def block(self, method: str, reset_in: Optional[float]) -> None:
        """Hold ``method`` for every process (see :meth:`OperatingWindow.block`)."""
        self._local.block(method, reset_in)
        key = method.strip().lower()
        args = [_us(reset_in), _us(self._default_block), self._key_ttl_ms]
        self._link.call(lambda: self._scripts.run("block", [self._keys.window(key)], args))

    # -- booking ------------------------------------------------------------------------
    def delay(self, methods: Mapping[object, int]) -> float:
        """Seconds the in-process view says a request must wait (for logs and tests)."""
        return self._local.delay(methods)

    def fit(self, commands: Sequence[object]) -> int:
        """How many of ``commands`` fit now (see :meth:`OperatingWindow.fit`).

        Conservatively all of them: the shared budget is decided by one script at
        booking time, and this process's view does not know what others have in
        flight, so a request is never split on it; :meth:`acquire` waits as before.
        """
        if not isinstance(commands, Sequence) or isinstance(commands, (str, bytes)):
            raise TypeError(f"commands must be a sequence of methods or (method, cost "
                            f"class) pairs, got {type(commands).__name__}")
        return len(commands)

    def acquire(self, methods: Mapping[object, int],
                token: Optional[CancelToken] = None) -> SharedTicket:
        """Wait until every method has room, book the commands as in flight, return a ticket.

        A cancelled ``token`` ends the wait and raises its error, nothing booked.
        """
        counts = _counts(methods)
        if not self._local.enabled or not counts:
            ticket = self._local.acquire(methods, token)
            self._opened()
            totals = {name: sum(classes.values()) for name, classes in counts.items()}
            return SharedTicket(self, None, totals, {}, ticket)
        names = sorted(counts)
        keys: List[str] = []
        per_method: List[int] = []
        for name in names:
            keys += [self._keys.window(name), self._keys.leases(name)]
            classes = counts[name]
            per_method.append(len(classes))
            for cost_class in sorted(classes):
                per_method += [cost_class, classes[cost_class]]
        totals = {name: sum(counts[name].values()) for name in names}
        while True:
            if token is not None:
                token.raise_if_cancelled()
            lease = self._lease_id()
            args = [_us(self._local.threshold), self._lease_us, lease, _us(self._poll),
                    self._key_ttl_ms] + per_method
            reply = self._link.call(lambda: self._scripts.run("acquire", keys, args))
            if reply is DOWN:
                ticket = self._local.acquire(methods, token)
                self._opened()
                return SharedTicket(self, None, totals, {}, ticket)
            numbers = as_ints(reply)
            if numbers[0] == 0:
                self._opened()
                return SharedTicket(self, lease, totals, dict(zip(names, numbers[1:])))
            wait = numbers[0] / _US
            if wait >= OperatingWindow.VISIBLE_WAIT and self._on_wait is not None:
                # The script does not say which method held the request: name them all.
                self._on_wait(", ".join(names), RESET, wait)
            if wait_on(self._clock, wait, token) and token is not None:
                raise token.error()

    def _opened(self) -> None:
        self._pending.open = getattr(self._pending, "open", 0) + 1

    def _lease_id(self) -> str:
        with self._counter_lock:
            self._counter += 1
            return f"{self._prefix}.{self._counter:x}"

    def release(self, ticket: SharedTicket) -> None:
        """Free a ticket's commands and share this thread's buffered reports.

        Releasing twice is harmless.
        """
        if not isinstance(ticket, SharedTicket) or ticket._owner is not self:
            raise ValueError("ticket was not issued by this SharedWindow")
        if ticket.released:
            return
        ticket.released = True
        self._pending.open = max(0, getattr(self._pending, "open", 1) - 1)
        if ticket.local is not None:
            self._local.release(ticket.local)
        booked = ticket.costs if ticket.lease is not None else {}
        self._settle(ticket.lease, ticket.methods, booked)

    def _settle(self, lease: Optional[str], methods: Mapping[str, int],
                booked: Mapping[str, int]) -> None:
        reports = self._reports()
        self._pending.reports = {}
        names = sorted(set(booked) | set(reports))
        if not names:
            return
        keys: List[str] = []
        args: List[object] = [lease or "-", _us(self._local.threshold),
                              _us(self._default_block), self._key_ttl_ms,
                              _us(self._half_life)]
        for name in names:
            keys += [self._keys.window(name), self._keys.leases(name)]
            report = reports.get(name)
            args.append(booked.get(name, _NONE))
            if report is None:
                args += [_NONE, _NONE, _NONE, 0]
            else:
                operating, server_time, reset_in, classes = report
                args += [_us(operating), _us(server_time), _us(reset_in), len(classes)]
                for cost_class in sorted(classes):
                    args += [cost_class, _us(classes[cost_class])]
        # Down: the leases expire by themselves and the local window has the reports.
        self._link.call(lambda: self._scripts.run("settle", keys, args))

    @contextlib.contextmanager
    def hold(self, methods: Mapping[object, int],
             token: Optional[CancelToken] = None) -> Iterator[SharedTicket]:
        """``with window.hold({"crm.deal.list": 50}):`` - acquire, and release on exit."""
        ticket = self.acquire(methods, token)
        try:
            yield ticket
        finally:
            self.release(ticket)

    def snapshot(self) -> Dict[str, Dict[str, Any]]:
        """This process's in-process view of each method (see :meth:`OperatingWindow.snapshot`)."""
        return self._local.snapshot()

    def __repr__(self) -> str:
        return f"SharedWindow(limit={self.limit}, enabled={self.enabled})"


def _counts(methods: object) -> Dict[str, Dict[int, int]]:
    """``{method or (method, class): count}`` as ``{method: {class: count}}``, validated."""
    if not isinstance(methods, Mapping):
        raise TypeError(f"methods must be a mapping of method -> count, got "
                        f"{type(methods).__name__}")
    counts: Dict[str, Dict[int, int]] = {}
    for name, n in methods.items():
        cost_class = 0
        if isinstance(name, tuple):
            if len(name) != 2:
                raise TypeError(f"expected (method, cost class), got {name!r}")
            name, cost_class = name
        if not isinstance(name, str):
            raise TypeError(f"method must be a str, got {type(name).__name__}")
        if isinstance(cost_class, bool) or not isinstance(cost_class, int) or cost_class < 0:
            raise ValueError(f"cost class of {name!r} must be an int >= 0")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"count for {name!r} must be an int >= 0")
        key = name.strip().lower()
        if not key:
            raise ValueError("method must not be empty")
        if n:
            classes = counts.setdefault(key, {})
            classes[cost_class] = classes.get(cost_class, 0) + n
    return counts
