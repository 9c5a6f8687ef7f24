"""Transient fault injection for the fake portal."""
from __future__ import annotations

import random
import threading
from typing import Iterable, Optional

__all__ = ["FAULT_KINDS", "FaultInjector"]

FAULT_KINDS = ("error", "disconnect", "stall")

# What draw() can return: a disconnect is split into before/after execution,
# because "after" is the case a client must not blindly retry for writes.
ERROR = "error"
STALL = "stall"
DISCONNECT_BEFORE = "disconnect_before"
DISCONNECT_AFTER = "disconnect_after"


class FaultInjector:
    """Decides, per request, whether to inject a fault and of which kind.

    ``rate`` is the probability per request; the kind is drawn uniformly from
    ``kinds``; a disconnect happens before or after execution with equal
    probability. Seeded, so a run is reproducible (for a given request
    order). Thread-safe.
    """

    def __init__(self, rate: float = 0.0, kinds: Iterable[str] = ("error", "disconnect"),
                 seed: int = 1) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise TypeError("fault_rate must be a number")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, got {rate!r}")
        if isinstance(kinds, str):
            raise TypeError("fault_kinds must be a sequence of kind names, not a string")
        kinds = tuple(kinds)
        unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(FAULT_KINDS)}")
        if rate > 0 and not kinds:
            raise ValueError("fault_kinds must not be empty when fault_rate > 0")
        self.rate = float(rate)
        self.kinds = kinds
        self._rng = random.Random(f"faults-{seed}")
        self._lock = threading.Lock()

    def draw(self) -> Optional[str]:
        """None (no fault), or one of error, stall, disconnect_before, disconnect_after."""
        if self.rate <= 0:
            return None
        with self._lock:
            if self._rng.random() >= self.rate:
                return None
            kind = self._rng.choice(self.kinds)
            if kind == "disconnect":
                return DISCONNECT_BEFORE if self._rng.random() < 0.5 else DISCONNECT_AFTER
            return kind
