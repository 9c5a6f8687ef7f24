"""Shared limits against a real Redis server: key layout, the Lua scripts, the
fallback link, sealed OAuth state and the ``Bitrix`` wiring."""
from __future__ import annotations

import logging
import socket
import time

import pytest
from redis_server import import_redis

from bitrix_threaded import Bitrix
from bitrix_threaded.clock import ManualClock, SystemClock
from bitrix_threaded.shared_limits import SharedLimits, SharedLimitsUnavailable
from bitrix_threaded.shared_limits.keys import KeySpace, app_fingerprint, check_bucket_key
from bitrix_threaded.shared_limits.link import DOWN, RedisLink
from bitrix_threaded.shared_limits.seal import seal, unseal

redis = import_redis()

PORTAL = "https://portal.example/rest/1/s3cretc0dehere/"


class RecordingClock(SystemClock):
    """The real clock (Redis decides on its own time), remembering each wait asked for."""

    def __init__(self) -> None:
        self.waits: list = []

    def sleep(self, seconds):
        self.waits.append(seconds)
        super().sleep(seconds)

    def wait(self, seconds, token=None):
        self.waits.append(seconds)
        return super().wait(seconds, token)


def _closed_port_url() -> str:
    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def shared(redis_url):
    limits = SharedLimits(redis_url)
    yield limits
    limits.close()


@pytest.fixture
def keys(shared):
    return shared.keyspace(PORTAL, "webhook", "1", "s3cretc0dehere")


