"""Leaky bucket (503) and operating-time window (429) of the fake portal."""
from __future__ import annotations

import pytest
import requests

from bitrix_threaded.testing import FakePortal, ManualClock
from bitrix_threaded.testing.limits import LeakyBucket, OperatingWindow, as_clock


# -- units ------------------------------------------------------------------

def test_manual_clock_advances_and_records_sleeps():
    clock = ManualClock(100.0)
    assert clock.time() == 100.0
    clock.advance(2.5)
    clock.sleep(1.0)
    clock.sleep(0)
    assert clock.time() == 103.5
    assert clock.slept == 1.0
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(TypeError):
        clock.advance("1")


def test_as_clock_accepts_objects_with_time_and_rejects_others():
    import time
    assert as_clock(None) is time
    with pytest.raises(TypeError):
        as_clock(object())


def test_bucket_refuses_past_capacity_and_drains_continuously():
    clock = ManualClock()
    bucket = LeakyBucket(capacity=3, rate=2.0, clock=clock)
    assert [bucket.try_acquire() for _ in range(5)] == [True, True, True, False, False]
    assert bucket.level == 3  # refused requests are not counted
    clock.advance(0.25)  # drains 0.5: still no room for a whole request
    assert not bucket.try_acquire()
    clock.advance(0.25)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    clock.advance(10)
    assert bucket.level == 0


def test_bucket_rejects_bad_settings():
    with pytest.raises(ValueError):
        LeakyBucket(0, 1)
    with pytest.raises(ValueError):
        LeakyBucket(5, 0)


def test_operating_window_buckets_sum_and_expire():
    clock = ManualClock(1000.0)
    window = OperatingWindow(window=600.0, buckets=10, clock=clock)
    assert window.state("m") == (0.0, None)
    window.record("m", 2.0)
    clock.advance(30)
    window.record("m", 1.0)       # same 60-s bucket as the first call
    clock.advance(40)
    window.record("m", 4.0)       # a new bucket opened at t=1070
    window.record("other", 0.0)   # nothing recorded
    assert window.state("m") == (7.0, 1600)
    assert window.state("other") == (0.0, None)
    clock.advance(530)            # t=1600: the first bucket expires
    assert window.state("m") == (4.0, 1670)
    clock.advance(70)
    assert window.state("m") == (0.0, None)


def test_operating_window_rounds_reset_at_to_its_resolution():
    # A real portal rounds up to a whole second (an int); a portal at time scale 0.25
    # rounds to its own scaled second, so the rounding stays 1/600 of a window.
    clock = ManualClock(1000.1)
    whole = OperatingWindow(window=150.0, buckets=10, clock=clock)
    scaled = OperatingWindow(window=150.0, buckets=10, clock=clock, resolution=0.25)
    for window in (whole, scaled):
        window.record("m", 1.0)
    assert whole.state("m") == (1.0, 1151)
    assert isinstance(whole.state("m")[1], int)
    assert scaled.state("m") == (1.0, 1150.25)
    exact = OperatingWindow(window=150.0, buckets=10, clock=ManualClock(1000.5),
                            resolution=0.25)
    exact.record("m", 1.0)
    assert exact.state("m")[1] == 1150.5  # already on a step: not moved up
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError):
            OperatingWindow(resolution=bad)


# -- wire level -------------------------------------------------------------

# Every command costs exactly 0.02 model seconds.
FLAT = {"cost_base": 0.02, "cost_per_record": 0.0, "cost_per_offset_row": 0.0,
        "cost_per_counted_row": 0.0}


def _deal_count(portal):
    return requests.get(portal.url + "/_portal/ids/deal").json()["count"]


def test_burst_of_60_with_frozen_clock_gets_exactly_10_503s_not_executed():
    clock = ManualClock()
    with FakePortal(deals=5, limits=True, clock=clock) as portal:
        before = _deal_count(portal)
        session = requests.Session()
        statuses = []
        for number in range(60):
            reply = session.post(portal.webhook + "crm.deal.add",
                                 json={"fields": {"TITLE": f"burst {number}"}})
            statuses.append(reply.status_code)
            if reply.status_code == 503:
                assert reply.json() == {"error": "QUERY_LIMIT_EXCEEDED",
                                        "error_description": "Too many requests"}
        assert statuses == [200] * 50 + [503] * 10
        assert _deal_count(portal) == before + 50
        stats = portal.stats()
        assert stats["rejected_503"] == 10
        assert stats["commands"] == 50
        assert stats["requests"] == 60
        clock.advance(1.0)  # 2 requests drained
        assert [session.post(portal.webhook + "crm.deal.list").status_code
                for _ in range(3)] == [200, 200, 503]


