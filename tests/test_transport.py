"""The transport edge against real local servers: redirects, TLS, hangs, huge replies.

Every server here is a thread on 127.0.0.1 (see ``edge_servers``); a "closed port"
is a port on 127.0.0.1 with nothing listening; DNS failures come from a patched
``socket.getaddrinfo``, so no name ever leaves the machine.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import socket
import threading
import time
import tracemalloc
import zlib
from typing import Any, Callable, Dict
from urllib.parse import quote

import pytest
import requests
import requests.sessions

from bitrix_threaded import (
    Bitrix,
    Cancelled,
    CertificateFailed,
    ConnectionFailed,
    InvalidResponse,
    ManualClock,
    PortalMoved,
    RequestTimeout,
    RetryPolicy,
    ServerError,
)
from bitrix_threaded.cancel import CancelToken, cancel_scope
from bitrix_threaded import transport as transport_module
from bitrix_threaded.errors import TransportError
from bitrix_threaded.transport import DEFAULT_MAX_REPLY_BYTES

from edge_servers import (Certificates, Exchange, LocalServer, closed_port, make_certificates,
                          run_in_thread)

CODE = "wh+Code=9xQz"
CLIENT_SECRET = "cs+Sec/ret=ABC"
REFRESH = "rf+Tok/en=DEF"
ACCESS = "ac+Tok/en=GHI"
MB = 1024 * 1024


def ok(result: Any) -> Dict[str, Any]:
    return {"result": result, "time": {"start": 1.0, "finish": 1.1, "operating": 0}}


def answer(result: Any = 1) -> Callable[[Exchange], None]:
    return lambda ex: ex.json(ok(result))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def client(url: str, auth: str = "webhook", **kwargs: Any) -> Bitrix:
    kwargs.setdefault("verbose", False)
    kwargs.setdefault("clock", ManualClock())
    if auth == "webhook":
        return Bitrix(f"{url}rest/1/{CODE}/", **kwargs)
    return Bitrix(f"{url}rest/", client_id="app.1", client_secret=CLIENT_SECRET,
                  refresh_token=REFRESH, access_token=ACCESS, **kwargs)


def target(server: LocalServer, auth: str, path: str = "crm.deal.get") -> str:
    if auth == "webhook":
        return f"{server.url}rest/1/{CODE}/{path}"
    return f"{server.url}rest/{path}?auth={quote(ACCESS, safe='')}"


def hides_secrets(text: str) -> bool:
    return all(s not in text and quote(s, safe="") not in text
               for s in (CODE, CLIENT_SECRET, REFRESH, ACCESS))


# -- redirects ---------------------------------------------------------------------------

REDIRECTS = [301, 302, 303, 307, 308]


@pytest.mark.parametrize("auth", ["webhook", "oauth"])
@pytest.mark.parametrize("status", REDIRECTS)
def test_a_redirect_to_another_host_raises_portal_moved_and_sends_it_nothing(status, auth):
    with LocalServer(answer()) as other:
        moved_to = target(other, auth)
        with LocalServer(lambda ex: ex.send(status, b"", {"Location": moved_to})) as portal:
            with client(portal.url, auth) as bx, pytest.raises(PortalMoved) as info:
                bx.call("crm.deal.get", {"ID": 1})
    assert other.received == [] and other.connections == 0
    assert len(portal.received) == 1  # not retried either
    err = info.value
    assert err.status == status and err.method == "crm.deal.get"
    assert err.location.startswith(other.url) and "***" in err.location
    assert hides_secrets(err.location) and hides_secrets(str(err)) and hides_secrets(repr(err))


@pytest.mark.parametrize("auth", ["webhook", "oauth"])
@pytest.mark.parametrize("status", REDIRECTS)
def test_a_redirect_on_the_same_host_to_another_path_is_not_followed(status, auth):
    def respond(ex: Exchange) -> None:
        ex.send(status, b"", {"Location": "/new/place/crm.deal.get"})

    with LocalServer(respond) as portal:
        with client(portal.url, auth) as bx, pytest.raises(PortalMoved) as info:
            bx.call("crm.deal.get", {"ID": 1})
    assert [r.path for r in portal.received] == [portal.received[0].path]
    assert info.value.location == f"{portal.url}new/place/crm.deal.get"


@pytest.mark.parametrize("auth", ["webhook", "oauth"])
@pytest.mark.parametrize("status", REDIRECTS)
def test_a_same_host_upgrade_to_https_is_followed_over_tls(status, auth, certs):
    with LocalServer(answer({"ID": "7"}), tls=certs.server_context()) as secure:
        def respond(ex: Exchange) -> None:
            ex.send(status, b"", {"Location": secure.url.rstrip("/") + ex.request.path})

        with LocalServer(respond) as plain:
            with client(plain.url, auth, ssl=str(certs.ca)) as bx:
                assert bx.call("crm.deal.get", {"ID": 1}) == {"ID": "7"}
    assert len(plain.received) == 1 and len(secure.received) == 1
    sent = secure.received[0]
    assert sent.method == "POST" and json.loads(sent.body)["ID"] == 1
    if auth == "oauth":
        assert json.loads(sent.body)["auth"] == ACCESS


def test_after_an_upgrade_later_requests_go_to_https_directly(certs):
    with LocalServer(answer(3), tls=certs.server_context()) as secure:
        def respond(ex: Exchange) -> None:
            ex.send(301, b"", {"Location": secure.url.rstrip("/") + ex.request.path})

        with LocalServer(respond) as plain:
            with client(plain.url, ssl=str(certs.ca)) as bx:
                assert [bx.call("crm.deal.get", {"ID": i}) for i in range(3)] == [3, 3, 3]
    assert len(plain.received) == 1 and len(secure.received) == 3


def test_an_upgrade_to_an_unverified_certificate_sends_nothing(certs):
    with LocalServer(answer(), tls=certs.server_context()) as secure:
        def respond(ex: Exchange) -> None:
            ex.send(302, b"", {"Location": secure.url.rstrip("/") + ex.request.path})

        with LocalServer(respond) as plain:
            with client(plain.url) as bx, pytest.raises(CertificateFailed):
                bx.call("crm.deal.get", {"ID": 1})
    assert secure.received == []


@pytest.mark.parametrize("auth", ["webhook", "oauth"])
def test_a_downgrade_from_https_to_http_is_not_followed(auth, certs):
    with LocalServer(answer()) as plain:
        def respond(ex: Exchange) -> None:
            ex.send(301, b"", {"Location": plain.url.rstrip("/") + ex.request.path})

        with LocalServer(respond, tls=certs.server_context()) as secure:
            with client(secure.url, auth, ssl=str(certs.ca)) as bx, \
                    pytest.raises(PortalMoved):
                bx.call("crm.deal.get", {"ID": 1})
    assert plain.received == [] and plain.connections == 0


@pytest.mark.parametrize("status", REDIRECTS)
def test_the_oauth_token_endpoint_redirect_is_not_followed(status):
    with LocalServer(answer()) as other:
        moved_to = f"{other.url}oauth/token/?client_secret={quote(CLIENT_SECRET, safe='')}"
        with LocalServer(lambda ex: ex.send(status, b"", {"Location": moved_to})) as oauth:
            with Bitrix(f"{oauth.url}rest/", client_id="app.1", client_secret=CLIENT_SECRET,
                        refresh_token=REFRESH, oauth_token_url=f"{oauth.url}oauth/token/",
                        verbose=False, clock=ManualClock()) as bx:
                with pytest.raises(PortalMoved) as info:
                    bx.call("crm.deal.get", {"ID": 1})
    assert other.received == [] and other.connections == 0
    assert info.value.method == "oauth.token" and hides_secrets(info.value.location)


# -- TLS ------------------------------------------------------------------------------------

def test_an_unknown_certificate_fails_at_once_naming_host_and_reason(certs):
    clock = ManualClock()
    with LocalServer(answer(), tls=certs.server_context()) as secure:
        with client(secure.url, clock=clock) as bx, pytest.raises(CertificateFailed) as info:
            bx.call("crm.deal.get", {"ID": 1})
    err = info.value
    assert err.code == "CERTIFICATE_VERIFY_FAILED" and err.retryable is False
    assert err.executed is False
    assert f"127.0.0.1:{secure.port}" in err.description
    assert "certificate" in err.description.lower()
    assert secure.failed_handshakes == 1 and secure.received == []
    assert clock.slept == 0  # not retried


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_a_ca_bundle_path_and_ssl_false_both_reach_a_private_ca_server(certs):
    with LocalServer(answer(5), tls=certs.server_context()) as secure:
        with client(secure.url, ssl=str(certs.ca)) as bx:
            assert bx.call("crm.deal.get", {"ID": 1}) == 5
        with client(secure.url, ssl=False) as bx:
            assert bx.call("crm.deal.get", {"ID": 1}) == 5


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_the_environment_cannot_override_the_ssl_setting(variable, certs, monkeypatch):
    with LocalServer(answer(5), tls=certs.server_context()) as secure:
        # An environment bundle that does not trust the server: the caller's path and
        # the caller's False still win.
        monkeypatch.setenv(variable, str(certs.other_ca))
        with client(secure.url, ssl=str(certs.ca)) as bx:
            assert bx.call("crm.deal.get", {"ID": 1}) == 5
        with client(secure.url, ssl=False) as bx:
            assert bx.call("crm.deal.get", {"ID": 1}) == 5
        # An environment bundle that trusts it: the caller's own path still decides.
        monkeypatch.setenv(variable, str(certs.ca))
        with client(secure.url, ssl=str(certs.other_ca)) as bx, \
                pytest.raises(CertificateFailed):
            bx.call("crm.deal.get", {"ID": 1})


def test_ssl_true_follows_the_environment_bundle_as_requests_does(certs, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs.ca))
    with LocalServer(answer(5), tls=certs.server_context()) as secure:
        with client(secure.url, ssl=True) as bx:
            assert bx.call("crm.deal.get", {"ID": 1}) == 5


# -- what requests takes from the environment -------------------------------------------------

@pytest.fixture
def no_proxies(monkeypatch):
    """An environment without proxy settings, whatever the machine's own are."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_a_proxy_from_the_environment_carries_the_requests(no_proxies):
    with LocalServer(answer(5)) as proxy:
        no_proxies.setenv("http_proxy", proxy.url)
        # The portal's name is never looked up: the proxy is asked for it.
        with client("http://portal.example/") as bx:
            assert bx.call("crm.deal.get", {"ID": 1}) == 5
            assert bx.call("crm.deal.get", {"ID": 2}) == 5
    assert [r.path for r in proxy.received] == [
        f"http://portal.example/rest/1/{quote(CODE, safe='+=')}/crm.deal.get"] * 2


