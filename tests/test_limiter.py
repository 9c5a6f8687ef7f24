from __future__ import annotations

import math
import random
import threading

import pytest

from bitrix_threaded.clock import ManualClock
from bitrix_threaded.limiter import ConcurrencyGate, LeakyBucket, OperatingWindow, WindowTicket

EPS = 1e-9


class ServerBucket:
    """Reference model of the portal's leaky bucket: +1 per request, drains ``rate``/s,
    a request that would push the counter over ``capacity`` is rejected (not counted)."""

    def __init__(self, capacity: float, rate: float, level: float = 0.0, at: float = 0.0):
        self.capacity = capacity
        self.rate = rate
        self.level = level
        self.at = at
        self.accepted = 0
        self.rejected = 0

    def _drained(self, t: float) -> float:
        assert t >= self.at - EPS, "requests must reach the model in time order"
        return max(0.0, self.level - (t - self.at) * self.rate)

    def would_accept(self, t: float) -> bool:
        return self._drained(t) + 1 <= self.capacity + EPS

    def hit(self, t: float) -> bool:
        level = self._drained(t)
        self.at = max(self.at, t)
        if level + 1 > self.capacity + EPS:
            self.level = level
            self.rejected += 1
            return False
        self.level = level + 1
        self.accepted += 1
        return True


def ceiling(n: int, burst: int, rate: float, t0: float) -> list[float]:
    """The fastest admissible send times: a burst, then one per 1/rate seconds."""
    return [t0 + max(0, k - burst + 1) / rate for k in range(n)]


# --- LeakyBucket ---------------------------------------------------------------------------


def test_reference_model_rejects_an_unlimited_burst():
    model = ServerBucket(50, 2.0)
    results = [model.hit(0.0) for _ in range(60)]
    assert results.count(False) == 10


def test_reserve_gives_burst_then_rate_and_the_portal_accepts_all():
    clock = ManualClock()
    bucket = LeakyBucket(clock=clock)
    t0 = clock.monotonic()
    sends = [t0 + bucket.reserve() for _ in range(300)]
    assert sends == pytest.approx(ceiling(300, 49, 2.0, t0), abs=EPS)
    model = ServerBucket(50, 2.0, at=t0)
    assert all(model.hit(t) for t in sends)


def test_zero_margin_uses_the_whole_capacity_without_rejection():
    clock = ManualClock()
    bucket = LeakyBucket(50, 2.0, clock=clock, margin=0)
    t0 = clock.monotonic()
    sends = [bucket.book() for _ in range(200)]
    assert sends == pytest.approx(ceiling(200, 50, 2.0, t0), abs=EPS)
    model = ServerBucket(50, 2.0, at=t0)
    assert all(model.hit(t) for t in sends)


def test_enterprise_bucket():
    clock = ManualClock()
    bucket = LeakyBucket(250, 5.0, clock=clock)
    t0 = clock.monotonic()
    sends = [bucket.book() for _ in range(600)]
    assert sends == pytest.approx(ceiling(600, 249, 5.0, t0), abs=EPS)
    model = ServerBucket(250, 5.0, at=t0)
    assert all(model.hit(t) for t in sends)


def test_acquire_sleeps_until_each_slot_and_the_portal_accepts_all():
    clock = ManualClock()
    bucket = LeakyBucket(10, 2.0, clock=clock)
    model = ServerBucket(10, 2.0, at=clock.monotonic())
    waits = []
    for _ in range(40):
        waits.append(bucket.acquire())
        assert model.hit(clock.monotonic())
    assert waits[:9] == [0.0] * 9
    assert waits[9:] == pytest.approx([0.5] * 31)
    assert clock.sleeps == pytest.approx([0.5] * 31)
    assert model.rejected == 0


def test_random_arrivals_are_never_rejected_and_never_held_longer_than_needed():
    rng = random.Random(20240902)
    clock = ManualClock()
    bucket = LeakyBucket(50, 2.0, clock=clock)
    model = ServerBucket(50, 2.0, at=clock.monotonic())
    last = -math.inf
    for _ in range(3000):
        # Mostly faster than the drain rate, with pauses that let it refill.
        clock.advance(rng.expovariate(4.0) if rng.random() < 0.97 else rng.uniform(5, 40))
        arrival = clock.monotonic()
        send = bucket.book()
        assert send >= arrival and send >= last
        if send > arrival + EPS:
            # Held back no longer than needed: a millisecond earlier the
            # portal's counter would have been above capacity - margin - 1.
            earlier = send - 1e-3
            assert earlier >= model.at
            assert ServerBucket(49, 2.0, model.level, model.at).would_accept(earlier) is False
        assert model.hit(send), "the portal would reject this request"
        last = send
    assert model.rejected == 0


