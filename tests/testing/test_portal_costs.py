"""Cost model, profiles, counters and argument checking of the fake portal."""
from __future__ import annotations

import json
import time
from typing import List

import pytest
import requests

from bitrix_threaded.testing import PROFILES, CostProfile, FakePortal, ManualClock
from bitrix_threaded.testing.profiles import resolve_profile


def model(profile, records=0, skipped=0, counted=0):
    return profile.command_seconds(records, skipped, counted)


# -- profiles ----------------------------------------------------------------

def test_profiles_and_their_coefficients():
    assert set(PROFILES) == {"instant", "realistic", "light"}
    realistic = PROFILES["realistic"]
    assert (realistic.base, realistic.per_record, realistic.per_offset_row,
            realistic.per_counted_row, realistic.round_trip) == (0.02, 0.0004, 0.00002,
                                                                 0.000002, 0.03)
    assert realistic.sleeps and realistic.limits
    light = PROFILES["light"]
    assert (light.per_offset_row, light.per_counted_row) == (0.000002, 0.0000002)
    assert light.base == 0.02 and light.sleeps and light.limits
    instant = PROFILES["instant"]
    assert not instant.sleeps and not instant.limits and instant.base == 0.02
    assert realistic.command_seconds(50, 1000, 5000) == pytest.approx(0.02 + 0.02 + 0.02 + 0.01)


def test_profile_overrides_and_errors():
    custom = resolve_profile("light").with_costs(base=0.5, round_trip=0)
    assert isinstance(custom, CostProfile) and custom.base == 0.5 and custom.round_trip == 0
    assert resolve_profile(custom) is custom
    with pytest.raises(TypeError):
        custom.with_costs(speed=1)
    with pytest.raises(ValueError):
        resolve_profile("turbo")
    with pytest.raises(TypeError):
        resolve_profile(3)
    with pytest.raises(ValueError):
        custom.with_costs(base=-1)


# -- sleeping (through a ManualClock, so nothing really waits) -----------------

def test_realistic_plain_call_sleeps_round_trip_plus_processing():
    clock = ManualClock()
    with FakePortal(deals=300, profile="realistic", clock=clock) as portal:
        body = requests.post(portal.webhook + "crm.deal.list", json={"start": 100}).json()
        stats = portal.stats()
        profile = PROFILES["realistic"]
        processing = model(profile, stats["records"], stats["skipped_rows"],
                           stats["counted_rows"])
        assert stats["skipped_rows"] == 100 and stats["records"] == 50
        assert body["time"]["processing"] == pytest.approx(processing)
        assert body["time"]["duration"] == pytest.approx(processing, abs=1e-6)
        assert clock.slept == pytest.approx(0.03 + processing)
        assert stats["operating"]["crm.deal.list"] == pytest.approx(processing)


class LateClock(ManualClock):
    """A clock whose every sleep wakes ``late`` seconds after it was asked to."""

    def __init__(self, late: float) -> None:
        super().__init__()
        self.late = late
        self.asked: List[float] = []

    def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        super().sleep(seconds + self.late)


def test_a_batch_reply_is_as_late_as_its_last_wake_up_not_all_of_them():
    # Each command sleeps until its modelled end, measured from the request's start:
    # a late wake-up shortens the next sleep instead of adding up over the batch.
    clock = LateClock(late=0.005)
    with FakePortal(users=10, profile="realistic", clock=clock) as portal:
        cmd = {f"c{i}": f"user.get?FILTER[ID]={i + 1}" for i in range(8)}
        start = clock.time()
        body = requests.post(portal.webhook + "batch", json={"cmd": cmd}).json()
        took = clock.time() - start
    processing = body["time"]["processing"]
    per_command = [t["processing"] for t in body["result"]["result_time"].values()]
    # (Times in the reply are Unix seconds' differences: about 1e-7 s of rounding.)
    assert processing == pytest.approx(sum(per_command), abs=1e-6) and len(per_command) == 8
    # One late wake-up in all (the last), not nine.
    assert took == pytest.approx(processing + 0.03 + 0.005, abs=1e-6)
    assert len(clock.asked) == 9  # eight commands, then the round trip
    assert clock.asked[0] == pytest.approx(per_command[0], abs=1e-6)
    assert all(a == pytest.approx(c - 0.005, abs=1e-6)
               for a, c in zip(clock.asked[1:], per_command[1:]))
    assert clock.asked[-1] == pytest.approx(0.03 - 0.005, abs=1e-6)


def test_a_plain_call_after_a_stall_still_takes_its_modelled_time():
    clock = ManualClock()
    with FakePortal(users=10, profile="realistic", clock=clock, fault_rate=1.0,
                    fault_kinds=("stall",), stall_seconds=0.5) as portal:
        start = clock.time()
        body = requests.post(portal.webhook + "user.get", json={"FILTER": {"ID": 1}}).json()
        took = clock.time() - start
    assert took == pytest.approx(0.5 + body["time"]["processing"] + 0.03, abs=1e-6)


