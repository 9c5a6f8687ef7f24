"""Bitrix at the wire (``responses``): validation, retries, writes, tokens, redaction."""

from __future__ import annotations

import json
import logging
import re
import threading
from urllib.parse import parse_qs, unquote

import pytest
import requests
import responses
from urllib3.exceptions import NewConnectionError

from bitrix_threaded import (
    AuthError,
    BatchError,
    Bitrix,
    BitrixWarning,
    ClientClosed,
    ConnectionFailed,
    ManualClock,
    MethodNotFound,
    OperationTimeLimit,
    RetryPolicy,
    ServerError,
)

TOKEN = "s3cretC0de9"
WEBHOOK = f"https://portal.example.com/rest/7/{TOKEN}/"
REST = "https://portal.example.com/rest/"


def ok(result, **extra):
    return {"result": result, "time": {"start": 1.0, "finish": 1.1, "operating": 0}, **extra}


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def bx(clock):
    with Bitrix(WEBHOOK, verbose=False, clock=clock) as client:
        yield client


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def sent_json(call) -> dict:
    return json.loads(call.request.body)


def batch_reply(request, results, errors=None):
    """A batch envelope answering every label of the request from ``results(label, query)``."""
    body = json.loads(request.body)
    out, errs = {}, {}
    for label, text in body["cmd"].items():
        query = parse_qs(text.split("?", 1)[1]) if "?" in text else {}
        value = results(label, query)
        if isinstance(value, Exception):
            errs[label] = {"error": value.args[0], "error_description": value.args[1]}
        else:
            out[label] = value
    envelope: dict = {"result": {"result": out or [], "result_error": errs or [],
                                 "result_total": [], "result_next": [], "result_time": []},
                      "time": {}}
    return 200, {}, json.dumps(envelope)


# -- validation: before any request ----------------------------------------------------------

@pytest.mark.parametrize("call,exc", [
    (lambda bx: bx.call(123), TypeError),
    (lambda bx: bx.call("crm deal list"), ValueError),
    (lambda bx: bx.call("batch", {}), ValueError),
    (lambda bx: bx.call("crm.deal.list", {"select": "ID"}), TypeError),
    (lambda bx: bx.call("crm.deal.list", {"select": ["ID", 5]}), TypeError),
    (lambda bx: bx.call("crm.deal.list", {"filter": [("ID", 1)]}), TypeError),
    (lambda bx: bx.call("crm.deal.list", {"order": {"ID": "UP"}}), ValueError),
    (lambda bx: bx.call("crm.deal.list", {"start": "10"}), TypeError),
    (lambda bx: bx.call("crm.deal.list", {"start": -5}), ValueError),
    (lambda bx: bx.call("crm.deal.add", {"fields": "x"}), TypeError),
    (lambda bx: bx.call("crm.deal.add", "fields"), TypeError),
    (lambda bx: bx.call("crm.deal.add", [{"fields": {}}, "x"]), TypeError),
    (lambda bx: bx.call("crm.deal.add", [{"fields": {"X": object()}}]), TypeError),
    (lambda bx: bx.call("crm.deal.get", [1, 2]), TypeError),
    (lambda bx: bx.call("crm.deal.get", {"ID": 1}, raw="yes"), TypeError),
    (lambda bx: bx.call("task.checklistitem.add", [1, object()], raw=True), TypeError),
    (lambda bx: bx.call("crm.deal.get", "ID=1", raw=True), TypeError),
    (lambda bx: bx.get_by_ID("crm.deal.get", "123"), TypeError),
    (lambda bx: bx.get_by_ID("crm.deal.get", [1, None]), TypeError),
    (lambda bx: bx.get_by_ID("crm.deal.get", [1, "abc"]), ValueError),
    (lambda bx: bx.get_by_ID("crm.deal.get", [True]), TypeError),
    (lambda bx: bx.call_batch([]), TypeError),
    (lambda bx: bx.call_batch({"cmd": {}}), TypeError),
    (lambda bx: bx.call_batch({"cmd": {"a": 5}}), TypeError),
    (lambda bx: bx.call_batch({"cmd": {"a": "crm.deal.get"}, "extra": 1}), ValueError),
    (lambda bx: bx.call_batch({"halt": 2, "cmd": {"a": "crm.deal.get"}}), ValueError),
    (lambda bx: bx.call_batch({"cmd": {f"c{i}": "user.get" for i in range(51)}}), ValueError),
    (lambda bx: bx.get_all("crm.deal.list", {"filter": "x"}), TypeError),
    (lambda bx: bx.get_all("crm.deal.list", strategy="fastest"), ValueError),
    (lambda bx: bx.get_all("crm.deal.list", strategy="id_list"), ValueError),
    (lambda bx: bx.get_all("crm.deal.list", {"order": {"TITLE": "ASC"}},
                           strategy="id_ranges"), ValueError),
    (lambda bx: bx.get_all("crm.address.list", strategy="id_ranges"), ValueError),
    (lambda bx: bx.iter_all("crm.deal.list", max_in_flight=0), ValueError),
    (lambda bx: bx.slow(0).__enter__(), ValueError),
])
def test_bad_input_is_refused_before_any_request(bx, mock, call, exc):
    with pytest.raises(exc):
        call(bx)
    assert len(mock.calls) == 0


