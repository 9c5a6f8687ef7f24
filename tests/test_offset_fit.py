"""Batches of offset pages split to fit the operating-time budget left.

Unit tests of the window's decision (:meth:`OperatingWindow.fit`) on a manual clock,
of :meth:`Runner.run_batch` handing the unsent part back, and an export on the fake
portal whose pages overrun a small window. Standard figures in the unit tests: limit
480 s (threshold 432 s), a 600-s window of ten 60-s buckets; server times around
1,000 s, local = server - 1,000.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import pytest

from bitrix_threaded import Bitrix
from bitrix_threaded.batch import Command
from bitrix_threaded.clock import ManualClock
from bitrix_threaded.limiter import OperatingWindow
from bitrix_threaded.testing import FakePortal

LIST = "crm.deal.list"
OTHER = "crm.lead.list"


def window_at(operating: float, *, logged: bool = True,
              **kwargs: Any) -> Tuple[OperatingWindow, ManualClock]:
    """A window whose method has reported ``operating`` seconds in 10-s commands run
    from server time 1,000 (their bucket leaves at 1,600); the clock at server 1,400.
    ``logged=False``: the same figure reported without the commands' own costs (time
    spent by others: nothing known to leave the window)."""
    clock = ManualClock()
    window = OperatingWindow(480.0, clock=clock, **kwargs)
    clock.advance(400)
    if not logged:
        window.record(LIST, 0.0, reset_in=None, cost=10.0)  # a cost, no time logged
        window.record(LIST, operating, reset_in=200.0, server_time=1400.0)
        return window, clock
    spent, finish = 0.0, 1000.0
    while spent < operating:
        spent += 10.0
        finish += 10.0
        window.record(LIST, spent, reset_in=1600.0 - finish, server_time=finish,
                      cost=10.0, started=1000.0)
    return window, clock


def test_a_method_never_reported_fits_whole():
    window = OperatingWindow(480.0, clock=ManualClock())
    assert window.fit([LIST] * 50) == 50
    assert window.fit([]) == 0


def test_the_prefix_that_fits_the_room_left():
    window, _ = window_at(400.0)
    # 432 - 400 = 32 s of room for 10-s commands: three of them.
    assert window.fit([LIST] * 50) == 3
    assert window.fit([LIST] * 3) == 3
    assert window.fit([LIST, LIST]) == 2
    assert window.delay({LIST: 3}) == 0
    assert window.delay({LIST: 12}) > 0, "a bigger batch would wait"
    # One that could never fit is let go whole by delay(); fit() still splits it.
    assert window.delay({LIST: 50}) == 0


def test_commands_in_flight_take_their_share_of_the_room():
    window, _ = window_at(400.0)
    ticket = window.acquire({LIST: 2})
    assert window.fit([LIST] * 50) == 1
    window.release(ticket)
    assert window.fit([LIST] * 50) == 3


def test_other_methods_do_not_count_against_the_room_but_keep_their_place():
    window, _ = window_at(400.0)
    assert window.fit([OTHER, LIST, OTHER, LIST, LIST, LIST, OTHER]) == 5
    assert window.fit([(OTHER, 4), (LIST, 0), (LIST, 0)]) == 3


def test_nothing_fits_until_the_oldest_bucket_leaves():
    window, clock = window_at(430.0)  # the last report at server 1,430
    assert window.fit([LIST] * 50) == 0
    assert window.delay({LIST: 1}) == pytest.approx(170.0)
    clock.advance(170.0)
    # The oldest bucket took the five commands that finished in its first minute
    # (50 s): 380 s left, room for five more.
    assert window.fit([LIST] * 50) == 5


def test_a_held_method_fits_nothing():
    window, clock = window_at(100.0)
    window.block(LIST, 30.0)
    assert window.fit([LIST] * 10) == 0
    assert window.delay({LIST: 1}) == pytest.approx(30.0)
    clock.advance(30.0)
    assert window.fit([LIST] * 10) == 10


def test_time_that_never_leaves_fits_nothing_though_delay_lets_it_go():
    # Reported time with no log of our own commands behind it (spent by others):
    # delay() lets the request go and the server decide; fit() says nothing fits.
    window, _ = window_at(430.0, logged=False)
    assert window.fit([LIST] * 5) == 0
    assert window.delay({LIST: 1}) == 0


def test_pacing_off_fits_all_unless_blocked():
    window, _ = window_at(430.0, enabled=False)
    assert window.fit([LIST] * 5) == 5
    window.block(LIST, 10.0)
    assert window.fit([LIST] * 5) == 0


@pytest.mark.parametrize("commands, exc", [
    (LIST, TypeError), ({LIST: 1}, TypeError), ([(LIST,)], TypeError), ([1], TypeError),
    ([""], ValueError), ([(LIST, -1)], ValueError),
])
def test_fit_checks_its_argument(commands: Any, exc: type) -> None:
    window = OperatingWindow(480.0, clock=ManualClock())
    with pytest.raises(exc):
        window.fit(commands)


# -- the runner and the export ------------------------------------------------------------


class SplitWindow:
    """A window that lets ``room`` commands go now, records what was booked."""

    def __init__(self, real: OperatingWindow, room: int) -> None:
        self.real = real
        self.room = room
        self.booked: List[Dict[Any, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def fit(self, commands: List[Any]) -> int:
        return min(self.room, len(commands))

    def acquire(self, methods: Any, token: Any = None) -> Any:
        self.booked.append(dict(methods))
        return self.real.acquire(methods, token)


def test_run_batch_sends_the_prefix_that_fits_and_hands_back_the_rest():
    with FakePortal(deals=120, profile="instant") as portal, \
            Bitrix(portal.webhook, verbose=False) as bx:
        runner = bx._runner
        window = SplitWindow(runner.window, room=2)
        runner.window = window  # type: ignore[assignment]
        chunk = [(i, Command(LIST, {"start": 50 * i, "select": ["ID"]})) for i in range(3)]
        outcome = runner.run_batch(chunk, divisible=True)
        assert sorted(outcome.results) == [0, 1]
        assert [i for i, _ in outcome.rest] == [2]
        assert sum(window.booked[0].values()) == 2
        assert not outcome.failures and not outcome.request_failed
        # Not divisible: the whole batch goes, as before.
        whole = runner.run_batch(chunk)
        assert sorted(whole.results) == [0, 1, 2] and whole.rest == []


def test_a_cancelled_wait_for_room_fails_every_command_unsent():
    from bitrix_threaded.cancel import CancelToken

    with FakePortal(deals=10, profile="instant") as portal, \
            Bitrix(portal.webhook, verbose=False) as bx:
        runner = bx._runner
        runner.window = SplitWindow(runner.window, room=0)  # type: ignore[assignment]
        runner.window.block(LIST, 60.0)
        token = CancelToken()
        token.cancel("stopped")
        chunk = [(i, Command(LIST, {"start": 50 * i})) for i in range(3)]
        outcome = runner.run_batch(chunk, divisible=True, token=token)
        assert outcome.request_failed and len(outcome.failures) == 3
        assert outcome.rest == []
        assert portal.stats()["requests"] == 0


def test_an_export_larger_than_the_window_sends_partial_batches_without_a_refusal():
    # Forty pages of 50 in ID-descending order, ten pages a batch: the deepest page
    # costs 40x the first, the pages need about twice the 0.8-s budget of the 1-s
    # window, and a batch of the deepest ten more than the budget allows at once.
    # The pages that fit go, the rest follow as room frees; whole batches would
    # have been refused.
    with FakePortal(deals=2000, profile="realistic", operating_limit=0.8,
                    operating_window=1.0, cost_base=0.002, cost_per_record=0.0,
                    cost_per_offset_row=0.00004, cost_per_counted_row=0.0,
                    cost_round_trip=0.001) as portal, \
            Bitrix(portal.webhook, verbose=False, operating_time_limit=0.8,
                   batch_size=10) as bx:
        sizes: List[int] = []
        send_batch = bx._runner.send_batch

        def counting(batch: Any, token: Any = None) -> Any:
            sizes.append(len(batch.labels))
            return send_batch(batch, token)

        bx._runner.send_batch = counting  # type: ignore[method-assign]
        records = bx.get_all(LIST, {"select": ["ID"], "order": {"ID": "DESC"}},
                             strategy="offset")
        ids = [int(d["ID"]) for d in records]
        assert ids == sorted(ids, reverse=True)
        assert sorted(ids) == portal.ids("deal") and len(set(ids)) == len(ids) == 2000
        stats = portal.stats()
        assert stats["operating"][LIST] > 1.2  # more than the budget
        assert stats["rejected_429"] == 0 and stats["rejected_503"] == 0
        # Whole batches: the first page, the deepest alone, then 10 + 10 + 10 + 8.
        assert sum(sizes) == 40
        assert len(sizes) > 6, sizes


def test_waiting_for_room_waits_on_the_clock_and_is_announced():
    from bitrix_threaded.operating import BUDGET

    clock = ManualClock()
    with FakePortal(deals=200, profile="instant") as portal, \
            Bitrix(portal.webhook, verbose=False, clock=clock) as bx:
        runner = bx._runner
        heard: List[Tuple[str, str, float]] = []
        runner.on_wait = lambda method, reason, seconds: heard.append(
            (method, reason, seconds))
        runner.window.block(LIST, 30.0)
        chunk = [(i, Command(LIST, {"start": 50 * i, "select": ["ID"]})) for i in range(3)]
        outcome = runner.run_batch(chunk, divisible=True)
        assert sorted(outcome.results) == [0, 1, 2] and outcome.rest == []
        assert sum(clock.sleeps) == pytest.approx(30.0)
        assert heard == [(LIST, BUDGET, pytest.approx(30.0))]