def test_batch_commands_run_one_after_another_and_time_scale_shrinks_sleeps():
    clock = ManualClock(10_000.0)
    with FakePortal(users=10, profile="realistic", time_scale=0.5, clock=clock) as portal:
        body = requests.post(portal.webhook + "batch", json={
            "cmd": {"a": "user.get?FILTER[ID]=1", "b": "user.get?FILTER[ID]=2"}}).json()
        times = body["result"]["result_time"]
        assert times["b"]["start"] == pytest.approx(times["a"]["finish"], abs=1e-6)
        assert times["a"]["start"] == pytest.approx(10_000.0)
        per_command = [times[label]["processing"] for label in ("a", "b")]
        assert body["time"]["processing"] == pytest.approx(sum(per_command))
        assert body["time"]["finish"] == pytest.approx(times["b"]["finish"])
        model_total = portal.stats()["operating_total"]
        assert sum(per_command) == pytest.approx(model_total * 0.5)
        assert clock.slept == pytest.approx((0.03 + model_total) * 0.5)


def test_light_profile_charges_offsets_less_than_realistic():
    charged = {}
    for name in ("realistic", "light"):
        with FakePortal(deals=300, profile=name, clock=ManualClock()) as portal:
            requests.post(portal.webhook + "crm.deal.list", json={"start": 250})
            charged[name] = portal.stats()["operating_total"]
    assert charged["light"] < charged["realistic"]


def test_instant_profile_never_sleeps_but_accrues_cost():
    clock = ManualClock()
    with FakePortal(deals=60, clock=clock, cost_base=0.5) as portal:
        body = requests.post(portal.webhook + "crm.deal.list").json()
        assert clock.slept == 0
        assert body["time"]["processing"] >= 0.5
        assert body["time"]["operating"] == pytest.approx(body["time"]["processing"])


def test_realistic_profile_really_sleeps_with_the_default_clock():
    with FakePortal(users=3, profile="realistic", time_scale=0.05, limits=False) as portal:
        session = requests.Session()
        session.get(portal.webhook + "user.get")  # connection set up outside the timing
        started = time.monotonic()
        session.get(portal.webhook + "user.get")
        elapsed = time.monotonic() - started
        expected = (0.03 + portal.stats()["operating_total"] / 2) * 0.05
        assert elapsed >= expected * 0.95


# -- counters --------------------------------------------------------------------

def test_counters_and_reset(fake_portal):
    session = requests.Session()
    session.post(fake_portal.webhook + "crm.deal.list", json={"start": 50})
    session.post(fake_portal.webhook + "batch", json={"cmd": {
        "a": "crm.lead.list", "b": "crm.deal.get?id=0", "c": "user.get"}})
    stats = fake_portal.stats()
    json.dumps(stats)  # plain JSON-able values
    assert stats["requests"] == 2
    assert stats["requests_by_method"] == {"crm.deal.list": 1, "batch": 1}
    assert stats["commands"] == 4
    assert stats["commands_by_method"] == {"crm.deal.list": 1, "crm.lead.list": 1,
                                           "crm.deal.get": 1, "user.get": 1}
    assert stats["records"] == 50 + 50 + 10
    assert stats["skipped_rows"] == 50
    assert stats["errors"] == {"": 1}
    assert stats["operating_total"] == pytest.approx(sum(stats["operating"].values()))
    assert stats["peak_concurrency"] == 1 and stats["in_flight"] == 0
    fake_portal.reset_stats()
    stats = fake_portal.stats()
    assert stats["requests"] == stats["commands"] == stats["records"] == 0
    assert stats["operating"] == {} and stats["peak_concurrency"] == 0


def test_ids_and_count(fake_portal):
    assert fake_portal.count("deal") == 120 == len(fake_portal.ids("deal"))
    assert fake_portal.count("task") == 80 and fake_portal.count("user") == 10


# -- argument checking ---------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error", [
    ({"deals": -1}, ValueError),
    ({"deals": "5"}, TypeError),
    ({"seed": 1.5}, TypeError),
    ({"time_scale": 0}, ValueError),
    ({"time_scale": "fast"}, TypeError),
    ({"profile": "turbo"}, ValueError),
    ({"clock": object()}, TypeError),
    ({"limits": "yes"}, TypeError),
    ({"port": 70000}, ValueError),
    ({"cost_base": -1}, ValueError),
    ({"bucket_capacity": 0}, ValueError),
    ({"bucket_rate": 0}, ValueError),
    ({"operating_limit": 0}, ValueError),
    ({"fault_rate": 2}, ValueError),
    ({"token_ttl": 0}, ValueError),
    ({"mutation_rate": -1}, ValueError),
])
def test_bad_arguments_raise_clear_errors(kwargs, error):
    with pytest.raises(error):
        FakePortal(**kwargs)


def test_batch_commands_are_checked_and_charged_when_each_one_runs():
    # Each user.get costs 0.0204 s; the operating window is only 0.01 s long. Checked
    # and charged at the batch's arrival, b and c would be refused (a is over the
    # limit); run one after another, each finds the previous one's time expired.
    clock = ManualClock(5_000.0)
    with FakePortal(users=10, profile="realistic", clock=clock, operating_limit=0.001,
                    operating_window=0.01) as portal:
        body = requests.post(portal.webhook + "batch", json={"cmd": {
            "a": "user.get?ID=1", "b": "user.get?ID=2", "c": "user.get?ID=3"}}).json()
        assert body["result"]["result_error"] == []
        assert sorted(body["result"]["result"]) == ["a", "b", "c"]
        times = body["result"]["result_time"]
        # Each command's window holds only its own time: the others had expired.
        assert [times[k]["operating"] for k in "abc"] == \
            pytest.approx([times[k]["processing"] for k in "abc"])
        assert times["b"]["start"] == pytest.approx(times["a"]["finish"])
        assert portal.stats()["rejected_429"] == 0
        assert clock.time() == pytest.approx(times["c"]["finish"] + 0.03)
