"""Secrets stay secret on every error path, in every spelling they take on the wire.

The webhook code and OAuth tokens here contain ``+``, ``/`` and ``=``, so their
percent-encoded (``%2B%2F%3D``), form-encoded, doubly encoded and JSON-escaped
forms all differ from the raw text. Each error path of the transport edge runs with
DEBUG logging captured (urllib3's request lines included); afterwards no log line,
message, repr, attribute or chained exception may hold any form of any secret.
"""

from __future__ import annotations

import json
import logging
import socket
import traceback
import zlib
from typing import Any, Callable, Dict, List
from urllib.parse import quote, quote_plus

import pytest

from bitrix_threaded import Bitrix, BitrixError, ManualClock, RetryPolicy
from bitrix_threaded.auth import MASK, Webhook, redact_text, secret_forms

from edge_servers import Exchange, LocalServer, closed_port, make_certificates

CODE = "wh+Code=9xQz"
CLIENT_SECRET = "cs+Sec/ret=ABC"
REFRESH = "rf+Tok/en=DEF"
ACCESS = "ac+Tok/en=GHI"
NEW_ACCESS = "nw+Acc/ess=JKL"
NEW_REFRESH = "nw+Ref/resh=MNO"
SECRETS = [CODE, CLIENT_SECRET, REFRESH, ACCESS, NEW_ACCESS, NEW_REFRESH]
MB = 1024 * 1024


# -- the forms -----------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", [
    "a+b/c=d",                      # raw
    "a%2Bb%2Fc%3Dd",                # percent-encoded (query, path segment)
    "a%2bb%2fc%3dd",                # ... with lower-case hex
    "a%2Bb/c%3Dd",                  # percent-encoded, slash kept
    "a%2Bb%2Fc%3Dd".replace("%", "%25"),  # encoded twice
    "a+b\\/c=d",                    # JSON as PHP writes it
])
def test_every_spelling_of_a_secret_is_masked(spelling):
    assert redact_text(f"GET /x?s={spelling}&n=1", ["a+b/c=d"]) == f"GET /x?s={MASK}&n=1"


def test_form_encoding_and_non_ascii_secrets_are_masked():
    secret = "p ässwörd/1"
    for form in (quote_plus(secret), quote(secret, safe=""),
                 json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]):
        assert redact_text(f"<{form}>", [secret]) == f"<{MASK}>"
    assert quote_plus(secret) in secret_forms(secret)


def test_short_strings_are_not_treated_as_secrets():
    assert redact_text("a b c", ["b"]) == "a b c"


def test_a_webhook_repr_never_shows_the_code():
    hook = Webhook(f"https://portal.example.com/rest/1/{CODE}/")
    assert CODE not in repr(hook) and MASK in repr(hook)


# -- every error path ------------------------------------------------------------------------

def texts_of(err: BaseException) -> List[str]:
    """Everything a user may print about ``err``: str, repr, attributes, the chain."""
    texts = ["".join(traceback.format_exception(type(err), err, err.__traceback__))]
    seen: set = set()
    stack: List[Any] = [err]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        texts += [str(item), repr(item), repr(item.args)]
        for name in ("extra", "snippet", "location", "description"):
            texts.append(repr(getattr(item, name, "")))
        stack += [item.__cause__, item.__context__]
    return texts


def spellings(secret: str) -> List[str]:
    """The forms a secret takes on the wire, built here independently of the library."""
    once = [secret, quote(secret, safe=""), quote(secret), quote_plus(secret),
            json.dumps(secret)[1:-1], json.dumps(secret)[1:-1].replace("/", "\\/")]
    twice = [quote(quote(secret, safe=""), safe=""), quote_plus(quote_plus(secret))]
    return [form.lower() for form in once + twice]


def leaked(texts: List[str]) -> List[str]:
    forms = [form for secret in SECRETS for form in spellings(secret)]
    return [t for t in texts if any(form in t.lower() for form in forms)]


def webhook_client(url: str, **kwargs: Any) -> Bitrix:
    return Bitrix(f"{url}rest/1/{CODE}/", verbose=False, clock=ManualClock(),
                  retry=RetryPolicy(max_attempts=2), **kwargs)