@pytest.mark.parametrize("kwargs,exc", [
    ({"batch_size": 0}, ValueError),
    ({"batch_size": 51}, ValueError),
    ({"requests_per_second": 0}, ValueError),
    ({"request_pool_size": "50"}, TypeError),
    ({"verbose": "no"}, TypeError),
    ({"max_workers": 0}, ValueError),
    ({"operating_window": 0}, ValueError),
    ({"operating_window": "600"}, TypeError),
    ({"operating_time_limit": -1}, ValueError),
    ({"ssl": 1.5}, TypeError),
    ({"client_id": "a"}, ValueError),
    ({"token_func": lambda: "t", "client_id": "a", "client_secret": "b",
      "refresh_token": "c"}, ValueError),
])
def test_bad_settings_are_refused(kwargs, exc):
    with pytest.raises(exc):
        Bitrix(WEBHOOK, **kwargs)


@pytest.mark.parametrize("url", [
    "portal.example.com/rest/1/abc/", "https://portal.example.com/rest/abc/",
    "ftp://portal.example.com/rest/1/abc/", "https://portal.example.com/rest/1/abc/?x=1",
])
def test_malformed_webhooks_are_refused_without_echoing_the_secret(url):
    with pytest.raises(ValueError) as info:
        Bitrix(url)
    assert "abc" not in str(info.value)


def test_known_traps_warn(bx, mock):
    mock.post(WEBHOOK + "crm.deal.list", json=ok([]))
    with pytest.warns(BitrixWarning, match="None"):
        bx.call("crm.deal.list", {"filter": {"UF_X": None}})
    with pytest.warns(BitrixWarning, match="limit"):
        bx.call("crm.deal.list", {"limit": 10})


# -- encoding: the first page and batch pages mean the same ----------------------------------

def test_booleans_and_none_are_sent_alike_as_json_and_inside_batches(bx, mock):
    mock.post(WEBHOOK + "crm.deal.list", json=ok([]))
    mock.add_callback(responses.POST, WEBHOOK + "batch",
                      callback=lambda r: batch_reply(r, lambda label, q: []))
    params = {"filter": {"CLOSED": True, "OPENED": False, "=COMMENTS": None}}
    with pytest.warns(BitrixWarning):
        bx.call("crm.deal.list", params)
        bx.call("crm.deal.list", [params, params])
    plain = sent_json(mock.calls[0])
    assert plain["filter"] == {"CLOSED": 1, "OPENED": 0, "=COMMENTS": ""}
    command = sent_json(mock.calls[1])["cmd"]["c0"]
    query = unquote(command.split("?", 1)[1])
    assert "filter[CLOSED]=1" in query
    assert "filter[OPENED]=0" in query
    assert "filter[=COMMENTS]=" in query
    assert "True" not in command and "None" not in command


def test_labels_never_look_like_list_indices(bx, mock):
    mock.add_callback(responses.POST, WEBHOOK + "batch",
                      callback=lambda r: batch_reply(r, lambda label, q: {"ID": q["ID"][0]}))
    bx.call("crm.deal.get", [{"ID": i} for i in range(3)])
    labels = list(sent_json(mock.calls[0])["cmd"])
    assert not any(label.isdigit() for label in labels)


# -- results ---------------------------------------------------------------------------------

