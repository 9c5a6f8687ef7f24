"""Bitrix end to end on the fake portal: limits, faults, concurrency, OAuth."""

from __future__ import annotations

import threading

from bitrix_threaded import BatchError, Bitrix, BitrixError, RetryPolicy
from bitrix_threaded.testing import FakePortal

# Backoff timing is tested on a fake clock; here retries only need to happen.
QUICK_RETRIES = RetryPolicy(backoff_base=0.005, backoff_max=0.02)
# The instant portal has no limits unless asked: match them on the client side.
UNLIMITED = {"requests_per_second": 10_000.0, "request_pool_size": 10_000}
SCALE = 0.05  # 20x faster: the bucket drains at 40/s, the window is 30 s long


def scaled_client(portal, **kwargs):
    return Bitrix(portal.webhook, verbose=False, requests_per_second=2.0 / SCALE,
                  operating_time_limit=480 * SCALE, **kwargs)


def test_twenty_threads_add_five_thousand_deals_within_the_limits():
    with FakePortal(profile="instant", limits=True, time_scale=SCALE) as portal, \
            scaled_client(portal) as bx:
        results = {}
        errors = []

        def work(thread):
            try:
                items = [{"fields": {"TITLE": f"t{thread}-{i}"}} for i in range(250)]
                results[thread] = bx.call("crm.deal.add", items)
            except Exception as exc:  # reported below, not swallowed
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        stats = portal.stats()
        assert stats["rejected_503"] == 0
        assert stats["rejected_429"] == 0
        assert portal.count("deal") == 5000
        titles = {int(d["ID"]): d["TITLE"] for d in
                  bx.get_all("crm.deal.list", {"select": ["ID", "TITLE"]})}
        for thread, ids in results.items():
            assert len(ids) == 250
            assert [titles[i] for i in ids] == [f"t{thread}-{i}" for i in range(250)]


def test_reads_complete_correctly_under_ten_percent_faults():
    with FakePortal(deals=3000, profile="instant", fault_rate=0.1,
                    fault_kinds=("error", "disconnect"), seed=5) as portal, \
            Bitrix(portal.webhook, verbose=False, batch_size=5, retry=QUICK_RETRIES,
                   **UNLIMITED) as bx:
        expected = portal.ids("deal")
        for strategy in ("id_ranges", "offset"):
            records = bx.get_all("crm.deal.list", {"select": ["ID"]}, strategy=strategy)
            got = [int(d["ID"]) for d in records]
            assert got == expected
        some = expected[:200]
        fetched = bx.get_by_ID("crm.deal.get", some)
        assert [int(v["ID"]) for v in fetched.values()] == some
        assert sum(portal.stats()["faults"].values()) >= 10


def test_writes_are_never_duplicated_under_faults():
    with FakePortal(profile="instant", fault_rate=0.1, fault_kinds=("error", "disconnect"),
                    seed=7) as portal, \
            Bitrix(portal.webhook, verbose=False, batch_size=10, retry=QUICK_RETRIES,
                   **UNLIMITED) as bx:
        items = [{"fields": {"TITLE": f"w-{i}"}} for i in range(1000)]
        try:
            results = bx.call("crm.deal.add", items)
            confirmed, ambiguous = set(range(1000)), set()
        except BatchError as err:
            confirmed = set(err.results)
            ambiguous = {f.index for f in err.ambiguous}
            failed_clean = {f.index for f in err.failures} - ambiguous
            assert confirmed | ambiguous | failed_clean == set(range(1000))
            assert all(f.code for f in err.failures)
            results = None
        titles = [d["TITLE"] for d in bx.get_all("crm.deal.list", {"select": ["TITLE"]})]
        assert len(titles) == len(set(titles)), "no write happened twice"
        present = {int(t.split("-")[1]) for t in titles}
        assert confirmed <= present
        assert present <= confirmed | ambiguous
        assert portal.stats()["faults"]["disconnect"] + portal.stats()["faults"]["error"] > 0
        if results is not None:
            assert len(results) == 1000