def oauth_client(url: str, token_url: str, **kwargs: Any) -> Bitrix:
    return Bitrix(f"{url}rest/", client_id="app.1", client_secret=CLIENT_SECRET,
                  refresh_token=REFRESH, oauth_token_url=token_url, verbose=False,
                  clock=ManualClock(), retry=RetryPolicy(max_attempts=2), **kwargs)


def echo_page(ex: Exchange) -> str:
    """A page quoting the request back in several encodings, as error pages do."""
    path = ex.request.path
    body = ex.request.body.decode("utf-8", "replace")
    return (f"<html>error at {path} / {quote(path, safe='')} / {quote_plus(body)} / "
            f"{json.dumps(body)} / {quote(quote(body, safe=''), safe='')}</html>")


def call(bx: Bitrix) -> None:
    with bx:
        bx.call("crm.deal.get", {"ID": 1})


def redirect_webhook(ctx: Dict[str, Any]) -> None:
    with LocalServer(lambda ex: ex.json({"result": 1})) as other:
        def respond(ex: Exchange) -> None:
            ex.send(307, b"", {"Location": other.url.rstrip("/") + quote(ex.request.path)})
        with LocalServer(respond) as portal:
            call(webhook_client(portal.url))


def redirect_oauth(ctx: Dict[str, Any]) -> None:
    def token(ex: Exchange) -> None:
        ex.json({"access_token": NEW_ACCESS, "refresh_token": NEW_REFRESH})

    with LocalServer(token) as oauth, LocalServer(lambda ex: ex.json({})) as other:
        def respond(ex: Exchange) -> None:
            sent = json.loads(ex.request.body)["auth"]
            ex.send(302, b"", {"Location": f"{other.url}rest/x?auth={quote_plus(sent)}"})
        with LocalServer(respond) as portal:
            call(oauth_client(portal.url, f"{oauth.url}oauth/token/"))


def token_redirect(ctx: Dict[str, Any]) -> None:
    def respond(ex: Exchange) -> None:
        ex.send(302, b"", {"Location": "https://elsewhere.invalid" + ex.request.path})
    with LocalServer(respond) as oauth:
        call(oauth_client(oauth.url, f"{oauth.url}oauth/token/"))


def token_rejected(ctx: Dict[str, Any]) -> None:
    def respond(ex: Exchange) -> None:
        ex.json({"error": "invalid_client", "error_description": echo_page(ex),
                 "request": ex.request.path}, status=401)
    with LocalServer(respond) as oauth:
        call(oauth_client(oauth.url, f"{oauth.url}oauth/token/"))


def certificate(ctx: Dict[str, Any]) -> None:
    with LocalServer(lambda ex: ex.json({}), tls=ctx["certs"].server_context()) as secure:
        call(webhook_client(secure.url))


def refused(ctx: Dict[str, Any]) -> None:
    call(webhook_client(f"http://127.0.0.1:{closed_port()}/"))


def unresolvable(ctx: Dict[str, Any]) -> None:
    call(webhook_client("https://portal.example.invalid/"))


def deadline(ctx: Dict[str, Any]) -> None:
    def drip(ex: Exchange) -> None:
        ex.send(200, b"", {}, length=1000)
        while ex.write(b" "):
            __import__("time").sleep(0.05)
    with LocalServer(drip) as portal:
        call(webhook_client(portal.url, deadline=0.3, timeout=(2, 1)))


def too_large(ctx: Dict[str, Any]) -> None:
    def respond(ex: Exchange) -> None:
        ex.send(200, b"", {}, length=None)
        while ex.write(echo_page(ex).encode() * 1000):
            pass
    with LocalServer(respond) as portal:
        call(webhook_client(portal.url, max_reply_bytes=MB))


def gzip_bomb(ctx: Dict[str, Any]) -> None:
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    bomb = packer.compress(b" " * (8 * MB)) + packer.flush()
    with LocalServer(lambda ex: ex.send(200, bomb, {"Content-Encoding": "gzip"})) as portal:
        call(webhook_client(portal.url, max_reply_bytes=MB))


def corrupt_gzip(ctx: Dict[str, Any]) -> None:
    def respond(ex: Exchange) -> None:
        ex.send(200, b"\x1f\x8b" + echo_page(ex).encode(), {"Content-Encoding": "gzip"})
    with LocalServer(respond) as portal:
        call(webhook_client(portal.url))