def test_enterprise_bucket_is_250_and_time_scale_divides_the_rate():
    clock = ManualClock()
    with FakePortal(enterprise=True, limits=True, clock=clock) as portal:
        session = requests.Session()
        codes = [session.get(portal.webhook + "user.get").status_code for _ in range(251)]
        assert codes.count(503) == 1 and codes[-1] == 503
    # scale 0.25: 2/s becomes 8/s
    with FakePortal(bucket_capacity=2, time_scale=0.25, clock=clock) as portal:
        session = requests.Session()
        assert [session.get(portal.webhook + "user.get").status_code
                for _ in range(3)] == [200, 200, 503]
        clock.advance(0.25)
        assert [session.get(portal.webhook + "user.get").status_code
                for _ in range(3)] == [200, 200, 503]


def test_bucket_applies_to_oauth_requests_and_batches_count_once():
    clock = ManualClock()
    with FakePortal(deals=3, bucket_capacity=2, clock=clock) as portal:
        token = portal.oauth.access_token
        session = requests.Session()
        batch = {"cmd": {f"c{i}": "crm.deal.list" for i in range(10)}}
        assert session.post(portal.webhook + "batch", json=batch).status_code == 200
        assert session.get(portal.endpoint + "user.get", params={"auth": token}).status_code == 200
        assert session.get(portal.endpoint + "user.get", params={"auth": token}).status_code == 503
        assert portal.stats()["commands"] == 11


def test_instant_profile_has_no_limits_by_default():
    clock = ManualClock()
    with FakePortal(clock=clock) as portal:
        session = requests.Session()
        assert all(session.get(portal.webhook + "user.get").status_code == 200
                   for _ in range(70))


def test_operating_limit_blocks_one_method_until_the_window_moves_on():
    clock = ManualClock(1_000_000.0)
    # instant profile: nothing sleeps, but each command still costs >= 0.02 model seconds
    with FakePortal(deals=10, operating_limit=0.05, clock=clock, **FLAT) as portal:
        session = requests.Session()
        deal = portal.ids("deal")[0]
        statuses = [session.post(portal.webhook + "crm.deal.get", json={"id": deal}).status_code
                    for _ in range(4)]
        assert statuses == [200, 200, 200, 429]  # the crossing (third) call completes
        blocked = session.post(portal.webhook + "crm.deal.get", json={"id": deal})
        body = blocked.json()
        assert blocked.status_code == 429
        assert body["error"] == "OPERATION_TIME_LIMIT"
        assert body["error_description"] == "Method is blocked due to operation time limit."
        assert body["time"]["operating_reset_at"] == 1_000_600
        assert body["time"]["operating"] == pytest.approx(0.06)
        # another method still works
        other = session.post(portal.webhook + "crm.lead.fields")
        assert other.status_code == 200
        # the method name is case-insensitive and ".json" is the same method
        assert session.get(f"{portal.webhook}CRM.DEAL.GET.json?id={deal}").status_code == 429
        clock.advance(599)
        assert session.post(portal.webhook + "crm.deal.get", json={"id": deal}).status_code == 429
        clock.advance(1)
        freed = session.post(portal.webhook + "crm.deal.get", json={"id": deal})
        assert freed.status_code == 200
        assert freed.json()["time"]["operating"] == pytest.approx(0.02)
        assert portal.stats()["rejected_429"] == 4


def test_blocked_method_inside_a_batch_gets_per_command_errors_with_http_200():
    clock = ManualClock(2_000_000.0)
    with FakePortal(deals=10, operating_limit=0.05, clock=clock, **FLAT) as portal:
        session = requests.Session()
        deal = portal.ids("deal")[0]
        for _ in range(3):
            session.post(portal.webhook + "crm.deal.get", json={"id": deal})
        reply = session.post(portal.webhook + "batch", json={"cmd": {
            "a": f"crm.deal.get?id={deal}", "b": "user.get", "c": "crm.deal.list"}})
        assert reply.status_code == 200
        result = reply.json()["result"]
        blocked = {"error": "OPERATION_TIME_LIMIT",
                   "error_description": "Method is blocked due to operation time limit."}
        assert result["result_error"] == {"a": blocked}
        assert set(result["result"]) == {"b", "c"}
        assert set(result["result_time"]) == {"b", "c"}
        assert portal.stats()["rejected_429"] == 1


