from __future__ import annotations

import threading

import pytest

from bitrix_threaded.concurrency import ConcurrencyGate

JOIN = 5.0  # generous bound for threads that must finish; normally instant


def start(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_acts_as_a_semaphore():
    gate = ConcurrencyGate(2)
    assert gate.acquire() and gate.acquire()
    assert gate.active == 2
    assert gate.acquire(timeout=0) is False
    gate.release()
    assert gate.acquire(timeout=0) is True
    gate.release()
    gate.release()
    assert gate.active == 0


def test_context_manager_releases_after_exception():
    gate = ConcurrencyGate(1)
    with pytest.raises(RuntimeError):
        with gate:
            assert gate.active == 1
            raise RuntimeError
    assert gate.active == 0


def test_release_without_acquire_raises():
    gate = ConcurrencyGate(1)
    with pytest.raises(ValueError):
        gate.release()


def test_never_more_holders_than_the_limit():
    gate = ConcurrencyGate(3)
    lock = threading.Lock()
    inside = [0, 0]  # now, max

    def worker():
        for _ in range(200):
            with gate:
                with lock:
                    inside[0] += 1
                    inside[1] = max(inside[1], inside[0])
                with lock:
                    inside[0] -= 1

    threads = [start(worker) for _ in range(8)]
    for thread in threads:
        thread.join(JOIN)
    assert inside[1] <= 3
    assert gate.active == 0


def test_raising_the_limit_wakes_waiters():
    gate = ConcurrencyGate(1)
    gate.acquire()
    got = threading.Event()
    waiter = start(lambda: (gate.acquire(), got.set()))
    assert not got.wait(0.005)
    gate.limit = 2
    waiter.join(JOIN)
    assert got.is_set() and gate.active == 2


def test_lowering_the_limit_does_not_interrupt_holders():
    gate = ConcurrencyGate(3)
    for _ in range(3):
        gate.acquire()
    gate.limit = 1
    assert (gate.limit, gate.effective_limit, gate.active) == (1, 1, 3)
    gate.release()
    gate.release()
    assert gate.acquire(timeout=0) is False
    gate.release()
    assert gate.acquire(timeout=0) is True


def test_caps_nest_smallest_wins_and_restore():
    gate = ConcurrencyGate(5)
    with gate.cap(3):
        assert gate.effective_limit == 3
        with gate.cap(4):
            assert gate.effective_limit == 3
            with gate.cap(1):
                assert gate.effective_limit == 1
            assert gate.effective_limit == 3
    assert gate.effective_limit == 5


def test_cap_is_removed_after_an_exception():
    gate = ConcurrencyGate(5)
    with pytest.raises(ZeroDivisionError):
        with gate.cap(2):
            1 / 0
    assert gate.effective_limit == 5


def test_same_cap_twice_removes_one_at_a_time():
    gate = ConcurrencyGate(5)
    with gate.cap(2):
        with gate.cap(2):
            pass
        assert gate.effective_limit == 2
    assert gate.effective_limit == 5


def test_leaving_a_cap_wakes_waiters():
    gate = ConcurrencyGate(4)
    got = threading.Event()
    with gate.cap(1):
        gate.acquire()
        waiter = start(lambda: (gate.acquire(), got.set()))
        assert not got.wait(0.005)
    waiter.join(JOIN)
    assert got.is_set()


def test_caps_from_another_thread_apply_to_all():
    gate = ConcurrencyGate(4)
    entered, leave = threading.Event(), threading.Event()

    def slow_section():
        with gate.cap(1):
            entered.set()
            leave.wait(JOIN)

    thread = start(slow_section)
    entered.wait(JOIN)
    assert gate.effective_limit == 1
    leave.set()
    thread.join(JOIN)
    assert gate.effective_limit == 4


def test_penalize_cuts_by_a_fifth_down_to_one():
    gate = ConcurrencyGate(10)
    seen = []
    for _ in range(8):
        gate.penalize()
        seen.append(gate.effective_limit)
    assert seen == [8, 6, 4, 3, 2, 1, 1, 1]
    assert gate.limit == 10


def test_reward_adds_one_per_limit_successes():
    gate = ConcurrencyGate(5)
    gate.penalize()  # 4
    for _ in range(4):
        gate.reward()
    assert gate.adaptive_limit == 4
    gate.reward()
    assert gate.adaptive_limit == 5
    for _ in range(20):
        gate.reward()
    assert gate.adaptive_limit == 5


def test_penalty_resets_reward_progress():
    gate = ConcurrencyGate(5)
    gate.penalize()
    gate.penalize()  # 3
    for _ in range(4):
        gate.reward()
    gate.penalize()  # 2
    for _ in range(4):
        gate.reward()
    assert gate.adaptive_limit == 2


def test_raised_adaptive_limit_wakes_waiters():
    gate = ConcurrencyGate(2)
    gate.penalize()  # 1
    gate.acquire()
    got = threading.Event()
    waiter = start(lambda: (gate.acquire(), got.set()))
    assert not got.wait(0.005)
    gate.reward()
    gate.reward()
    waiter.join(JOIN)
    assert got.is_set()


def test_one_wave_of_rejections_cuts_once():
    gate = ConcurrencyGate(10)
    admitted = threading.Barrier(6)

    def rejected_request():
        gate.acquire()
        admitted.wait()
        gate.release()
        gate.penalize()

    threads = [start(rejected_request) for _ in range(6)]
    for thread in threads:
        thread.join(JOIN)
    assert gate.adaptive_limit == 8
    # A request admitted after the cut and rejected again cuts again.
    with gate:
        pass
    gate.penalize()
    assert gate.adaptive_limit == 6


def test_setting_limit_keeps_penalty_or_follows_when_unpenalized():
    gate = ConcurrencyGate(10)
    gate.limit = 20
    assert gate.adaptive_limit == 20
    gate.penalize()  # 16
    gate.limit = 30
    assert (gate.limit, gate.effective_limit) == (30, 16)
    gate.limit = 4
    assert gate.effective_limit == 4


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError), (True, TypeError),
                                      (2.0, TypeError), ("3", TypeError)])
def test_rejects_bad_limits(bad, exc):
    with pytest.raises(exc):
        ConcurrencyGate(bad)
    gate = ConcurrencyGate(3)
    with pytest.raises(exc):
        gate.limit = bad
    with pytest.raises(exc):
        with gate.cap(bad):
            pass
    assert gate.effective_limit == 3


def test_rejects_bad_timeout():
    gate = ConcurrencyGate(1)
    with pytest.raises(ValueError):
        gate.acquire(timeout=-1)
    with pytest.raises(TypeError):
        gate.acquire(timeout="1")


def test_repr():
    assert repr(ConcurrencyGate(3)) == "ConcurrencyGate(limit=3, effective=3, active=0)"