def test_a_list_call_is_split_into_batches_and_returned_in_input_order(bx, mock):
    mock.add_callback(responses.POST, WEBHOOK + "batch",
                      callback=lambda r: batch_reply(r, lambda label, q: int(q["ID"][0]) * 10))
    result = bx.call("crm.deal.get", [{"ID": i} for i in range(120)])
    assert result == tuple(i * 10 for i in range(120))
    sizes = sorted(len(sent_json(c)["cmd"]) for c in mock.calls)
    assert sizes == [20, 50, 50]


def test_get_by_id_keys_results_by_id_in_input_order(bx, mock):
    mock.add_callback(responses.POST, WEBHOOK + "batch",
                      callback=lambda r: batch_reply(r, lambda label, q: {"ID": q["ID"][0]}))
    result = bx.get_by_ID("crm.deal.get", [5, 3, "9", 5])
    assert list(result) == [5, 3, "9"]
    assert result[3] == {"ID": "3"}


def test_raw_call_returns_the_envelope_and_sends_params_unchanged(bx, mock):
    envelope = ok([{"ID": "1"}], total=1)
    mock.post(WEBHOOK + "crm.deal.list", json=envelope)
    assert bx.call("crm.deal.list", {"filter": {"X": True}}, raw=True) == envelope
    assert sent_json(mock.calls[0]) == {"filter": {"X": True}}


def test_a_failing_command_reports_label_method_code_and_keeps_the_rest(bx, mock):
    def answer(label, q):
        if q["ID"][0] == "2":
            return Exception("NOT_FOUND", "Item not found")
        return {"ID": q["ID"][0]}
    mock.add_callback(responses.POST, WEBHOOK + "batch", callback=lambda r: batch_reply(r, answer))
    with pytest.raises(BatchError) as info:
        bx.call("crm.deal.get", [{"ID": i} for i in range(4)])
    err = info.value
    assert [(f.index, f.label, f.method, f.code) for f in err.failures] == [
        (2, "c2", "crm.deal.get", "NOT_FOUND")]
    assert err.results == {0: {"ID": "0"}, 1: {"ID": "1"}, 3: {"ID": "3"}}
    assert "Item not found" in str(err)


def test_non_json_reply_is_a_clear_error_with_status_and_snippet(bx, mock):
    # A gateway's HTML page is a server-side failure: ServerError, with the snippet.
    mock.post(WEBHOOK + "crm.deal.get", body="<html>502 Bad Gateway " + TOKEN + "</html>",
              status=502)
    with pytest.raises(ServerError) as info:
        bx.call("crm.deal.get", {"ID": 1})
    err = info.value
    assert err.status == 502
    assert "Bad Gateway" in err.snippet
    assert TOKEN not in err.snippet and TOKEN not in str(err)


def test_server_errors_become_typed_exceptions_with_method(bx, mock):
    mock.post(WEBHOOK + "crm.foo.bar", status=404,
              json={"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"})
    with pytest.raises(MethodNotFound) as info:
        bx.call("crm.foo.bar")
    assert (info.value.code, info.value.status, info.value.method) == (
        "ERROR_METHOD_NOT_FOUND", 404, "crm.foo.bar")


# -- retries ---------------------------------------------------------------------------------

LIMIT = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
INTERNAL = {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}


def test_query_limit_is_retried_for_reads_and_writes_and_slows_down(bx, mock, clock):
    for method in ("crm.deal.get", "crm.deal.add"):
        mock.post(WEBHOOK + method, status=503, json=LIMIT)
        mock.post(WEBHOOK + method, json=ok(42))
    rate = bx.bucket.current_rate
    assert bx.call("crm.deal.get", {"ID": 1}) == 42
    assert bx.bucket.current_rate < rate
    assert bx.call("crm.deal.add", {"fields": {"TITLE": "x"}}) == 42
    assert len(mock.calls) == 4
    assert clock.sleeps, "the retry waited (on the fake clock)"


def test_server_error_is_retried_for_reads_but_raised_for_writes(bx, mock):
    mock.post(WEBHOOK + "crm.deal.get", status=500, json=INTERNAL)
    mock.post(WEBHOOK + "crm.deal.get", json=ok({"ID": "1"}))
    assert bx.call("crm.deal.get", {"ID": 1}) == {"ID": "1"}
    mock.post(WEBHOOK + "crm.deal.add", status=500, json=INTERNAL)
    mock.post(WEBHOOK + "crm.deal.add", json=ok(7))
    with pytest.raises(ServerError):
        bx.call("crm.deal.add", {"fields": {}})
    assert [c.request.url.rsplit("/", 1)[1] for c in mock.calls].count("crm.deal.add") == 1