def test_threads_get_distinct_correctly_spaced_slots():
    clock = ManualClock()
    bucket = LeakyBucket(50, 2.0, clock=clock)
    t0 = clock.monotonic()
    booked: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker():
        start.wait()
        for _ in range(60):
            t = bucket.book()
            with lock:
                booked.append(t)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    booked.sort()
    assert booked == pytest.approx(ceiling(480, 49, 2.0, t0), abs=EPS)
    assert len(set(booked[48:])) == len(booked) - 48  # after the burst, no two share a slot
    model = ServerBucket(50, 2.0, at=t0)
    assert all(model.hit(t) for t in booked)


def test_threads_sharing_a_sleeping_clock_stay_within_the_portal_limit():
    clock = ManualClock()
    bucket = LeakyBucket(20, 2.0, clock=clock)
    t0 = clock.monotonic()
    booked: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(25):
            t = bucket.book()
            with lock:
                booked.append(t)
            # Other threads' sleeps also move this shared clock; only the
            # booked times matter.
            clock.sleep(max(0.0, t - clock.monotonic()))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    booked.sort()
    model = ServerBucket(20, 2.0, at=t0)
    assert all(model.hit(t) for t in booked)
    for earlier, later in zip(booked[19:], booked[20:]):
        assert later - earlier >= 0.5 - EPS


def test_reserve_from_idle_bucket_is_immediate_again():
    clock = ManualClock()
    bucket = LeakyBucket(5, 1.0, clock=clock)
    assert [bucket.reserve() for _ in range(5)] == [0.0, 0.0, 0.0, 0.0, 1.0]
    clock.advance(100)
    assert bucket.level == 0.0
    assert bucket.reserve() == 0.0


def test_penalize_assumes_full_portal_bucket_and_cuts_rate():
    clock = ManualClock()
    bucket = LeakyBucket(50, 2.0, clock=clock)
    bucket.penalize()
    assert bucket.current_rate == pytest.approx(1.6)
    assert bucket.level == pytest.approx(50)
    # The portal must drain to 48 before our next request fits under the margin.
    assert bucket.reserve() == pytest.approx(2 / 1.6)


def test_recovery_after_a_rejection_caused_by_foreign_traffic():
    clock = ManualClock()
    t0 = clock.monotonic()
    bucket = LeakyBucket(50, 2.0, clock=clock)
    model = ServerBucket(50, 2.0, level=50, at=t0)  # another app filled the bucket
    assert not model.hit(bucket.book())
    bucket.penalize()
    sends = [bucket.book() for _ in range(100)]
    assert all(model.hit(t) for t in sends)
    assert sends[0] == pytest.approx(t0 + 2 / 1.6)


def test_penalty_floor_and_reward_recovery():
    clock = ManualClock()
    bucket = LeakyBucket(50, 2.0, clock=clock, min_rate_factor=0.25)
    for _ in range(20):
        bucket.reserve()
        bucket.penalize()
    assert bucket.current_rate == pytest.approx(0.5)
    rates = []
    for _ in range(20):
        bucket.reward()
        rates.append(bucket.current_rate)
    assert rates[0] == pytest.approx(0.55)
    assert all(b >= a for a, b in zip(rates, rates[1:]))
    assert rates[-1] == 2.0
    bucket.reward()
    assert bucket.current_rate == 2.0


def test_one_wave_of_rejections_cuts_the_rate_once():
    clock = ManualClock()
    bucket = LeakyBucket(50, 2.0, clock=clock)
    booked = threading.Barrier(6)

    def worker():
        bucket.reserve()
        booked.wait()  # all six requests are out before the first 503 comes back
        bucket.penalize()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bucket.current_rate == pytest.approx(1.6)
    # A request booked after the cut and rejected again cuts again.
    bucket.reserve()
    bucket.penalize()
    assert bucket.current_rate == pytest.approx(1.28)


