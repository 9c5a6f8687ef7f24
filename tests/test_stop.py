"""Stop means stop: close(), a cancelled scope and Ctrl-C end every call promptly.

End to end on the fake portal: after the stop no new request reaches the portal
beyond those already in flight, the calling thread gets a clear exception, unsent
writes are reported as not executed and can be resent without duplicates, and no
worker thread is left.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Tuple

import pytest
from edge_servers import run_in_thread

from bitrix_threaded import BatchError, Bitrix, Cancelled, ClientClosed
from bitrix_threaded.cancel import CancelToken, cancel_scope
from bitrix_threaded.testing import FakePortal

SCALE = 0.25  # the portal's bucket drains at 8 requests/s
POOL = 5  # a small bucket: most batches wait in the client's limiter
WORKERS = 4


def client(portal: FakePortal) -> Bitrix:
    return Bitrix(portal.webhook, verbose=False, requests_per_second=2.0 / SCALE,
                  request_pool_size=POOL, max_workers=WORKERS)


def portal_with(**kwargs) -> FakePortal:
    return FakePortal(profile="instant", limits=True, time_scale=SCALE,
                      bucket_capacity=POOL, **kwargs)


@contextmanager
def stalled(stall_seconds: float) -> Iterator[Tuple[FakePortal, Bitrix]]:
    """A portal on which every request stalls for ``stall_seconds`` (unscaled) before it
    runs, and a client that gives its requests on the wire 0.05 s after a stop."""
    with portal_with(fault_rate=1.0, fault_kinds=("stall",),
                     stall_seconds=stall_seconds) as portal:
        bx = client(portal)
        bx._runner.stop_grace = 0.05
        yield portal, bx


def workers_alive() -> list:
    """The clients' pool threads still alive (not the shared daemon watchdog)."""
    return [t for t in threading.enumerate()
            if t.name.startswith("bitrix_threaded") and not t.daemon]


def _wait(portal: FakePortal, ready, what: str, timeout: float) -> None:
    """Poll the portal's stats (in real time, briefly) until ``ready(stats)``."""
    deadline = time.monotonic() + timeout
    while not ready(portal.stats()):
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def started(portal: FakePortal, requests: int, timeout: float = 5.0) -> None:
    """Wait until the portal has seen ``requests`` requests."""
    _wait(portal, lambda stats: stats["requests"] >= requests, "the call never got going",
          timeout)


def stalling(portal: FakePortal, timeout: float = 5.0) -> None:
    """Wait until a request is in the portal's stall (on the wire, not yet executed);
    a request the portal turned away at once does not count."""
    _wait(portal, lambda stats: stats["faults"].get("stall", 0) >= 1 and stats["in_flight"] >= 1,
          "no request reached the stall", timeout)