def test_a_dropped_connection_is_retried_for_reads_only(bx, mock):
    dropped = requests.exceptions.ConnectionError(f"Connection aborted {WEBHOOK}")
    mock.post(WEBHOOK + "crm.deal.get", body=dropped)
    mock.post(WEBHOOK + "crm.deal.get", json=ok(1))
    assert bx.call("crm.deal.get", {"ID": 1}) == 1
    mock.post(WEBHOOK + "crm.deal.update", body=dropped)
    with pytest.raises(ConnectionFailed) as info:
        bx.call("crm.deal.update", {"ID": 1, "fields": {}})
    assert info.value.executed is None
    assert TOKEN not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_a_refused_connection_is_retried_even_for_writes(bx, mock):
    refused = requests.exceptions.ConnectionError(
        NewConnectionError(None, "Failed to establish a new connection: refused"))
    mock.post(WEBHOOK + "crm.deal.add", body=refused)
    mock.post(WEBHOOK + "crm.deal.add", json=ok(9))
    assert bx.call("crm.deal.add", {"fields": {}}) == 9


def test_an_ambiguous_write_batch_is_reported_not_repeated(bx, mock):
    mock.post(WEBHOOK + "batch", body=requests.exceptions.ConnectionError("Connection aborted"))
    with pytest.raises(BatchError) as info:
        bx.call("crm.deal.add", [{"fields": {"TITLE": str(i)}} for i in range(3)])
    assert len(mock.calls) == 1
    assert len(info.value.ambiguous) == 3


def test_retries_are_bounded(clock, mock):
    with Bitrix(WEBHOOK, verbose=False, clock=clock, retry=RetryPolicy(max_attempts=3)) as bx:
        mock.post(WEBHOOK + "crm.deal.get", status=500, json=INTERNAL)
        with pytest.raises(ServerError):
            bx.call("crm.deal.get", {"ID": 1})
    assert len(mock.calls) == 3


def test_operation_time_limit_blocks_only_that_method_until_reset(bx, mock, clock):
    blocked = {"error": "OPERATION_TIME_LIMIT",
               "error_description": "Method is blocked due to operation time limit.",
               "time": {"finish": 1000.0, "operating_reset_at": 1030.0, "operating": 500}}
    mock.post(WEBHOOK + "crm.deal.list", status=429, json=blocked)
    mock.post(WEBHOOK + "crm.deal.list", json=ok([]))
    mock.post(WEBHOOK + "crm.lead.list", json=ok(["lead"]))
    before = clock.monotonic()
    assert bx.call("crm.deal.list", {}) == []
    assert clock.monotonic() - before >= 30
    assert bx.call("crm.lead.list", {}) == ["lead"]


def test_time_figures_the_client_cannot_use_are_left_out_not_raised(bx, mock):
    # NaN (which the standard library reads), a negative duration, a number past any
    # float: the reply's result stands, and the window learns nothing from those figures.
    mock.post(WEBHOOK + "crm.deal.list", body='{"result": ["deal"], "time": {"start": 1,'
              ' "finish": 2, "operating": NaN, "processing": -0.5}}')
    mock.post(WEBHOOK + "batch", body='{"result": {"result": {"c0": 1, "c1": 2}, '
              '"result_error": [], "result_total": [], "result_next": [], "result_time": '
              '{"c0": {"start": 1, "finish": 2, "operating": ' + "9" * 400 + '}, "c1": '
              '{"start": 1, "finish": 2, "operating": -3, "processing": Infinity}}}, '
              '"time": {"start": 1, "finish": 2}}')
    assert bx.call("crm.deal.list", {}) == ["deal"]
    assert bx.call("crm.deal.get", [{"ID": 1}, {"ID": 2}]) == (1, 2)
    assert bx.window.snapshot().get("crm.deal.list", {}).get("operating", 0.0) == 0.0
    assert bx.window.snapshot().get("crm.deal.get", {}).get("operating", 0.0) == 0.0


