"""One retry budget, obedience to 429 whatever the pacing flag, call_batch paced like
every batch, and long waits made visible."""

from __future__ import annotations

import json
import logging

import pytest
import responses

from bitrix_threaded import (
    BatchError,
    Bitrix,
    ManualClock,
    OperationTimeLimit,
    RetryPolicy,
    ServerError,
)
from bitrix_threaded.retry import RetryState
from bitrix_threaded.testing import FakePortal

WEBHOOK = "https://portal.example.com/rest/7/s3cretC0de9/"


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def failing_batch(code, description):
    def answer(request):
        labels = json.loads(request.body)["cmd"]
        errors = {label: {"error": code, "error_description": description} for label in labels}
        body = {"result": {"result": [], "result_error": errors, "result_total": [],
                           "result_next": [], "result_time": []}, "time": {}}
        return 200, {}, json.dumps(body)
    return answer


# -- one retry budget ------------------------------------------------------------------------

def test_retry_state_counts_ordinary_and_limit_failures_apart():
    policy = RetryPolicy(max_attempts=2, limit_attempts=1, jitter=0.0)
    state = RetryState(policy)
    assert not state.retry and state.delay == 0.0
    state = state.increment(ServerError("INTERNAL_SERVER_ERROR", status=500), write=False)
    assert state.retry and state.attempts == 1 and state.delay == 0.5
    limited = state.increment(OperationTimeLimit("OPERATION_TIME_LIMIT"), write=False)
    assert limited.retry and limited.limit_attempts == 1 and limited.attempts == 1
    assert not limited.increment(OperationTimeLimit("OPERATION_TIME_LIMIT"), write=False).retry
    assert not state.increment(ServerError("INTERNAL_SERVER_ERROR", status=500),
                               write=False).retry


@pytest.mark.parametrize("strategy", ["offset", "id_ranges"])
def test_the_users_retry_policy_bounds_page_retries(mock, strategy):
    mock.add_callback(responses.POST, WEBHOOK + "batch",
                      callback=failing_batch("INTERNAL_SERVER_ERROR", "boom"))
    with Bitrix(WEBHOOK, verbose=False, clock=ManualClock(),
                retry=RetryPolicy(max_attempts=3)) as bx:
        with pytest.raises(ServerError):
            bx.get_all("crm.deal.list", strategy=strategy)
    assert len(mock.calls) == 3  # three tries of the page, not thirty


def test_the_users_limit_budget_bounds_blocked_pages(mock):
    mock.add_callback(responses.POST, WEBHOOK + "batch",
                      callback=failing_batch("OPERATION_TIME_LIMIT", "blocked"))
    clock = ManualClock()
    with Bitrix(WEBHOOK, verbose=False, clock=clock, retry=RetryPolicy(limit_attempts=2)) as bx:
        with pytest.raises(OperationTimeLimit):
            bx.get_all("crm.deal.list", strategy="offset")
    assert len(mock.calls) == 3
    assert clock.slept >= 2 * 60  # each retry waited for the method's hold


def test_a_429_waits_for_the_reset_even_without_proactive_pacing(mock):
    clock = ManualClock()
    blocked = {"error": "OPERATION_TIME_LIMIT", "error_description": "blocked",
               "time": {"finish": 1000.0, "operating_reset_at": 1045.0, "operating": 500}}
    mock.post(WEBHOOK + "crm.deal.list", status=429, json=blocked)
    mock.post(WEBHOOK + "crm.deal.list", json={"result": [], "time": {}})
    with Bitrix(WEBHOOK, verbose=False, clock=clock, respect_velocity_policy=False) as bx:
        assert bx.call("crm.deal.list", {}) == []
    assert clock.slept == pytest.approx(45.0)


def test_a_429_without_a_reset_time_holds_for_the_operating_window(mock):
    clock = ManualClock()
    mock.post(WEBHOOK + "crm.deal.list", status=429,
              json={"error": "OPERATION_TIME_LIMIT", "error_description": "blocked"})
    mock.post(WEBHOOK + "crm.deal.list", json={"result": [], "time": {}})
    with Bitrix(WEBHOOK, verbose=False, clock=clock, operating_window=300.0,
                respect_velocity_policy=False) as bx:
        assert bx.call("crm.deal.list", {}) == []
    assert clock.slept == pytest.approx(300.0)


