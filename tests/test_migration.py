"""Drop-in migration from fast_bitrix24 1.8.14: its call forms work unchanged.

The reference signatures are recorded here (fast_bitrix24 is not a dependency); when
fast_bitrix24 happens to be installed, they are also checked against it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import json
import threading
import warnings
from typing import Any, Dict, List, Tuple

import pytest
import requests
import responses
from requests.adapters import HTTPAdapter

from bitrix_threaded import Bitrix

# fast_bitrix24 1.8.14: (name, default) in order; "*" marks the start of keyword-only.
EMPTY = inspect.Parameter.empty
PEER_SIGNATURES: Dict[str, List[Tuple[str, Any]]] = {
    "__init__": [("webhook", EMPTY), ("token_func", None), ("verbose", True),
                 ("respect_velocity_policy", True), ("request_pool_size", 50),
                 ("requests_per_second", 2.0), ("batch_size", 50),
                 ("operating_time_limit", 480), ("client", None), ("ssl", True)],
    "get_all": [("method", EMPTY), ("params", None)],
    "get_by_ID": [("method", EMPTY), ("ID_list", EMPTY), ("ID_field_name", "ID"),
                  ("params", None)],
    "list_and_get": [("method_branch", EMPTY), ("ID_field_name", "ID")],
    "call": [("method", EMPTY), ("items", None), ("*", None), ("raw", False)],
    "call_batch": [("params", EMPTY)],
    "slow": [("max_concurrent_requests", 1)],
}

TOKEN = "m1gr4tionC0de"
WEBHOOK = f"https://portal.example.com/rest/3/{TOKEN}/"


def _shape(function: Any) -> List[Tuple[str, Any]]:
    shape: List[Tuple[str, Any]] = []
    for parameter in list(inspect.signature(function).parameters.values())[1:]:
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and ("*", None) not in shape:
            shape.append(("*", None))
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        shape.append((parameter.name, parameter.default))
    return shape


@pytest.mark.parametrize("name", sorted(PEER_SIGNATURES))
def test_every_fast_bitrix24_parameter_keeps_its_place_and_default(name):
    ours = _shape(getattr(Bitrix, name))
    theirs = PEER_SIGNATURES[name]
    positional = [p for p in theirs if p[0] != "*"][: theirs.index(("*", None))] \
        if ("*", None) in theirs else theirs
    # Their positional parameters come first, in order, with equal defaults.
    assert ours[: len(positional)] == positional
    # Their keyword-only ones exist with equal defaults; ours beyond theirs are keyword-only.
    rest = ours[len(positional):]
    assert not rest or rest[0] == ("*", None), rest
    for parameter in theirs[len(positional):]:
        assert parameter in rest


def test_recorded_signatures_match_an_installed_fast_bitrix24():
    fast_bitrix24 = pytest.importorskip("fast_bitrix24")
    if importlib.metadata.version("fast_bitrix24") != "1.8.14":
        pytest.skip("recorded against fast_bitrix24 1.8.14")
    peer = fast_bitrix24.BitrixAsync  # the sync class wraps these same methods
    for name, recorded in PEER_SIGNATURES.items():
        assert _shape(_undecorated(getattr(peer, name), name)) == recorded, name


def _undecorated(function: Any, name: str) -> Any:
    """The function named ``name`` inside decorators that do not set ``__wrapped__``."""
    function = inspect.unwrap(function)
    if function.__name__ == name:
        return function
    for cell in function.__closure__ or ():
        inner = cell.cell_contents
        if callable(inner) and hasattr(inner, "__name__"):
            found = _undecorated(inner, name)
            if found is not None:
                return found
    return None


# -- the constructor, positionally ---------------------------------------------------------

def test_the_constructor_takes_fast_bitrix24_arguments_by_position(fake_portal):
    session = requests.Session()
    with Bitrix(fake_portal.webhook, None, False, True, 50, 2.0, 50, 480, session, True) as bx:
        assert bx.verbose is False
        assert bx.batch_size == 50
        assert bx.bucket.capacity == 50 and bx.bucket.rate == 2.0
        assert len(bx.get_all("crm.deal.list")) == fake_portal.count("deal")


def test_extra_arguments_stay_keyword_only():
    with pytest.raises(TypeError):
        Bitrix(WEBHOOK, None, False, True, 50, 2.0, 50, 480, None, True, None)


def test_client_must_be_a_requests_session():
    with pytest.raises(TypeError, match="requests.Session"):
        Bitrix(WEBHOOK, client=object())


# -- client=: a requests.Session template ----------------------------------------------

class RecordingAdapter(HTTPAdapter):
    """A caller's adapter: remembers what it sent, and from which thread."""

    def __init__(self) -> None:
        super().__init__(max_retries=0)
        self.sent: List[Tuple[int, requests.PreparedRequest, Dict[str, Any]]] = []
        self.closed = False
        self._lock = threading.Lock()

    def send(self, request, **kwargs):
        with self._lock:
            self.sent.append((threading.get_ident(), request, kwargs))
        return super().send(request, **kwargs)

    def close(self) -> None:
        self.closed = True
        super().close()


