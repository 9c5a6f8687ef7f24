"""Counters the fake portal keeps for tests and benchmarks."""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Dict

__all__ = ["PortalStats"]

FAULT_NAMES = ("error", "disconnect", "stall")


class PortalStats:
    """Thread-safe counters; :meth:`snapshot` returns a plain JSON-able dict.

    Keys of the snapshot:

    - ``requests``: /rest HTTP requests received (rejected ones included);
      ``requests_by_method``: the same per top-level method (``batch`` for a batch);
    - ``commands``: method calls executed (a plain call is one, a batch adds
      one per command it ran); ``commands_by_method``;
    - ``records``: records returned; ``skipped_rows`` / ``counted_rows``:
      offset rows skipped and rows counted for ``total`` (the costly parts);
    - ``rejected_503``: requests refused by the leaky bucket (never executed);
    - ``rejected_429``: plain calls and batch commands refused by the
      operating-time limit;
    - ``faults``: injected faults by kind; ``disconnects_after_execution``:
      the disconnects that happened after the command ran;
    - ``errors``: error replies by error code (plain calls and batch commands);
    - ``operating``: modelled processing seconds per method (before the time
      scale); ``operating_total``;
    - ``connections``: TCP connections accepted (keep-alive reuses one);
    - ``in_flight`` and ``peak_concurrency``: concurrent /rest requests;
    - ``oauth_refreshes``; ``mutations``: records inserted/deleted by mutation;
    - ``internal_errors``: unexpected exceptions while serving (should stay 0).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._reset_locked()

    def _reset_locked(self) -> None:
        self._counts: Counter[str] = Counter()
        self._by_request: Counter[str] = Counter()
        self._by_command: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._faults: Counter[str] = Counter({name: 0 for name in FAULT_NAMES})
        self._operating: Dict[str, float] = {}
        self._peak = self._in_flight

    def reset(self) -> None:
        """Zero every counter (requests in flight stay counted as in flight)."""
        with self._lock:
            self._reset_locked()

    def request_started(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._counts["requests"] += 1
            if self._in_flight > self._peak:
                self._peak = self._in_flight

    def request_finished(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def count_method_request(self, method: str) -> None:
        with self._lock:
            self._by_request[method] += 1

    def count_command(self, method: str, records: int, skipped: int, counted: int,
                      seconds: float) -> None:
        with self._lock:
            self._counts["commands"] += 1
            self._counts["records"] += records
            self._counts["skipped_rows"] += skipped
            self._counts["counted_rows"] += counted
            self._by_command[method] += 1
            self._operating[method] = self._operating.get(method, 0.0) + seconds

    def count(self, name: str, amount: int = 1) -> None:
        """Add to a plain counter (``rejected_503``, ``oauth_refreshes``, ...)."""
        with self._lock:
            self._counts[name] += amount

    def count_error(self, code: str) -> None:
        with self._lock:
            self._errors[code] += 1

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            counts = self._counts
            return {
                "requests": counts["requests"],
                "requests_by_method": dict(self._by_request),
                "commands": counts["commands"],
                "commands_by_method": dict(self._by_command),
                "records": counts["records"],
                "skipped_rows": counts["skipped_rows"],
                "counted_rows": counts["counted_rows"],
                "rejected_503": counts["rejected_503"],
                "rejected_429": counts["rejected_429"],
                "faults": dict(self._faults),
                "disconnects_after_execution": counts["disconnects_after_execution"],
                "errors": dict(self._errors),
                "operating": dict(self._operating),
                "operating_total": sum(self._operating.values()),
                "connections": counts["connections"],
                "in_flight": self._in_flight,
                "peak_concurrency": self._peak,
                "oauth_refreshes": counts["oauth_refreshes"],
                "mutations": {"inserted": counts["inserted"], "deleted": counts["deleted"]},
                "internal_errors": counts["internal_errors"],
            }
