"""The fast decoder (the ``fast`` extra) gives exactly what the standard library gives."""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bitrix_threaded import jsoncodec
from bitrix_threaded.testing import FakePortal

FIXTURES = Path(__file__).parent / "fixtures" / "real_responses"


def _fast():
    decoder = jsoncodec._fast_decoder()
    if decoder is None:
        if os.environ.get("CI"):
            pytest.fail("msgspec (the 'fast' extra, in the test extra) is not installed")
        pytest.skip("msgspec is not installed")
    return decoder


def same(a, b):
    """Equal with the same types all the way down (1, 1.0 and True differ here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return b != b
    return a == b


EDGE_CASES = [
    b'{"a":123456789012345678901234567890,"b":-98765432109876543210987}',
    b'{"a":NaN,"b":Infinity,"c":-Infinity}',
    b'{"a":"\\ud800 lone surrogate"}',
    b'{"a":1,"a":2}',
    b' \n{"a":[1,2.5,-0.0,1e400,true,false,null]} \t',
    b'\xef\xbb\xbf{"a":1}',
    b'{"\\u00e9t\\u00e9":"\xc3\xa9\xf0\x9f\x98\x80\\n\\"\\/"}',
    b'{"a":1.7976931348623157e308,"b":5e-324,"c":0.1,"d":1E+16}',
    b'[]',
    b'"just a string"',
    b'{"result":{"result":[],"result_error":[],"result_time":{}},"total":0}',
]

NOT_JSON = [b'[1,2', b'{"a":"\xff"}', b'<html>502 Bad Gateway</html>', b'', b'{"a":1}x']


@pytest.mark.parametrize("raw", EDGE_CASES)
def test_edge_cases_decode_identically(raw):
    expected = json.loads(raw)
    assert same(_fast()(raw), expected)
    assert same(jsoncodec._stdlib(raw), expected)


@pytest.mark.parametrize("raw", NOT_JSON)
def test_what_is_not_json_raises_value_error_on_both_paths(raw):
    with pytest.raises(ValueError):
        json.loads(raw)
    with pytest.raises(ValueError):
        _fast()(raw)
    with pytest.raises(ValueError):
        jsoncodec._stdlib(raw)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.name)
def test_real_replies_decode_identically(path):
    raw = path.read_bytes()
    assert same(_fast()(raw), json.loads(raw))


def test_buffers_of_every_kind():
    raw = b'{"a":[1,"x"]}'
    for data in (raw, bytearray(raw), memoryview(raw), raw.decode()):
        assert jsoncodec._stdlib(data) == {"a": [1, "x"]}
        assert _fast()(data) == {"a": [1, "x"]}


def test_fake_portal_batch_replies_decode_identically():
    import requests

    with FakePortal(deals=600, contacts=100, profile="instant") as portal:
        cmd = {f"c{i}": f"crm.deal.list?start={i * 50}" for i in range(12)}
        cmd["contacts"] = "crm.contact.list?select[]=*&select[]=PHONE&select[]=EMAIL"
        cmd["get"] = "crm.deal.get?ID=$result[c0][0][ID]"
        raw = requests.post(portal.webhook + "batch", json={"halt": 0, "cmd": cmd},
                            timeout=30).content
    decoded = _fast()(raw)
    assert same(decoded, json.loads(raw))
    assert len(decoded["result"]["result"]["c11"]) == 50


def test_environment_turns_the_fast_path_off():
    code = "from bitrix_threaded import jsoncodec; print(jsoncodec.BACKEND)"
    env = dict(os.environ, BITRIX_THREADED_JSON="stdlib")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "json"
    _fast()
    env.pop("BITRIX_THREADED_JSON")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "msgspec"


class _WatchedLock:
    """The decode gate, reporting when a thread starts waiting for it."""

    def __init__(self):
        self._lock = threading.Lock()
        self.waiting = threading.Event()

    def __enter__(self):
        if self._lock.locked():
            self.waiting.set()
        self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()


def test_large_texts_are_decoded_one_at_a_time_small_ones_freely(monkeypatch):
    gate = _WatchedLock()
    release = threading.Event()
    entered = []

    def slow_decode(data):
        entered.append(len(data))
        if len(data) == jsoncodec.GATED_SIZE:  # the first large text holds the gate
            assert release.wait(30), "the test never released the first decode"
        return json.loads(data)

    monkeypatch.setattr(jsoncodec, "_GATE", gate)
    monkeypatch.setattr(jsoncodec, "_DECODE", slow_decode)
    big = b'"' + b"x" * (jsoncodec.GATED_SIZE - 2) + b'"'
    bigger = b'"' + b"y" * (jsoncodec.GATED_SIZE - 1) + b'"'
    results = {}

    def run(name, data):
        results[name] = jsoncodec.decode(data)

    first = threading.Thread(target=run, args=("first", big))
    first.start()
    while not entered:
        threading.Event().wait(0.001)
    second = threading.Thread(target=run, args=("second", bigger))
    second.start()
    assert gate.waiting.wait(30), "the second large text did not wait for the gate"
    # A small text is not gated: it is decoded while the large one holds the gate.
    assert jsoncodec.decode(b'{"small": 1}') == {"small": 1}
    assert entered == [jsoncodec.GATED_SIZE, len(b'{"small": 1}')]
    release.set()
    first.join(30)
    second.join(30)
    assert entered[-1] == len(bigger)
    assert results == {"first": "x" * (jsoncodec.GATED_SIZE - 2),
                       "second": "y" * (jsoncodec.GATED_SIZE - 1)}


def test_a_forked_child_gets_a_free_gate(monkeypatch):
    # The gate held (another thread mid-decode) when the process forks: the hook the
    # module registers gives the child a new gate, so its large decodes do not hang.
    held = threading.Lock()
    held.acquire()
    monkeypatch.setattr(jsoncodec, "_GATE", held)
    jsoncodec._after_fork()
    assert jsoncodec._GATE is not held and not jsoncodec._GATE.locked()
    big = b'"' + b"z" * jsoncodec.GATED_SIZE + b'"'
    assert jsoncodec.decode(big) == "z" * jsoncodec.GATED_SIZE


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_the_gate_is_held_decodes_large_texts():
    gate = jsoncodec._GATE
    if gate is None:
        pytest.skip("no gate without a GIL")
    big = b'"' + b"k" * jsoncodec.GATED_SIZE + b'"'
    with gate:  # as if another thread were decoding at the fork
        pid = os.fork()
        if pid == 0:  # the child: decode, then leave without running pytest's teardown
            ok = jsoncodec.decode(big) == "k" * jsoncodec.GATED_SIZE
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on the decode gate")
        threading.Event().wait(0.01)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
