"""AsyncBitrix on the fake portal: the sync client's results and errors, awaited."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading

import pytest

import bitrix_threaded
from bitrix_threaded import (
    AsyncBitrix,
    AsyncRecords,
    BatchError,
    Bitrix,
    BitrixAsync,
    BitrixError,
    ClientClosed,
)

UNLIMITED = {"requests_per_second": 10_000.0, "request_pool_size": 10_000}
REQUEST_ID: contextvars.ContextVar = contextvars.ContextVar("request_id", default=None)


def clients(portal, **kwargs):
    """A sync client and an async one built from the same arguments."""
    options = dict(verbose=False, **UNLIMITED, **kwargs)
    return Bitrix(portal.webhook, **options), AsyncBitrix(portal.webhook, **options)


def outcome(fn, *args, **kwargs):
    """(result, None) or (None, error) of a sync call."""
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:
        return None, exc


async def async_outcome(fn, *args, **kwargs):
    try:
        return await fn(*args, **kwargs), None
    except Exception as exc:
        return None, exc


def same_error(left, right):
    assert type(left) is type(right)
    assert str(left) == str(right)
    if isinstance(left, BitrixError):
        assert (left.code, left.description, left.method, left.status) == (
            right.code, right.description, right.method, right.status)
    if isinstance(left, BatchError):
        assert [(f.index, f.label, f.method, type(f.error), f.error.code)
                for f in left.failures] == [(f.index, f.label, f.method, type(f.error),
                                             f.error.code) for f in right.failures]
        assert left.results == right.results


def test_alias_and_exports():
    assert BitrixAsync is AsyncBitrix
    assert "AsyncBitrix" in bitrix_threaded.__all__
    assert "BitrixAsync" in bitrix_threaded.__all__


def test_every_method_matches_the_sync_client(fake_portal):
    deal_ids = fake_portal.ids("deal")
    missing = max(deal_ids) + 1000
    batch = {"halt": 0, "cmd": {"one": f"crm.deal.get?ID={deal_ids[0]}",
                                "page": ("crm.deal.list", {"select": ["ID", "TITLE"]})}}
    cases = [
        ("get_all", ("crm.deal.list", {"select": ["ID", "TITLE"]}), {}),
        ("get_all", ("crm.deal.list", {"select": ["ID"]}), {"strategy": "offset"}),
        ("get_all", ("crm.deal.list",), {"ids": deal_ids[5:70]}),
        ("get_all", ("tasks.task.list",), {}),
        ("get_by_ID", ("crm.deal.get", deal_ids[:60]), {}),
        ("get_by_ID", ("crm.deal.get", [deal_ids[0], missing]), {}),
        ("call", ("crm.deal.get", {"ID": deal_ids[3]}), {}),
        ("call", ("crm.deal.get", {"ID": missing}), {}),
        ("call", ("crm.deal.fields",), {}),
        ("call", ("crm.deal.get", [{"ID": i} for i in deal_ids[:75]]), {}),
        ("call", ("crm.deal.get", [{"ID": deal_ids[1]}, {"ID": missing}]), {}),
        ("call", ("no.such.method", {}), {}),
        ("call_batch", (batch,), {}),
        ("call_batch", ({"cmd": {"x": f"crm.deal.get?ID={missing}"}},), {}),
        ("list_and_get", ("crm.deal",), {}),
        # misuse: the same TypeError/ValueError, before any request
        ("get_all", ("crm.deal.list",), {"strategy": "bogus"}),
        ("get_by_ID", ("crm.deal.get", "1,2"), {}),
        ("call", ("crm.deal.get", "ID=1"), {}),
        ("call", ("", {}), {}),
        ("call_batch", ({"cmd": {}},), {}),
    ]
    bx, abx = clients(fake_portal)

    async def run_all():
        async with abx:
            return [await async_outcome(getattr(abx, name), *args, **kwargs)
                    for name, args, kwargs in cases]

    with bx:
        expected = [outcome(getattr(bx, name), *args, **kwargs) for name, args, kwargs in cases]
        raw_expected = bx.call("crm.deal.get", {"ID": deal_ids[2]}, raw=True)
        got = asyncio.run(run_all())
    errors = 0
    for (name, args, _), (want, want_error), (have, have_error) in zip(cases, expected, got):
        if want_error is not None:
            errors += 1
            assert have_error is not None, (name, args)
            same_error(want_error, have_error)
        else:
            assert have_error is None, (name, args, have_error)
            assert have == want, (name, args)
    assert errors >= 9
    raw = asyncio.run(_raw(fake_portal, deal_ids[2]))
    assert raw["result"] == raw_expected["result"]
    assert set(raw) == set(raw_expected)


async def _raw(portal, deal_id):
    async with AsyncBitrix(portal.webhook, verbose=False) as abx:
        return await abx.call("crm.deal.get", {"ID": deal_id}, raw=True)


def test_async_for_yields_what_iter_all_yields(fake_portal):
    bx, abx = clients(fake_portal, batch_size=3)

    async def read(**kwargs):
        async with abx.iter_all("crm.deal.list", {"select": ["ID", "TITLE"]}, **kwargs) as it:
            assert isinstance(it, AsyncRecords)
            return [record async for record in it]

    async def both():
        async with abx:
            return await read(), await read(strategy="offset", max_in_flight=2)

    with bx:
        expected = sorted(bx.iter_all("crm.deal.list", {"select": ["ID", "TITLE"]}),
                          key=lambda r: int(r["ID"]))
        first, second = asyncio.run(both())
    for got in (first, second):
        assert sorted(got, key=lambda r: int(r["ID"])) == expected


def test_iter_all_checks_arguments_at_once_and_raises_the_same_errors(fake_portal):
    bx, abx = clients(fake_portal)

    async def main():
        async with abx:
            with pytest.raises(ValueError) as async_error:
                abx.iter_all("crm.deal.list", max_in_flight=0)
            with pytest.raises(TypeError):
                abx.iter_all("crm.deal.list", {"select": "ID"}, strategy=3)
            with pytest.raises(BitrixError) as failed:
                async for _ in abx.iter_all("no.such.list"):
                    pass
            return async_error.value, failed.value

    with bx:
        with pytest.raises(ValueError) as sync_error:
            bx.iter_all("crm.deal.list", max_in_flight=0)
        with pytest.raises(BitrixError) as sync_failed:
            list(bx.iter_all("no.such.list"))
        value_error, failed = asyncio.run(main())
    assert str(value_error) == str(sync_error.value)
    same_error(sync_failed.value, failed)


def test_async_for_applies_backpressure(fake_portal_factory):
    portal = fake_portal_factory(deals=5000)
    # batch_size 2: 100 records per batch, so ~50 batches for the whole export.
    bx = Bitrix(portal.webhook, verbose=False, batch_size=2, **UNLIMITED)
    whole = _requests_for_export(bx, portal)

    async def main():
        abx = AsyncBitrix.from_client(bx)
        records = abx.iter_all("crm.deal.list", {"select": ["ID"]}, max_in_flight=2)
        first = await records.__anext__()
        await _until_quiet(portal)
        paused = portal.stats()["requests"]
        served = portal.stats()["records"]
        await asyncio.sleep(0.2)
        still = portal.stats()["requests"]
        rest = [record async for record in records]
        await abx.aclose()
        return first, paused, served, still, rest

    portal.reset_stats()
    first, paused, served, still, rest = asyncio.run(main())
    bx.close()
    assert still == paused  # nothing fetched while nobody reads
    # Records fetched ahead of the reader: the batch taken by the loop, the one the
    # reader holds, and the plans in flight plus the one being handed over (100
    # records a plan at batch_size 2). Pages of counted pieces may be part-full, so
    # this is bounded in records, not requests.
    assert served <= 100 + 100 + (2 + 1) * 100, (served, paused, whole)
    assert paused < whole / 4, (paused, whole)
    assert whole > 20
    assert len(rest) + 1 == 5000 and "ID" in first


def _requests_for_export(bx, portal):
    portal.reset_stats()
    assert len(bx.get_all("crm.deal.list", {"select": ["ID"]})) == portal.count("deal")
    return portal.stats()["requests"]


async def _until_quiet(portal, rounds=5):
    """Poll until the portal's request count stops moving (and nothing is in flight)."""
    last, quiet = -1, 0
    while quiet < rounds:
        await asyncio.sleep(0.02)
        stats = portal.stats()
        if stats["requests"] == last and stats["in_flight"] == 0:
            quiet += 1
        else:
            last, quiet = stats["requests"], 0