def test_the_session_template_settings_reach_every_worker(fake_portal):
    template = requests.Session()
    template.headers["X-Trace"] = "migration"
    template.proxies = {"socks5": "socks5://127.0.0.1:9"}  # never used for http://
    adapter = RecordingAdapter()
    template.mount(fake_portal.url, adapter)
    with Bitrix(fake_portal.webhook, client=template, verbose=False) as bx:
        results = bx.call("crm.deal.get", [{"ID": i} for i in fake_portal.ids("deal")[:120]])
        bx.get_all("crm.deal.list")
        assert len(results) == 120
    assert adapter.sent
    for _, request, kwargs in adapter.sent:
        assert request.headers["X-Trace"] == "migration"
        assert request.headers["User-Agent"].startswith("bitrix_threaded/")
        assert kwargs["proxies"].get("socks5") == "socks5://127.0.0.1:9"
    # The caller's session and adapter stay the caller's.
    assert adapter.closed is False
    assert "X-Trace" in template.headers


def test_each_worker_thread_gets_its_own_session_not_the_template(fake_portal):
    template = requests.Session()
    template.mount("http://", RecordingAdapter())
    sessions = []
    original_send = requests.Session.send

    def send(self, request, **kwargs):
        sessions.append((threading.get_ident(), id(self)))
        return original_send(self, request, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(requests.Session, "send", send)
        with Bitrix(fake_portal.webhook, client=template, verbose=False,
                    max_workers=4, batch_size=1) as bx:
            bx.call("crm.deal.get", [{"ID": i} for i in fake_portal.ids("deal")[:40]])
    assert id(template) not in {session for _, session in sessions}
    by_thread: Dict[int, set] = {}
    for thread, session in sessions:
        by_thread.setdefault(thread, set()).add(session)
    assert all(len(ids) == 1 for ids in by_thread.values())
    assert len({next(iter(ids)) for ids in by_thread.values()}) == len(by_thread)


def test_the_template_verify_applies_unless_ssl_says_otherwise(fake_portal):
    template = requests.Session()
    template.verify = "/etc/ssl/custom-ca.pem"
    adapter = RecordingAdapter()
    template.mount("http://", adapter)
    with Bitrix(fake_portal.webhook, client=template, verbose=False) as bx:
        bx.call("crm.deal.fields")
    with Bitrix(fake_portal.webhook, client=template, ssl=False, verbose=False) as bx:
        bx.call("crm.deal.fields")
    assert [kwargs["verify"] for _, _, kwargs in adapter.sent] == [
        "/etc/ssl/custom-ca.pem", False]


# -- call(method, items=None, *, raw=False) ---------------------------------------------

def test_call_takes_items_by_keyword_and_by_position(fake_portal):
    first = fake_portal.ids("deal")[0]
    with Bitrix(fake_portal.webhook, verbose=False) as bx:
        by_keyword = bx.call("crm.deal.get", items={"ID": first})
        by_position = bx.call("crm.deal.get", {"ID": first})
        assert by_keyword == by_position
        assert str(by_keyword["ID"]) == str(first)


def test_item_list_is_a_deprecated_alias_of_items(fake_portal):
    first = fake_portal.ids("deal")[0]
    with Bitrix(fake_portal.webhook, verbose=False) as bx:
        with pytest.warns(DeprecationWarning, match="items"):
            result = bx.call("crm.deal.get", item_list={"ID": first})
        assert str(result["ID"]) == str(first)
        with pytest.raises(TypeError):
            bx.call("crm.deal.get", {"ID": first}, item_list={"ID": first})


def test_call_and_get_by_id_take_generators_and_other_iterables(fake_portal):
    ids = fake_portal.ids("deal")[:75]
    with Bitrix(fake_portal.webhook, verbose=False) as bx:
        from_generator = bx.call("crm.deal.get", ({"ID": i} for i in ids))
        from_map = bx.call("crm.deal.get", map(lambda i: {"ID": i}, ids))
        assert [str(r["ID"]) for r in from_generator] == [str(i) for i in ids]
        assert from_map == from_generator
        by_id = bx.get_by_ID("crm.deal.get", (i for i in ids))
        assert list(by_id) == ids
        assert bx.get_by_ID("crm.deal.get", iter(ids[:3])) == {
            i: by_id[i] for i in ids[:3]}


def test_get_by_id_keys_keep_the_type_of_the_ids_passed_in(fake_portal):
    first = fake_portal.ids("deal")[0]
    with Bitrix(fake_portal.webhook, verbose=False) as bx:
        assert list(bx.get_by_ID("crm.deal.get", [first])) == [first]
        assert list(bx.get_by_ID("crm.deal.get", [str(first)])) == [str(first)]


@responses.activate
def test_raw_true_with_a_list_sends_a_json_array():
    # Legacy methods take positional parameters as a JSON array (fast_bitrix24's raw=True).
    responses.add(responses.POST, WEBHOOK + "task.checklistitem.add",
                  json={"result": 77, "time": {"start": 1.0, "finish": 1.1}})
    with Bitrix(WEBHOOK, verbose=False) as bx:
        reply = bx.call("task.checklistitem.add", [13, {"TITLE": "check"}], raw=True)
    assert reply["result"] == 77
    (sent,) = responses.calls
    assert json.loads(sent.request.body) == [13, {"TITLE": "check"}]
    assert "?" not in sent.request.url


@responses.activate
def test_raw_list_with_a_token_carries_it_in_the_query_string():
    responses.add(responses.POST, "https://portal.example.com/rest/task.checklistitem.add",
                  json={"result": 78, "time": {"start": 1.0, "finish": 1.1}})
    with Bitrix("https://portal.example.com/rest/", token_func=lambda: "acc3ssT0k",
                verbose=False) as bx:
        bx.call("task.checklistitem.add", (t for t in [13, {"TITLE": "x"}]), raw=True)
    (sent,) = responses.calls
    assert json.loads(sent.request.body) == [13, {"TITLE": "x"}]
    assert sent.request.params == {"auth": "acc3ssT0k"}


def test_slow_list_and_get_and_call_batch_keep_their_forms(fake_portal):
    with Bitrix(fake_portal.webhook, verbose=False) as bx:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with bx.slow(2):
                everything = bx.list_and_get("crm.deal", "ID")
        assert len(everything) == fake_portal.count("deal")
        first = fake_portal.ids("deal")[0]
        reply = bx.call_batch({"halt": 0, "cmd": {"a": f"crm.deal.get?ID={first}"}})
        assert str(reply["a"]["ID"]) == str(first)
        assert bx.get_all("crm.deal.list", {"select": ["ID"]}) == sorted(
            bx.get_all("crm.deal.list", {"select": ["ID"]}), key=lambda r: int(r["ID"]))


def test_the_template_certificate_and_auth_reach_worker_sessions():
    from bitrix_threaded.sessions import worker_session

    template = requests.Session()
    template.cert = ("/path/client.pem", "/path/client.key")
    template.auth = ("proxy-user", "proxy-pass")
    template.cookies.set("region", "eu")
    template.params = {"lang": "en"}
    template.headers["Accept-Encoding"] = "identity"
    session, owned = worker_session(template, verify=True,
                                    new_adapter=lambda: HTTPAdapter(max_retries=0),
                                    headers={"User-Agent": "ua/1", "Accept-Encoding": "gzip"})
    assert session is not template
    assert session.cert == template.cert and session.auth == template.auth
    assert session.cookies.get("region") == "eu" and session.params == {"lang": "en"}
    # requests' stock headers give way to the client's; the caller's own choices win.
    assert session.headers["User-Agent"] == "ua/1"
    assert session.headers["Accept-Encoding"] == "identity"
    # The default adapters requests mounted are replaced by the client's own, retry-free.
    assert len(owned) == 2 and all(a.max_retries.total == 0 for a in owned)
    assert all(session.adapters[p] in owned for p in ("http://", "https://"))


def test_ssl_false_holds_even_when_the_environment_names_a_ca_bundle(fake_portal, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/some-bundle.pem")
    template = requests.Session()
    adapter = RecordingAdapter()
    template.mount("http://", adapter)
    with Bitrix(fake_portal.webhook, client=template, ssl=False, verbose=False) as bx:
        bx.call("crm.deal.fields")
    assert [kwargs["verify"] for _, _, kwargs in adapter.sent] == [False]


# -- token_func ----------------------------------------------------------------------------

def test_a_token_func_passed_by_position(fake_portal):
    token = fake_portal.issue_oauth().access_token
    with Bitrix(fake_portal.endpoint, lambda: token, False) as bx:
        assert len(bx.get_all("crm.deal.list")) == fake_portal.count("deal")


def test_an_async_token_func_as_fast_bitrix24_requires(fake_portal):
    # fast_bitrix24 accepts only an ``async def`` token_func; the same function works here.
    if importlib.util.find_spec("bitrix_threaded.awaiting") is None:
        pytest.skip("async token_func support has not landed in this tree")
    token = fake_portal.issue_oauth().access_token

    async def fetch_token() -> str:
        return token

    with Bitrix(fake_portal.endpoint, fetch_token, False) as bx:
        assert len(bx.get_all("crm.deal.list")) == fake_portal.count("deal")


def test_the_async_client_takes_the_same_positional_arguments(fake_portal):
    import asyncio

    from bitrix_threaded import BitrixAsync

    async def export() -> int:
        async with BitrixAsync(fake_portal.webhook, None, False, True, 50, 2.0, 50, 480) as abx:
            assert abx.sync.verbose is False and abx.sync.batch_size == 50
            return len(await abx.get_all("crm.deal.list"))

    assert asyncio.run(export()) == fake_portal.count("deal")