@pytest.fixture
def raw(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# -- keys ------------------------------------------------------------------------------

def test_keys_are_hash_tagged_per_portal_and_name_the_app_by_a_hash():
    keys = KeySpace("portal.example", app_fingerprint("portal.example", "webhook", "1", "code"))
    for key in (keys.bucket, keys.window("crm.deal.list"), keys.leases("crm.deal.list"),
                keys.oauth, keys.oauth_lock):
        assert key.startswith("{bt:portal.example}:")
        assert "code" not in key
    assert len(keys.app) == 16
    assert KeySpace("p", "a", "office-2").bucket == "{bt:p}:bucket:office-2"


def test_bucket_key_is_checked():
    assert check_bucket_key(None) == ""
    with pytest.raises(TypeError):
        check_bucket_key(5)
    with pytest.raises(ValueError):
        check_bucket_key("has {braces}")


# -- bucket ----------------------------------------------------------------------------

def test_bucket_books_a_burst_then_spaces_requests(shared, keys):
    bucket = shared.bucket(keys, capacity=5, rate=2.0, margin=1.0)
    waits = [bucket.reserve() for _ in range(7)]
    assert waits[:4] == [0.0] * 4  # capacity - margin
    # Then one slot per 0.5 s; the booking itself takes a little Redis time.
    assert waits[4] == pytest.approx(0.5, abs=0.05)
    assert waits[6] - waits[5] == pytest.approx(0.5, abs=0.05)


def test_bucket_margin_covers_a_quarter_second_of_dispatch_jitter(shared, keys):
    # Booked together, sent from many processes whenever each gets the CPU.
    bucket = shared.bucket(keys, capacity=50, rate=40.0, margin=1.0)
    assert bucket.margin == 10.0  # 0.25 s * 40/s kept free
    began = time.monotonic()
    waits = [bucket.reserve() for _ in range(60)]
    took = time.monotonic() - began
    # Redis's clock runs on while the slots are booked (on a busy machine the bucket
    # drains a slot every 25 ms meanwhile), so the last wait plus that time is what
    # the burst decides: 40 slots free, the 60th booked 20 intervals after them (a
    # margin of 1 would leave 49 free: 11 intervals).
    assert waits[0] == 0.0
    assert waits[-1] + took == pytest.approx(20 / 40, abs=0.03)


def test_bucket_state_is_integer_microseconds_with_a_ttl(shared, keys, raw):
    shared.bucket(keys, capacity=5, rate=3.0).reserve()
    state = raw.hgetall(keys.bucket)
    assert state[b"iv"] == b"333333"
    assert state[b"tat"].isdigit() and len(state[b"tat"]) >= 16  # no 14-digit rounding
    assert 0 < raw.pttl(keys.bucket)


def test_two_processes_share_one_bucket(redis_url, keys):
    first, second = SharedLimits(redis_url), SharedLimits(redis_url)
    a = first.bucket(keys, capacity=5, rate=1.0, margin=0.0)
    b = second.bucket(keys, capacity=5, rate=1.0, margin=0.0)
    assert [a.reserve(), b.reserve(), a.reserve(), b.reserve()] == [0.0] * 4
    assert b.reserve() > 0.2  # the fifth request waits, whoever sends it
    first.close()
    second.close()


def test_one_wave_of_503s_cuts_the_shared_rate_once(redis_url, keys):
    first, second = SharedLimits(redis_url), SharedLimits(redis_url)
    a = first.bucket(keys, capacity=10, rate=10.0)
    b = second.bucket(keys, capacity=10, rate=10.0)
    a.reserve()
    b.reserve()  # both requests went out under the full rate
    a.penalize()
    b.penalize()  # the same wave: no second cut
    assert a.current_rate == pytest.approx(8.0, rel=1e-3)
    b.reserve()
    b.penalize()  # booked after the cut: a new wave
    assert b.current_rate == pytest.approx(6.4, rel=1e-3)
    a.reward()  # successes raise the shared rate again, 10% each
    a.reserve()
    a.reward()
    assert a.current_rate == pytest.approx(6.4 * 1.1 * 1.1, rel=1e-3)
    b.reserve()
    assert b.current_rate == pytest.approx(6.4 * 1.1 * 1.1, rel=1e-3)
    assert a.level >= 9.0  # a 503 means the portal's bucket is full
    first.close()
    second.close()


def test_scripts_are_reloaded_after_the_server_forgot_them(shared, keys, raw):
    bucket = shared.bucket(keys, capacity=5, rate=10.0)
    bucket.reserve()
    raw.script_flush()
    assert bucket.reserve() == 0.0  # NOSCRIPT, loaded again, run


def test_scripts_survive_a_redis_restart(own_redis_server):
    limits = SharedLimits(own_redis_server.url)
    keys = limits.keyspace(PORTAL, "app")
    bucket = limits.bucket(keys, capacity=5, rate=10.0)
    bucket.reserve()
    own_redis_server.kill()
    own_redis_server.start()
    for _ in range(50):  # the old connection fails once; the next probe reconnects
        limits.link._probe_at = 0.0  # do not wait for the backoff
        bucket.reserve()
        if limits.link.up:
            break
    assert limits.link.up
    assert redis.Redis.from_url(own_redis_server.url).exists(keys.bucket)
    limits.close()


# -- operating window --------------------------------------------------------------------

def test_window_holds_a_method_over_its_threshold_for_every_process(redis_url, keys):
    clock = RecordingClock()
    first = SharedLimits(redis_url, clock=clock)
    second = SharedLimits(redis_url, clock=clock)
    a = first.window(keys, limit=10.0)
    b = second.window(keys, limit=10.0)
    with a.hold({"crm.deal.list": 1}):
        a.record("crm.deal.list", 9.5, reset_in=0.3, server_time=1000.0, cost=0.5)
    ticket = b.acquire({("crm.deal.list", 3): 1})  # the other process waits for the reset
    b.release(ticket)
    assert clock.waits and clock.waits[0] == pytest.approx(0.3, abs=0.1)
    assert sum(clock.waits) < 0.45
    clock.waits.clear()
    b.release(b.acquire({"crm.contact.list": 1}))  # another method is not held
    assert clock.waits == []
    first.close()
    second.close()


def test_window_leases_expire_so_a_dead_process_frees_its_share(redis_url, keys, raw):
    clock = RecordingClock()
    limits = SharedLimits(redis_url, clock=clock)
    window = limits.window(keys, limit=10.0, lease_seconds=0.2, poll_interval=0.05)
    with window.hold({"crm.deal.get": 1}):
        window.record("crm.deal.get", 7.0, reset_in=None, server_time=1.0, cost=1.5)
    window.acquire({"crm.deal.get": 1})  # booked, never released: the process "died"
    assert raw.zcard(keys.leases("crm.deal.get")) == 1
    # 7 + 1.5 in flight + 1.5 of its own would cross 9: poll until the lease expires.
    window.acquire({"crm.deal.get": 1})
    assert clock.waits and all(w == pytest.approx(0.05) for w in clock.waits)
    assert raw.zcard(keys.leases("crm.deal.get")) == 1  # the dead one is gone
    limits.close()


def test_window_shares_a_batch_of_reports_in_one_round_trip(shared, keys, raw):
    window = shared.window(keys, limit=480.0)
    ticket = window.acquire({"crm.deal.list": 50})
    before = shared.round_trips
    for n in range(50):
        window.record("crm.deal.list", 1.0 + n / 100, reset_in=600.0, server_time=100.0 + n,
                      cost=0.02)
    window.release(ticket)
    assert shared.round_trips - before == 1
    state = raw.hgetall(keys.window("crm.deal.list"))
    assert state[b"op"] == b"1490000" and state[b"srv"] == b"149000000"
    assert 0 < raw.pttl(keys.window("crm.deal.list"))


def test_window_takes_a_batch_of_reports_at_once_as_it_takes_them_one_by_one(
        shared, keys, raw):
    from bitrix_threaded.limiter import Report
    window = shared.window(keys, limit=480.0)
    ticket = window.acquire({"crm.deal.list": 50})
    before = shared.round_trips
    window.record_many([Report("crm.deal.list", 1.0 + n / 100, 600.0, 100.0 + n, 0.02)
                        for n in range(50)] + [Report("crm.deal.list", 0.5, 600.0, 90.0)])
    assert shared.round_trips == before  # buffered until the ticket is released
    window.release(ticket)
    assert shared.round_trips - before == 1
    state = raw.hgetall(keys.window("crm.deal.list"))
    assert state[b"op"] == b"1490000" and state[b"srv"] == b"149000000"  # the newest
    assert window.fallback.snapshot()["crm.deal.list"]["operating"] == pytest.approx(1.49)
    with pytest.raises(TypeError):
        window.record_many([("crm.deal.list", 1.0, None)])  # type: ignore[list-item]


def test_window_block_is_shared(redis_url, keys):
    clock = RecordingClock()
    first, second = SharedLimits(redis_url, clock=clock), SharedLimits(redis_url, clock=clock)
    first.window(keys, limit=10.0).block("tasks.task.list", 1.0)
    window = second.window(keys, limit=10.0)
    window.release(window.acquire({"tasks.task.list": 1}))
    # The second process waited for the block, for what was left of it on Redis's
    # clock (less than the whole second by however long the lines above took).
    assert clock.waits and 0 < clock.waits[0] <= 1.0 + 1e-3
    first.close()
    second.close()


# -- fallback ------------------------------------------------------------------------------

def test_unreachable_redis_falls_back_with_one_warning_and_a_quarter_rate(caplog):
    clock = ManualClock()
    limits = SharedLimits(_closed_port_url(), clock=clock)
    keys = limits.keyspace(PORTAL, "app")
    bucket = limits.bucket(keys, capacity=50, rate=2.0)
    window = limits.window(keys)
    with caplog.at_level(logging.WARNING, logger="bitrix_threaded"):
        for _ in range(3):
            bucket.reserve()
            window.release(window.acquire({"crm.deal.list": 1}))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis unavailable" in warnings[0].getMessage()
    assert "127.0.0.1" not in warnings[0].getMessage()
    assert bucket.current_rate == pytest.approx(0.5)
    # The fallback bucket started full: the shared one may have been.
    assert bucket.fallback.level > 45
    assert not limits.link.up


def test_fallback_reprobes_with_backoff():
    clock = ManualClock()
    link = RedisLink(clock=clock)
    calls = []

    def failing():
        calls.append(clock.monotonic())
        raise redis.ConnectionError("refused")

    assert link.call(failing) is DOWN
    assert link.call(failing) is DOWN and len(calls) == 1  # not yet: answered at once
    clock.advance(0.5)
    link.call(failing)
    clock.advance(0.5)
    link.call(failing)  # the next probe is 1 s after the last one
    assert len(calls) == 2
    clock.advance(0.5)
    link.call(failing)
    assert len(calls) == 3
    clock.advance(2.0)
    assert link.call(lambda: "ok") == "ok" and link.up and link.rejoins == 1


def test_on_rejoin_the_shared_bucket_counts_as_full(redis_url):
    clock = ManualClock()
    limits = SharedLimits(redis_url, clock=clock)
    keys = limits.keyspace(PORTAL, "app")
    bucket = limits.bucket(keys, capacity=10, rate=10.0, margin=0.0)
    limits.link._fail(redis.ConnectionError("gone"), probe=False)
    clock.advance(1.0)
    bucket.reserve()  # the probe: Redis is back
    assert limits.link.up
    assert bucket.reserve() > 0.05  # the first shared booking after it counts it full
    limits.close()


def test_fallback_raise_stops_with_a_typed_error():
    limits = SharedLimits(_closed_port_url(), fallback="raise")
    bucket = limits.bucket(limits.keyspace(PORTAL, "app"))
    with pytest.raises(SharedLimitsUnavailable) as caught:
        bucket.reserve()
    assert caught.value.code == "SHARED_LIMITS_UNAVAILABLE"


def test_a_stalled_redis_does_not_stall_the_caller(own_redis_server):
    limits = SharedLimits(own_redis_server.url)
    bucket = limits.bucket(limits.keyspace(PORTAL, "app"), capacity=50, rate=100.0)
    bucket.reserve()
    own_redis_server.pause()
    try:
        bucket.reserve()  # times out once, then books from the fallback
        bucket.reserve()  # answered at once while down
        assert not limits.link.up
    finally:
        own_redis_server.resume()
    limits.close()


# -- sealed token sets -----------------------------------------------------------------------

def test_seal_round_trip_and_rejections():
    payload = {"a": "access-token-value", "r": "refresh-token-value"}
    sealed = seal("client-secret", "ctx", payload)
    assert "access-token-value" not in sealed and "refresh" not in sealed
    assert unseal("client-secret", "ctx", sealed) == payload
    assert unseal("other-secret", "ctx", sealed) is None
    assert unseal("client-secret", "other-ctx", sealed) is None
    tampered = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    assert unseal("client-secret", "ctx", tampered) is None
    assert unseal("client-secret", "ctx", "garbage") is None


def test_two_clients_on_one_redis_refresh_an_expired_token_once(fake_portal_factory,
                                                                redis_url):
    portal = fake_portal_factory(deals=5)
    oauth = portal.oauth
    refreshed = []

    def client():
        return Bitrix(oauth.endpoint, client_id=oauth.client_id,
                      client_secret=oauth.client_secret, refresh_token=oauth.refresh_token,
                      access_token=oauth.access_token, oauth_token_url=oauth.token_url,
                      on_token_refresh=refreshed.append, shared_limits=redis_url,
                      verbose=False)

    with client() as first, client() as second:
        portal.expire_tokens()
        assert first.call("crm.deal.get", {"id": portal.ids("deal")[0]})["ID"]
        assert second.call("crm.deal.get", {"id": portal.ids("deal")[0]})["ID"]
    assert portal.stats()["oauth_refreshes"] == 1
    assert len(refreshed) == 1


# -- Bitrix wiring -----------------------------------------------------------------------------

def test_bitrix_with_shared_limits_url_client_or_environment(fake_portal, redis_url,
                                                             monkeypatch):
    with Bitrix(fake_portal.webhook, shared_limits=redis_url, verbose=False) as bx:
        assert bx.call("crm.deal.list", {"select": ["ID"]})
        assert bx.stats()["shared_limits"]["round_trips"] >= 2
    client = redis.Redis.from_url(redis_url)
    with Bitrix(fake_portal.webhook, shared_limits=client, verbose=False) as bx:
        assert bx.shared_limits.client is client
    monkeypatch.setenv("BITRIX_SHARED_LIMITS", redis_url)
    with Bitrix(fake_portal.webhook, verbose=False, bucket_key="office-2") as bx:
        assert bx.shared_limits is not None
        bx.call("crm.deal.list", {"select": ["ID"]})
    assert any(k.endswith(b":bucket:office-2") for k in client.scan_iter("*"))
    with Bitrix(fake_portal.webhook, verbose=False, shared_limits=False) as bx:
        assert bx.shared_limits is None


def test_bitrix_rejects_bad_shared_limits_arguments(fake_portal, monkeypatch):
    monkeypatch.delenv("BITRIX_SHARED_LIMITS", raising=False)
    with pytest.raises(TypeError):
        Bitrix(fake_portal.webhook, shared_limits=42)
    with pytest.raises(ValueError):
        Bitrix(fake_portal.webhook, shared_limits="http://127.0.0.1:1/")
    with pytest.raises(ValueError):
        Bitrix(fake_portal.webhook, shared_limits="redis://127.0.0.1:1/0",
               shared_limits_fallback="maybe")
    with pytest.raises(ValueError):
        Bitrix(fake_portal.webhook, shared_limits="redis://127.0.0.1:1/0",
               shared_limits_fallback=1.5)
    with pytest.raises(ValueError):
        Bitrix(fake_portal.webhook, bucket_key="office")  # without shared limits


def test_the_redis_password_never_shows(fake_portal):
    url = "redis://:hunter2hunter2@127.0.0.1:1/0"
    with Bitrix(fake_portal.webhook, shared_limits=url, verbose=False) as bx:
        assert "hunter2" not in repr(bx.shared_limits) and "hunter2" not in repr(bx)


def test_bitrix_finishes_on_the_fallback_when_redis_is_down(fake_portal, caplog):
    with caplog.at_level(logging.WARNING, logger="bitrix_threaded"):
        with Bitrix(fake_portal.webhook, shared_limits=_closed_port_url(),
                    requests_per_second=200, verbose=False) as bx:
            ids = fake_portal.ids("deal")[:120]
            got = bx.call("crm.deal.get", [{"id": i} for i in ids])
    assert [int(r["ID"]) for r in got] == ids
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_bitrix_with_fallback_raise_stops(fake_portal):
    with Bitrix(fake_portal.webhook, shared_limits=_closed_port_url(),
                shared_limits_fallback="raise", verbose=False) as bx:
        with pytest.raises(SharedLimitsUnavailable):
            bx.call("crm.deal.list")


def test_cli_shared_limits_option(fake_portal, redis_url, capsys, monkeypatch):
    from bitrix_threaded.cli import main

    monkeypatch.delenv("BITRIX_SHARED_LIMITS", raising=False)
    deal_id = fake_portal.ids("deal")[0]
    code = main(["call", "crm.deal.get", "--params", f'{{"id": {deal_id}}}',
                 "--webhook", fake_portal.webhook, "--shared-limits", redis_url])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert str(deal_id) in out
    assert any(b":bucket" in k for k in redis.Redis.from_url(redis_url).scan_iter("*"))
    code = main(["call", "crm.deal.get", "--webhook", fake_portal.webhook,
                 "--shared-limits", "http://127.0.0.1:1/"])
    assert code == 2


def test_clients_share_each_methods_operating_window(redis_url):
    # Three clients (as three processes would), each exporting offset pages that
    # together need one and a half times the method's budget in a 1-second window:
    # with a window each they are refused (429); sharing one, never.
    import threading

    from bitrix_threaded.testing import FakePortal

    def run(shared):
        with FakePortal(deals=1000, profile="realistic", operating_limit=0.8,
                        operating_window=1.0, cost_base=0.002, cost_per_record=0.0,
                        cost_per_offset_row=0.00004, cost_per_counted_row=0.0,
                        cost_round_trip=0.001) as portal:
            counts = []

            def job():
                with Bitrix(portal.webhook, verbose=False, operating_time_limit=0.8,
                            batch_size=5, shared_limits=shared) as bx:
                    counts.append(len(bx.get_all("crm.deal.list", {"select": ["ID"]},
                                                 strategy="offset")))

            threads = [threading.Thread(target=job) for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert counts == [1000] * 3
            return portal.stats()

    assert run(False)["rejected_429"] > 0  # the probe
    stats = run(redis_url)
    assert stats["rejected_429"] == 0 and stats["rejected_503"] == 0
    assert stats["operating"]["crm.deal.list"] > 1.2  # more than one window's budget


def test_without_redis_py_shared_limits_says_which_extra_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"bitrix_threaded\[redis\]"):
        SharedLimits("redis://127.0.0.1:1/0")


def test_oauth_refreshes_alone_while_redis_is_down(fake_portal_factory, caplog):
    portal = fake_portal_factory(deals=3)
    oauth = portal.oauth
    portal.expire_tokens()
    with caplog.at_level(logging.WARNING, logger="bitrix_threaded"):
        with Bitrix(oauth.endpoint, client_id=oauth.client_id,
                    client_secret=oauth.client_secret, refresh_token=oauth.refresh_token,
                    access_token=oauth.access_token, oauth_token_url=oauth.token_url,
                    shared_limits=_closed_port_url(), verbose=False) as bx:
            assert bx.call("crm.deal.get", {"id": portal.ids("deal")[0]})["ID"]
    assert portal.stats()["oauth_refreshes"] == 1
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