def test_no_proxy_and_a_session_that_does_not_trust_the_environment_go_straight(no_proxies):
    with LocalServer(answer(5)) as portal, LocalServer(answer(6)) as proxy:
        no_proxies.setenv("http_proxy", proxy.url)
        with client(portal.url) as bx:
            assert bx.call("crm.deal.get", {"ID": 1}) == 6
        template = requests.Session()
        template.trust_env = False
        with client(portal.url, client=template) as bx:
            assert bx.call("crm.deal.get", {"ID": 1}) == 5
        no_proxies.setenv("no_proxy", "127.0.0.1")
        with client(portal.url) as bx:
            assert bx.call("crm.deal.get", {"ID": 1}) == 5
    assert len(proxy.received) == 1 and len(portal.received) == 2


def test_netrc_credentials_go_along_unless_the_session_has_its_own(tmp_path, no_proxies):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password n3trc\n")
    netrc.chmod(0o600)
    no_proxies.setenv("NETRC", str(netrc))
    template = requests.Session()
    template.auth = ("own", "pass")
    with LocalServer(answer(5)) as portal:
        with client(portal.url) as bx:
            bx.call("crm.deal.get", {"ID": 1})
        with client(portal.url, client=template) as bx:
            bx.call("crm.deal.get", {"ID": 1})
    sent = [r.headers.get("Authorization") for r in portal.received]
    assert sent == [f"Basic {base64.b64encode(b'someone:n3trc').decode()}",
                    f"Basic {base64.b64encode(b'own:pass').decode()}"]


