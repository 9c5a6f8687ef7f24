"""Fault injection and mutation mode of the fake portal."""
from __future__ import annotations

import time

import pytest
import requests

from bitrix_threaded.testing import FakePortal, ManualClock
from bitrix_threaded.testing.faults import FaultInjector


def add_deal(portal, session, title="x", timeout=5):
    return session.post(portal.webhook + "crm.deal.add", json={"fields": {"TITLE": title}},
                        timeout=timeout)


def test_error_faults_are_503_and_not_executed():
    with FakePortal(deals=5, fault_rate=1.0, fault_kinds=("error",)) as portal:
        session = requests.Session()
        for _ in range(5):
            reply = add_deal(portal, session)
            assert reply.status_code == 503
            assert reply.json() == {"error": "INTERNAL_SERVER_ERROR",
                                    "error_description": "Internal server error"}
        assert portal.count("deal") == 5
        stats = portal.stats()
        assert stats["faults"] == {"error": 5, "disconnect": 0, "stall": 0}
        assert stats["commands"] == 0 and stats["errors"] == {"INTERNAL_SERVER_ERROR": 5}


def test_disconnects_happen_before_and_after_execution():
    with FakePortal(deals=5, fault_rate=1.0, fault_kinds=("disconnect",)) as portal:
        session = requests.Session()
        for number in range(40):
            with pytest.raises(requests.ConnectionError):
                add_deal(portal, session, f"d{number}")
        stats = portal.stats()
        after = stats["disconnects_after_execution"]
        assert stats["faults"]["disconnect"] == 40
        assert 5 <= after <= 35  # about half, with a fixed seed
        # exactly the "after" ones were executed: the ambiguous case for writes
        assert portal.count("deal") == 5 + after
        assert stats["commands"] == after


def test_stall_waits_then_answers():
    clock = ManualClock()
    with FakePortal(fault_rate=1.0, fault_kinds=("stall",), stall_seconds=7.0, time_scale=0.5,
                    clock=clock) as portal:
        reply = requests.get(portal.webhook + "user.get")
        assert reply.status_code == 200
        assert clock.slept == pytest.approx(3.5)
        assert portal.stats()["faults"]["stall"] == 1


def test_stall_really_delays_the_reply():
    with FakePortal(fault_rate=1.0, fault_kinds=("stall",), stall_seconds=0.05) as portal:
        with pytest.raises(requests.Timeout):
            requests.get(portal.webhook + "user.get", timeout=0.01)
        started = time.monotonic()
        assert requests.get(portal.webhook + "user.get").status_code == 200
        assert time.monotonic() - started >= 0.05


def test_partial_fault_rate_is_seeded_and_reproducible():
    def run():
        outcomes = []
        with FakePortal(fault_rate=0.3, fault_kinds=("error",), seed=3) as portal:
            session = requests.Session()
            for _ in range(60):
                outcomes.append(session.get(portal.webhook + "user.get").status_code)
        return outcomes
    first = run()
    assert first == run()
    assert 5 < first.count(503) < 35


def test_fault_settings_are_validated():
    with pytest.raises(ValueError):
        FaultInjector(1.5)
    with pytest.raises(ValueError):
        FaultInjector(0.5, ("boom",))
    with pytest.raises(TypeError):
        FaultInjector(0.5, "error")
    with pytest.raises(ValueError):
        FaultInjector(0.5, ())
    assert FaultInjector(0.0).draw() is None


def test_direct_mutation_inserts_and_deletes():
    with FakePortal(deals=20, leads=10) as portal:
        before = set(portal.ids("deal"))
        inserted, deleted = portal.mutate(inserts=2, deletes=1)
        assert len(inserted) == 4 and len(deleted) == 2  # per non-empty entity
        after = set(portal.ids("deal"))
        assert len(after) == 21
        assert after - before and before - after
        assert portal.stats()["mutations"] == {"inserted": 4, "deleted": 2}
        with pytest.raises(ValueError):
            portal.mutate(-1, 0)


def test_mutation_thread_keeps_changing_data():
    with FakePortal(deals=50, mutation_rate=200.0) as portal:
        deadline = time.monotonic() + 5
        while portal.stats()["mutations"]["inserted"] < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert portal.stats()["mutations"]["inserted"] >= 3
        assert portal.stats()["internal_errors"] == 0
    inserted = portal.stats()["mutations"]["inserted"]
    time.sleep(0.02)
    assert portal.stats()["mutations"]["inserted"] == inserted  # stopped with the portal