def test_blocked_commands_inside_a_batch_are_sent_again(bx, mock):
    state = {"round": 0}

    def answer(request):
        state["round"] += 1
        first = state["round"] == 1

        def result(label, q):
            if first and q["ID"][0] in ("1", "2"):
                return Exception("OPERATION_TIME_LIMIT", "Method is blocked")
            return int(q["ID"][0])
        return batch_reply(request, result)
    mock.add_callback(responses.POST, WEBHOOK + "batch", callback=answer)
    assert bx.call("crm.deal.update", [{"ID": i, "fields": {}} for i in range(4)]) == (0, 1, 2, 3)
    second = sent_json(mock.calls[1])["cmd"]
    assert len(second) == 2


def test_a_429_exhausting_its_budget_raises(clock, mock):
    with Bitrix(WEBHOOK, verbose=False, clock=clock,
                retry=RetryPolicy(limit_attempts=2)) as bx:
        mock.post(WEBHOOK + "crm.deal.get", status=429,
                  json={"error": "OPERATION_TIME_LIMIT", "error_description": "blocked"})
        with pytest.raises(OperationTimeLimit):
            bx.call("crm.deal.get", {"ID": 1})
    assert len(mock.calls) == 3


# -- tokens ----------------------------------------------------------------------------------

EXPIRED = {"error": "expired_token", "error_description": "The access token provided has expired"}


def test_token_func_is_called_again_once_when_the_token_expires(clock, mock):
    tokens = iter(["tok-AAAA-1", "tok-BBBB-2", "tok-CCCC-3"])
    with Bitrix(REST, token_func=lambda: next(tokens), verbose=False, clock=clock) as bx:
        mock.post(REST + "user.current", status=401, json=EXPIRED)
        mock.post(REST + "user.current", json=ok({"ID": "1"}))
        assert bx.call("user.current") == {"ID": "1"}
        assert [sent_json(c)["auth"] for c in mock.calls] == ["tok-AAAA-1", "tok-BBBB-2"]
        assert "tok-" not in repr(bx)


def test_a_token_that_keeps_expiring_ends_in_an_auth_error(clock, mock):
    with Bitrix(REST, token_func=lambda: "tok-same-1", verbose=False, clock=clock) as bx:
        mock.post(REST + "user.current", status=401, json=EXPIRED)
        with pytest.raises(AuthError):
            bx.call("user.current")
    assert len(mock.calls) == 2


def test_oauth_refresh_rotates_tokens_and_reports_them(clock, mock):
    token_url = "https://oauth.example.com/oauth/token/"
    seen = []
    mock.get(token_url, json={"access_token": "acc-NEW-111", "refresh_token": "ref-NEW-222",
                              "expires_in": 3600, "client_endpoint": REST})
    mock.post(REST + "user.current", status=401, json=EXPIRED)
    mock.post(REST + "user.current", json=ok({"ID": "1"}))
    with Bitrix(REST, client_id="app.1", client_secret="sec-XYZ-999",
                refresh_token="ref-OLD-000", access_token="acc-OLD-000",
                oauth_token_url=token_url, on_token_refresh=seen.append,
                verbose=False, clock=clock) as bx:
        assert bx.call("user.current") == {"ID": "1"}
        assert sent_json(mock.calls[0])["auth"] == "acc-OLD-000"
        assert sent_json(mock.calls[2])["auth"] == "acc-NEW-111"
        query = parse_qs(mock.calls[1].request.url.split("?", 1)[1])
        assert query["refresh_token"] == ["ref-OLD-000"]
        assert query["grant_type"] == ["refresh_token"]
        assert [t.refresh_token for t in seen] == ["ref-NEW-222"]
        for text in (repr(bx), repr(bx.credentials), repr(seen[0])):
            assert "NEW" not in text and "OLD" not in text and "XYZ" not in text


