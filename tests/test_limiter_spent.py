"""OperatingWindow: cost classes, and our own spent time leaving the server's window.

Standard figures throughout: limit 480 s (threshold 432 s), window 600 s of ten
60-s buckets. The manual clock's monotonic time starts at 0; server times are
around 1,000 s, so local = server - 1,000 while the replies arrive instantly.
"""
from __future__ import annotations

import pytest

from bitrix_threaded.clock import ManualClock
from bitrix_threaded.limiter import OperatingWindow
from bitrix_threaded.limiter import cost_class

LIST = "crm.deal.list"


def make_window(**kwargs):
    clock = ManualClock()
    return OperatingWindow(480.0, clock=clock, **kwargs), clock


def after_one_batch(**window_kwargs):
    """A window that has seen forty 10-s commands run from server time 1,000 to 1,400
    (their bucket opened at 1,000 and leaves at 1,600), the clock at server 1,400."""
    window, clock = make_window(**window_kwargs)
    clock.advance(400)
    run_batch(window, start=1000.0, costs=[10.0] * 40, operating_before=0.0,
              reset_at=1600.0)
    return window, clock


def run_batch(window, *, start, costs, operating_before, reset_at, cost_class=0):
    """Report a batch that began at server time ``start`` with commands of ``costs``."""
    operating, finish = operating_before, start
    for cost in costs:
        operating += cost
        finish += cost
        window.record(LIST, operating, reset_in=reset_at - finish, server_time=finish,
                      cost=cost, started=start, cost_class=cost_class)
    return operating, finish


def test_nothing_in_flight_waits_for_the_oldest_bucket_to_leave():
    window, clock = make_window()
    clock.advance(400)  # the replies arrive at local 400 = server 1,400
    # One batch of 40 ten-second commands, from server time 1,000 to 1,400; its
    # bucket opened at 1,000 and leaves at 1,600 (operating_reset_at).
    operating, finish = run_batch(window, start=1000.0, costs=[10.0] * 40,
                                  operating_before=0.0, reset_at=1600.0)
    assert (operating, finish) == (400.0, 1400.0)
    assert window.snapshot()[LIST]["spent"] == pytest.approx(400.0)
    # 5 more commands (50 s): 450 > 432. The first five commands (finished before
    # 1,059) are in the oldest bucket and leave at 1,600: then 350 + 50 fits.
    assert window.delay({LIST: 5}) == pytest.approx(200.0)
    assert window.delay({LIST: 3}) == 0.0  # 430 fits now
    clock.advance(150)
    assert window.delay({LIST: 5}) == pytest.approx(50.0)
    clock.advance(50)
    assert window.delay({LIST: 5}) == 0.0


def test_commands_after_the_first_bucket_leave_a_window_after_they_finished():
    window, clock = after_one_batch()
    # 15 more commands (150 s): fits at 400 - 168 or less, i.e. after 17 commands
    # have left: 5 at 1,600, then one every 10 s from 1,660 (finished 1,060 + 600).
    assert window.delay({LIST: 15}) == pytest.approx(1720.0 - 1400.0)
    # More than can ever fit from our own time alone: go, the server will tell.
    assert window.delay({LIST: 44}) == 0.0


def test_in_flight_requests_are_waited_for_instead():
    window, clock = after_one_batch()
    ticket = window.acquire({LIST: 1})  # 410 booked
    assert window.delay({LIST: 3}) == pytest.approx(0.05)
    window.release(ticket)
    assert window.delay({LIST: 3}) == 0.0


def test_time_the_last_report_may_already_leave_out_is_not_counted_down():
    window, clock = after_one_batch()
    # A report made at server time 1,560 (no cost of its own): commands that began at
    # 1,000 may be in a bucket that left before it, except the five the server's
    # oldest bucket (leaving at 1,600) is known to hold.
    clock.advance(160)
    window.record(LIST, 400.0, reset_in=40.0, server_time=1560.0)
    assert window.snapshot()[LIST]["spent"] == pytest.approx(50.0)
    assert window.delay({LIST: 5}) == pytest.approx(40.0)
    assert window.delay({LIST: 15}) == 0.0  # cannot know: go


def test_reports_without_server_time_clear_the_log_and_cheap_calls_are_not_logged():
    window, clock = make_window()
    run_batch(window, start=1000.0, costs=[10.0] * 40, operating_before=0.0,
              reset_at=1600.0)
    window.record(LIST, 400.0, reset_in=None)
    assert window.snapshot()[LIST]["spent"] == 0.0
    assert window.delay({LIST: 5}) == 0.0  # nothing known to leave: go
    # Calls under limit / 4800 (0.1 s here) are not recorded by the server.
    run_batch(window, start=2000.0, costs=[0.09] * 5 + [0.1], operating_before=400.0,
              reset_at=2600.0)
    assert window.snapshot()[LIST]["spent"] == pytest.approx(0.1)


def test_older_reports_still_log_their_time():
    window, clock = make_window()
    window.record(LIST, 20.0, reset_in=580.0, server_time=1020.0, cost=10.0, started=1000.0)
    window.record(LIST, 10.0, reset_in=590.0, server_time=1010.0, cost=10.0, started=1000.0)
    snap = window.snapshot()[LIST]
    assert snap["operating"] == 20.0 and snap["spent"] == pytest.approx(20.0)


