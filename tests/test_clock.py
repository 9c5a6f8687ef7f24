from __future__ import annotations

import math
import threading
import time

import pytest

from bitrix_threaded.clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock


def test_clock_is_abstract():
    with pytest.raises(TypeError):
        Clock()  # type: ignore[abstract]


def test_system_clock_is_the_default_instance():
    assert isinstance(SYSTEM_CLOCK, SystemClock)
    assert isinstance(SYSTEM_CLOCK, Clock)


def test_system_clock_reads_real_time():
    before = time.time()
    wall = SYSTEM_CLOCK.time()
    assert before - 1 <= wall <= time.time() + 1
    first = SYSTEM_CLOCK.monotonic()
    assert SYSTEM_CLOCK.monotonic() >= first


def test_system_clock_sleep_zero_returns_and_bad_values_raise():
    SYSTEM_CLOCK.sleep(0)
    SYSTEM_CLOCK.sleep(0.001)
    with pytest.raises(ValueError):
        SYSTEM_CLOCK.sleep(-1)
    with pytest.raises(ValueError):
        SYSTEM_CLOCK.sleep(math.inf)
    with pytest.raises(TypeError):
        SYSTEM_CLOCK.sleep("1")  # type: ignore[arg-type]


def test_manual_clock_starts_where_told_with_distinct_monotonic_origin():
    clock = ManualClock()
    assert clock.time() == 1_700_000_000.0
    assert clock.monotonic() == 1_000.0
    clock = ManualClock(5.0, monotonic_start=7.0)
    assert (clock.time(), clock.monotonic()) == (5.0, 7.0)


def test_manual_sleep_advances_both_times_and_is_logged():
    clock = ManualClock(100.0, monotonic_start=0.0)
    clock.sleep(1.5)
    clock.sleep(0)
    clock.sleep(2)
    assert clock.time() == 103.5
    assert clock.monotonic() == 3.5
    assert clock.sleeps == [1.5, 0.0, 2.0]
    assert clock.slept == 3.5


def test_manual_sleeps_is_a_copy():
    clock = ManualClock()
    clock.sleep(1)
    clock.sleeps.append(99)
    assert clock.sleeps == [1.0]


def test_manual_advance_is_not_a_sleep():
    clock = ManualClock(100.0, monotonic_start=0.0)
    clock.advance(10)
    assert (clock.time(), clock.monotonic()) == (110.0, 10.0)
    assert clock.sleeps == []


def test_manual_set_time_moves_only_the_wall_clock():
    clock = ManualClock(100.0, monotonic_start=0.0)
    clock.set_time(50.0)
    assert (clock.time(), clock.monotonic()) == (50.0, 0.0)
    with pytest.raises(ValueError):
        clock.set_time(math.nan)
    with pytest.raises(TypeError):
        clock.set_time("now")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_manual_rejects_bad_seconds(bad):
    clock = ManualClock()
    with pytest.raises(ValueError):
        clock.sleep(bad)
    with pytest.raises(ValueError):
        clock.advance(bad)


def test_manual_rejects_non_numbers():
    clock = ManualClock()
    with pytest.raises(TypeError):
        clock.sleep(True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ManualClock("0")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ManualClock(math.inf)
    with pytest.raises(TypeError):
        ManualClock(on_sleep=42)  # type: ignore[arg-type]


def test_on_sleep_runs_after_the_advance_outside_the_lock():
    seen = []

    def hook(seconds):
        # Reading the clock here would deadlock if the hook ran under its lock.
        seen.append((seconds, clock.monotonic()))

    clock = ManualClock(monotonic_start=0.0, on_sleep=hook)
    clock.sleep(2.0)
    assert seen == [(2.0, 2.0)]


def test_manual_clock_is_thread_safe():
    clock = ManualClock(0.0, monotonic_start=0.0)
    threads = [
        threading.Thread(target=lambda: [clock.sleep(0.5) for _ in range(500)])
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock.monotonic() == 2000.0
    assert clock.time() == 2000.0
    assert len(clock.sleeps) == 4000


def test_reprs():
    assert repr(SYSTEM_CLOCK) == "SystemClock()"
    assert "monotonic=1000.0" in repr(ManualClock())