def test_concurrent_expiries_cause_one_renewal(clock, mock):
    calls = []
    lock = threading.Lock()

    def token_func():
        with lock:
            calls.append(1)
            return f"tok-gen-{len(calls)}"

    def answer(request):
        token = json.loads(request.body)["auth"]
        if token == "tok-gen-1":
            return 401, {}, json.dumps(EXPIRED)
        return 200, {}, json.dumps(ok(token))

    mock.add_callback(responses.POST, REST + "user.current", callback=answer)
    with Bitrix(REST, token_func=token_func, verbose=False, clock=clock) as bx:
        bx.call("user.current")  # first token fetched, expired, renewed once
        results = []
        threads = [threading.Thread(target=lambda: results.append(bx.call("user.current")))
                   for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == ["tok-gen-2"] * 10
    assert len(calls) == 2


# -- secrets ---------------------------------------------------------------------------------

def test_no_secret_in_logs_or_errors(bx, mock, caplog):
    caplog.set_level(logging.DEBUG, logger="bitrix_threaded")
    mock.post(WEBHOOK + "crm.deal.get", json=ok(1))
    mock.post(WEBHOOK + "crm.deal.add",
              body=requests.exceptions.ConnectionError(f"HTTPSConnectionPool: {WEBHOOK}x"))
    bx.call("crm.deal.get", {"ID": 1})
    with pytest.raises(ConnectionFailed) as info:
        bx.call("crm.deal.add", {"fields": {}})
    assert caplog.records, "DEBUG lines are logged"
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)
    assert TOKEN not in repr(bx)


# -- concurrency -----------------------------------------------------------------------------

def test_slow_caps_concurrency_and_restores_it_after_an_exception(bx):
    full = bx.gate.effective_limit
    with pytest.raises(RuntimeError):
        with bx.slow(2):
            assert bx.gate.effective_limit == 2
            raise RuntimeError("boom")
    assert bx.gate.effective_limit == full


def test_close_stops_further_calls(clock, mock):
    bx = Bitrix(WEBHOOK, verbose=False, clock=clock)
    mock.post(WEBHOOK + "crm.deal.get", json=ok(1))
    assert bx.call("crm.deal.get", {"ID": 1}) == 1
    bx.close()
    bx.close()
    assert bx.closed
    for attempt in (lambda: bx.call("crm.deal.get", {"ID": 1}),
                    lambda: bx.call("crm.deal.get", [{"ID": 1}, {"ID": 2}]),
                    lambda: bx.get_all("crm.deal.list"),
                    lambda: bx.call_batch({"cmd": {"a": "crm.deal.get?ID=1"}}),
                    lambda: bx.iter_all("crm.deal.list")):
        with pytest.raises(ClientClosed):
            attempt()
    assert len(mock.calls) == 1


def test_many_threads_share_one_client(bx, mock):
    mock.add_callback(responses.POST, re.compile(re.escape(WEBHOOK) + "batch"),
                      callback=lambda r: batch_reply(r, lambda label, q: int(q["ID"][0])))
    out = {}

    def work(n):
        out[n] = bx.call("crm.deal.get", [{"ID": n * 100 + i} for i in range(60)])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(out[n] == tuple(n * 100 + i for i in range(60)) for n in range(8))


def test_urllib3_request_lines_do_not_show_the_webhook_token(caplog):
    from bitrix_threaded.testing import FakePortal

    caplog.set_level(logging.DEBUG, logger="urllib3")
    with FakePortal(deals=5) as portal, Bitrix(portal.webhook, verbose=False) as bx:
        bx.call("crm.deal.list", {"select": ["ID"]})
        token = portal.webhook.rstrip("/").rsplit("/", 1)[1]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("/rest/1/***/crm.deal.list" in line for line in lines)
    assert not any(token in line for line in lines)


def test_a_command_the_server_keeps_dropping_fails_after_its_budget(clock, mock):
    def answer(request):
        status, headers, body = batch_reply(request, lambda label, q: int(q["ID"][0]))
        envelope = json.loads(body)
        del envelope["result"]["result"]["c1"]  # neither a result nor an error
        return status, headers, json.dumps(envelope)

    mock.add_callback(responses.POST, WEBHOOK + "batch", callback=answer)
    with Bitrix(WEBHOOK, verbose=False, clock=clock, retry=RetryPolicy(max_attempts=3)) as bx:
        with pytest.raises(BatchError) as info:
            bx.call("crm.deal.get", [{"ID": 0}, {"ID": 1}])
    assert [(f.index, f.code) for f in info.value.failures] == [(1, "NOT_EXECUTED")]
    assert info.value.results == {0: 0}
    assert len(mock.calls) == 3


def test_a_rejected_webhook_does_not_break_later_logging(caplog):
    from bitrix_threaded.testing import FakePortal

    caplog.set_level(logging.DEBUG, logger="urllib3")
    with pytest.raises(ValueError):
        Bitrix("https://portal.example.com/rest/abc/")
    with FakePortal(deals=5) as portal, Bitrix(portal.webhook, verbose=False) as bx:
        assert bx.call("crm.deal.list", {"select": ["ID"]})