def test_a_probe_after_a_hold_waits_until_its_batch_can_fit():
    window, clock = make_window()
    clock.advance(440)
    run_batch(window, start=1000.0, costs=[11.0] * 40, operating_before=0.0,
              reset_at=1600.0)
    assert window.snapshot()[LIST]["operating"] == pytest.approx(440.0)  # held
    assert window.delay({LIST: 1}) == pytest.approx(160.0)
    clock.advance(160)
    # Probing now; the oldest bucket (five commands, 55 s) has left: 385 + 55 > 432.
    # The sixth command (finished 1,066) leaves at 1,666: 374 + 55 fits.
    assert window.delay({LIST: 5}) == pytest.approx(66.0)
    assert window.delay({LIST: 1}) == 0.0


def test_cost_classes_have_their_own_estimates():
    window, clock = make_window()
    window.record(LIST, 300.0, reset_in=None, cost=2.0, cost_class=12)
    window.record(LIST, 400.0, reset_in=None, cost=0.3, cost_class=3)
    snap = window.snapshot()[LIST]
    assert snap["class_costs"] == {12: 2.0, 3: 0.3} and snap["cost"] == 2.0
    ticket = window.acquire({(LIST, 3): 10})
    assert ticket.costs == {LIST: pytest.approx(3.0)} and ticket.methods == {LIST: 10}
    assert window.delay({(LIST, 3): 20}) == 0.0            # 400 + 3 + 6
    assert window.delay({(LIST, 12): 20}) == pytest.approx(0.05)  # 400 + 3 + 40
    # Unknown classes: on the line between the known ones around them (by the depth
    # of their deepest page), bounded by the one above, else the highest cost.
    assert window.delay({(LIST, 7): 40}) == pytest.approx(0.05)   # 0.7525 each: 30.1
    assert window.delay({(LIST, 7): 38}) == 0.0                   # 28.6
    assert window.delay({LIST: 15, (LIST, 3): 5}) == 0.0          # class 0 as 3: 6
    assert window.delay({(LIST, 2): 100}) == pytest.approx(0.05)  # as 3: 30
    assert window.delay({(LIST, 2): 95}) == 0.0                   # 28.5
    assert window.delay({(LIST, 13): 15}) == pytest.approx(0.05)  # 2.0 each: 30
    assert window.delay({(LIST, 13): 14}) == 0.0
    window.release(ticket)
    assert window.delay({(LIST, 12): 15}) == 0.0
    window.release(ticket)  # harmless


def test_a_class_estimate_is_the_maximum_of_its_recent_reports():
    window, _ = make_window()
    window.record(LIST, 1.0, reset_in=None, cost=5.0, cost_class=3)
    for _ in range(49):
        window.record(LIST, 1.0, reset_in=None, cost=0.3, cost_class=3)
    assert window.snapshot()[LIST]["class_costs"][3] == 5.0
    for _ in range(50):  # a second generation: the spike is still recent
        window.record(LIST, 1.0, reset_in=None, cost=0.3, cost_class=3)
    assert window.snapshot()[LIST]["class_costs"][3] == 5.0
    window.record(LIST, 1.0, reset_in=None, cost=0.3, cost_class=3)  # a third one
    assert window.snapshot()[LIST]["class_costs"][3] == pytest.approx(0.3)


@pytest.mark.parametrize("methods, exc", [
    ({(LIST,): 1}, TypeError),
    ({(LIST, 3, 4): 1}, TypeError),
    ({(LIST, -1): 1}, ValueError),
    ({(LIST, "3"): 1}, TypeError),
    ({(3, LIST): 1}, TypeError),
])
def test_class_keys_are_checked(methods, exc):
    window, _ = make_window()
    with pytest.raises(exc):
        window.delay(methods)


@pytest.mark.parametrize("kwargs, exc", [
    ({"cost_class": -1}, ValueError), ({"cost_class": 1.0}, TypeError),
    ({"started": "1"}, TypeError), ({"cost": 1.0, "started": float("nan")}, ValueError),
])
def test_record_checks_its_new_arguments(kwargs, exc):
    window, _ = make_window()
    with pytest.raises(exc):
        window.record(LIST, 1.0, reset_in=None, server_time=5.0, **kwargs)


def test_span_is_checked_and_defaults_to_a_quarter_over_the_limit():
    with pytest.raises(ValueError):
        OperatingWindow(480.0, span=0)
    window, clock = make_window(span=1200.0)
    clock.advance(400)
    run_batch(window, start=1000.0, costs=[10.0] * 40, operating_before=0.0,
              reset_at=2200.0)
    # With a 1,200 s window (120-s buckets) the first eleven commands leave at 2,200.
    assert window.delay({LIST: 14}) == pytest.approx(2200.0 - 1400.0)


@pytest.mark.parametrize("params, expected", [
    (None, 0), ({}, 0), ({"start": -1}, 0), ({"start": True}, 0), ({"start": "x"}, 0),
    ({"start": 0}, 1), ({"start": 49}, 1), ({"start": 50}, 5), ({"start": "100"}, 7),
    ({"start": 150}, 9), ({"start": 99_950}, 44), ({"filter": {">ID": 5}}, 0),
])
def test_cost_class_of_list_pages_grows_with_their_depth(params, expected):
    assert cost_class(params) == expected