def test_from_client_shares_the_engine_and_leaves_it_open(fake_portal):
    with Bitrix(fake_portal.webhook, verbose=False) as bx:
        abx = AsyncBitrix.from_client(bx)
        assert abx.sync is bx
        assert abx.stats() == bx.stats()

        async def main():
            async with abx:
                return await abx.call("crm.deal.fields")

        assert asyncio.run(main())
        # the facade is closed, the client it wrapped is not
        assert bx.call("crm.deal.fields")
        with pytest.raises(ClientClosed):
            asyncio.run(abx.call("crm.deal.fields"))
    with pytest.raises(TypeError):
        AsyncBitrix.from_client("https://example.invalid/rest/1/x/")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AsyncBitrix.from_client(bx, max_parallel_calls=0)


def test_aclose_closes_an_owned_engine_and_refuses_new_calls(fake_portal):
    abx = AsyncBitrix(fake_portal.webhook, verbose=False)

    async def main():
        await abx.call("crm.deal.fields")
        await abx.aclose()
        await abx.aclose()  # idempotent
        with pytest.raises(ClientClosed):
            await abx.get_all("crm.deal.list")
        with pytest.raises(ClientClosed):
            abx.iter_all("crm.deal.list")

    asyncio.run(main())
    with pytest.raises(Exception):
        abx.sync.call("crm.deal.fields")  # the owned engine was closed too