def test_twenty_threads_meeting_an_expired_token_refresh_it_once():
    with FakePortal(deals=50, profile="instant") as portal:
        oauth = portal.oauth
        rotated = []
        with Bitrix(oauth.endpoint, client_id=oauth.client_id,
                    client_secret=oauth.client_secret, refresh_token=oauth.refresh_token,
                    access_token=oauth.access_token, oauth_token_url=oauth.token_url,
                    on_token_refresh=rotated.append, verbose=False) as bx:
            assert bx.call("crm.deal.get", {"ID": portal.ids("deal")[0]})
            portal.expire_tokens()
            barrier = threading.Barrier(20)
            out, errors = [], []

            def work():
                barrier.wait()
                try:
                    out.append(bx.call("crm.deal.list", {"select": ["ID"]}))
                except BitrixError as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=work) for _ in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert not errors and len(out) == 20
        assert portal.stats()["oauth_refreshes"] == 1
        assert len(rotated) == 1


def test_a_method_over_its_operating_limit_waits_while_others_go_on():
    # A budget so small that one batch of offset pages exhausts it: the export must
    # wait for the window to move on (twice or more) and still return every record.
    with FakePortal(deals=400, leads=100, profile="instant", operating_limit=0.5,
                    operating_window=1.0, time_scale=1.0) as portal, \
            Bitrix(portal.webhook, verbose=False, operating_time_limit=0.5,
                   operating_window=1.0) as bx:
        for strategy in ("offset", "id_ranges"):
            records = bx.get_all("crm.deal.list", {"select": ["ID"]}, strategy=strategy)
            got = [int(d["ID"]) for d in records]
            assert got == portal.ids("deal")
        assert bx.window.delay({"crm.lead.list": 1}) == 0, "leads are not"
        assert bx.call("crm.lead.list", {"select": ["ID"]})
        assert portal.stats()["rejected_429"] > 0


def test_callbacks_may_call_the_client_again_without_deadlock():
    with FakePortal(deals=300, profile="instant") as portal, \
            Bitrix(portal.webhook, verbose=False, max_workers=2) as bx:
        seen = []
        for deal in bx.iter_all("crm.deal.list", {"select": ["ID"]}, max_in_flight=2):
            if len(seen) < 3:
                seen.append(bx.call("crm.deal.get", {"ID": deal["ID"]})["ID"])
        assert len(seen) == 3


def test_offset_pages_pace_through_the_operating_window_without_a_refusal():
    # Deep offset pages cost up to 20x the first one and the export needs about
    # twice the budget of its 1-second window: the client must wait for its own
    # time to leave the window, batch by batch, and never be refused.
    with FakePortal(deals=2000, profile="realistic", operating_limit=0.8,
                    operating_window=1.0, cost_base=0.002, cost_per_record=0.0,
                    cost_per_offset_row=0.00004, cost_per_counted_row=0.0,
                    cost_round_trip=0.001) as portal, \
            Bitrix(portal.webhook, verbose=False, operating_time_limit=0.8,
                   batch_size=5) as bx:
        records = bx.get_all("crm.deal.list", {"select": ["ID"]}, strategy="offset")
        assert [int(d["ID"]) for d in records] == portal.ids("deal")
        stats = portal.stats()
        assert stats["operating"]["crm.deal.list"] > 1.2  # more than the budget
        assert stats["rejected_429"] == 0 and stats["rejected_503"] == 0


def test_a_batch_replys_time_reports_are_one_window_transaction(monkeypatch):
    # However many commands a batch carries, its reply's result_time blocks are recorded
    # in one transaction of the window's store.
    with FakePortal(deals=1200, profile="instant") as portal, \
            Bitrix(portal.webhook, verbose=False) as bx:
        window, store = bx.window, bx.window._store
        recording = threading.local()
        transactions = []
        real_transact, real_record_many = store.transact, window.record_many

        def transact(keys, fn):
            if getattr(recording, "on", False):
                transactions.append(list(keys))
            return real_transact(keys, fn)

        def record_many(reports):
            recording.on = True
            try:
                return real_record_many(reports)
            finally:
                recording.on = False

        monkeypatch.setattr(store, "transact", transact)
        monkeypatch.setattr(window, "record_many", record_many)
        records = bx.get_all("crm.deal.list", {"select": ["ID"]}, strategy="offset")
        assert [int(r["ID"]) for r in records] == portal.ids("deal")
        stats = portal.stats()
        assert stats["commands"] >= 24 > stats["requests"]
        assert transactions == [["crm.deal.list"]] * stats["requests"]
        assert window.snapshot()["crm.deal.list"]["operating"] > 0  # the reports arrived