CALLS = {
    "get_by_ID": lambda bx, ids: bx.get_by_ID("crm.deal.get", ids),
    "call_list": lambda bx, ids: bx.call("crm.deal.get", [{"ID": i} for i in ids]),
    "get_all": lambda bx, ids: bx.get_all("crm.deal.list", {"select": ["ID"]},
                                          strategy="offset"),
    "iter_all": lambda bx, ids: list(bx.iter_all("crm.deal.list", strategy="offset")),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_close_from_another_thread_stops_a_running_read(name):
    with portal_with(deals=3000) as portal:
        bx = client(portal)
        ids = portal.ids("deal")
        thread, box = run_in_thread(lambda: CALLS[name](bx, ids))
        started(portal, 3)
        before = portal.stats()["requests"]
        t0 = time.monotonic()
        bx.close()
        thread.join(5.0)
        stop_seconds = time.monotonic() - t0
        assert not thread.is_alive()
        after_close = portal.stats()["requests"]
        time.sleep(0.2)
        assert portal.stats()["requests"] == after_close  # nothing after close() returned
        assert after_close - before <= WORKERS  # only those already past the limiter
        assert isinstance(box.get("error"), ClientClosed), box
        assert stop_seconds < 2.0
        assert workers_alive() == []
        with pytest.raises(ClientClosed):
            bx.call("crm.deal.get", {"ID": ids[0]})


def test_close_during_a_write_list_reports_unsent_items_and_resumes_without_duplicates():
    with portal_with() as portal:
        bx = client(portal)
        items = [{"fields": {"TITLE": f"deal {i}"}} for i in range(2000)]
        thread, box = run_in_thread(lambda: bx.call("crm.deal.add", items))
        started(portal, 4)
        bx.close()
        thread.join(5.0)
        assert not thread.is_alive()
        error = box.get("error")
        assert isinstance(error, BatchError), box
        assert isinstance(error.__cause__, ClientClosed)
        assert error.results and error.not_executed
        assert error.ambiguous == ()  # the fake portal answers well within the grace
        assert {f.code for f in error.failures} == {"CLIENT_CLOSED"}
        assert len(error.results) + len(error.not_executed) == len(items)
        assert portal.count("deal") == len(error.results)
        assert workers_alive() == []
        # Resume: send again exactly the items that were not executed.
        with client(portal) as again:
            rest = again.call("crm.deal.add", [items[f.index] for f in error.not_executed])
        assert len(rest) == len(error.not_executed)
        titles = sorted(d["TITLE"] for d in portal.store.records("deal")) \
            if hasattr(portal.store, "records") else None
        assert portal.count("deal") == len(items)
        if titles is not None:
            assert titles == sorted(item["fields"]["TITLE"] for item in items)


def test_a_cancelled_scope_stops_only_its_own_call():
    with portal_with(deals=3000) as portal, client(portal) as bx:
        ids = portal.ids("deal")
        token = CancelToken()

        def scoped():
            with cancel_scope(token):
                return bx.get_by_ID("crm.deal.get", ids)

        thread, box = run_in_thread(scoped)
        started(portal, 2)
        token.cancel("the awaiting task was cancelled")
        thread.join(5.0)
        assert not thread.is_alive()
        error = box.get("error")
        assert isinstance(error, Cancelled) and not isinstance(error, ClientClosed), box
        # The client itself still works.
        assert bx.call("crm.deal.get", {"ID": ids[0]})["ID"] == str(ids[0])


def test_a_scope_cancelled_before_the_call_sends_nothing():
    with portal_with(deals=10) as portal, client(portal) as bx:
        token = CancelToken()
        token.cancel()
        with cancel_scope(token):
            with pytest.raises(Cancelled):
                bx.get_all("crm.deal.list")
            with pytest.raises(Cancelled):
                bx.call("crm.deal.get", {"ID": 1})
            records = bx.iter_all("crm.deal.list")
        with pytest.raises(Cancelled):
            next(records)  # the scope was read when the iterator was made
        assert portal.stats()["requests"] == 0


def interrupt_soon(portal: FakePortal, requests: int) -> tuple[threading.Thread, threading.Event]:
    """Send SIGINT to this process once the portal has seen ``requests`` requests.

    Like a user, press Ctrl-C again (at most twice more, a second apart) while the
    call has not stopped: CPython runs a signal's handler at the next bytecode of
    the main thread, and when that is inside a weakref callback (a garbage
    collection of an older client's objects) the KeyboardInterrupt is printed as
    "Exception ignored" and lost. Set the returned event once the call has stopped.
    """
    stopped = threading.Event()

    def fire():
        started(portal, requests)
        for _ in range(3):
            os.kill(os.getpid(), signal.SIGINT)
            if stopped.wait(1.0):
                return

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    return thread, stopped


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signals reach the main thread only")
@pytest.mark.parametrize("name", ["get_by_ID", "call_list", "get_all", "write"])
def test_ctrl_c_stops_the_call_in_the_main_thread(name):
    # A run started in the background by a shell ignores SIGINT: restore Python's handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        ctrl_c_stops(name)
    finally:
        signal.signal(signal.SIGINT, previous)


def ctrl_c_stops(name):
    # Enough deals that every call needs many more requests than the 3 after which the
    # interrupt comes (the export: 600 offset pages).
    with portal_with(deals=30000) as portal:
        bx = client(portal)
        try:
            ids = portal.ids("deal")[:3000]
            items = [{"fields": {"TITLE": f"deal {i}"}} for i in range(2000)]
            firing, stopped = interrupt_soon(portal, 3)
            t0 = time.monotonic()
            ended = []
            try:
                with pytest.raises(KeyboardInterrupt) as caught:
                    if name == "write":
                        bx.call("crm.deal.add", items)
                    else:
                        CALLS[name](bx, ids)
                    ended.append(True)
                    # The call ended first: let the interrupt land here (it cuts the
                    # join short), then fail below.
                    firing.join(5.0)
            finally:
                stopped.set()
            assert not ended, "the call ended before the interrupt: nothing was stopped"
            stop_seconds = time.monotonic() - t0
            firing.join(5.0)
            at_interrupt = portal.stats()["requests"]
            time.sleep(0.3)
            later = portal.stats()["requests"]
            assert later - at_interrupt <= WORKERS
            assert stop_seconds < 5.0
            if name == "write":
                report = caught.value.__cause__
                assert isinstance(report, BatchError)
                assert portal.count("deal") == 30000 + len(report.results)
        finally:
            bx.close()
        assert workers_alive() == []


def test_writes_on_the_wire_when_stopped_are_reported_ambiguous():
    # Every request stalls (half a second here) before it runs: at close() the batches
    # on the wire outlast the client's grace, so their commands are ambiguous.
    with stalled(2.0) as (portal, bx):
        items = [{"fields": {"TITLE": f"deal {i}"}} for i in range(500)]
        thread, box = run_in_thread(lambda: bx.call("crm.deal.add", items))
        stalling(portal)
        bx.close()
        thread.join(5.0)
        assert not thread.is_alive()
        error = box.get("error")
        assert isinstance(error, BatchError), box
        assert error.ambiguous and error.not_executed
        assert all(f.executed is None for f in error.ambiguous)
        assert len(error.results) + len(error.ambiguous) + len(error.not_executed) == 500
        # The stalled batches ran after all; the unsent ones did not.
        assert portal.count("deal") == len(error.results) + len(error.ambiguous)


def test_a_close_between_two_batches_being_handed_out_still_reports_the_first():
    # close() cancels the call, then shuts the pool: a batch handed to the pool in
    # between finds it closed. The batch already sent is still reported, not lost in a
    # bare ClientClosed.
    with stalled(2.0) as (portal, bx):
        submit = bx._runner.submit
        handed = []

        def racing_submit(*args, **kwargs):
            handed.append(True)
            if len(handed) == 2:
                stalling(portal)
                bx.close()
            return submit(*args, **kwargs)

        bx._runner.submit = racing_submit
        items = [{"fields": {"TITLE": f"deal {i}"}} for i in range(100)]
        with pytest.raises(BatchError) as caught:
            bx.call("crm.deal.add", items)
    report = caught.value
    assert len(handed) == 2
    assert len(report.results) + len(report.ambiguous) == 50
    assert len(report.not_executed) == 50


def test_close_does_not_wait_for_a_stalled_portal():
    # Every request stalls for a minute: after the grace the batches still on the wire
    # are cut off, so close() and the call end at once, and no worker is left waiting.
    with stalled(240.0) as (portal, bx):
        items = [{"fields": {"TITLE": f"deal {i}"}} for i in range(500)]
        thread, box = run_in_thread(lambda: bx.call("crm.deal.add", items))
        started(portal, 2)
        closer, _ = run_in_thread(bx.close)
        closer.join(10.0)
        thread.join(10.0)
        assert not closer.is_alive() and not thread.is_alive(), "waited for the stall"
        error = box.get("error")
        assert isinstance(error, BatchError), box
        assert error.ambiguous and error.not_executed
        assert len(error.results) + len(error.ambiguous) + len(error.not_executed) == 500
        assert workers_alive() == []
        assert bx.transport._in_flight == set()


EXIT_AFTER_CTRL_C = """
import os, signal, sys, threading
from bitrix_threaded import Bitrix
from bitrix_threaded.testing import FakePortal

portal = FakePortal(profile="instant", deals=10, fault_rate=1.0, fault_kinds=("stall",),
                    stall_seconds=120.0).__enter__()
bx = Bitrix(portal.webhook, verbose=False)

stopped = threading.Event()

def interrupt():
    while portal.stats()["requests"] < 2:
        threading.Event().wait(0.01)
    for _ in range(3):  # again if a signal was lost in a weakref callback
        os.kill(os.getpid(), signal.SIGINT)
        if stopped.wait(2.0):
            return

threading.Thread(target=interrupt, daemon=True).start()
try:
    bx.call("crm.deal.update", [{"id": i, "fields": {"TITLE": "x"}} for i in range(1, 200)])
except KeyboardInterrupt as exc:
    stopped.set()
    print("interrupted:", type(exc.__cause__).__name__, flush=True)
# No close(): leaving the interpreter joins the pool's threads.
"""


def test_after_ctrl_c_the_program_exits_without_waiting_for_a_stalled_portal():
    import subprocess
    import sys

    # The stall is two minutes; the program must be gone long before.
    done = subprocess.run([sys.executable, "-c", EXIT_AFTER_CTRL_C], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "interrupted: BatchError" in done.stdout, (done.stdout, done.stderr[-2000:])


def test_an_iterator_dropped_unstarted_lets_go_of_the_client():
    import gc

    with portal_with(deals=10) as portal, client(portal) as bx:
        records = bx.iter_all("crm.deal.list")
        assert len(bx._root._callbacks) == 1
        del records
        gc.collect()
        assert bx._root._callbacks == []
