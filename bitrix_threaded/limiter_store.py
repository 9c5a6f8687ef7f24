"""Where the limiter's state lives: the store interfaces and the in-process stores.

The limiter's algorithms (:class:`~bitrix_threaded.bucket.LeakyBucket`,
:class:`~bitrix_threaded.operating.OperatingWindow`) keep no shared state of
their own. They read and change it only through a store, one *transaction*
at a time::

    send_at = store.transact(lambda state: decide_and_update(state, store.now()))

A transaction is a function that reads the state it is given, changes it in
place and returns a result. It is pure apart from that: no I/O, no sleeping,
no reading of other state, so a store may run it again on a fresh copy.

What a store must make atomic
-----------------------------
- :meth:`BucketStore.transact`: the whole read-modify-write of the one
  :class:`BucketState` (booking a send time, a rate cut after a 503, a rate
  raise after a success, a reconfiguration). Two bookings must never see the
  same ``tat``.
- :meth:`WindowStore.transact`: the read-modify-write of the
  :class:`MethodState` of *every* method named in ``keys`` together (a batch
  books the operating time of all its methods at once: checking the budget and
  registering the commands as in flight is one step; so are storing a report,
  a block, and releasing a booking).
- ``now()``: the time base every stored time is in. The in-process stores use
  the injected clock's monotonic time; a store shared by processes or hosts
  uses one clock for all of them (e.g. the server's), so skewed hosts agree.
  Stored times are only ever compared with ``now()`` of the same store.

Reads for logs and tests (:meth:`snapshot`) need not be atomic with anything.

The in-process stores (:class:`MemoryBucketStore`, :class:`MemoryWindowStore`)
hold the state in memory behind one lock each; a transaction runs under it.
Thread-safe.
"""
from __future__ import annotations

import abc
import copy
import math
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple, TypeVar

from .clock import SYSTEM_CLOCK, Clock

__all__ = [
    "NEVER",
    "BucketState",
    "BucketStore",
    "MemoryBucketStore",
    "MemoryWindowStore",
    "MethodState",
    "WindowStore",
]

T = TypeVar("T")

NEVER = -math.inf


@dataclass
class BucketState:
    """The leaky bucket's shared state.

    ``tat``: the theoretical arrival time of the next request (GCRA), in the
    store's time base; the bucket holds ``(tat - now) * rate`` requests.
    ``rate``: the adaptive drain rate in use (0.0: not set yet, use the
    configured rate). ``cuts``: how many rate cuts so far (a wave of 503s
    cuts once).
    """

    tat: float = NEVER
    rate: float = 0.0
    cuts: int = 0


@dataclass
class MethodState:
    """One method's operating-time state, as the window algorithm keeps it.

    Server-reported: ``operating`` (cumulative seconds in the window, never
    summed), ``server_time`` (server time of that report), ``reset_until``
    (store time its oldest part expires), ``reset_at`` (the same in server
    time), ``offset`` (store time minus server time at that report).
    Blocks: ``blocked_until`` (store time a 429 hold ends), ``answered``
    (latest hold deadline followed by a fresh report: the probe was answered).
    In-flight bookings: ``in_flight`` commands and their booked
    ``in_flight_cost`` seconds. Cost estimates: ``cost`` (a decaying maximum
    at ``cost_at``), ``class_costs`` (cost class -> [current max, previous
    max, reports]), ``spread`` (the recent relative spread of costs above
    their estimate). ``spent``: sorted (earliest, latest server time, seconds)
    of our own commands still counted in ``operating``; ``drops`` a cache
    derived from it (may be dropped at any time).
    """

    operating: float = 0.0
    server_time: Optional[float] = None
    reset_until: Optional[float] = None
    blocked_until: float = NEVER
    answered: float = NEVER
    cost: Optional[float] = None
    cost_at: float = 0.0
    class_costs: Dict[int, List[float]] = field(default_factory=dict)
    spread: float = 0.0
    in_flight: int = 0
    in_flight_cost: float = 0.0
    spent: List[Tuple[float, float, float]] = field(default_factory=list)
    drops: Optional[List[Tuple[float, float]]] = None
    offset: float = 0.0
    reset_at: Optional[float] = None


class BucketStore(abc.ABC):
    """Holds one :class:`BucketState`; see the module docstring for atomicity."""

    @abc.abstractmethod
    def now(self) -> float:
        """The current time in the store's time base (seconds)."""

    @abc.abstractmethod
    def transact(self, fn: Callable[[BucketState], T]) -> T:
        """Run ``fn(state)`` atomically; its changes to ``state`` are kept; return its result."""

    def snapshot(self) -> BucketState:
        """A copy of the state (not atomic with anything)."""
        return self.transact(copy.deepcopy)


class WindowStore(abc.ABC):
    """Holds a :class:`MethodState` per method key; see the module docstring."""

    @abc.abstractmethod
    def now(self) -> float:
        """The current time in the store's time base (seconds)."""

    @abc.abstractmethod
    def transact(self, keys: Iterable[str], fn: Callable[[Dict[str, MethodState]], T]) -> T:
        """Run ``fn({key: state})`` atomically over the states of ``keys`` (a fresh
        :class:`MethodState` for a key never seen); keep their changes; return the result."""

    @abc.abstractmethod
    def snapshot(self) -> Dict[str, MethodState]:
        """Copies of every stored state (not atomic with anything)."""


class MemoryBucketStore(BucketStore):
    """The in-process bucket store: state in memory, one lock, the clock's monotonic time."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BucketState()

    def now(self) -> float:
        return self._clock.monotonic()

    def transact(self, fn: Callable[[BucketState], T]) -> T:
        with self._lock:
            return fn(self._state)

    def __repr__(self) -> str:
        return "MemoryBucketStore()"


class MemoryWindowStore(WindowStore):
    """The in-process window store: states in a dict, one lock, the clock's monotonic time."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._states: Dict[str, MethodState] = {}

    def now(self) -> float:
        return self._clock.monotonic()

    def transact(self, keys: Iterable[str], fn: Callable[[Dict[str, MethodState]], T]) -> T:
        with self._lock:
            states = {}
            for key in keys:
                state = self._states.get(key)
                if state is None:
                    state = self._states[key] = MethodState()
                states[key] = state
            return fn(states)

    def snapshot(self) -> Dict[str, MethodState]:
        with self._lock:
            return copy.deepcopy(self._states)

    def __repr__(self) -> str:
        return "MemoryWindowStore()"
