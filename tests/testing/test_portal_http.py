"""HTTP surface of the fake portal: URL forms, bodies, envelopes, errors, connections."""
from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import requests

from bitrix_threaded.testing import FakePortal


class StoreError(Exception):
    def __init__(self, code, description, status=400, **extra):
        super().__init__(description)
        self.code, self.description, self.status, self.extra = code, description, status, extra


class EchoStore:
    """A stand-in data store: ``echo`` returns its parameters; others misbehave on demand."""

    def __init__(self, barrier=None):
        self.barrier = barrier
        self.calls = []

    def has_method(self, method):
        return method in {"echo", "fail", "crash", "wait", "page"}

    def call(self, method, params):
        self.calls.append((method, params))
        if method == "fail":
            raise StoreError("ERROR_ARGUMENT", "Filter operation not allowed: ?", 400,
                             argument="filter")
        if method == "crash":
            raise RuntimeError("boom")
        if method == "wait":
            self.barrier.wait(timeout=5)
        if method == "page":
            return SimpleNamespace(result=[{"ID": "1"}], total=60, next=50, records=1,
                                   skipped=0, counted=60)
        return SimpleNamespace(result=params, total=None, next=None, records=0, skipped=0,
                               counted=0)

    def ids(self, entity):
        if entity != "deal":
            raise ValueError(entity)
        return [1, 2]

    def count(self, entity):
        return len(self.ids(entity))

    def mutate(self, rng, inserts=1, deletes=1):
        return [10] * inserts, [1] * deletes


@pytest.fixture
def echo_portal():
    with FakePortal(store=EchoStore()) as portal:
        yield portal


# -- URL forms and methods ---------------------------------------------------

@pytest.mark.parametrize("suffix", ["echo", "echo/", "echo.json", "echo.json/", "ECHO",
                                    "Echo.JSON"])
def test_webhook_url_forms_and_case_insensitive_methods(echo_portal, suffix):
    for send in (requests.get, requests.post):
        reply = send(echo_portal.webhook + suffix, params={"x": "1"})
        assert reply.status_code == 200
        assert reply.json()["result"] == {"x": "1"}


def test_success_envelope_headers_and_time_block(echo_portal):
    reply = requests.get(echo_portal.webhook + "page")
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    assert int(reply.headers["Content-Length"]) == len(reply.content)
    body = reply.json()
    assert list(body) == ["result", "total", "next", "time"]
    assert body["total"] == 60 and body["next"] == 50
    assert list(body["time"]) == ["start", "finish", "duration", "processing", "date_start",
                                  "date_finish", "operating_reset_at", "operating"]
    assert isinstance(body["time"]["operating_reset_at"], int)
    assert body["time"]["date_start"][10] == "T"
    assert list(requests.get(echo_portal.webhook + "echo").json()) == ["result", "time"]