def test_rate_changes_keep_the_level_and_respace_slots():
    clock = ManualClock()
    bucket = LeakyBucket(50, 2.0, clock=clock)
    for _ in range(20):
        bucket.reserve()
    assert bucket.level == pytest.approx(20)
    bucket.configure(rate=4.0)
    assert bucket.level == pytest.approx(20)
    assert (bucket.rate, bucket.current_rate) == (4.0, 4.0)
    clock.advance(2.0)
    assert bucket.level == pytest.approx(12)


def test_configure_capacity_and_keep_penalty_ratio():
    clock = ManualClock()
    bucket = LeakyBucket(clock=clock)
    bucket.penalize()
    bucket.configure(capacity=250, rate=5.0)
    assert bucket.capacity == 250
    assert bucket.current_rate == pytest.approx(4.0)
    with pytest.raises(ValueError):
        bucket.configure(capacity=1)  # capacity - margin < 1
    with pytest.raises(ValueError):
        bucket.configure(rate=0)
    assert (bucket.capacity, bucket.rate) == (250, 5.0)


@pytest.mark.parametrize("kwargs, exc", [
    ({"capacity": 0}, ValueError),
    ({"capacity": True}, TypeError),
    ({"capacity": 50.0}, TypeError),
    ({"rate": 0}, ValueError),
    ({"rate": -1.0}, ValueError),
    ({"rate": math.nan}, ValueError),
    ({"rate": "2"}, TypeError),
    ({"margin": -1}, ValueError),
    ({"capacity": 5, "margin": 4.5}, ValueError),
    ({"min_rate_factor": 0}, ValueError),
    ({"min_rate_factor": 1.5}, ValueError),
    ({"clock": object()}, TypeError),
])
def test_bucket_rejects_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        LeakyBucket(**kwargs)


def test_bucket_properties_and_repr():
    bucket = LeakyBucket(clock=ManualClock())
    assert (bucket.capacity, bucket.rate, bucket.current_rate, bucket.margin) == (50, 2.0, 2.0, 1.0)
    assert "capacity=50" in repr(bucket)


# --- OperatingWindow -----------------------------------------------------------------------

LIST = "crm.deal.list"
OTHER = "crm.contact.list"


def make_window(**kwargs) -> tuple[OperatingWindow, ManualClock]:
    clock = kwargs.pop("clock", None) or ManualClock()
    return OperatingWindow(480.0, clock=clock, **kwargs), clock


def test_unknown_methods_go_freely():
    window, _ = make_window()
    assert window.delay({LIST: 50}) == 0.0
    assert window.delay({}) == 0.0
    assert window.threshold == pytest.approx(432.0)


def test_below_threshold_goes_and_the_figure_is_not_summed():
    window, _ = make_window()
    for _ in range(10):
        window.record(LIST, 300.0, reset_in=120.0)
    assert window.snapshot()[LIST]["operating"] == 300.0
    assert window.delay({LIST: 1}) == 0.0


def test_at_threshold_blocked_until_reset_then_probing():
    window, clock = make_window()
    window.record(LIST, 432.0, reset_in=30.0, server_time=1000.0)
    assert window.delay({LIST: 1}) == pytest.approx(30.0)
    clock.advance(10)
    assert window.delay({LIST: 1}) == pytest.approx(20.0)
    clock.advance(20)
    assert window.snapshot()[LIST]["probing"] is True
    assert window.delay({LIST: 50}) == 0.0  # one probe may go
    probe = window.acquire({LIST: 1})
    assert window.delay({LIST: 1}) == pytest.approx(0.05)  # the rest wait for its report
    window.record(LIST, 200.0, reset_in=40.0, server_time=1031.0)
    window.release(probe)
    assert window.delay({LIST: 1}) == 0.0
    assert window.snapshot()[LIST]["probing"] is False


def test_probe_report_still_high_blocks_again_until_next_reset():
    window, clock = make_window()
    window.record(LIST, 470.0, reset_in=5.0, server_time=1.0)
    clock.advance(5)
    with window.hold({LIST: 1}):
        window.record(LIST, 450.0, reset_in=60.0, server_time=7.0)
    assert window.delay({LIST: 1}) == pytest.approx(60.0)


