"""The operating-time window: each method's budget of server seconds (429 OPERATION_TIME_LIMIT).

The algorithm mirrors the server's per-method window of ten minute-buckets
from the ``time`` blocks it reports (b24-rest-docs ``settings/performance/limits.md``:
``operating`` and ``operating_reset_at``). Its
per-method state (:class:`~bitrix_threaded.limiter_store.MethodState`) lives
in a :class:`~bitrix_threaded.limiter_store.WindowStore`; every decision is
one store transaction, and waits happen outside it.
"""
from __future__ import annotations

import bisect
import contextlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional

from . import _checks
from .cancel import CancelToken
from .clock import SYSTEM_CLOCK, Clock, wait_on
from .limiter_store import NEVER, MemoryWindowStore, MethodState, WindowStore
from .operating_costs import estimate_cost, learn_cost

__all__ = ["BUDGET", "RESET", "OperatingWindow", "Report", "WindowTicket"]

RESET = "waiting for operating-time reset"
BUDGET = "waiting for operating-time budget"


class Report(NamedTuple):
    """One ``time`` report for :meth:`OperatingWindow.record_many`: the arguments of
    :meth:`OperatingWindow.record`, in its order."""

    method: str
    operating: float
    reset_in: Optional[float]
    server_time: Optional[float] = None
    cost: Optional[float] = None
    started: Optional[float] = None
    cost_class: int = 0


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
    holds another. ``enabled=False`` turns off this proactive pacing
    (reports are still stored) but not obedience to the server: a method
    blocked by a 429 still waits for its reset.

    Costs are estimated per *cost class* (:mod:`bitrix_threaded.operating_costs`):
    the caller may key a request's commands by ``(method, class)`` instead of
    ``method`` (class 0), and report each command with its class
    (:func:`cost_class`). Higher classes are taken to cost more (offset pages:
    deeper). The method's highest recent cost halves every ``cost_half_life``
    seconds (default: ``default_block``). ``default_block``: how long a method
    reported at its limit, or blocked, with no reset time known, is held.

    ``store`` holds the per-method state (default: in this process; see
    :mod:`bitrix_threaded.limiter_store`). ``on_wait(method, reason,
    seconds)`` is told of waits of :attr:`VISIBLE_WAIT` seconds or more
    (``reason``: :data:`RESET` or :data:`BUDGET`); it runs in the waiting
    thread, outside the store.

    Method names are case-insensitive. Thread-safe; waiting happens on the
    clock outside any lock or store transaction.
    """

    VISIBLE_WAIT = 3.0

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
        store: WindowStore | None = None,
        on_wait: Callable[[str, str, float], None] | None = None,
        cost_half_life: float | None = None,
    ) -> None:
        limit = _checks.number(limit, "limit", strict=True)
        headroom = _checks.number(headroom, "headroom")
        if headroom >= 1.0:
            raise ValueError(f"headroom must be < 1, got {headroom!r}")
        if not isinstance(enabled, bool):
            raise TypeError("enabled must be a bool")
        if store is not None and not isinstance(store, WindowStore):
            raise TypeError(f"store must be a WindowStore, got {type(store).__name__}")
        self._lock = threading.Lock()  # guards the enabled flag and tickets' release
        self._clock = _checks.clock(clock)
        self._store = store if store is not None else MemoryWindowStore(self._clock)
        self._limit = limit
        self._threshold = limit * (1.0 - headroom)
        self._enabled = enabled
        self._default_block = _checks.number(default_block, "default_block")
        self._half_life = self._default_block if cost_half_life is None else _checks.number(
            cost_half_life, "cost_half_life", strict=True)
        self._poll = _checks.number(poll_interval, "poll_interval", strict=True)
        # 600 s for the standard 480 s limit: limit * 1.25 unless given.
        self._span = limit * 1.25 if span is None else _checks.number(span, "span", strict=True)
        self._bucket = self._span / 10.0
        self._min_recorded = limit / 4800.0
        self._on_wait = on_wait

    @property
    def limit(self) -> float:
        return self._limit

    @property
    def span(self) -> float:
        """The window's length in seconds (ten minute-buckets)."""
        return self._span

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
        self.record_many([Report(method, operating, reset_in, server_time, cost, started,
                                 cost_class)])

    def record_many(self, reports: Iterable[Report]) -> None:
        """Store several reports (a batch reply's ``result_time`` blocks) in one store
        transaction, in their order: the same as :meth:`record` for each in turn."""
        checked = []
        for report in reports:
            if not isinstance(report, Report):
                raise TypeError(f"reports must be Report tuples, got {type(report).__name__}")
            method, operating, reset_in, server_time, cost, started, cost_class = report
            checked.append(Report(
                _method_key(method),
                _checks.number(operating, "operating"),
                None if reset_in is None else _checks.number(reset_in, "reset_in",
                                                             minimum=None),
                None if server_time is None else _checks.number(
                    server_time, "server_time", minimum=None),
                None if cost is None else _checks.number(cost, "cost"),
                None if started is None else _checks.number(started, "started",
                                                            minimum=None),
                _checks.integer(cost_class, "cost_class", minimum=0)))
        if not checked:
            return
        now = self._store.now()

        def transaction(states: dict[str, MethodState]) -> None:
            for report in checked:
                self._apply(states[report.method], report, now)

        self._store.transact(dict.fromkeys(r.method for r in checked), transaction)

    def _apply(self, state: MethodState, report: Report, now: float) -> None:
        """One checked report (its method a key) applied to its method's state."""
        _, operating, reset_in, server_time, cost, started, cost_class = report
        if cost is not None:
            learn_cost(state, cost, cost_class, now, self._half_life)
            if server_time is not None and cost >= self._min_recorded:
                earliest = server_time - cost if started is None else min(started, server_time)
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

    def block(self, method: str, reset_in: float | None) -> None:
        """Hold ``method`` for ``reset_in`` seconds after a 429 or a per-command
        OPERATION_TIME_LIMIT. ``None``: until the reset its last report announced, or
        ``default_block`` seconds when none is known. Never shortens a block."""
        key = _method_key(method)
        seconds = None if reset_in is None else max(
            0.0, _checks.number(reset_in, "reset_in", minimum=None))
        now = self._store.now()

        def transaction(states: dict[str, MethodState]) -> None:
            state = states[key]
            hold = seconds
            if hold is None:
                # Unknown here (a per-command error has no time block): the reset the
                # method's last report announced, if still ahead, else the default.
                known = state.reset_until
                hold = known - now if known is not None and known > now else None
            if hold is None:
                hold = self._default_block
            state.blocked_until = max(state.blocked_until, now + hold)

        self._store.transact((key,), transaction)

    def delay(self, methods: Mapping[object, int]) -> float:
        """Seconds a request with ``methods`` must wait; 0.0 = go.

        ``methods`` maps a method name, or a ``(method, cost class)`` pair, to a
        command count.
        """
        counts = _method_counts(methods)
        now = self._store.now()
        return self._store.transact(counts, lambda states: self._delay(states, counts, now)[0])

    def fit(self, commands: Sequence[object]) -> int:
        """How many of ``commands`` fit the budget now: the longest prefix a request
        could carry without waiting. 0 when not even the first fits (wait for it with
        :meth:`delay`).

        ``commands``: one entry per command, in sending order, each a method name or a
        ``(method, cost class)`` pair. Stricter than :meth:`delay` in one way: a request
        that :meth:`delay` lets go only because it could never fit (time spent by
        others, a batch bigger than the budget) does not fit here. Pure: one store
        transaction, nothing booked, no wait.
        """
        if not isinstance(commands, Sequence) or isinstance(commands, (str, bytes)):
            raise TypeError(f"commands must be a sequence of methods or (method, cost "
                            f"class) pairs, got {type(commands).__name__}")
        keyed = [_command_key(command) for command in commands]
        if not keyed:
            return 0
        now = self._store.now()

        def fits(states: Mapping[str, MethodState], n: int) -> bool:
            counts: dict[str, dict[int, int]] = {}
            for key, cost_class in keyed[:n]:
                classes = counts.setdefault(key, {})
                classes[cost_class] = classes.get(cost_class, 0) + 1
            return self._delay(states, counts, now, strict=True)[0] <= 0.0

        def transaction(states: dict[str, MethodState]) -> int:
            # The cost of a prefix grows with its length, so whether it fits is
            # monotone: bisect for the longest one that does.
            low, high = 0, len(keyed)
            if fits(states, high):
                return high
            while high - low > 1:
                middle = (low + high) // 2
                if fits(states, middle):
                    low = middle
                else:
                    high = middle
            return low

        return self._store.transact({key for key, _ in keyed}, transaction)

    def acquire(self, methods: Mapping[object, int],
                token: CancelToken | None = None) -> WindowTicket:
        """Wait until :meth:`delay` is 0, register the commands as in flight, return a ticket.

        Pass the ticket to :meth:`release` once the reply was recorded, or the
        request failed. The check and the registration are one store
        transaction; waiting happens outside it, on ``token`` when given: a
        cancelled token ends the wait and raises its error
        (``Cancelled``/``ClientClosed``) with nothing registered. A wait of
        :attr:`VISIBLE_WAIT` seconds or more is announced to ``on_wait(method,
        reason, seconds)``.
        """
        counts = _method_counts(methods)
        announced = -1.0
        while True:
            if token is not None:
                token.raise_if_cancelled()
            now = self._store.now()
            outcome = self._store.transact(
                counts, lambda states: self._book(states, counts, now))
            if isinstance(outcome, WindowTicket):
                return outcome
            wait, key, reason = outcome
            if wait >= self.VISIBLE_WAIT and self._on_wait is not None and (
                    announced < 0 or wait > announced + self.VISIBLE_WAIT):
                self._on_wait(key, reason, wait)
            announced = wait if wait >= self.VISIBLE_WAIT else -1.0
            if wait_on(self._clock, wait, token) and token is not None:
                raise token.error()
            if announced > 0:
                announced = max(0.0, announced - wait)

    def _book(self, states: dict[str, MethodState], counts: Mapping[str, Mapping[int, int]],
              now: float) -> WindowTicket | tuple[float, str, str]:
        wait, key, reason = self._delay(states, counts, now)
        if wait > 0.0:
            return wait, key, reason
        totals: dict[str, int] = {}
        costs: dict[str, float] = {}
        for key, classes in counts.items():
            state = states[key]
            n = sum(classes.values())
            cost = estimate_cost(state, classes) or 0.0
            state.in_flight += n
            state.in_flight_cost += cost
            totals[key], costs[key] = n, cost
        return WindowTicket(self, totals, costs)

    def release(self, ticket: WindowTicket) -> None:
        """Remove a ticket's commands from the in-flight count; releasing twice is harmless."""
        if not isinstance(ticket, WindowTicket) or ticket._owner is not self:
            raise ValueError("ticket was not issued by this OperatingWindow")
        with self._lock:
            if ticket.released:
                return
            ticket.released = True

        def transaction(states: dict[str, MethodState]) -> None:
            for key, n in ticket.methods.items():
                state = states[key]
                state.in_flight = max(0, state.in_flight - n)
                state.in_flight_cost = max(0.0, state.in_flight_cost - ticket.costs[key])
                if state.in_flight == 0:
                    state.in_flight_cost = 0.0  # no rounding left over

        self._store.transact(ticket.methods, transaction)

    @contextlib.contextmanager
    def hold(self, methods: Mapping[object, int],
             token: CancelToken | None = None) -> Iterator[WindowTicket]:
        """``with window.hold({"crm.deal.list": 50}):`` — acquire, and release on exit."""
        ticket = self.acquire(methods, token)
        try:
            yield ticket
        finally:
            self.release(ticket)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """A copy of each method's state, with times as seconds from now (for logs/tests)."""
        states = self._store.snapshot()
        now = self._store.now()
        out = {}
        for key, state in states.items():
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

    def _deadline(self, state: MethodState) -> float:
        deadline = state.blocked_until
        if state.operating >= self._threshold and state.reset_until is not None:
            deadline = max(deadline, state.reset_until)
        return deadline

    @staticmethod
    def _probing(state: MethodState, deadline: float, now: float) -> bool:
        return deadline != NEVER and now >= deadline and state.answered < deadline

    def _delay(self, states: Mapping[str, MethodState], counts: Mapping[str, Mapping[int, int]],
               now: float, strict: bool = False) -> tuple[float, str, str]:
        """(seconds to wait, the method that waits longest, why); 0.0 = go.

        ``strict``: a request that could never fit does not go (see :meth:`fit`)."""
        wait, longest, reason = 0.0, "", ""
        for key, classes in counts.items():
            state = states[key]
            if not self._enabled:
                # Proactive pacing is off, but a 429 is the server's own word:
                # the method still waits for the reset it was given.
                method_wait = max(0.0, state.blocked_until - now)
                why = RESET
            else:
                method_wait = self._method_delay(state, classes, now, strict)
                why = RESET if now < self._deadline(state) else BUDGET
            if method_wait > wait:
                wait, longest, reason = method_wait, key, why
        return wait, longest, reason

    def _rebase(self, state: MethodState, now: float, server_time: float | None,
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

    def _leaves_at(self, state: MethodState, entry: tuple[float, float, float]
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

    def _method_delay(self, state: MethodState, classes: Mapping[int, int], now: float,
                      strict: bool = False) -> float:
        deadline = self._deadline(state)
        if now < deadline:
            return deadline - now
        if self._probing(state, deadline, now) and state.in_flight > 0:
            return self._poll
        cost = estimate_cost(state, classes)
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
        # budget): go, and let the server's next report guide the rest. A strict
        # caller asks whether it fits now, and it does not.
        return self._poll if strict else 0.0

    def __repr__(self) -> str:
        return f"OperatingWindow(limit={self._limit}, enabled={self._enabled})"


def _method_key(method: object) -> str:
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    key = method.strip().lower()
    if not key:
        raise ValueError("method must not be empty")
    return key


def _command_key(command: object) -> tuple[str, int]:
    """A method name or ``(method, cost class)`` as ``(method key, class)``."""
    if isinstance(command, tuple):
        if len(command) != 2:
            raise TypeError(f"expected (method, cost class), got {command!r}")
        name, cost_class = command
        return _method_key(name), _checks.integer(cost_class, "cost class", minimum=0)
    return _method_key(command), 0


def _method_counts(methods: object) -> dict[str, dict[int, int]]:
    """``{method or (method, class): count}`` as ``{method: {class: count}}``."""
    if not isinstance(methods, Mapping):
        raise TypeError(f"methods must be a mapping of method -> count, got "
                        f"{type(methods).__name__}")
    counts: dict[str, dict[int, int]] = {}
    for name, n in methods.items():
        n = _checks.integer(n, f"count for {name!r}", minimum=0)
        cost_class = 0
        if isinstance(name, tuple):
            if len(name) != 2:
                raise TypeError(f"expected (method, cost class), got {name!r}")
            name, cost_class = name
            cost_class = _checks.integer(cost_class, "cost class", minimum=0)
        if n:
            classes = counts.setdefault(_method_key(name), {})
            classes[cost_class] = classes.get(cost_class, 0) + n
    return counts