def test_batch_commands_are_charged_to_their_own_methods():
    clock = ManualClock(3_000_000.0)
    with FakePortal(deals=10, operating_limit=0.05, clock=clock, **FLAT) as portal:
        session = requests.Session()
        deal = portal.ids("deal")[0]
        cmd = {f"c{i}": f"crm.deal.get?id={deal}" for i in range(4)}
        result = session.post(portal.webhook + "batch", json={"cmd": cmd}).json()
        body = result["result"]
        # three run (the third crosses the limit), the fourth is refused
        assert list(body["result"]) == ["c0", "c1", "c2"]
        assert [body["result_time"][c]["operating"] for c in ("c0", "c1", "c2")] == \
            pytest.approx([0.02, 0.04, 0.06])
        assert body["result_time"]["c0"]["operating_reset_at"] == 3_000_600
        assert body["result_error"]["c3"]["error"] == "OPERATION_TIME_LIMIT"
        # the batch itself is not charged
        assert result["time"]["operating"] == 0
        assert "operating_reset_at" not in result["time"]
        assert session.post(portal.webhook + "crm.deal.get", json={"id": deal}).status_code == 429
        assert session.post(portal.webhook + "batch", json={"cmd": []}).status_code == 200


def test_time_scale_scales_operating_seconds_and_limit():
    clock = ManualClock(4_000_000.0)
    with FakePortal(deals=10, operating_limit=0.05, time_scale=0.5, clock=clock,
                    **FLAT) as portal:
        session = requests.Session()
        deal = portal.ids("deal")[0]
        first = session.post(portal.webhook + "crm.deal.get", json={"id": deal}).json()
        assert first["time"]["operating"] == pytest.approx(0.01)
        assert first["time"]["processing"] == pytest.approx(0.01)
        assert first["time"]["operating_reset_at"] == 4_000_300  # window 600 * 0.5
        codes = [session.post(portal.webhook + "crm.deal.get", json={"id": deal}).status_code
                 for _ in range(3)]
        assert codes == [200, 200, 429]
        # stats keep unscaled model seconds
        assert portal.stats()["operating"]["crm.deal.get"] == pytest.approx(0.06)


def test_operating_min_seconds_skips_short_calls():
    clock = ManualClock()
    with FakePortal(deals=10, operating_limit=0.01, operating_min_seconds=0.1,
                    clock=clock) as portal:
        session = requests.Session()
        deal = portal.ids("deal")[0]
        replies = [session.post(portal.webhook + "crm.deal.get", json={"id": deal})
                   for _ in range(5)]
        assert all(reply.status_code == 200 for reply in replies)
        assert replies[-1].json()["time"]["operating"] == 0
        assert "operating_reset_at" not in replies[-1].json()["time"]


def test_realistic_profile_turns_standard_limits_on_and_limits_false_turns_them_off():
    clock = ManualClock()
    with FakePortal(profile="realistic", clock=clock, bucket_capacity=3) as portal:
        session = requests.Session()
        codes = [session.get(portal.webhook + "user.get").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 503]
        assert portal.engine.settings.operating_limit == 480.0
    with FakePortal(profile="realistic", clock=clock, limits=False) as portal:
        assert portal.engine.bucket is None
        assert portal.engine.settings.operating_limit is None


def test_a_faster_portal_rounds_reset_at_to_its_scaled_second():
    clock = ManualClock(4_000_000.1)
    with FakePortal(deals=10, operating_limit=0.05, time_scale=0.25, clock=clock,
                    **FLAT) as portal:
        deal = portal.ids("deal")[0]
        reply = requests.post(portal.webhook + "crm.deal.get", json={"id": deal}).json()
        # window 600 * 0.25 = 150 s from 4,000,000.1, rounded up to a quarter second
        assert reply["time"]["operating_reset_at"] == pytest.approx(4_000_150.25)