def test_constructor_takes_the_sync_arguments_and_checks_them(fake_portal):
    with pytest.raises(TypeError):
        AsyncBitrix(fake_portal.webhook, verbose="no")
    with pytest.raises(ValueError):
        AsyncBitrix(fake_portal.webhook, batch_size=51)
    with pytest.raises(TypeError):
        AsyncBitrix(fake_portal.webhook, max_parallel_calls=1.5)
    abx = AsyncBitrix(fake_portal.webhook, verbose=False, batch_size=10,
                      requests_per_second=5, request_pool_size=250)
    assert abx.sync.batch_size == 10 and abx.sync.bucket.capacity == 250
    assert "***" in repr(abx) and repr(abx).startswith("AsyncBitrix(")
    asyncio.run(abx.aclose())


def test_contextvars_reach_the_work(fake_portal):
    seen = []

    class Probe(Bitrix):
        def get_all(self, *args, **kwargs):
            seen.append(("get_all", REQUEST_ID.get(), threading.current_thread().name))
            return super().get_all(*args, **kwargs)

        def iter_all(self, *args, **kwargs):
            records = super().iter_all(*args, **kwargs)

            def reading():
                seen.append(("iter_all", REQUEST_ID.get(), threading.current_thread().name))
                yield from records
            return reading()

    class Capture(logging.Handler):
        def emit(self, record):
            seen.append(("log", REQUEST_ID.get(), threading.current_thread().name))

    handler = Capture(level=logging.DEBUG)
    logger = logging.getLogger("bitrix_threaded")
    with Probe(fake_portal.webhook, verbose=False) as bx:
        abx = AsyncBitrix.from_client(bx)

        async def handle(request_id):
            REQUEST_ID.set(request_id)
            await abx.get_all("crm.deal.list", {"select": ["ID"]})
            async for _ in abx.iter_all("crm.deal.list", {"select": ["ID"]}):
                pass
            with pytest.raises(BitrixError):
                await abx.call("no.such.method")  # logged by the engine as it gives up

        async def main():
            async with abx:
                await asyncio.gather(handle("r1"), handle("r2"))

        logger.addHandler(handler)
        try:
            asyncio.run(main())
        finally:
            logger.removeHandler(handler)
    loop_thread = threading.current_thread().name
    assert sorted(v for kind, v, _ in seen if kind == "get_all") == ["r1", "r2"]
    assert sorted(v for kind, v, _ in seen if kind == "iter_all") == ["r1", "r2"]
    assert {v for kind, v, _ in seen if kind == "log"} >= {"r1", "r2"}
    assert all(name != loop_thread for _, _, name in seen)  # the loop never did the work
    # the library's own threads, never the loop's default executor
    assert all(name.startswith("bitrix_threaded") for _, _, name in seen)