def test_the_environment_is_read_once_per_origin_not_on_every_request(no_proxies):
    ours, theirs = [], []
    real = transport_module.get_environ_proxies
    no_proxies.setattr(transport_module, "get_environ_proxies",
                       lambda url, no_proxy=None: ours.append(url) or real(url, no_proxy))
    no_proxies.setattr(requests.sessions, "get_environ_proxies",
                       lambda url, no_proxy=None: theirs.append(url) or real(url, no_proxy))
    with LocalServer(answer(5)) as portal:
        with client(portal.url, max_workers=1) as bx:
            for i in range(5):
                assert bx.call("crm.deal.get", {"ID": i}) == 5
    # Only the origin is looked at, never the path with the webhook in it.
    assert ours == [portal.url] and theirs == []


# -- connection errors ------------------------------------------------------------------------

def test_a_refused_connection_fails_fast_with_one_short_line():
    port = closed_port()
    clock = ManualClock()
    with client(f"http://127.0.0.1:{port}/", clock=clock) as bx:
        with pytest.raises(ConnectionFailed) as info:
            bx.call("crm.deal.get", {"ID": 1})
        with pytest.raises(ConnectionFailed):
            bx.get_all("crm.deal.list")
    err = info.value
    assert err.code == "CONNECTION_REFUSED" and err.executed is False
    assert err.description == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert "\n" not in str(err) and "urllib3" not in str(err) and "Pool" not in str(err)
    assert err.__cause__ is None and err.__context__ is None
    assert clock.slept == 0  # no backoff: nothing listens there


