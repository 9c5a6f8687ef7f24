"""The limiter's storage seam: algorithms over a store, in-process stores as the default."""
from __future__ import annotations

import threading

import pytest

from bitrix_threaded.cancel import CancelToken
from bitrix_threaded.clock import ManualClock
from bitrix_threaded.errors import Cancelled, ClientClosed
from bitrix_threaded.limiter import (
    BucketStore,
    LeakyBucket,
    MemoryBucketStore,
    MemoryWindowStore,
    OperatingWindow,
    WindowStore,
)

LIST = "crm.deal.list"


class CountingBucketStore(MemoryBucketStore):
    """An in-process store that counts transactions (a stand-in for a shared store)."""

    def __init__(self, clock):
        super().__init__(clock)
        self.transactions = 0

    def transact(self, fn):
        self.transactions += 1
        return super().transact(fn)


class CountingWindowStore(MemoryWindowStore):
    def __init__(self, clock):
        super().__init__(clock)
        self.keys = []

    def transact(self, keys, fn):
        keys = list(keys)
        self.keys.append(sorted(keys))
        return super().transact(keys, fn)


def test_two_buckets_on_one_store_share_the_budget():
    clock = ManualClock()
    store = MemoryBucketStore(clock)
    first = LeakyBucket(10, 1.0, clock=clock, margin=0.0, store=store)
    second = LeakyBucket(10, 1.0, clock=clock, margin=0.0, store=store)
    waits = [first.reserve() if i % 2 else second.reserve() for i in range(12)]
    assert waits[:10] == [0.0] * 10
    assert waits[10] == pytest.approx(1.0) and waits[11] == pytest.approx(2.0)


def test_bucket_decisions_are_store_transactions():
    clock = ManualClock()
    store = CountingBucketStore(clock)
    bucket = LeakyBucket(50, 2.0, clock=clock, store=store)
    bucket.reserve()
    bucket.penalize()
    bucket.reward()
    assert store.transactions == 3
    assert bucket.current_rate == pytest.approx(2.0 * 0.8 * 1.1)
    assert store.snapshot().cuts == 1


def test_two_windows_on_one_store_share_in_flight_bookings():
    clock = ManualClock()
    store = MemoryWindowStore(clock)
    one = OperatingWindow(100.0, clock=clock, headroom=0.0, store=store)
    two = OperatingWindow(100.0, clock=clock, headroom=0.0, store=store)
    one.record(LIST, 50.0, reset_in=300.0, server_time=clock.time(), cost=10.0)
    held = one.acquire({LIST: 5})  # 50 s booked: 100 of 100
    assert two.delay({LIST: 1}) > 0  # the other process sees that booking
    one.release(held)
    assert two.delay({LIST: 1}) == 0.0


def test_a_batch_books_all_its_methods_in_one_transaction():
    clock = ManualClock()
    store = CountingWindowStore(clock)
    window = OperatingWindow(480.0, clock=clock, store=store)
    ticket = window.acquire({LIST: 2, "crm.contact.list": 1})
    assert store.keys[-1] == ["crm.contact.list", LIST]
    window.release(ticket)
    assert store.keys[-1] == ["crm.contact.list", LIST]


