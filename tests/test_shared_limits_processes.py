"""Shared limits across spawned processes: one fake portal at standard limits
(time-scaled), one real Redis, eight processes with a client each."""
from __future__ import annotations

import base64
import threading
import urllib.parse

from redis_server import import_redis
from shared_workers import run_processes

redis = import_redis()

TIME_SCALE = 0.05  # the portal's bucket drains 2 / 0.05 = 40 requests/s
PROCESSES = 8
GETS = 300  # crm.deal.get commands per process: 6 batches
ADDS = 300  # crm.deal.add commands per process: 6 batches
DEALS = 2400


def _portal(factory):
    portal = factory(deals=DEALS, limits=True, time_scale=TIME_SCALE)
    arrivals = []
    lock = threading.Lock()
    stats = portal._stats
    original = stats.request_started

    def request_started():
        import time

        with lock:
            arrivals.append(time.monotonic())
        original()

    stats.request_started = request_started
    return portal, arrivals


def _settings(portal, redis_url, **extra):
    ids = portal.ids("deal")

    def settings_for(i):
        mine = ids[i * GETS:(i + 1) * GETS]
        return dict(webhook=portal.webhook, redis=redis_url, rate=2.0 / TIME_SCALE,
                    ids=mine, adds=ADDS, **extra)
    return settings_for, ids


def _replay_max_level(arrivals, capacity=50.0, rate=2.0 / TIME_SCALE):
    """The highest level a leaky bucket reaches when fed the arrival times."""
    level, last, top = 0.0, None, 0.0
    for at in sorted(arrivals):
        if last is not None:
            level = max(0.0, level - (at - last) * rate)
        level += 1.0
        last = at
        top = max(top, level)
    return top


def _check_exact(results, portal, ids):
    for result in results:
        assert "error" not in result, result.get("traceback")
        i = result["index"]
        assert result["got"] == ids[i * GETS:(i + 1) * GETS]
        assert result["added"] == ADDS
    assert portal.count("deal") == DEALS + PROCESSES * ADDS  # nothing lost or doubled


def test_eight_processes_share_one_bucket(fake_portal_factory, redis_url):
    portal, arrivals = _portal(fake_portal_factory)
    settings_for, ids = _settings(portal, redis_url)
    results = run_processes(PROCESSES, settings_for)
    stats = portal.stats()
    _check_exact(results, portal, ids)
    assert not any(r["warnings"] for r in results)
    assert stats["rejected_503"] == 0
    assert stats["rejected_429"] == 0
    assert _replay_max_level(arrivals) <= 50.0 + 1e-6
    assert stats["requests"] == PROCESSES * (GETS + ADDS) // 50


def test_without_shared_limits_the_processes_overrun_the_portal(fake_portal_factory):
    # The probe: the same run with a bucket per process is rejected by the portal.
    portal, _ = _portal(fake_portal_factory)
    settings_for, ids = _settings(portal, None)
    results = run_processes(PROCESSES, settings_for)
    _check_exact(results, portal, ids)  # retried until done
    assert portal.stats()["rejected_503"] > 0


def test_redis_killed_mid_run_every_process_finishes_on_the_fallback(
        fake_portal_factory, own_redis_server):
    portal, arrivals = _portal(fake_portal_factory)
    settings_for, ids = _settings(portal, own_redis_server.url)
    stats = portal._stats
    counted = stats.request_started
    killed = []

    def request_started():
        counted()
        # On the portal's side, as the 10th request arrives: no process can have
        # finished its 12 requests by then, so every one meets the dead Redis.
        if len(arrivals) == 10 and not killed:
            killed.append(True)
            own_redis_server.kill()

    stats.request_started = request_started
    results = run_processes(PROCESSES, settings_for)
    assert killed
    _check_exact(results, portal, ids)
    for result in results:
        fallback = [m for m in result["warnings"] if "Redis unavailable" in m]
        assert len(fallback) == 1, result["warnings"]
        assert result["outages"] == 1
    # The fallback shares (a quarter of the rate each) may overrun the portal for a
    # while; rejected requests were retried and counted once above.


def test_eight_processes_meeting_an_expired_token_refresh_it_once(fake_portal_factory,
                                                                  redis_url):
    portal = fake_portal_factory(deals=400, limits=True, time_scale=TIME_SCALE)
    oauth = portal.oauth
    settings = dict(
        oauth=dict(endpoint=oauth.endpoint, client_id=oauth.client_id,
                   client_secret=oauth.client_secret, refresh_token=oauth.refresh_token,
                   access_token=oauth.access_token, token_url=oauth.token_url),
        redis=redis_url, rate=2.0 / TIME_SCALE, adds=0)
    ids = portal.ids("deal")
    portal.expire_tokens()

    def settings_for(i):
        return dict(settings, ids=ids[i * 50:(i + 1) * 50])

    results = run_processes(PROCESSES, settings_for)
    for result in results:
        assert "error" not in result, result.get("traceback")
        assert result["got"] == ids[result["index"] * 50:(result["index"] + 1) * 50]
    assert portal.stats()["oauth_refreshes"] == 1
    assert sum(r["refreshes"] for r in results) == 1  # on_token_refresh fired once

    # No secret in Redis, in any encoding; every key expires.
    client = redis.Redis.from_url(redis_url)
    secrets = {oauth.client_secret, oauth.refresh_token, oauth.access_token}
    secrets |= set(portal.tokens._access) | set(portal.tokens._refresh)
    _assert_no_secret(client, secrets)


def test_webhook_run_leaves_no_secret_and_only_expiring_keys(fake_portal_factory, redis_url):
    portal = fake_portal_factory(deals=200, limits=True, time_scale=TIME_SCALE)
    ids = portal.ids("deal")
    results = run_processes(2, lambda i: dict(webhook=portal.webhook, redis=redis_url,
                                              rate=2.0 / TIME_SCALE, ids=ids[i::2], adds=5))
    assert all("error" not in r for r in results)
    code = portal.webhook.rstrip("/").rsplit("/", 1)[-1]
    _assert_no_secret(redis.Redis.from_url(redis_url), {code})


def _encodings(secret):
    raw = secret.encode()
    return {raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw), raw.hex().encode(),
            urllib.parse.quote(secret).encode(), base64.b64encode(raw).rstrip(b"=")}


def _assert_no_secret(client, secrets):
    keys = list(client.scan_iter("*"))
    assert keys, "the run stored nothing in Redis"
    needles = set()
    for secret in secrets:
        if len(secret) >= 6:
            needles |= _encodings(secret)
    for key in keys:
        assert client.pttl(key) > 0, f"{key!r} never expires"
        kind = client.type(key)
        if kind == b"hash":
            blobs = [b for pair in client.hgetall(key).items() for b in pair]
        elif kind == b"zset":
            blobs = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"string":
            blobs = [client.get(key)]
        else:
            raise AssertionError(f"unexpected key type {kind!r}")
        for blob in [key] + blobs:
            for needle in needles:
                assert needle not in blob, "a secret is stored in Redis"