def test_probe_failing_without_report_lets_the_next_probe_go():
    window, clock = make_window()
    window.record(LIST, 470.0, reset_in=5.0)
    clock.advance(6)
    with pytest.raises(RuntimeError):
        with window.hold({LIST: 1}):
            assert window.delay({LIST: 1}) > 0
            raise RuntimeError("transport failed")
    assert window.delay({LIST: 1}) == 0.0


def test_reset_deadline_is_local_and_ignores_wall_clock_skew():
    window, clock = make_window()
    # The server clock is an hour ahead; only operating_reset_at - finish matters.
    window.record(LIST, 440.0, reset_in=25.0, server_time=clock.time() + 3600)
    clock.set_time(clock.time() - 86400)  # and the local wall clock jumps back a day
    assert window.delay({LIST: 1}) == pytest.approx(25.0)


def test_negative_reset_in_means_reset_now():
    window, _ = make_window()
    window.record(LIST, 440.0, reset_in=-0.4)
    assert window.delay({LIST: 1}) == 0.0
    assert window.snapshot()[LIST]["probing"] is True


def test_high_report_without_reset_time_blocks_for_default():
    window, clock = make_window(default_block=45.0)
    window.record(LIST, 479.0, reset_in=None)
    assert window.delay({LIST: 1}) == pytest.approx(45.0)
    clock.advance(45)
    assert window.delay({LIST: 1}) == 0.0


def test_stale_reports_are_ignored_but_their_cost_counts():
    window, _ = make_window()
    window.record(LIST, 440.0, reset_in=30.0, server_time=100.0, cost=1.0)
    window.record(LIST, 10.0, reset_in=30.0, server_time=90.0, cost=2.0)
    snap = window.snapshot()[LIST]
    assert snap["operating"] == 440.0
    assert snap["server_time"] == 100.0
    assert snap["cost"] == pytest.approx(2.0)  # the higher cost counts at once
    assert window.delay({LIST: 1}) == pytest.approx(30.0)
    window.record(LIST, 10.0, reset_in=30.0, server_time=101.0)
    assert window.delay({LIST: 1}) == 0.0


def test_reports_without_server_time_are_always_taken():
    window, _ = make_window()
    window.record(LIST, 440.0, reset_in=30.0, server_time=100.0)
    window.record(LIST, 10.0, reset_in=30.0)
    assert window.snapshot()[LIST]["operating"] == 10.0


def test_a_blocked_method_never_blocks_another():
    window, _ = make_window()
    window.record(LIST, 479.0, reset_in=100.0)
    window.block("crm.deal.get", 50.0)
    assert window.delay({OTHER: 50}) == 0.0
    with window.hold({OTHER: 50}) as ticket:
        assert ticket.methods == {OTHER: 50}
    assert window.delay({LIST: 1}) == pytest.approx(100.0)


def test_batch_of_mixed_methods_waits_for_the_most_blocked():
    window, _ = make_window()
    window.record(LIST, 440.0, reset_in=30.0)
    window.block("crm.deal.get", 50.0)
    assert window.delay({LIST: 10, OTHER: 5}) == pytest.approx(30.0)
    assert window.delay({LIST: 10, "crm.deal.get": 1, OTHER: 5}) == pytest.approx(50.0)
    assert window.delay({OTHER: 5, "user.get": 1}) == 0.0


def test_method_names_are_case_insensitive():
    window, _ = make_window()
    window.record("CRM.Deal.List", 440.0, reset_in=30.0)
    assert window.delay({LIST: 1}) == pytest.approx(30.0)
    assert window.delay({"crm.deal.LIST": 1}) == pytest.approx(30.0)
    assert list(window.snapshot()) == [LIST]


def test_block_holds_method_and_survives_reports_from_earlier_requests():
    window, clock = make_window()
    window.record(LIST, 100.0, reset_in=300.0, server_time=1.0)
    window.block(LIST, 20.0)
    assert window.delay({LIST: 1}) == pytest.approx(20.0)
    window.record(LIST, 120.0, reset_in=300.0, server_time=2.0)  # was in flight
    assert window.delay({LIST: 1}) == pytest.approx(20.0)
    window.block(LIST, 5.0)  # never shortens
    assert window.delay({LIST: 1}) == pytest.approx(20.0)
    clock.advance(20)
    assert window.snapshot()[LIST]["probing"] is True
    with window.hold({LIST: 1}):
        assert window.delay({LIST: 1}) == pytest.approx(0.05)
        window.record(LIST, 130.0, reset_in=280.0, server_time=30.0)
    assert window.delay({LIST: 1}) == 0.0


