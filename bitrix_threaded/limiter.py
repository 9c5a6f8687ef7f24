"""Client-side mirrors of the portal's limits, shared by every worker thread.

- :class:`LeakyBucket` (:mod:`bitrix_threaded.bucket`) — the request-rate limit
  (503 QUERY_LIMIT_EXCEEDED), taken *before* each HTTP request.
- :class:`OperatingWindow` (:mod:`bitrix_threaded.operating`) — each method's
  operating-time budget in the portal's sliding 10-minute window (429
  OPERATION_TIME_LIMIT).
- :class:`ConcurrencyGate` (:mod:`bitrix_threaded.concurrency`) — an
  adjustable bound on requests in flight.

The storage seam: the bucket and the window are algorithms over a state
store (:mod:`bitrix_threaded.limiter_store`: :class:`BucketStore`,
:class:`WindowStore`). By default the state lives in this process
(:class:`MemoryBucketStore`, :class:`MemoryWindowStore`); pass ``store=`` to
share it, e.g. between processes. A store runs each decision as one atomic
transaction over the state it names (the bucket's state; the states of every
method a request carries) and gives the time base (``now()``) the state is
kept in; the limiter never waits inside a transaction. Decisions are pure
functions of the state, the store's time and the configuration, so tests
drive them with a ``ManualClock`` instead of sleeping.
"""
from __future__ import annotations

from .bucket import LeakyBucket
from .concurrency import ConcurrencyGate
from .limiter_store import (
    BucketState,
    BucketStore,
    MemoryBucketStore,
    MemoryWindowStore,
    MethodState,
    WindowStore,
)
from .operating import OperatingWindow, Report, WindowTicket
from .paging import cost_class

__all__ = [
    "BucketState",
    "BucketStore",
    "ConcurrencyGate",
    "LeakyBucket",
    "MemoryBucketStore",
    "MemoryWindowStore",
    "MethodState",
    "OperatingWindow",
    "Report",
    "WindowStore",
    "WindowTicket",
    "cost_class",
]
