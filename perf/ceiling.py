"""The ceiling: the best time any client could reach on the fake portal.

Everything is in unscaled portal seconds and comes from the portal's own
settings: the cost profile (``bitrix_threaded.testing.PROFILES``), the leaky
bucket (burst ``X`` requests, drain ``Y``/s) and the per-method operating
limit (``L`` seconds per 600 s window).

A job is ``n`` commands of one method, each costing ``c`` seconds of server
time, at most ``B = 50`` per batch request. For a full export the commands
are cursor pages (50 records, no offset scan, no count: ``c = base + 50 *
per_record``); the ideal client sends no probe and no page it does not need.

* requests ``R = ceil(n / B)``;
* request ``i`` (1-based) can leave no earlier than ``max(0, (i - X) / Y)``;
* a batch of ``k`` commands takes ``round_trip + k * c`` (commands inside a
  batch run one after another; separate requests run in parallel);
* when the work ``O = n * c`` exceeds ``L``, the commands past the budget wait
  until the window's oldest minute bucket expires (600 s after it opened).

Without the operating limit this is closed form::

    T = max(0, R - X) / Y + round_trip + k_last * c

With it, :func:`simulate` runs a greedy ideal client (unlimited concurrency,
sends as soon as bucket and budget allow, lets a batch run exactly the
commands that still fit) against the portal's own ``LeakyBucket`` and
``OperatingWindow`` classes on a manual clock, and returns when the last
reply arrives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

PAGE = 50
BATCH = 50
WINDOW = 600.0


@dataclass(frozen=True)
class Limits:
    burst: float = 50.0
    rate: float = 2.0
    operating: Optional[float] = 480.0   # None: no operating limit


STANDARD = Limits(50.0, 2.0, 480.0)
ENTERPRISE = Limits(250.0, 5.0, 480.0)


@dataclass(frozen=True)
class Ceiling:
    seconds: float
    requests: int
    operating: float          # server seconds the ideal client consumes
    closed_form: bool         # True when the operating limit never binds

    def as_dict(self) -> dict:
        return {"seconds": self.seconds, "requests": self.requests,
                "operating": self.operating, "closed_form": self.closed_form}


def closed_form(n: int, c: float, round_trip: float, limits: Limits) -> float:
    """``T`` when the operating limit does not bind (see the module docstring)."""
    if n <= 0:
        return 0.0
    requests = math.ceil(n / BATCH)
    last = n - (requests - 1) * BATCH
    wait = max(0.0, requests - limits.burst) / limits.rate
    return wait + round_trip + last * c


def simulate(n: int, c: float, round_trip: float, limits: Limits) -> float:
    """The greedy ideal client against the portal's own limit classes (unscaled time)."""
    return simulate_costs([c] * n, round_trip, limits)


def _fitting(costs: List[float], first: int, used: float, limit: Optional[float]) -> int:
    """How many of the commands from ``first`` on the portal runs, at most a batch."""
    if limit is None:
        return min(BATCH, len(costs) - first)
    k = 0
    # The portal runs a command while the method's total is <= the limit, so the
    # command that crosses it still runs.
    while k < BATCH and first + k < len(costs) and used <= limit:
        used += costs[first + k]
        k += 1
    return k


def simulate_costs(costs: List[float], round_trip: float, limits: Limits) -> float:
    """:func:`simulate` for commands of differing costs, sent in the given order."""
    from bitrix_threaded.testing.limits import LeakyBucket, ManualClock, OperatingWindow

    clock = ManualClock(0.0)
    bucket = LeakyBucket(limits.burst, limits.rate, clock)
    window = OperatingWindow(WINDOW, 10, clock)
    key = "method"
    sent = 0
    finish = 0.0
    step = 1e-6
    while sent < len(costs):
        now = clock.time()
        used, reset_at = window.state(key)
        k = _fitting(costs, sent, used, limits.operating)
        if k > 0 and bucket.try_acquire():
            batch = costs[sent:sent + k]
            for cost in batch:
                window.record(key, cost)
            finish = max(finish, now + round_trip + sum(batch))
            sent += k
            continue
        waits = []
        if k > 0:   # the bucket is full: wait for one request to drain
            waits.append(max(step, (bucket.level + 1 - limits.burst) / limits.rate))
        else:       # out of budget: wait for the oldest minute bucket to expire
            waits.append(max(step, (reset_at or now + step) - now))
        clock.advance(min(waits) + step)
    return finish


def ceiling(n: int, c: float, round_trip: float, limits: Limits) -> Ceiling:
    requests = math.ceil(n / BATCH) if n > 0 else 0
    work = n * c
    if limits.operating is None or work <= limits.operating:
        return Ceiling(closed_form(n, c, round_trip, limits), requests, work, True)
    return Ceiling(simulate(n, c, round_trip, limits), requests, work, False)


def export_ceiling(records: int, profile: str, limits: Limits) -> Ceiling:
    """Full export of ``records`` through cursor pages of 50."""
    from bitrix_threaded.testing import PROFILES

    p = PROFILES[profile]
    pages = math.ceil(records / PAGE)
    return ceiling(pages, p.base + PAGE * p.per_record, p.round_trip, limits)


def offset_ceiling(records: int, profile: str, limits: Limits) -> Ceiling:
    """Full export of ``records`` through ``start=`` offset pages (a custom ``order``).

    Every page skips ``start`` rows and counts all ``records`` for ``total``; the ideal
    client sends each page once, cheapest first, as the budget allows.
    """
    from bitrix_threaded.testing import PROFILES

    p = PROFILES[profile]
    pages = math.ceil(records / PAGE)
    costs = [p.command_seconds(records=min(PAGE, records - i * PAGE), skipped=i * PAGE,
                               counted=records) for i in range(pages)]
    work = sum(costs)
    if limits.operating is None or work <= limits.operating:
        seconds = closed_form(pages, max(costs), p.round_trip, limits)
        return Ceiling(seconds, math.ceil(pages / BATCH), work, True)
    return Ceiling(simulate_costs(costs, p.round_trip, limits), math.ceil(pages / BATCH), work,
                   False)


def per_record_ceiling(commands: int, profile: str, limits: Limits) -> Ceiling:
    """``commands`` one-record commands (``crm.deal.get``, ``crm.deal.update``)."""
    from bitrix_threaded.testing import PROFILES

    p = PROFILES[profile]
    return ceiling(commands, p.base + p.per_record, p.round_trip, limits)


if __name__ == "__main__":
    for label, value in (
        ("100k light std", export_ceiling(100_000, "light", STANDARD)),
        ("100k light ent", export_ceiling(100_000, "light", ENTERPRISE)),
        ("5k updates", per_record_ceiling(5_000, "light", STANDARD)),
        ("5k ids via list", export_ceiling(5_000, "light", STANDARD)),
        ("1M realistic std", export_ceiling(1_000_000, "realistic", STANDARD)),
        ("100k offset real", offset_ceiling(100_000, "realistic", STANDARD)),
    ):
        print(f"{label:18} {value}")