def test_block_without_reset_time_uses_default():
    window, _ = make_window(default_block=60.0)
    window.block(LIST, None)
    assert window.delay({LIST: 1}) == pytest.approx(60.0)
    assert window.snapshot()[LIST]["blocked_for"] == pytest.approx(60.0)


def test_in_flight_commands_count_against_the_budget():
    window, _ = make_window()
    window.record(LIST, 400.0, reset_in=300.0, cost=5.0)
    first = window.acquire({LIST: 5})  # nothing in flight yet: the server will tell
    assert window.snapshot()[LIST]["in_flight"] == 5
    assert window.delay({LIST: 1}) == 0.0  # 400 + 6 * 5 = 430 <= 432
    assert window.delay({LIST: 2}) == pytest.approx(0.05)  # 435 > 432: wait for reports
    assert window.delay({OTHER: 50}) == 0.0
    window.release(first)
    assert window.snapshot()[LIST]["in_flight"] == 0
    assert window.delay({LIST: 2}) == 0.0


def test_without_cost_estimate_in_flight_does_not_hold():
    window, _ = make_window()
    window.record(LIST, 431.0, reset_in=300.0)
    with window.hold({LIST: 50}):
        assert window.delay({LIST: 50}) == 0.0


def test_disabled_window_paces_nothing_but_stores_reports_and_obeys_blocks():
    window, _ = make_window(enabled=False)
    window.record(LIST, 479.0, reset_in=100.0)
    assert window.delay({LIST: 50}) == 0.0
    # A 429 is the server's word, not the client's pacing: it holds even so.
    window.block(OTHER, 100.0)
    assert window.delay({LIST: 50, OTHER: 1}) == pytest.approx(100.0)
    with window.hold({LIST: 50}):
        pass
    assert window.snapshot()[LIST]["operating"] == 479.0
    window.enabled = True
    assert window.delay({LIST: 1}) == pytest.approx(100.0)
    with pytest.raises(TypeError):
        window.enabled = 1  # type: ignore[assignment]


def test_acquire_sleeps_until_the_reset_then_registers():
    window, clock = make_window()
    window.record(LIST, 440.0, reset_in=30.0)
    ticket = window.acquire({LIST: 3})
    assert clock.sleeps == pytest.approx([30.0])
    assert isinstance(ticket, WindowTicket)
    assert window.snapshot()[LIST]["in_flight"] == 3
    window.release(ticket)
    window.release(ticket)  # harmless
    assert window.snapshot()[LIST]["in_flight"] == 0


def test_acquire_polls_while_waiting_for_in_flight_reports():
    holder: list[WindowTicket] = []

    def on_sleep(seconds):
        if holder:  # the earlier request reports and finishes during our wait
            window.record(LIST, 410.0, reset_in=290.0, cost=5.0)
            window.release(holder.pop())

    clock = ManualClock(on_sleep=on_sleep)
    window = OperatingWindow(480.0, clock=clock, poll_interval=0.25)
    window.record(LIST, 400.0, reset_in=300.0, cost=5.0)
    holder.append(window.acquire({LIST: 5}))
    ticket = window.acquire({LIST: 3})  # 400 + 8 * 5 = 440 > 432
    assert clock.sleeps == [0.25]
    assert window.snapshot()[LIST]["in_flight"] == 3
    window.release(ticket)


def test_probing_lets_exactly_one_thread_through():
    polls = threading.Semaphore(0)
    clock = ManualClock(on_sleep=lambda s: polls.release())
    window = OperatingWindow(480.0, clock=clock, poll_interval=0.01)
    window.record(LIST, 470.0, reset_in=10.0, server_time=1.0)
    clock.advance(10)
    probe = window.acquire({LIST: 1})
    tickets: list[WindowTicket] = []
    lock = threading.Lock()

    def worker():
        ticket = window.acquire({LIST: 1})
        with lock:
            tickets.append(ticket)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(20):  # every waiter is polling, none got through
        assert polls.acquire(timeout=5)
    assert tickets == []
    assert window.snapshot()[LIST]["in_flight"] == 1
    window.record(LIST, 100.0, reset_in=500.0, server_time=12.0)
    window.release(probe)
    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive()
    assert len(tickets) == 4
    assert window.snapshot()[LIST]["in_flight"] == 4