def test_an_export_without_proactive_pacing_completes_through_its_429s():
    clock = ManualClock()
    # The portal sleeps its cost model on the shared fake clock: nothing really waits.
    with FakePortal(deals=3000, profile="realistic", operating_limit=1.0, clock=clock) as portal, \
            Bitrix(portal.webhook, verbose=False, clock=clock, operating_time_limit=1.0,
                   operating_window=600.0, respect_velocity_policy=False) as bx:
        records = bx.get_all("crm.deal.list", {"select": ["ID"]}, strategy="offset")
        stats = portal.stats()
    assert sorted(int(r["ID"]) for r in records) == portal.ids("deal")
    assert stats["rejected_429"] > 0  # it did hit the server's limit, and waited it out
    assert clock.slept > 0


# -- call_batch is paced and held like every other batch ---------------------------------------

def test_call_batch_books_the_window_and_holds_a_blocked_method():
    clock = ManualClock()
    with FakePortal(deals=5000, profile="realistic", operating_limit=2.0, clock=clock) as portal, \
            Bitrix(portal.webhook, verbose=False, clock=clock, operating_time_limit=2.0,
                   operating_window=600.0) as bx:
        failed = 0
        for round_ in range(16):
            cmd = {f"p{i}": ("crm.deal.list", {"start": 50 * (10 * round_ + i) % 5000})
                   for i in range(10)}
            try:
                bx.call_batch({"cmd": cmd})
            except BatchError as err:
                failed += len(err.failures)
        stats = portal.stats()
    # Five windows' worth of operating time, yet the window booked every batch
    # against the budget and held the method until its reset: no 429 at all.
    assert stats["operating_total"] > 5 * 2.0
    assert stats["rejected_429"] == 0 and failed == 0
    assert clock.slept > 4 * 590


def test_call_batch_holds_a_method_blocked_by_time_spent_elsewhere():
    clock = ManualClock()
    with FakePortal(deals=500, profile="realistic", operating_limit=2.0, clock=clock) as portal, \
            Bitrix(portal.webhook, verbose=False, clock=clock, operating_time_limit=2.0,
                   operating_window=600.0) as bx:
        portal.engine.window.record("crm.deal.list", 5.0)  # another client's spending
        failed = 0
        for _ in range(10):
            cmd = {f"p{i}": ("crm.deal.list", {"start": 50 * i}) for i in range(10)}
            try:
                bx.call_batch({"cmd": cmd})
            except BatchError as err:
                failed += len(err.failures)
        stats = portal.stats()
    # The first batch meets the block; the method is then held until its reset
    # instead of every later batch running into it.
    assert stats["rejected_429"] == failed == 10
    assert clock.slept >= 590


def test_call_batch_books_pages_by_their_cost_class(mock):
    mock.add_callback(responses.POST, WEBHOOK + "batch",
                      callback=failing_batch("OPERATION_TIME_LIMIT", "blocked"))
    with Bitrix(WEBHOOK, verbose=False, clock=ManualClock()) as bx:
        with pytest.raises(BatchError):
            bx.call_batch({"cmd": {"a": "crm.deal.list?start=5000", "b": "crm.lead.get?ID=1"}})
        blocked = bx.window.snapshot()
    assert blocked["crm.deal.list"]["blocked_for"] > 0
    assert blocked["crm.lead.get"]["blocked_for"] > 0


# -- visible waits ------------------------------------------------------------------------------

def test_a_long_hold_is_logged_at_info_with_method_reason_and_duration(mock, caplog):
    clock = ManualClock()
    mock.post(WEBHOOK + "crm.deal.list", json={"result": [], "time": {}})
    with Bitrix(WEBHOOK, verbose=False, clock=clock) as bx:
        bx.window.block("crm.deal.list", 125.0)
        with caplog.at_level(logging.INFO, logger="bitrix_threaded"):
            bx.call("crm.deal.list", {})
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "crm.deal.list: waiting for operating-time reset (02:05)" in lines


def test_a_long_hold_shows_on_the_progress_bar(mock):
    clock = ManualClock()
    seen = []
    with Bitrix(WEBHOOK, verbose=True, clock=clock) as bx:
        class Bar:
            postfix = ""

            def set_postfix_str(self, text, refresh=True):
                seen.append(text)

        bx._bars.append(Bar())
        bx._announce_wait("crm.deal.list", "waiting for operating-time reset", 61.0)
    assert seen == ["waiting for operating-time reset (01:01)"]


def test_a_wait_shared_by_many_threads_is_told_once(caplog):
    clock = ManualClock()
    with Bitrix(WEBHOOK, verbose=False, clock=clock) as bx:
        with caplog.at_level(logging.INFO, logger="bitrix_threaded"):
            for _ in range(5):
                bx._announce_wait("crm.deal.list", "waiting for operating-time reset", 60.0)
            clock.advance(61.0)
            bx._announce_wait("crm.deal.list", "waiting for operating-time reset", 30.0)
    assert len([r for r in caplog.records if r.levelno == logging.INFO]) == 2