def gateway_page(ctx: Dict[str, Any]) -> None:
    with LocalServer(lambda ex: ex.send(502, echo_page(ex).encode())) as portal:
        call(webhook_client(portal.url))


def not_json(ctx: Dict[str, Any]) -> None:
    with LocalServer(lambda ex: ex.send(200, echo_page(ex).encode())) as portal:
        call(webhook_client(portal.url))


def error_envelope(ctx: Dict[str, Any]) -> None:
    def respond(ex: Exchange) -> None:
        ex.json({"error": "ERROR_ARGUMENT", "error_description": echo_page(ex),
                 "argument": {"url": quote(ex.request.path, safe="")}}, status=400)
    with LocalServer(respond) as portal:
        call(webhook_client(portal.url))


def malformed_page(ctx: Dict[str, Any]) -> None:
    def respond(ex: Exchange) -> None:
        labels = list(json.loads(ex.request.body)["cmd"])
        page = echo_page(ex)
        ex.json({"result": {"result": {label: page for label in labels}, "result_error": [],
                            "result_total": [], "result_next": [], "result_time": []}})
    with LocalServer(respond) as portal:
        with webhook_client(portal.url) as bx:
            bx.get_all("crm.deal.list")


PATHS: Dict[str, Callable[[Dict[str, Any]], None]] = {
    f.__name__: f for f in (
        redirect_webhook, redirect_oauth, token_redirect, token_rejected, certificate,
        refused, unresolvable, deadline, too_large, gzip_bomb, corrupt_gzip, gateway_page,
        not_json, error_envelope, malformed_page,
    )
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def no_dns(monkeypatch):
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_no_secret_on_any_error_path(path, certs, no_dns, caplog):
    caplog.set_level(logging.DEBUG, logger="urllib3")
    caplog.set_level(logging.DEBUG, logger="bitrix_threaded")
    with pytest.raises(BitrixError) as info:
        PATHS[path]({"certs": certs})
    texts = texts_of(info.value) + [r.getMessage() for r in caplog.records]
    texts += [caplog.text]
    assert caplog.records, "the path logged nothing: DEBUG capture is not working"
    assert leaked(texts) == []


# -- errors of single commands inside a batch --------------------------------------------

def _batch_reply_echoing(code: str, first: str, second: str) -> Dict[str, Any]:
    """A batch whose second command failed with a description that echoes the secret
    (a server that quotes the request back), raw in one place, encoded in another."""
    echoed = f"bad request /rest/1/{code}/crm.deal.get and {quote(code, safe='')}"
    return {"result": {"result": {first: {"ID": "1"}},
                       "result_error": {second: {"error": "ERROR_CORE",
                                                 "error_description": echoed,
                                                 "argument": code}},
                       "result_total": [], "result_next": [], "result_time": []},
            "time": {"start": 1.0, "finish": 1.1, "operating": 0}}


def _assert_masked(err: BaseException) -> None:
    shown = [str(err), repr(err), "".join(traceback.format_exception(err))]
    for failure in getattr(err, "failures", ()):
        shown += [str(failure), failure.description, repr(failure.error),
                  json.dumps(failure.error.extra)]
    for text in shown:
        for form in secret_forms(CODE):
            assert form not in text, text


def test_failed_commands_inside_a_batch_are_masked_too():
    import responses

    base = "https://portal.example.test/rest/1/" + quote(CODE, safe="") + "/"
    with responses.RequestsMock() as mocked:
        mocked.add(responses.POST, base + "batch", json=_batch_reply_echoing(CODE, "c0", "c1"))
        mocked.add(responses.POST, base + "batch",
                   json=_batch_reply_echoing(CODE, "cmd0", "cmd1"))
        bx = Bitrix(base, verbose=False, retry=RetryPolicy(max_attempts=1))
        with pytest.raises(BitrixError) as failed:
            bx.call("crm.deal.get", [{"ID": 1}, {"ID": 2}])
        assert [f.code for f in failed.value.failures] == ["ERROR_CORE"]
        _assert_masked(failed.value)
        with pytest.raises(BitrixError) as failed:
            bx.call_batch({"halt": 0, "cmd": {"cmd0": "crm.deal.get?ID=1",
                                              "cmd1": "crm.deal.get?ID=2"}})
        assert [f.code for f in failed.value.failures] == ["ERROR_CORE"]
        _assert_masked(failed.value)
        bx.close()
