"""Client-side mirrors of the portal's limits, shared by every worker thread.

- :class:`LeakyBucket` — the request-rate limit (503 QUERY_LIMIT_EXCEEDED),
  taken *before* each HTTP request.
- :class:`OperatingWindow` — each method's operating-time budget in the
  portal's sliding 10-minute window (429 OPERATION_TIME_LIMIT).
- :class:`ConcurrencyGate` — an adjustable bound on requests in flight
  (defined in :mod:`bitrix_threaded.concurrency`, re-exported here).

Each object keeps its state behind one lock and never sleeps while holding
it. Time comes from an injected :class:`~bitrix_threaded.clock.Clock`, so
tests drive these classes with a ``ManualClock`` instead of sleeping.
"""
from __future__ import annotations

import bisect
import contextlib
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from .clock import SYSTEM_CLOCK, Clock
from .concurrency import ConcurrencyGate

__all__ = ["ConcurrencyGate", "LeakyBucket", "OperatingWindow", "WindowTicket", "cost_class"]

_NEVER = -math.inf
_CLASS_GENERATION = 50  # reports per generation of a cost class's running maximum


def _number(
    value: object, name: str, *, minimum: float | None = 0.0, strict: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        bound = ">" if strict else ">="
        raise ValueError(f"{name} must be {bound} {minimum}, got {value!r}")
    return value


def _integer(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def _check_clock(clock: object) -> Clock:
    if not all(callable(getattr(clock, attr, None)) for attr in ("monotonic", "time", "sleep")):
        raise TypeError("clock must provide monotonic(), time() and sleep()")
    return clock  # type: ignore[return-value]


# --- leaky bucket: generic cell rate algorithm (virtual scheduling) -------------------------
#
# The state is one number, the theoretical arrival time ``tat``: the bucket
# holds ``(tat - now) * rate`` requests (0 when ``tat <= now``), counting the
# ones already booked for the future. A request fits when its +1 keeps the
# level within ``burst``.


def _book(tat: float, now: float, interval: float, burst: float) -> tuple[float, float]:
    """Return ``(send_at, new_tat)`` for a request that wants to go at ``now``."""
    send_at = max(now, tat - (burst - 1.0) * interval)
    return send_at, max(tat, send_at) + interval


def _rescale(tat: float, now: float, old_rate: float, new_rate: float) -> float:
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
    a success.

    Thread-safe; :meth:`acquire` sleeps with the lock released. Invalid
    arguments raise ``TypeError``/``ValueError``.
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
    ) -> None:
        capacity = _integer(capacity, "capacity", minimum=1)
        rate = _number(rate, "rate", strict=True)
        margin = _number(margin, "margin")
        factor = _number(min_rate_factor, "min_rate_factor", strict=True)
        if factor > 1.0:
            raise ValueError(f"min_rate_factor must be <= 1, got {factor!r}")
        if capacity - margin < 1.0:
            raise ValueError(f"capacity - margin must be >= 1, got {capacity} - {margin}")
        self._lock = threading.Lock()
        self._clock = _check_clock(clock)
        self._capacity = capacity
        self._rate = rate
        self._current = rate
        self._margin = margin
        self._min_factor = factor
        self._tat = _NEVER
        # Rejections of requests booked before the latest cut were sent under
        # the old rate; matching each penalty to its thread's last booking
        # makes one wave of 503s one cut, not one cut per rejected request.
        self._cuts = 0
        self._booked = threading.local()  # .cuts: value of _cuts at this thread's last booking

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
        with self._lock:
            return self._current

    @property
    def margin(self) -> float:
        return self._margin

    @property
    def level(self) -> float:
        """Requests counted in the bucket now, including slots booked for the future."""
        with self._lock:
            return max(0.0, self._tat - self._clock.monotonic()) * self._current

    def book(self) -> float:
        """Book the next free slot; return the monotonic time at which to send."""
        return self._book()[1]

    def reserve(self) -> float:
        """Book the next free slot; return how long to wait before sending (0.0 = now)."""
        now, send_at = self._book()
        return send_at - now

    def _book(self) -> tuple[float, float]:
        with self._lock:
            now = self._clock.monotonic()
            burst = self._capacity - self._margin
            send_at, self._tat = _book(self._tat, now, 1.0 / self._current, burst)
            self._booked.cuts = self._cuts
            return now, send_at

    def acquire(self) -> float:
        """:meth:`reserve`, then sleep until the slot; return the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self._clock.sleep(wait)
        return wait

    def penalize(self) -> None:
        """After a 503 QUERY_LIMIT_EXCEEDED: treat the portal's bucket as full now and
        cut the current rate by 20% (not below ``min_rate_factor * rate``).

        Called by a thread whose last booking predates the latest cut (its
        request went out under the old rate), it only refills the bucket.
        """
        with self._lock:
            now = self._clock.monotonic()
            if getattr(self._booked, "cuts", self._cuts) >= self._cuts:
                floor = self._rate * self._min_factor
                self._set_rate(now, max(floor, self._current * self.PENALTY_FACTOR))
                self._cuts += 1
            self._tat = max(self._tat, now + self._capacity / self._current)

    def reward(self) -> None:
        """After a success: raise the current rate by 10%, up to the configured rate."""
        with self._lock:
            if self._current < self._rate:
                now = self._clock.monotonic()
                self._set_rate(now, min(self._rate, self._current * self.REWARD_FACTOR))

    def configure(self, capacity: int | None = None, rate: float | None = None) -> None:
        """Change the bucket size and/or configured rate (e.g. 250 and 5.0 for Enterprise).

        A penalized current rate keeps its ratio to the configured one.
        """
        with self._lock:
            new_capacity = self._capacity if capacity is None else _integer(
                capacity, "capacity", minimum=1)
            new_rate = self._rate if rate is None else _number(rate, "rate", strict=True)
            if new_capacity - self._margin < 1.0:
                raise ValueError(
                    f"capacity - margin must be >= 1, got {new_capacity} - {self._margin}")
            ratio = self._current / self._rate
            self._capacity = new_capacity
            self._rate = new_rate
            self._set_rate(self._clock.monotonic(), new_rate * ratio)

    def _set_rate(self, now: float, new_rate: float) -> None:
        self._tat = _rescale(self._tat, now, self._current, new_rate)
        self._current = new_rate

    def __repr__(self) -> str:
        return (f"LeakyBucket(capacity={self._capacity}, rate={self._rate}, "
                f"current_rate={self._current:.3g}, margin={self._margin})")


# --- operating-time window ------------------------------------------------------------------


@dataclass
class _MethodState:
    operating: float = 0.0  # last reported cumulative seconds in the server's window
    server_time: float | None = None  # server time of that report
    reset_until: float | None = None  # local monotonic time its oldest part expires
    blocked_until: float = _NEVER  # local monotonic end of an explicit block (429)
    answered: float = _NEVER  # latest hold deadline followed by a fresh report
    cost: float | None = None  # one command's processing seconds: a decaying maximum
    cost_at: float = 0.0  # local monotonic time of the cost estimate
    # Per cost class (commands of one kind: offset pages of similar depth), the
    # highest cost of the last 50-100 reports: [current max, previous max, count].
    class_costs: dict[int, list[float]] = field(default_factory=dict)
    in_flight: int = 0  # commands sent and not yet released
    in_flight_cost: float = 0.0  # their estimated seconds, as booked when sent
    # Our own recorded commands, (earliest, latest server time it ran, seconds), sorted:
    # each is counted in ``operating`` and will leave the server's window.
    spent: list[tuple[float, float, float]] = field(default_factory=list)
    drops: list[tuple[float, float]] | None = None  # cache: sorted (server time left, seconds)
    offset: float = 0.0  # local monotonic minus server time, at the last report
    reset_at: float | None = None  # server time the oldest minute bucket expires


class WindowTicket:
    """Commands registered as in flight by :meth:`OperatingWindow.acquire`.

    ``methods``: method -> command count; ``costs``: method -> the estimated
    seconds booked for them.
    """

    __slots__ = ("_owner", "methods", "costs", "released")

    def __init__(self, owner: OperatingWindow, methods: dict[str, int],
                 costs: dict[str, float]) -> None:
        self._owner = owner
        self.methods = methods
        self.costs = costs
        self.released = False

    def __repr__(self) -> str:
        return f"WindowTicket({self.methods!r}, released={self.released})"


class OperatingWindow:
    """Per-method operating-time budget, mirrored from the server's ``time`` blocks.

    The server reports for a method (per command inside a batch, under
    ``result.result_time[label]``) ``operating``, the method's *cumulative*
    seconds in its sliding 10-minute window, and ``operating_reset_at``, when
    the oldest part expires. Feed every report to :meth:`record`, a 429 /
    per-command OPERATION_TIME_LIMIT to :meth:`block`, and wrap each request
    in :meth:`hold` (or :meth:`acquire` / :meth:`release`).

    A method whose last report is at or above ``limit * (1 - headroom)`` is
    held until its reset deadline; then it is *probing* (one request in
    flight) until a fresh report arrives. Otherwise a request waits while
    ``operating + booked cost of the commands in flight + cost of its own``
    would cross that threshold: for the reports of earlier requests still in
    flight, or, with none in flight, until enough of our own spent time has
    left the server's window for it to fit (when it cannot fit even then, it
    goes, and the server's next report tells more).

    The window is ``span`` seconds of ten minute-buckets; a bucket leaves
    ``span`` after its first call. Each command reported with its server
    times and cost is kept in a log; ``operating`` counts it down once the
    command has certainly left the window (its bucket is the oldest, which
    leaves at ``operating_reset_at``, or ``span`` after it ran) and was
    certainly still counted in the last report (it cannot have been in a
    bucket that had left before then). Commands the server does not record
    (under ``limit / 4800`` seconds: 0.1 s at the standard limit) are not
    logged. Methods never reported go freely, and a held method never
    holds another. ``enabled=False`` lets everything pass (reports are
    still stored).

    Costs are estimated per *cost class*: the caller may key a request's
    commands by ``(method, class)`` instead of ``method`` (class 0), and
    report each command with its class (:func:`cost_class`). Higher classes
    are taken to cost more (offset pages: deeper). A class's estimate is the
    highest cost of its last 50-100 reports; a class never reported is
    placed on the line between the reported classes around it (by the depth
    of their deepest pages), or estimated at the nearest reported class
    above it, or else at the highest cost seen (the method's highest recent
    cost halves every ``default_block`` seconds).

    Method names are case-insensitive. Thread-safe; waiting sleeps on the
    clock with the lock released.
    """

    # The method-wide estimate is the highest recent cost, halving every
    # ``default_block`` seconds: commands of one method can differ tenfold (deep offset
    # pages), and an average would let the first wave of requests overshoot the budget.
    # The decay follows time, not reports, because one batch reply brings fifty of them.

    def __init__(
        self,
        limit: float = 480.0,
        *,
        clock: Clock = SYSTEM_CLOCK,
        enabled: bool = True,
        headroom: float = 0.1,
        default_block: float = 60.0,
        poll_interval: float = 0.05,
        span: float | None = None,
    ) -> None:
        limit = _number(limit, "limit", strict=True)
        headroom = _number(headroom, "headroom")
        if headroom >= 1.0:
            raise ValueError(f"headroom must be < 1, got {headroom!r}")
        if not isinstance(enabled, bool):
            raise TypeError("enabled must be a bool")
        self._lock = threading.Lock()
        self._clock = _check_clock(clock)
        self._limit = limit
        self._threshold = limit * (1.0 - headroom)
        self._enabled = enabled
        self._default_block = _number(default_block, "default_block")
        self._poll = _number(poll_interval, "poll_interval", strict=True)
        # 600 s for the standard 480 s limit: limit * 1.25 unless given.
        self._span = limit * 1.25 if span is None else _number(span, "span", strict=True)
        self._bucket = self._span / 10.0
        self._min_recorded = limit / 4800.0
        self._methods: dict[str, _MethodState] = {}

    @property
    def limit(self) -> float:
        return self._limit

    @property
    def threshold(self) -> float:
        """Reported ``operating`` at which a method is held: ``limit * (1 - headroom)``."""
        return self._threshold

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError("enabled must be a bool")
        with self._lock:
            self._enabled = value

    def record(
        self,
        method: str,
        operating: float,
        *,
        reset_in: float | None,
        server_time: float | None = None,
        cost: float | None = None,
        started: float | None = None,
        cost_class: int = 0,
    ) -> None:
        """Store one report for ``method``.

        ``operating`` is the server's cumulative figure (never summed here);
        ``reset_in`` = ``operating_reset_at - finish`` in server seconds, or
        ``None`` when absent; ``server_time`` (``finish``) orders reports: one
        older than the newest kept is ignored, except that its ``cost`` (this
        command's own processing seconds) still feeds the cost estimate and
        the log of spent time. ``started``: the server time the request
        carrying the command began (a batch's own ``start``); by default
        ``server_time - cost``. ``cost_class``: the command's class (see above).
        """
        key = _method_key(method)
        operating = _number(operating, "operating")
        reset_in = None if reset_in is None else _number(reset_in, "reset_in", minimum=None)
        server_time = None if server_time is None else _number(
            server_time, "server_time", minimum=None)
        cost = None if cost is None else _number(cost, "cost")
        started = None if started is None else _number(started, "started", minimum=None)
        cost_class = _integer(cost_class, "cost_class", minimum=0)
        with self._lock:
            state = self._methods.setdefault(key, _MethodState())
            now = self._clock.monotonic()
            if cost is not None:
                state.cost = self._decayed_max(state.cost, state.cost_at, cost, now)
                state.cost_at = now
                recent = state.class_costs.setdefault(cost_class, [0.0, 0.0, 0])
                if recent[2] >= _CLASS_GENERATION:
                    recent[:] = [0.0, recent[0], 0]
                recent[0] = max(recent[0], cost)
                recent[2] += 1
                if server_time is not None and cost >= self._min_recorded:
                    earliest = server_time - cost if started is None else min(
                        started, server_time)
                    bisect.insort(state.spent, (earliest, server_time, cost))
                    state.drops = None
            if (server_time is not None and state.server_time is not None
                    and server_time < state.server_time):
                return
            deadline = self._deadline(state)
            if now >= deadline:
                # A report after the hold ended answers the probe.
                state.answered = max(state.answered, deadline)
            state.operating = operating
            if server_time is not None:
                state.server_time = server_time
            if reset_in is not None:
                # Server-clock difference turned into a local deadline, so
                # skew between the two clocks does not matter.
                state.reset_until = now + max(0.0, reset_in)
            elif operating >= self._threshold:
                state.reset_until = now + self._default_block
            else:
                state.reset_until = None
            self._rebase(state, now, server_time, reset_in)

    def _decayed_max(self, known: float | None, at: float, cost: float, now: float) -> float:
        if known is None:
            return cost
        age = max(0.0, now - at)
        decayed: float = known * 0.5 ** (age / max(self._default_block, 1e-9))
        return max(cost, decayed)

    def block(self, method: str, reset_in: float | None) -> None:
        """Hold ``method`` for ``reset_in`` seconds after a 429 or a per-command
        OPERATION_TIME_LIMIT. ``None``: until the reset its last report announced, or
        ``default_block`` seconds when none is known. Never shortens a block."""
        key = _method_key(method)
        seconds = None if reset_in is None else max(
            0.0, _number(reset_in, "reset_in", minimum=None))
        with self._lock:
            state = self._methods.setdefault(key, _MethodState())
            now = self._clock.monotonic()
            if seconds is None:
                # Unknown here (a per-command error has no time block): the reset the
                # method's last report announced, if still ahead, else the default.
                known = state.reset_until
                seconds = known - now if known is not None and known > now else None
            if seconds is None:
                seconds = self._default_block
            state.blocked_until = max(state.blocked_until, now + seconds)

    def delay(self, methods: Mapping[object, int]) -> float:
        """Seconds a request with ``methods`` must wait; 0.0 = go.

        ``methods`` maps a method name, or a ``(method, cost class)`` pair, to a
        command count.
        """
        counts = _method_counts(methods)
        with self._lock:
            return self._delay(counts, self._clock.monotonic())

    def acquire(self, methods: Mapping[object, int]) -> WindowTicket:
        """Wait until :meth:`delay` is 0, register the commands as in flight, return a ticket.

        Pass the ticket to :meth:`release` once the reply was recorded, or the
        request failed.
        """
        counts = _method_counts(methods)
        while True:
            with self._lock:
                wait = self._delay(counts, self._clock.monotonic())
                if wait <= 0.0:
                    totals: dict[str, int] = {}
                    costs: dict[str, float] = {}
                    for key, classes in counts.items():
                        state = self._methods.setdefault(key, _MethodState())
                        n = sum(classes.values())
                        cost = self._cost_of(state, classes) or 0.0
                        state.in_flight += n
                        state.in_flight_cost += cost
                        totals[key], costs[key] = n, cost
                    return WindowTicket(self, totals, costs)
            self._clock.sleep(wait)

    def release(self, ticket: WindowTicket) -> None:
        """Remove a ticket's commands from the in-flight count; releasing twice is harmless."""
        if not isinstance(ticket, WindowTicket) or ticket._owner is not self:
            raise ValueError("ticket was not issued by this OperatingWindow")
        with self._lock:
            if ticket.released:
                return
            ticket.released = True
            for key, n in ticket.methods.items():
                state = self._methods[key]
                state.in_flight = max(0, state.in_flight - n)
                state.in_flight_cost = max(0.0, state.in_flight_cost - ticket.costs[key])
                if state.in_flight == 0:
                    state.in_flight_cost = 0.0  # no rounding left over

    @contextlib.contextmanager
    def hold(self, methods: Mapping[object, int]) -> Iterator[WindowTicket]:
        """``with window.hold({"crm.deal.list": 50}):`` — acquire, and release on exit."""
        ticket = self.acquire(methods)
        try:
            yield ticket
        finally:
            self.release(ticket)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """A copy of each method's state, with times as seconds from now (for logs/tests)."""
        with self._lock:
            now = self._clock.monotonic()
            out = {}
            for key, state in self._methods.items():
                deadline = self._deadline(state)
                out[key] = {
                    "operating": state.operating,
                    "reset_in": (None if state.reset_until is None
                                 else max(0.0, state.reset_until - now)),
                    "blocked_for": max(0.0, deadline - now),
                    "probing": self._probing(state, deadline, now),
                    "in_flight": state.in_flight,
                    "cost": state.cost,
                    "server_time": state.server_time,
                    "class_costs": {c: max(r[0], r[1]) for c, r in state.class_costs.items()},
                    "spent": sum(entry[2] for entry in state.spent),
                }
            return out

    def _deadline(self, state: _MethodState) -> float:
        deadline = state.blocked_until
        if state.operating >= self._threshold and state.reset_until is not None:
            deadline = max(deadline, state.reset_until)
        return deadline

    @staticmethod
    def _probing(state: _MethodState, deadline: float, now: float) -> bool:
        return deadline != _NEVER and now >= deadline and state.answered < deadline

    def _delay(self, counts: Mapping[str, Mapping[int, int]], now: float) -> float:
        if not self._enabled:
            return 0.0
        wait = 0.0
        for key, classes in counts.items():
            state = self._methods.get(key)
            if state is not None:
                wait = max(wait, self._method_delay(state, classes, now))
        return wait

    @staticmethod
    def _cost_of(state: _MethodState, classes: Mapping[int, int]) -> float | None:
        """Estimated seconds of commands (class -> count); None when nothing is known."""
        if state.cost is None:
            return None
        known = state.class_costs
        total = 0.0
        for cost_class, n in classes.items():
            recent = known.get(cost_class)
            if recent is not None:
                total += n * max(recent[0], recent[1])
                continue
            above = [c for c in known if c > cost_class]
            if not above:  # deeper than anything seen: the highest cost seen
                total += n * max([state.cost] + [max(r[0], r[1]) for r in known.values()])
                continue
            upper = min(above)
            high = max(known[upper][0], known[upper][1])
            below = [c for c in known if 0 < c < cost_class]
            if not below:  # the nearest known class above bounds this one
                total += n * high
                continue
            lower = max(below)
            low = max(known[lower][0], known[lower][1])
            # Between two known classes: the cost grows with the depth, about linearly
            # (an offset scan), so draw the line through the deepest pages of both.
            depth, d_low, d_high = (_class_depth(c) for c in (cost_class, lower, upper))
            share = (depth - d_low) / (d_high - d_low)
            total += n * min(high, max(low, low + (high - low) * share))
        return total

    def _rebase(self, state: _MethodState, now: float, server_time: float | None,
                reset_in: float | None) -> None:
        """A new newest report: re-anchor the log of spent time on it."""
        state.drops = None
        if server_time is None:
            # No server clock to relate our commands to: count nothing down.
            state.spent.clear()
            state.reset_at = None
            return
        state.offset = now - server_time
        state.reset_at = None if reset_in is None else server_time + reset_in
        spent = state.spent
        if spent and spent[0][0] + self._span - self._bucket <= server_time:
            # Some may have left before this report, or may not be counted down
            # any more: keep those still known to be in it.
            kept = []
            for entry in spent:
                leaves_at = self._leaves_at(state, entry)
                if leaves_at is not None and leaves_at > server_time:
                    kept.append(entry)
            state.spent = kept

    def _leaves_at(self, state: _MethodState, entry: tuple[float, float, float]
                   ) -> float | None:
        """Server time by which a logged command has left the window; None when the
        last report may already have left it out (then it is not counted down)."""
        earliest, latest, _ = entry
        reset_at = state.reset_at
        # The server rounds operating_reset_at up to a whole second: the oldest bucket
        # opened within the second before reset_at - span.
        if (reset_at is not None and earliest >= reset_at - self._span
                and latest < reset_at - 1.0 - self._span + self._bucket):
            return reset_at  # in the oldest bucket, which the server named
        if state.server_time is not None and earliest + self._span - self._bucket > \
                state.server_time:
            return latest + self._span  # its bucket cannot have left by the report
        return None

    def _method_delay(self, state: _MethodState, classes: Mapping[int, int], now: float
                      ) -> float:
        deadline = self._deadline(state)
        if now < deadline:
            return deadline - now
        if self._probing(state, deadline, now) and state.in_flight > 0:
            return self._poll
        cost = self._cost_of(state, classes)
        if cost is None:
            return 0.0
        room = self._threshold - state.in_flight_cost - cost
        operating = state.operating
        if operating <= room:
            return 0.0
        if state.drops is None:
            state.drops = sorted((at, seconds) for at, seconds in (
                (self._leaves_at(state, entry), entry[2]) for entry in state.spent)
                if at is not None)
        server_now = now - state.offset
        drops = state.drops
        position = 0
        while position < len(drops) and drops[position][0] <= server_now:
            operating -= drops[position][1]
            position += 1
        if operating <= room:
            return 0.0
        if state.in_flight > 0:
            return self._poll  # their reports will tell more
        # Nothing in flight: wait until enough of our own time has left the window.
        while position < len(drops):
            leaves_at, seconds = drops[position]
            operating -= seconds
            if operating <= room:
                return leaves_at - server_now
            position += 1
        # It cannot fit even then (time spent by others, or a request bigger than the
        # budget): go, and let the server's next report guide the rest.
        return 0.0

    def __repr__(self) -> str:
        return f"OperatingWindow(limit={self._limit}, enabled={self._enabled})"


def cost_class(params: object) -> int:
    """The operating-time cost class of a command with ``params``.

    List pages cost more the deeper their ``start`` (the server skips that many
    rows, and counts them all): class ``1 + floor(4 * log2(page + 1))``, so the
    pages of one class lie within a factor of 2 ** (1/4) in depth. Anything
    else is class 0.
    """
    if not isinstance(params, Mapping):
        return 0
    start = params.get("start")
    if isinstance(start, str) and start.isdigit():
        start = int(start)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        return 0
    return 1 + int(4 * math.log2(start // 50 + 1))


def _class_depth(cost_class: int) -> float:
    """Pages before the deepest page of ``cost_class``, plus one (0 for class 0)."""
    return 0.0 if cost_class <= 0 else 2.0 ** (cost_class / 4.0)


def _method_key(method: object) -> str:
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    key = method.strip().lower()
    if not key:
        raise ValueError("method must not be empty")
    return key


def _method_counts(methods: object) -> dict[str, dict[int, int]]:
    """``{method or (method, class): count}`` as ``{method: {class: count}}``."""
    if not isinstance(methods, Mapping):
        raise TypeError(f"methods must be a mapping of method -> count, got "
                        f"{type(methods).__name__}")
    counts: dict[str, dict[int, int]] = {}
    for name, n in methods.items():
        n = _integer(n, f"count for {name!r}", minimum=0)
        cost_class = 0
        if isinstance(name, tuple):
            if len(name) != 2:
                raise TypeError(f"expected (method, cost class), got {name!r}")
            name, cost_class = name
            cost_class = _integer(cost_class, "cost class", minimum=0)
        if n:
            classes = counts.setdefault(_method_key(name), {})
            classes[cost_class] = classes.get(cost_class, 0) + n
    return counts