def test_hold_releases_after_an_exception():
    window, _ = make_window()
    with pytest.raises(KeyError):
        with window.hold({LIST: 2, OTHER: 1}):
            raise KeyError("boom")
    snap = window.snapshot()
    assert snap[LIST]["in_flight"] == 0 and snap[OTHER]["in_flight"] == 0


def test_counts_are_merged_case_insensitively_and_zeros_skipped():
    window, _ = make_window()
    with window.hold({"CRM.DEAL.LIST": 2, LIST: 3, OTHER: 0}) as ticket:
        assert ticket.methods == {LIST: 5}


def test_snapshot_reports_times_relative_to_now():
    window, clock = make_window()
    window.record(LIST, 50.0, reset_in=100.0, server_time=5.0, cost=0.5)
    clock.advance(40)
    assert window.snapshot() == {LIST: {
        "operating": 50.0, "reset_in": pytest.approx(60.0), "blocked_for": 0.0,
        "probing": False, "in_flight": 0, "cost": 0.5, "server_time": 5.0,
        "class_costs": {0: 0.5}, "spent": 0.5,
    }}


@pytest.mark.parametrize("call, exc", [
    (lambda w: w.record(1, 1.0, reset_in=None), TypeError),
    (lambda w: w.record(" ", 1.0, reset_in=None), ValueError),
    (lambda w: w.record(LIST, -1.0, reset_in=None), ValueError),
    (lambda w: w.record(LIST, "1", reset_in=None), TypeError),
    (lambda w: w.record(LIST, 1.0, reset_in=math.nan), ValueError),
    (lambda w: w.record(LIST, 1.0, reset_in=None, cost=-0.1), ValueError),
    (lambda w: w.block(LIST, "soon"), TypeError),
    (lambda w: w.delay([LIST]), TypeError),
    (lambda w: w.delay({LIST: -1}), ValueError),
    (lambda w: w.delay({LIST: 1.5}), TypeError),
    (lambda w: w.acquire({None: 1}), TypeError),
    (lambda w: w.release(object()), ValueError),
    (lambda w: w.release(OperatingWindow().acquire({LIST: 1})), ValueError),
])
def test_window_rejects_misuse(call, exc):
    window, _ = make_window()
    with pytest.raises(exc):
        call(window)


@pytest.mark.parametrize("kwargs, exc", [
    ({"limit": 0}, ValueError),
    ({"limit": "480"}, TypeError),
    ({"headroom": 1.0}, ValueError),
    ({"headroom": -0.1}, ValueError),
    ({"enabled": "yes"}, TypeError),
    ({"default_block": -1}, ValueError),
    ({"poll_interval": 0}, ValueError),
])
def test_window_rejects_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        OperatingWindow(**kwargs)


def test_concurrency_gate_is_exported_here():
    from bitrix_threaded.concurrency import ConcurrencyGate as Defined

    assert ConcurrencyGate is Defined


def test_the_cost_estimate_keeps_the_expensive_commands_in_view():
    window, clock = make_window()
    window.record(LIST, 1.0, reset_in=None, cost=0.2)
    window.record(LIST, 2.0, reset_in=None, cost=2.0)
    assert window.snapshot()[LIST]["cost"] == pytest.approx(2.0)
    for _ in range(50):  # one batch reply: many reports at once change nothing
        window.record(LIST, 3.0, reset_in=None, cost=0.2)
    assert window.snapshot()[LIST]["cost"] == pytest.approx(2.0)
    clock.advance(window_default_block(window))  # one half-life later
    window.record(LIST, 3.0, reset_in=None, cost=0.2)
    assert window.snapshot()[LIST]["cost"] == pytest.approx(1.0)
    clock.advance(10 * window_default_block(window))
    window.record(LIST, 3.0, reset_in=None, cost=0.2)
    assert window.snapshot()[LIST]["cost"] == pytest.approx(0.2)


def window_default_block(window):
    return window._half_life