@pytest.fixture
def fake_dns(monkeypatch):
    """getaddrinfo that fails for *.invalid names and counts the lookups."""
    calls = []
    real = socket.getaddrinfo
    state = {"errno": socket.EAI_NONAME}

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".invalid"):
            calls.append(host)
            raise socket.gaierror(state["errno"], "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls, state


def test_an_unknown_host_says_it_cannot_be_resolved(fake_dns):
    calls, _ = fake_dns
    clock = ManualClock()
    with client("https://portal.example.invalid/", clock=clock) as bx:
        with pytest.raises(ConnectionFailed) as info:
            bx.call("crm.deal.get", {"ID": 1})
    err = info.value
    assert err.code == "NAME_RESOLUTION_FAILED"
    assert err.description == "cannot resolve host portal.example.invalid"
    assert calls == ["portal.example.invalid"] and clock.slept == 0


def test_a_temporary_resolver_failure_is_retried(fake_dns):
    calls, state = fake_dns
    state["errno"] = socket.EAI_AGAIN
    clock = ManualClock()
    with client("https://portal.example.invalid/", clock=clock,
                retry=RetryPolicy(max_attempts=3)) as bx:
        with pytest.raises(ConnectionFailed) as info:
            bx.call("crm.deal.get", {"ID": 1})
    assert info.value.retryable is True and len(calls) == 3 and len(clock.sleeps) == 2


def test_connections_are_still_kept_alive():
    with LocalServer(answer()) as portal:
        with client(portal.url) as bx:
            for _ in range(3):
                assert bx.call("crm.deal.get", {"ID": 1}) == 1
    assert portal.connections == 1


# -- hangs ------------------------------------------------------------------------------------

def drip(ex: Exchange) -> None:
    """Headers at once, then one byte every 50 ms: each read is quick, the reply endless."""
    ex.send(200, b"", {"Content-Type": "application/json"}, length=10_000)
    for _ in range(10_000):
        if not ex.write(b" "):
            return
        time.sleep(0.05)


def test_a_slow_drip_reply_ends_at_the_deadline():
    with LocalServer(drip) as portal:
        with client(portal.url, timeout=(2, 1), deadline=0.4,
                    retry=RetryPolicy(max_attempts=1)) as bx:
            with pytest.raises(RequestTimeout) as info:
                bx.call("crm.deal.get", {"ID": 1})
    assert info.value.code == "DEADLINE_EXCEEDED" and info.value.executed is None


def test_without_read1_the_watchdog_alone_ends_a_slow_drip(monkeypatch):
    # urllib3 before 2.1 has no read1: a read then waits for a whole piece.
    import urllib3.response

    monkeypatch.setattr(urllib3.response.HTTPResponse, "read1", None, raising=False)
    with LocalServer(drip) as portal:
        with client(portal.url, timeout=(2, 1), deadline=0.4,
                    retry=RetryPolicy(max_attempts=1)) as bx:
            with pytest.raises(RequestTimeout) as info:
                bx.call("crm.deal.get", {"ID": 1})
    assert info.value.code == "DEADLINE_EXCEEDED"


def drip_headers(ex: Exchange) -> None:
    """A status line, then one header whose value grows a byte every 50 ms."""
    if not ex.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: "):
        return
    for _ in range(10_000):
        if not ex.write(b"a"):
            return
        time.sleep(0.05)


def test_slow_drip_headers_end_at_the_deadline_too():
    with LocalServer(drip_headers) as portal:
        with client(portal.url, timeout=(2, 1), deadline=0.4,
                    retry=RetryPolicy(max_attempts=1)) as bx:
            with pytest.raises(RequestTimeout) as info:
                bx.call("crm.deal.get", {"ID": 1})
            assert info.value.code == "DEADLINE_EXCEEDED"
            # The client stays usable: later requests get fresh connections.
            with pytest.raises(RequestTimeout):
                bx.call("crm.deal.get", {"ID": 1})


class Held:
    """Reads each request, then answers only once released (a stalled portal)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrived = threading.Semaphore(0)

    def __call__(self, ex: Exchange) -> None:
        self.arrived.release()
        if self.release.wait(30):
            ex.json(ok({"ID": "1"}))


def test_a_stopped_calls_request_on_the_wire_is_cut_off_after_the_grace():
    # Without the cut the call would wait for the stalled reply: 30 s here, up to the
    # request deadline (125 s by default) on a real portal, and so would close() and
    # the interpreter's exit, which joins the worker threads.
    held = Held()
    with LocalServer(held) as portal, client(portal.url, timeout=(2, 60)) as bx:
        bx._runner.stop_grace = 0.05
        token = CancelToken()

        def call() -> Any:
            with cancel_scope(token):
                return bx.call("crm.deal.get", {"ID": 1})

        thread, box = run_in_thread(call)
        assert held.arrived.acquire(timeout=5)
        token.cancel("the caller gave up")
        thread.join(10)
        stopped = not thread.is_alive()
        held.release.set()
        assert stopped, "the call waited for the stalled reply"
        assert isinstance(box.get("error"), Cancelled), box
        assert bx.transport._in_flight == set()
        # The client itself still works.
        assert bx.call("crm.deal.get", {"ID": 1}) == {"ID": "1"}


def test_expire_cuts_off_only_the_requests_sent_under_its_tag():
    held = Held()
    with LocalServer(held) as portal, client(portal.url, timeout=(2, 60)) as bx:
        mine, other = object(), object()
        first, got_first = run_in_thread(
            lambda: bx.transport.post("crm.deal.get", {"ID": 1}, tag=mine))
        second, got_second = run_in_thread(
            lambda: bx.transport.post("crm.deal.get", {"ID": 2}, tag=other))
        assert held.arrived.acquire(timeout=5) and held.arrived.acquire(timeout=5)
        assert bx.transport.expire(mine, 0.0) == 1
        first.join(10)
        cut = not first.is_alive()
        held.release.set()
        second.join(10)
        assert cut, "the tagged request was not cut off"
        error = got_first.get("error")
        assert isinstance(error, TransportError) and error.executed is None, got_first
        assert got_second["result"].data["result"] == {"ID": "1"}
        assert bx.transport.expire(None, 0.0) == 0  # nothing left on the wire


def test_the_default_deadline_follows_the_timeout():
    with client("http://127.0.0.1:1/", timeout=(3, 10)) as bx:
        assert bx.transport.deadline == 23
    with client("http://127.0.0.1:1/", timeout=4) as bx:
        assert bx.transport.deadline == 12


# -- reply size -------------------------------------------------------------------------------

def flood(total: int) -> Callable[[Exchange], None]:
    """A close-delimited body of ``total`` bytes, written 1 MiB at a time."""
    block = b" " * MB

    def respond(ex: Exchange) -> None:
        ex.send(200, b"", {"Content-Type": "application/json"}, length=None)
        for _ in range(total // MB):
            if not ex.write(block):
                return

    return respond


def peak_while(action: Callable[[], None]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def expect_too_large(bx: Bitrix) -> Callable[[], None]:
    def action() -> None:
        with pytest.raises(InvalidResponse) as info:
            bx.call("crm.deal.get", {"ID": 1})
        assert info.value.code == "REPLY_TOO_LARGE"
    return action


def test_a_200_mb_reply_is_cut_off_at_the_cap_with_bounded_memory():
    with LocalServer(flood(200 * MB)) as portal:
        with client(portal.url, max_reply_bytes=8 * MB) as bx:
            peak = peak_while(expect_too_large(bx))
    assert peak < 40 * MB


def test_a_declared_200_mb_reply_is_refused_before_reading():
    def respond(ex: Exchange) -> None:
        ex.send(200, b"", {"Content-Type": "application/json"}, length=200 * MB)
        ex.write(b"[")

    with LocalServer(respond) as portal:
        with client(portal.url) as bx, pytest.raises(InvalidResponse) as info:
            bx.call("crm.deal.get", {"ID": 1})
    assert info.value.code == "REPLY_TOO_LARGE" and "declares" in info.value.description


def deflated(data: bytes, wbits: int) -> bytes:
    # zlib.compress takes wbits only from Python 3.11 on.
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


def gzip_member(megabytes: int) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * MB
    return b"".join([packer.compress(block) for _ in range(megabytes)] + [packer.flush()])


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """~200 KB of gzip that inflates to 200 MB of spaces: 1 MB members one after
    another (a valid gzip file, and quick to build)."""
    return gzip_member(1) * 200


def serve_bytes(body: bytes, encoding: str) -> Callable[[Exchange], None]:
    return lambda ex: ex.send(200, body, {"Content-Type": "application/json",
                                          "Content-Encoding": encoding})


def test_a_gzip_bomb_is_stopped_while_inflating(gzip_bomb):
    assert len(gzip_bomb) < 256 * 1024
    assert zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(gzip_bomb[:2048], 64) == b" " * 64
    with LocalServer(serve_bytes(gzip_bomb, "gzip")) as portal:
        with client(portal.url, max_reply_bytes=8 * MB) as bx:
            assert peak_while(expect_too_large(bx)) < 40 * MB
        # The default cap protects too, well below the bomb's 200 MB.
        with client(portal.url) as bx:
            assert peak_while(expect_too_large(bx)) < 3 * DEFAULT_MAX_REPLY_BYTES


def test_a_single_stream_gzip_bomb_is_stopped_too():
    bomb = gzip_member(32)
    with LocalServer(serve_bytes(bomb, "gzip")) as portal:
        with client(portal.url, max_reply_bytes=4 * MB) as bx:
            assert peak_while(expect_too_large(bx)) < 20 * MB


@pytest.mark.parametrize("encoding,pack", [
    ("gzip", lambda b: deflated(b, 16 + zlib.MAX_WBITS)),
    ("deflate", lambda b: deflated(b, zlib.MAX_WBITS)),
    ("deflate", lambda b: deflated(b, -zlib.MAX_WBITS)),
    ("identity", lambda b: b),
])
def test_compressed_replies_are_decoded(encoding, pack):
    body = json.dumps(ok([{"ID": str(i)} for i in range(500)])).encode()
    with LocalServer(serve_bytes(pack(body), encoding)) as portal:
        with client(portal.url) as bx:
            assert len(bx.call("crm.deal.get", {"ID": 1})) == 500


@pytest.mark.parametrize("encoding,body", [("gzip", b"\x1f\x8b not gzip at all"),
                                           ("br", b"{}")])
def test_corrupt_or_unasked_encodings_are_invalid_responses(encoding, body):
    with LocalServer(serve_bytes(body, encoding)) as portal:
        with client(portal.url, retry=RetryPolicy(max_attempts=1)) as bx, \
                pytest.raises(InvalidResponse):
            bx.call("crm.deal.get", {"ID": 1})


# -- truthful errors --------------------------------------------------------------------------

def test_a_gateway_html_page_is_a_server_error_with_a_redacted_snippet():
    page = f"<html>502 Bad Gateway for /rest/1/{quote(CODE, safe='')}/</html>".encode()
    with LocalServer(lambda ex: ex.send(502, page, {"Content-Type": "text/html"})) as portal:
        with client(portal.url, retry=RetryPolicy(max_attempts=1)) as bx, \
                pytest.raises(ServerError) as info:
            bx.call("crm.deal.get", {"ID": 1})
    err = info.value
    assert err.status == 502 and "Bad Gateway" in err.snippet
    assert hides_secrets(err.snippet) and "***" in err.snippet


def batch_of(value: Any) -> Callable[[Exchange], None]:
    """Answers every batch command with ``value`` as its result."""
    def respond(ex: Exchange) -> None:
        labels = list(json.loads(ex.request.body)["cmd"])
        ex.json(ok({"result": {label: value for label in labels}, "result_error": [],
                    "result_total": [], "result_next": [], "result_time": []}))
    return respond


@pytest.mark.parametrize("method,params,value,found", [
    ("crm.deal.list", {}, "an error page", "a str"),
    ("crm.deal.list", {}, {"deals": {"1": {"ID": "1"}}}, "an object with 'deals'"),
    ("crm.item.list", {"entityTypeId": 2}, {"items": "none"}, "an object with 'items'"),
    ("foo.bar.list", {}, {"a": 1, "b": "x"}, "an object with 'a', 'b'"),
    ("foo.bar.list", {}, {"x": [1], "y": [2]}, "an object with 'x', 'y'"),
    ("foo.bar.list", {}, None, "null"),
])
def test_a_page_that_is_not_a_list_of_records_is_an_error(method, params, value, found):
    with LocalServer(batch_of(value)) as portal:
        with client(portal.url, retry=RetryPolicy(max_attempts=1)) as bx, \
                pytest.raises(InvalidResponse) as info:
            bx.get_all(method, params)
    text = str(info.value)
    assert method in text and "page start=0" in text and found in text


def test_an_empty_list_is_an_empty_page():
    with LocalServer(batch_of([])) as portal:
        with client(portal.url) as bx:
            assert bx.get_all("crm.deal.list") == []
            assert bx.get_all("foo.bar.list") == []


def test_the_retry_policy_gives_up_on_what_the_edge_marks_not_retryable():
    refused = ConnectionFailed("CONNECTION_REFUSED", executed=False, retryable=False)
    assert RetryPolicy().decide(refused, attempt=0, write=False).retry is False
    dropped = ConnectionFailed("CONNECTION_LOST", executed=None)
    assert RetryPolicy().decide(dropped, attempt=0, write=False).retry is True