def test_slow_caps_the_shared_engine(fake_portal):
    with Bitrix(fake_portal.webhook, verbose=False) as bx:
        abx = AsyncBitrix.from_client(bx)

        async def main():
            async with abx.slow(2) as same:
                assert same is abx
                assert bx.gate.effective_limit == 2
                assert len(await abx.get_all("crm.deal.list")) == fake_portal.count("deal")
            assert bx.gate.effective_limit > 2
            with pytest.raises(ValueError):
                async with abx.slow(0):
                    pass

        asyncio.run(main())


def test_async_token_func_works_in_both_clients(fake_portal):
    calls = []

    async def token_func():
        await asyncio.sleep(0)
        calls.append(threading.current_thread().name)
        return fake_portal.issue_oauth().access_token

    with Bitrix(fake_portal.endpoint, token_func=token_func, verbose=False) as bx:
        assert len(bx.get_all("crm.deal.list")) == fake_portal.count("deal")

        async def inside_a_running_loop():
            # a sync client called from a loop's thread still gets its token
            return bx.call("crm.deal.fields")

        fake_portal.expire_tokens()
        assert asyncio.run(inside_a_running_loop())

    async def main():
        async with AsyncBitrix(fake_portal.endpoint, token_func=token_func,
                               verbose=False) as abx:
            return await abx.get_all("crm.deal.list")

    assert len(asyncio.run(main())) == fake_portal.count("deal")
    assert len(calls) == 3


def test_async_token_func_failure_is_an_auth_error_without_its_text(fake_portal):
    async def token_func():
        raise RuntimeError("secret-refresh-token-value")

    async def main():
        async with AsyncBitrix(fake_portal.endpoint, token_func=token_func,
                               verbose=False) as abx:
            await abx.call("crm.deal.fields")

    with pytest.raises(bitrix_threaded.AuthError) as failed:
        asyncio.run(main())
    assert "secret-refresh-token-value" not in str(failed.value)
    err = failed.value
    assert err.__cause__ is None
    assert err.__context__ is None or err.__suppress_context__


def test_progress_bars_follow_the_sync_rules(fake_portal, capsys, monkeypatch):
    # Captured stderr is no terminal: force bars on, as BITRIX_THREADED_PROGRESS=1 does.
    monkeypatch.setenv("BITRIX_THREADED_PROGRESS", "1")
    deal_ids = fake_portal.ids("deal")

    def bars(run):
        capsys.readouterr()
        run()
        return capsys.readouterr().err

    with Bitrix(fake_portal.webhook, verbose=True) as bx:
        sync_list = bars(lambda: bx.get_all("crm.deal.list"))
        sync_one = bars(lambda: bx.call("crm.deal.get", {"ID": deal_ids[0]}))

    async def main(verbose):
        async with AsyncBitrix(fake_portal.webhook, verbose=verbose) as abx:
            capsys.readouterr()
            await abx.get_all("crm.deal.list")
            listed = capsys.readouterr().err
            await abx.call("crm.deal.get", {"ID": deal_ids[0]})
            return listed, capsys.readouterr().err

    async_list, async_one = asyncio.run(main(True))
    quiet_list, _ = asyncio.run(main(False))
    assert "crm.deal.list" in sync_list and "crm.deal.list" in async_list
    assert sync_one == async_one == ""
    assert quiet_list == ""