def test_unknown_method_is_404_before_any_auth_check(echo_portal):
    expected = {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
    for url in (echo_portal.webhook + "no.such", echo_portal.url + "/rest/1/wrong/no.such/",
                echo_portal.url + "/rest/no.such", echo_portal.url + "/rest/",
                echo_portal.url + "/rest/a/b/"):
        reply = requests.post(url)
        assert (reply.status_code, reply.json()) == (404, expected), url


def test_bad_webhook_credentials_and_missing_auth_are_401(echo_portal):
    token = echo_portal.webhook.rstrip("/").rsplit("/", 1)[1]
    for url in (f"{echo_portal.url}/rest/1/wrongtoken/echo",
                f"{echo_portal.url}/rest/2/{token}/echo"):
        reply = requests.get(url)
        assert reply.status_code == 401
        assert reply.json() == {"error": "INVALID_CREDENTIALS",
                                "error_description": "Invalid request credentials"}
    reply = requests.get(echo_portal.url + "/rest/echo")
    assert reply.status_code == 401
    assert reply.json()["error"] == "NO_AUTH_FOUND"


def test_unknown_paths_are_404_json(echo_portal):
    reply = requests.get(echo_portal.url + "/elsewhere")
    assert reply.status_code == 404 and reply.json()["error"] == "NOT_FOUND"


# -- parameters ----------------------------------------------------------------

def test_json_body_keeps_types(echo_portal):
    params = {"filter": {">ID": 5, "ACTIVE": True}, "select": ["ID"], "start": -1, "n": None}
    assert requests.post(echo_portal.webhook + "echo", json=params).json()["result"] == params


def test_invalid_json_body_is_silently_empty(echo_portal):
    reply = requests.post(echo_portal.webhook + "echo?q=1", data=b"{not json",
                          headers={"Content-Type": "application/json"})
    assert reply.status_code == 200 and reply.json()["result"] == {"q": "1"}


def test_form_body_is_php_parsed_and_wins_over_query_at_top_level(echo_portal):
    reply = requests.post(echo_portal.webhook + "echo?a=query&filter[X]=1&only=q",
                          data={"a": "body", "filter[>ID]": "5", "select[]": ["ID", "TITLE"]})
    assert reply.json()["result"] == {"a": "body", "filter": {">ID": "5"}, "only": "q",
                                      "select": ["ID", "TITLE"]}


def test_body_of_other_content_types_is_parsed_like_a_query(echo_portal):
    reply = requests.post(echo_portal.webhook + "echo", data=b"a[b]=1&c=2",
                          headers={"Content-Type": "text/plain"})
    assert reply.json()["result"] == {"a": {"b": "1"}, "c": "2"}


def test_multipart_form_fields_are_parameters_and_files_are_not(echo_portal):
    reply = requests.post(echo_portal.webhook + "echo", data={"fields[TITLE]": "Привет"},
                          files={"upload": ("a.txt", b"data")})
    assert reply.json()["result"] == {"fields": {"TITLE": "Привет"}}


def test_chunked_request_body(echo_portal):
    def chunks():
        yield b"a=1&"
        yield b"b[]=2"
    reply = requests.post(echo_portal.webhook + "echo", data=chunks(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.json()["result"] == {"a": "1", "b": ["2"]}


# -- errors ----------------------------------------------------------------------

def test_store_errors_keep_status_and_extra_keys(echo_portal):
    reply = requests.get(echo_portal.webhook + "fail")
    assert reply.status_code == 400
    assert reply.json() == {"error": "ERROR_ARGUMENT",
                            "error_description": "Filter operation not allowed: ?",
                            "argument": "filter"}
    assert echo_portal.stats()["errors"] == {"ERROR_ARGUMENT": 1}


def test_unexpected_store_exception_is_a_500_and_counted(echo_portal):
    reply = requests.get(echo_portal.webhook + "crash")
    assert reply.status_code == 500
    assert reply.json()["error"] == "INTERNAL_SERVER_ERROR"
    assert "RuntimeError: boom" in reply.json()["error_description"]
    assert echo_portal.stats()["internal_errors"] == 1
    assert "boom" in echo_portal.last_internal_error


# -- connections and concurrency --------------------------------------------------

def test_keep_alive_reuses_one_connection(echo_portal):
    session = requests.Session()
    for _ in range(5):
        assert session.get(echo_portal.webhook + "echo").status_code == 200
    assert echo_portal.stats()["connections"] == 1
    reply = session.get(echo_portal.webhook + "echo", headers={"Connection": "close"})
    assert reply.headers["Connection"] == "close"


def test_separate_requests_run_in_parallel():
    store = EchoStore(barrier=threading.Barrier(6))
    with FakePortal(store=store) as portal:
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: requests.get(portal.webhook + "wait").status_code,
                                  range(6)))
        assert codes == [200] * 6
        assert portal.stats()["peak_concurrency"] == 6


def test_burst_of_200_concurrent_connections_is_served(echo_portal):
    def one(_):
        with requests.Session() as session:
            return session.get(echo_portal.webhook + "echo").status_code
    with ThreadPoolExecutor(200) as pool:
        assert list(pool.map(one, range(200))) == [200] * 200
    assert echo_portal.stats()["requests"] == 200


# -- control endpoints ------------------------------------------------------------

def test_control_endpoints(echo_portal):
    base = echo_portal.url + "/_portal/"
    requests.get(echo_portal.webhook + "echo")
    stats = requests.get(base + "stats").json()
    assert stats["requests"] == 1 and stats["requests_by_method"] == {"echo": 1}
    assert requests.get(base + "ids/deal").json() == {"entity": "deal", "count": 2, "ids": [1, 2]}
    assert requests.get(base + "ids/nothing").status_code == 404
    assert requests.get(base + "reset_stats").status_code == 405
    assert requests.post(base + "reset_stats").json() == {"reset": True}
    assert requests.get(base + "stats").json()["requests"] == 0
    assert requests.post(base + "mutate", data={"inserts": 2, "deletes": 1}).json() == {
        "inserted": [10, 10], "deleted": [1]}
    assert requests.post(base + "mutate", data={"inserts": "x"}).status_code == 400
    oauth = requests.get(base + "oauth").json()
    assert oauth["access_token"] == echo_portal.oauth.access_token
    assert requests.post(base + "expire_tokens").json() == {"expired": 1}
    assert requests.get(base + "nothing").status_code == 404


# -- lifecycle ------------------------------------------------------------------------

def test_stop_closes_idle_keep_alive_connections_promptly():
    portal = FakePortal(store=EchoStore()).start()
    session = requests.Session()
    assert session.get(portal.webhook + "echo").status_code == 200
    port = portal.port
    started = time.monotonic()
    portal.stop()
    assert time.monotonic() - started < 2
    portal.stop()  # idempotent
    assert not portal.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(RuntimeError):
        portal.url


def test_start_twice_is_an_error_and_restart_works():
    portal = FakePortal(store=EchoStore())
    with portal:
        with pytest.raises(RuntimeError):
            portal.start()
    with portal:
        assert requests.get(portal.webhook + "echo").status_code == 200


def test_oauth_batch_commands_do_not_see_auth_parameters(echo_portal):
    token = echo_portal.oauth.access_token
    cmd = {"e": "echo?auth=other&a=1"}
    oauth = requests.post(echo_portal.endpoint + "batch", json={"auth": token, "cmd": cmd})
    assert oauth.json()["result"]["result"]["e"] == {"a": "1"}
    webhook = requests.post(echo_portal.webhook + "batch", json={"cmd": cmd})
    assert webhook.json()["result"]["result"]["e"] == {"auth": "other", "a": "1"}