def test_stores_are_checked():
    with pytest.raises(TypeError):
        LeakyBucket(store=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        OperatingWindow(store=MemoryBucketStore())  # type: ignore[arg-type]
    assert issubclass(MemoryBucketStore, BucketStore)
    assert issubclass(MemoryWindowStore, WindowStore)


def test_waits_end_on_a_cancelled_token():
    clock = ManualClock()
    token = CancelToken()
    window = OperatingWindow(480.0, clock=clock)
    window.block(LIST, 300.0)
    clock_hook = []

    def cancel_during_wait(seconds):
        clock_hook.append(seconds)
        token.cancel("stop")

    clock._on_sleep = cancel_during_wait
    with pytest.raises(Cancelled):
        window.acquire({LIST: 1}, token)
    assert window.snapshot()[LIST]["in_flight"] == 0
    closed = CancelToken()
    closed.cancel("closed", closed=True)
    bucket = LeakyBucket(1, 1.0, clock=ManualClock(), margin=0.0)
    with pytest.raises(ClientClosed):
        bucket.acquire(closed)


def test_long_waits_are_announced():
    clock = ManualClock()
    seen = []
    window = OperatingWindow(480.0, clock=clock,
                             on_wait=lambda m, why, s: seen.append((m, why, s)))
    window.block(LIST, 120.0)
    window.release(window.acquire({LIST: 1}))
    assert seen == [(LIST, "waiting for operating-time reset", pytest.approx(120.0))]


def test_manual_clock_wait_returns_at_once_when_cancelled():
    clock = ManualClock()
    token = CancelToken()
    assert clock.wait(5.0, token) is False and clock.slept == 5.0
    token.cancel()
    assert clock.wait(5.0, token) is True and clock.slept == 5.0


def test_system_clock_wait_wakes_on_cancel():
    from bitrix_threaded.clock import SYSTEM_CLOCK

    token = CancelToken()
    threading.Timer(0.01, token.cancel).start()
    assert SYSTEM_CLOCK.wait(30.0, token) is True


def test_costs_that_keep_exceeding_their_estimate_earn_a_margin():
    from bitrix_threaded.limiter_store import MethodState
    from bitrix_threaded.operating_costs import estimate_cost, learn_cost, margin

    steady, rising = MethodState(), MethodState()
    for i in range(40):
        learn_cost(steady, 0.04, 0, float(i), 60.0)
        learn_cost(rising, 0.04 * (1.05 ** i), 0, float(i), 60.0)
    assert margin(steady) == 0.0
    assert estimate_cost(steady, {0: 10}) == pytest.approx(0.4)
    assert 0.1 < margin(rising) <= 0.5
    highest = 0.04 * 1.05 ** 39
    assert estimate_cost(rising, {0: 1}) == pytest.approx(highest * (1 + margin(rising)))


def _reports():
    from bitrix_threaded.limiter import Report
    contacts = "crm.contact.list"
    return [
        Report(LIST, 1.0, 599.0, 1000.0, 0.4, 999.0, 0),
        Report(LIST, 2.5, 598.0, 1001.5, 1.5, 999.0, 3),
        Report("CRM.Contact.List", 0.2, None, 1001.0, 0.2, None, 0),
        Report(LIST, 2.0, 598.5, 1001.0, 0.5, 999.0, 1),   # older than the newest kept
        Report(contacts, 0.9, 590.0, 1002.0, 0.7, 1000.0, 0),
        Report(LIST, 470.0, None, 1003.0, None, None, 0),    # at the limit, no reset
    ]


def test_reports_recorded_together_leave_the_state_recording_each_leaves():
    clock = ManualClock()
    one_by_one = OperatingWindow(480.0, clock=clock)
    for report in _reports():
        one_by_one.record(report.method, report.operating, reset_in=report.reset_in,
                          server_time=report.server_time, cost=report.cost,
                          started=report.started, cost_class=report.cost_class)
    together = OperatingWindow(480.0, clock=clock)
    together.record_many(_reports())
    assert together._store.snapshot() == one_by_one._store.snapshot()
    assert together.snapshot() == one_by_one.snapshot()


def test_reports_recorded_together_are_one_transaction_over_their_methods():
    clock = ManualClock()
    store = CountingWindowStore(clock)
    window = OperatingWindow(480.0, clock=clock, store=store)
    window.record_many(_reports())
    assert store.keys == [["crm.contact.list", LIST]]
    window.record_many([])
    assert len(store.keys) == 1  # nothing to record: no transaction


@pytest.mark.parametrize("bad, error", [
    ("not a report", TypeError),
    ((LIST, 1.0, None, None, None, None, 0), TypeError),   # a plain tuple
    ("nan", ValueError),
    ("negative", ValueError),
    ("class", ValueError),
    ("method", TypeError),
])
def test_a_bad_report_stores_none_of_its_batch(bad, error):
    from bitrix_threaded.limiter import Report
    good = Report(LIST, 1.0, 599.0, 1000.0, 0.4, 999.0, 0)
    report = {
        "nan": Report(LIST, float("nan"), None),
        "negative": Report(LIST, 1.0, None, cost=-0.5),
        "class": Report(LIST, 1.0, None, cost_class=-1),
        "method": Report(None, 1.0, None),  # type: ignore[arg-type]
    }.get(bad, bad) if isinstance(bad, str) else bad
    clock = ManualClock()
    store = CountingWindowStore(clock)
    window = OperatingWindow(480.0, clock=clock, store=store)
    with pytest.raises(error):
        window.record_many([good, report])
    assert store.keys == [] and window.snapshot() == {}
